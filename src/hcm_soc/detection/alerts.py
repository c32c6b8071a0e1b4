"""Turning one Match of one rule into one alert document: the deterministic id, ATT&CK tags, entities.

The alert id is a hash of the rule id and the Match key only (never of the time it was
raised or of the run), so a retried run, a restarted engine or two engines racing on the
same window produce the same `_id` and `op_type=create` stores the alert once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from hcm_soc.detection.model import LoadedRule, Match, Window
from hcm_soc.models.alert import (
    RISK_SCORE,
    SEVERITY,
    AddressEntity,
    Alert,
    AlertEventFields,
    AlertEventRef,
    AlertHcmFields,
    AlertRuleFields,
    AlertWindow,
    HcmRuleFields,
    NamedEntity,
    ProcessEntity,
    ThreatFields,
    ThreatTactic,
    ThreatTechnique,
    UrlEntity,
)

#: An alert keeps at most this many event refs (a correlation may stand for thousands of events;
#: `hcm.events_total` keeps the true number).
MAX_EVENT_REFS = 100

#: MITRE ATT&CK Enterprise tactics as Sigma tags them (`attack.<snake_name>`) -> (id, display name).
#: Kept here as data because pySigma's ATT&CK lookup downloads MITRE data at run time (no internet here).
TACTICS: dict[str, tuple[str, str]] = {
    "reconnaissance": ("TA0043", "Reconnaissance"),
    "resource_development": ("TA0042", "Resource Development"),
    "initial_access": ("TA0001", "Initial Access"),
    "execution": ("TA0002", "Execution"),
    "persistence": ("TA0003", "Persistence"),
    "privilege_escalation": ("TA0004", "Privilege Escalation"),
    "defense_evasion": ("TA0005", "Defense Evasion"),
    "credential_access": ("TA0006", "Credential Access"),
    "discovery": ("TA0007", "Discovery"),
    "lateral_movement": ("TA0008", "Lateral Movement"),
    "collection": ("TA0009", "Collection"),
    "command_and_control": ("TA0011", "Command and Control"),
    "exfiltration": ("TA0010", "Exfiltration"),
    "impact": ("TA0040", "Impact"),
}
_TACTIC_BY_ID = {tid: (tid, name) for tid, name in TACTICS.values()}
_TECHNIQUE_RE = re.compile(r"^t(\d{4})(?:\.(\d{3}))?$")
_TACTIC_ID_RE = re.compile(r"^ta\d{4}$")


def alert_id(rule_id: str, match_key: str) -> str:
    """The alert's `_id`: stable for the same rule and the same finding."""
    # length-prefixed so that no (rule id, key) pair can collide with another by shifting characters
    return hashlib.sha256(f"{len(rule_id)}:{rule_id}{match_key}".encode()).hexdigest()[:40]


def parse_attack_tags(tags: Sequence[str]) -> ThreatFields | None:
    """`attack.t1110.001`, `attack.credential_access`, `attack.ta0006` -> ECS threat.* (None if no ATT&CK tag).

    Group (`attack.g0032`) and software (`attack.s0002`) tags have no ECS threat field of their own
    and stay in the raw `tags`."""
    techniques: list[str] = []
    subtechniques: list[str] = []
    tactic_ids: list[str] = []
    tactic_names: list[str] = []
    for raw in tags:
        tag = raw.strip().lower()
        if not tag.startswith("attack."):
            continue
        value = tag.removeprefix("attack.")
        tactic: tuple[str, str] | None = None
        if m := _TECHNIQUE_RE.match(value):
            tech = f"T{m.group(1)}"
            if tech not in techniques:
                techniques.append(tech)
            if m.group(2) and (sub := f"{tech}.{m.group(2)}") not in subtechniques:
                subtechniques.append(sub)
        elif value in TACTICS:
            tactic = TACTICS[value]
        elif _TACTIC_ID_RE.match(value):
            tactic = _TACTIC_BY_ID.get(value.upper(), (value.upper(), value.upper()))
        if tactic and tactic[0] not in tactic_ids:
            tactic_ids.append(tactic[0])
            tactic_names.append(tactic[1])
    if not (techniques or tactic_ids):
        return None
    return ThreatFields(
        technique=ThreatTechnique(
            id=techniques, subtechnique={"id": subtechniques} if subtechniques else None
        ),
        tactic=ThreatTactic(id=tactic_ids, name=tactic_names),
    )


