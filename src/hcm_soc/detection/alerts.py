"""Turning one Match of one rule into one alert document: the deterministic id, ATT&CK tags, entities;
and the alert caps that keep one flood from burying everything else (`AlertCaps`, `build_summary_alert`).

The alert id is a hash of the rule id and the Match key only (never of the time it was
raised or of the run), so a retried run, a restarted engine or two engines racing on the
same window produce the same `_id` and `op_type=create` stores the alert once.

Caps: a run of a rule raises at most `max_alerts_per_run` alerts, and at most
`max_alerts_per_group` for one group key (the correlation group, else the match's
source.ip/user.name/host.name). Matches over a cap are counted, and one summary alert per
rule and window (id from rule + window + "summary") says how many and names the top keys.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hcm_soc.detection.model import CompiledRule, LoadedRule, Match, MatchResult, Window
from hcm_soc.models.alert import (
    RISK_SCORE,
    SEVERITY,
    AddressEntity,
    Alert,
    AlertEventFields,
    AlertEventRef,
    AlertHcmFields,
    AlertRuleFields,
    AlertSummary,
    AlertWindow,
    HcmRuleFields,
    NamedEntity,
    ProcessEntity,
    SuppressedKey,
    ThreatFields,
    ThreatTactic,
    ThreatTechnique,
    UrlEntity,
)

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger("hcm_soc.detection.alerts")

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
        rule=_rule_fields(rule, version),
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
            rule=_hcm_rule(rule, level, version),
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


# --- caps ------------------------------------------------------------------------------------------

#: Fields whose values make a detection match's group key (who or what the flood is about).
GROUP_FIELDS = ("source.ip", "user.name", "host.name")
TOP_KEYS = 5


def group_key(match: Match) -> str:
    """The key the per-group cap counts: the correlation group, else source.ip/user.name/host.name of
    the matched event (the fields it has), else "-"."""
    if match.group:
        return ",".join(f"{k}={v}" for k, v in match.group)
    source = match.events[0].source if match.events else {}
    parts = [f"{f}={v}" for f in GROUP_FIELDS if (v := _text(_get(source, f))) is not None]
    return ",".join(parts) or "-"


class AlertCaps:
    """The caps of one run of one rule: `admit` keeps the matches that may raise an alert and counts
    the rest by group key."""

    def __init__(self, per_run: int, per_group: int) -> None:
        self.per_run = per_run
        self.per_group = per_group
        self.kept = 0
        self.by_group: Counter[str] = Counter()

    @property
    def remaining(self) -> int:
        return max(self.per_run - self.kept, 0)

    def admit(self, matches: Sequence[Match]) -> tuple[list[Match], Counter[str]]:
        kept: list[Match] = []
        suppressed: Counter[str] = Counter()
        for m in matches:
            key = group_key(m)
            if self.kept >= self.per_run or self.by_group[key] >= self.per_group:
                suppressed[key] += 1
                continue
            self.by_group[key] += 1
            self.kept += 1
            kept.append(m)
        return kept, suppressed


def build_summary_alert(
    rule: LoadedRule,
    window: Window,
    *,
    raised: datetime,
    version: str | None,
    suppressed: int,
    exact: bool,
    top: Counter[str],
    caps: AlertCaps,
) -> Alert:
    """The one alert that stands for the matches of `window` that went over the caps."""
    level = rule.level if rule.level in SEVERITY else None
    key = f"summary:{window.start.isoformat()}:{window.end.isoformat()}"
    tops = top.most_common(TOP_KEYS)
    names = ", ".join(f"{k} ({n})" for k, n in tops)
    return Alert(
        id=alert_id(rule.id, key),
        timestamp=raised,
        message=(
            f"{rule.title}: {'' if exact else 'at least '}{suppressed} more match(es) raised no alert of their own "
            f"(caps: {caps.per_run} per run, {caps.per_group} per key)"
            + (f"; top keys: {names}" if names else "")
        ),
        event=AlertEventFields(
            severity=SEVERITY.get(level or "", 0), risk_score=RISK_SCORE.get(level or "", 0.0)
        ),
        rule=_rule_fields(rule, version),
        threat=parse_attack_tags(rule.tags),
        tags=list(rule.tags),
        hcm=AlertHcmFields(
            created=raised,
            rule=_hcm_rule(rule, level, version),
            window=AlertWindow(start=window.start, end=window.end),
            match_key=key,
            events=[],
            events_total=suppressed,
            count=suppressed,
            summary=AlertSummary(
                suppressed=suppressed,
                exact=exact,
                max_alerts_per_run=caps.per_run,
                max_alerts_per_group=caps.per_group,
                top_keys=[SuppressedKey(key=k, count=n) for k, n in tops],
            ),
        ),
    )


def count_flood(es: Elasticsearch, compiled: CompiledRule, window: Window) -> tuple[int, Counter[str]] | None:
    """For a plain detection rule whose matches were cut at the cap: how many events of `window` match
    and the most frequent values of GROUP_FIELDS among them (`field=value` -> count), in one search.
    None when Elasticsearch refuses (the summary then says "at least")."""
    from hcm_soc.detection.matcher import window_filter

    filters = [window_filter(window), compiled.query, *([compiled.scope] if compiled.scope else [])]
    try:
        resp = es.search(
            index=",".join(compiled.indices),
            query={"bool": {"filter": filters}},
            size=0,
            track_total_hits=True,
            aggs={f: {"terms": {"field": f, "size": TOP_KEYS}} for f in GROUP_FIELDS},
            allow_no_indices=True,
            ignore_unavailable=True,
        )
    except Exception as e:  # an estimate is better than no summary: the caller says "at least"
        log.warning(
            "could not count the matches over the cap", extra={"rule_id": compiled.rule.id, "error": str(e)}
        )
        return None
    top: Counter[str] = Counter()
    for f in GROUP_FIELDS:
        for b in (resp.get("aggregations") or {}).get(f, {}).get("buckets", []):
            top[f"{f}={b.get('key_as_string', b['key'])}"] = int(b["doc_count"])
    return int(resp["hits"]["total"]["value"]), top


def capped_alerts(
    rule: LoadedRule,
    result: MatchResult,
    window: Window,
    caps: AlertCaps,
    *,
    raised: datetime,
    version: str | None,
    count: Callable[[], tuple[int, Counter[str]] | None],
) -> tuple[list[Alert], int, int]:
    """The alerts of one window under the caps: one per admitted match, plus the summary alert when
    matches were suppressed. `count` is asked (once) only when the search stopped at the cap.
    Returns (alerts, suppressed matches, matches that were never fetched)."""
    kept, over = caps.admit(result.matches)
    alerts = [build_alert(rule, m, window, raised=raised, version=version) for m in kept]
    suppressed = sum(over.values())
    exact = not result.truncated
    unfetched = 0
    if result.truncated:
        counted = count()
        exact = counted is not None
        # without a count: at least one more match existed beyond the fetched ones
        unfetched = max(counted[0] - len(result.matches), 0) if counted is not None else 1
        suppressed += unfetched
        # who floods: the top field values among all the window's matches (most were not fetched)
        over = counted[1] if counted is not None else over
    if suppressed:
        alerts.append(
            build_summary_alert(
                rule,
                window,
                raised=raised,
                version=version,
                suppressed=suppressed,
                exact=exact,
                top=over,
                caps=caps,
            )
        )
    return alerts, suppressed, unfetched


def _hcm_rule(rule: LoadedRule, level: str | None, version: str | None) -> HcmRuleFields:
    """`hcm.rule`: the rule as it was when the alert was raised (level checked by the caller)."""
    return HcmRuleFields(
        id=rule.id,
        title=rule.title,
        level=level,  # type: ignore[arg-type]  # checked against SEVERITY's keys by the caller
        status=rule.status,
        kind=rule.kind,
        version=version,
        tags=list(rule.tags),
    )


def _rule_fields(rule: LoadedRule, version: str | None) -> AlertRuleFields:
    """ECS `rule.*` of an alert: the Sigma id and title, where it came from, its log source."""
    return AlertRuleFields(
        id=rule.id,
        name=rule.title,
        ruleset=rule.ruleset,
        description=rule.description,
        reference=list(rule.references),
        category=_log_source(rule),
        version=version,
    )
