"""Trigger matching: does a playbook's condition tree take this alert, and which playbook takes it.

Pure functions over the alert and the inventory assets it touched (no I/O), so that the runner, the
CLI and the tests all decide the same way. `select_playbook` gives the alert to the first enabled
playbook, by (order, id), whose trigger matches.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from hcm_soc.playbooks.model import (
    AllCondition,
    AlwaysCondition,
    AnyCondition,
    AssetCondition,
    AssetFilter,
    Condition,
    LevelCondition,
    LogSourceCondition,
    NotCondition,
    RuleIdsCondition,
    SourceIpCondition,
    TagsCondition,
    level_rank,
)

if TYPE_CHECKING:
    from hcm_soc.inventory import AssetMatch
    from hcm_soc.models.alert import Alert
    from hcm_soc.playbooks.model import Playbook


@dataclass(frozen=True)
class TriggerContext:
    """What a trigger is evaluated against: the alert and the inventory assets it touched."""

    alert: Alert
    assets: Sequence[AssetMatch] = ()


def matches(condition: Condition, ctx: TriggerContext) -> bool:
    """True when `ctx` satisfies `condition` (see docs/playbooks.md for each kind)."""
    match condition:
        case AnyCondition():
            return any(matches(c, ctx) for c in condition.any)
        case AllCondition():
            return all(matches(c, ctx) for c in condition.all)
        case NotCondition():
            return not matches(condition.not_, ctx)
        case AlwaysCondition():
            return True
        case RuleIdsCondition():
            rule_id = ctx.alert.rule.id.lower()
            return any(r.lower() == rule_id for r in condition.rule_ids)
        case TagsCondition():
            return _tags_match(condition.tags, alert_tags(ctx.alert))
        case LevelCondition():
            return _level_match(condition, alert_level(ctx.alert))
        case LogSourceCondition():
            return _log_source_match(condition, ctx.alert.rule.category)
        case AssetCondition():
            return any(_asset_fits(condition.asset, m.asset) for m in ctx.assets)
        case SourceIpCondition():
            return _source_ip_match(condition.source_ip, alert_source_ips(ctx.alert))
    raise TypeError(f"not a trigger condition: {condition!r}")


def select_playbook(playbooks: Iterable[Playbook], ctx: TriggerContext) -> Playbook | None:
    """The first enabled playbook, by (order, id), whose trigger matches; None when none does."""
    for playbook in sorted(playbooks, key=lambda p: (p.order, p.id)):
        if playbook.enabled and matches(playbook.trigger, ctx):
            return playbook
    return None


# --- what the alert offers ------------------------------------------------------------------------


def _norm_tag(tag: str) -> str:
    # Sigma v2 writes tactics with hyphens (`attack.credential-access`), older rules and the ECS
    # mapping with underscores (`attack.credential_access`): both spellings mean the same tactic.
    return tag.strip().lower().replace("_", "-")


def alert_tags(alert: Alert) -> set[str]:
    """The alert's tags and its rule's tags, normalised (lower case, `_` read as `-`)."""
    return {_norm_tag(t) for t in (*alert.tags, *alert.hcm.rule.tags)}


def alert_level(alert: Alert) -> str | None:
    """The alert's Sigma level (from the rule; else from the ECS severity)."""
    if alert.hcm.rule.level:
        return alert.hcm.rule.level
    by_severity = {1: "informational", 2: "low", 3: "medium", 4: "high", 5: "critical"}
    return by_severity.get(alert.event.severity)


def alert_source_ips(alert: Alert) -> list[str]:
    """`source.ip`, or a correlation's `source.ip` group-by value."""
    ips = [alert.source.ip] if alert.source is not None and alert.source.ip else []
    group: Mapping[str, Any] = alert.hcm.group or {}
    value = group.get("source.ip")
    if isinstance(value, str) and value not in ips:
        ips.append(value)
    return ips


# --- leaves ---------------------------------------------------------------------------------------