def _get(source: Mapping[str, Any], dotted: str) -> Any:
    """A field of an ECS event, whether stored nested (`{"host": {"name": ..}}`) or dotted."""
    if dotted in source:
        return source[dotted]
    node: Any = source
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: Any) -> str | None:
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, list):
        value = value[0]
    return value if isinstance(value, str) else str(value)


def _log_source(rule: LoadedRule) -> str | None:
    parts = [p for p in (rule.product, rule.category or rule.service) if p]
    return "/".join(parts) or None


def build_alert(
    rule: LoadedRule,
    match: Match,
    window: Window,
    *,
    raised: datetime,
    version: str | None = None,
) -> Alert:
    """The alert for `match`. Entity fields come from the first matched event that has them;
    for a correlation the group-by values fill entities the events lack (e.g. `source.ip`)."""
    level = rule.level if rule.level in SEVERITY else None
    sources = [ref.source for ref in match.events if ref.source]
    group = dict(match.group)

    def first(*fields: str) -> str | None:
        for field in fields:
            for src in (*sources, group):
                if (v := _text(_get(src, field))) is not None:
                    return v
        return None

    host, user = first("host.name", "host.hostname"), first("user.name")
    src_ip, dst_ip = first("source.ip"), first("destination.ip")
    url_full, url_original = first("url.full"), first("url.original")
    exe, cmd = first("process.executable"), first("process.command_line")
    refs = [AlertEventRef(index=e.index, id=e.id) for e in match.events[:MAX_EVENT_REFS]]
    what = ", ".join(
        f"{k}={v}"
        for k, v in (("host", host), ("user", user), ("source", src_ip), ("url", url_original or url_full))
        if v
    )
    return Alert(
        id=alert_id(rule.id, match.key),
        timestamp=raised,
        message=f"{rule.title}" + (f" ({what})" if what else ""),
        event=AlertEventFields(
            severity=SEVERITY.get(level or "", 0),
            risk_score=RISK_SCORE.get(level or "", 0.0),
            dataset=first("event.dataset"),
            module=first("event.module"),
        ),
        rule=AlertRuleFields(
            id=rule.id,
            name=rule.title,
            ruleset=rule.ruleset,
            description=rule.description,
            reference=list(rule.references),
            category=_log_source(rule),
            version=version,
        ),
        threat=parse_attack_tags(rule.tags),
        tags=list(rule.tags),
        host=NamedEntity(name=host) if host else None,
        user=NamedEntity(name=user) if user else None,
        source=AddressEntity(ip=src_ip) if src_ip else None,
        destination=AddressEntity(ip=dst_ip) if dst_ip else None,
        url=UrlEntity(full=url_full, original=url_original) if url_full or url_original else None,
        process=ProcessEntity(executable=exe, command_line=cmd) if exe or cmd else None,
        hcm=AlertHcmFields(
            created=raised,
            rule=HcmRuleFields(
                id=rule.id,
                title=rule.title,
                level=level,  # type: ignore[arg-type]  # checked against SEVERITY's keys above
                status=rule.status,
                kind=rule.kind,
                version=version,
                tags=list(rule.tags),
            ),
            window=AlertWindow(start=window.start, end=window.end),
            match_key=match.key,
            events=refs,
            events_total=max(len(match.events), match.count),
            count=max(match.count, 1),
            group=group or None,
            first_seen=match.first_seen,
            last_seen=match.last_seen,
        ),
    )