def _tags_match(patterns: Sequence[str], tags: set[str]) -> bool:
    for pattern in patterns:
        p = _norm_tag(pattern)
        if any(fnmatchcase(t, p) for t in tags) if "*" in p or "?" in p else p in tags:
            return True
    return False


def _level_match(condition: LevelCondition, level: str | None) -> bool:
    rank = level_rank(level)
    if rank == 0:
        return False  # an alert without a level is neither above nor below anything
    bounds = condition.level
    if bounds.min is not None and rank < level_rank(bounds.min):
        return False
    return not (bounds.max is not None and rank > level_rank(bounds.max))


def _log_source_match(condition: LogSourceCondition, category: str | None) -> bool:
    """`rule.category` is "product/category-or-service" (one part when the rule names only one)."""
    if not category:
        return False
    parts = [p.lower() for p in category.split("/")]
    product = parts[0] if len(parts) == 2 else None
    rest = parts[-1]
    want = condition.log_source
    # a one-part source may be a bare product (e.g. `zeek`)
    if want.product is not None and want.product.lower() != (product if product is not None else rest):
        return False
    for wanted in (want.service, want.category):
        if wanted is not None and wanted.lower() != rest:
            return False
    return True


def _asset_fits(want: AssetFilter, asset: Any) -> bool:
    if want.sector is not None and asset.sector not in want.sector:
        return False
    if want.criticality is not None:
        crit = want.criticality
        if crit.min is not None and asset.criticality < crit.min:
            return False
        if crit.max is not None and asset.criticality > crit.max:
            return False
    if want.department is not None and asset.department not in want.department:
        return False
    if want.sensitivity is not None and asset.sensitivity not in want.sensitivity:
        return False
    if want.tags is not None:
        have = {t.lower() for t in asset.tags}
        if not any(t.lower() in have for t in want.tags):
            return False
    return True


@lru_cache(maxsize=256)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _source_ip_match(cidrs: Sequence[str], ips: Sequence[str]) -> bool:
    nets = _networks(tuple(cidrs))
    for raw in ips:
        try:
            ip = ipaddress.ip_address(raw)
        except ValueError:
            continue
        if any(ip.version == net.version and ip in net for net in nets):
            return True
    return False


# --- text --------------------------------------------------------------------------------------------


def describe(condition: Condition) -> str:
    """A one-line summary of a condition tree (for `hcm-soc playbooks list`)."""
    match condition:
        case AnyCondition():
            return "any(" + ", ".join(describe(c) for c in condition.any) + ")"
        case AllCondition():
            return "all(" + ", ".join(describe(c) for c in condition.all) + ")"
        case NotCondition():
            return f"not({describe(condition.not_)})"
        case AlwaysCondition():
            return "always"
        case RuleIdsCondition():
            ids = condition.rule_ids
            return f"rule_ids[{len(ids)}]" if len(ids) > 1 else f"rule_ids: {ids[0]}"
        case TagsCondition():
            return "tags: " + " ".join(condition.tags)
        case LevelCondition():
            b = condition.level
            return " ".join(
                x for x in (f"level>={b.min}" if b.min else "", f"level<={b.max}" if b.max else "") if x
            )
        case LogSourceCondition():
            ls = condition.log_source
            parts = [
                f"{k}={v}"
                for k, v in (("product", ls.product), ("service", ls.service), ("category", ls.category))
                if v
            ]
            return "log_source " + " ".join(parts)
        case AssetCondition():
            a = condition.asset
            parts = []
            if a.sector:
                parts.append("sector=" + "|".join(a.sector))
            if a.criticality:
                c = a.criticality
                parts.append(f"criticality {c.min or 1}..{c.max or 4}")
            if a.department:
                parts.append("department=" + "|".join(a.department))
            if a.sensitivity:
                parts.append("sensitivity=" + "|".join(a.sensitivity))
            if a.tags:
                parts.append("tags=" + "|".join(a.tags))
            return "asset(" + " ".join(parts) + ")"
        case SourceIpCondition():
            return "source_ip in " + " ".join(condition.source_ip)
    return repr(condition)
