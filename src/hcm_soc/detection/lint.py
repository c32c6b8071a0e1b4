"""Rule lint against the live cluster: can each compiled rule match what is actually stored?

`lint_rules(es, names, compiled_rules, recent=…)` checks every field a rule queries — walked
from the rule's condition tree after the hcm-soc pipeline, so the field names and query forms
are exactly those of the compiled query — against:

1. the LIVE mappings of the indices that hold the rule's log source (the `_index` values of
   the events its scope selects): the field must exist there with a type the query form works
   on (a case-insensitive match needs the lower-cased `.caseless` keyword sub-field; wildcards
   and regexes a keyword/wildcard field; `gt/lt/gte/lte` a number or a date; `|cidr` an `ip`;
   a plain value a type that can hold it);
2. recent data: the log source had events in the last `recent`, and each field had values in
   them (an `exists` count under the rule's scope).

All of it costs two requests whatever the number of rules: one `_mapping` of the events
pattern and one search whose aggregations count, per distinct log source, its indices, its
recent events and the recent values of every field its rules use.

A query part that can never match is dead. The rule's conditions are evaluated with dead
parts as false (three-valued: unknown elsewhere, so `not dead` is true): when no condition can
be true the rule can never match and each dead part is an `error`; a dead part in an
alternative the rule can do without is a `warning`, like "no recent values" and "no events
for the log source". Rules whose source has no index yet are checked against the events
template (an unknown field there is dynamic and may still appear, so it is not an error).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from hcm_soc.detection.compiler import PythonCheckedRule
from hcm_soc.detection.fieldmaps.sources import find_source
from hcm_soc.detection.model import CompiledRule
from hcm_soc.detection.pipeline import CASELESS, LOGSOURCE_DETECTION, hcm_soc_pipeline

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.store.names import IndexNames

Severity = Literal["error", "warning"]
#: how a condition leaf queries its field (decides which types can answer it)
Form = Literal["caseless", "term", "wildcard", "regex", "range", "cidr", "number", "bool", "exists", "absent"]

KEYWORDISH = frozenset({"keyword", "constant_keyword", "wildcard"})
TEXTISH = frozenset({"text", "match_only_text"})
NUMERIC = frozenset(
    {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
)
DATES = frozenset({"date", "date_nanos"})
#: the most indices of one log source the lint reads (a terms aggregation on `_index`)
MAX_INDICES = 1000


@dataclass(frozen=True, slots=True)
class LintFinding:
    """One problem of one rule: `field` (as queried) is None for rule-level findings."""

    severity: Severity
    reason: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.severity}: {self.field + ': ' if self.field else ''}{self.reason}"


@dataclass(frozen=True, slots=True)
class LintResult:
    """The lint of one rule. `can_match` is False when the live mappings rule out every match;
    `source` is the hcm-soc data source its log source maps to; the event counts are those of
    that source (all time, and within the `recent` period)."""

    rule_id: str
    title: str
    path: str
    source: str
    can_match: bool
    events_total: int
    events_recent: int
    indices: tuple[str, ...]
    findings: tuple[LintFinding, ...] = ()

    @property
    def errors(self) -> list[LintFinding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[LintFinding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def status(self) -> str:
        return "error" if self.errors else "warning" if self.warnings else "ok"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.rule_id,
            "title": self.title,
            "path": self.path,
            "source": self.source,
        }
        out.update(status=self.status, can_match=self.can_match, events_total=self.events_total)
        out.update(events_recent=self.events_recent, indices=list(self.indices))
        out["findings"] = [
            {"severity": f.severity, "field": f.field, "reason": f.reason} for f in self.findings
        ]
        return out


# -- what a rule queries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leaf:
    """One field test of a rule's condition: the field as queried and the query form."""

    field: str
    form: Form
    value: str  # the value as text, for messages
    python: bool = False  # checked in Python on `_source` (PythonCheckedRule): only presence matters
    scope: bool = False  # part of the log-source condition, not of the rule's own detection
    negated: bool = False  # under an odd number of `not`s: a filter that excludes events

    @property
    def base(self) -> str:
        """The field itself: values are counted there (`.caseless` drops those above ignore_above)."""
        return self.field.removesuffix(CASELESS)


@dataclass(slots=True)
class RulePlan:
    compiled: CompiledRule
    source: str
    scope_key: str
    trees: list[Any]
    leaves: dict[int, Leaf]  # id(condition node) -> leaf


def _form(field_name: str, value: Any) -> Form:
    from sigma.types import (
        SigmaBool,
        SigmaCIDRExpression,
        SigmaCompareExpression,
        SigmaExists,
        SigmaExpansion,
        SigmaFieldReference,
        SigmaNull,
        SigmaNumber,
        SigmaRegularExpression,
        SigmaString,
    )

    if isinstance(value, SigmaNull):
        return "absent"
    if isinstance(value, SigmaExists):
        return "exists" if value.exists else "absent"
    if field_name.endswith(CASELESS):
        return "caseless"
    if isinstance(value, SigmaCompareExpression):
        return "range"
    if isinstance(value, SigmaCIDRExpression):
        return "cidr"
    if isinstance(value, SigmaRegularExpression):
        return "regex"
    if isinstance(value, SigmaBool):
        return "bool"
    if isinstance(value, SigmaNumber):
        return "number"
    if isinstance(value, SigmaExpansion):
        return "wildcard"
    if isinstance(value, SigmaString):
        return "wildcard" if value.contains_special() else "term"
    if isinstance(value, SigmaFieldReference):
        return "exists"
    return "term"


def _value_text(value: Any) -> str:
    if hasattr(value, "regexp"):
        return f"/{value.regexp}/"
    if hasattr(value, "cidr"):
        return str(value.cidr)
    if hasattr(value, "op") and hasattr(value, "number"):
        return f"{value.op.name.lower()} {value.number.number}"
    try:
        return str(value)
    except (TypeError, ValueError):
        return type(value).__name__


def plan_rule(compiled: CompiledRule) -> RulePlan:
    """The condition trees of a compiled rule (after the hcm-soc pipeline) and their field leaves."""
    from sigma.conditions import ConditionFieldEqualsValueExpression

    python = isinstance(compiled, PythonCheckedRule)
    if isinstance(compiled, PythonCheckedRule):
        checked = compiled.checked
    else:
        checked = copy.deepcopy(compiled.rule.sigma)
        checked._output = True
        hcm_soc_pipeline(keep_residual=True).apply(checked)
    scope_fields = {
        item.field
        for item in _items(checked.detection.detections.get(LOGSOURCE_DETECTION))
        if getattr(item, "field", None)
    }
    trees = [cond.parsed for cond in checked.detection.parsed_condition]
    leaves: dict[int, Leaf] = {}
    for tree in trees:
        for node, negated in _walk(tree):
            if isinstance(node, ConditionFieldEqualsValueExpression) and node.field:
                leaves[id(node)] = Leaf(
                    node.field,
                    _form(node.field, node.value),
                    _value_text(node.value),
                    python=python,
                    scope=node.field in scope_fields,
                    negated=negated,
                )
    ls = compiled.rule.sigma.logsource
    source = find_source(ls.product, ls.category, ls.service)
    return RulePlan(
        compiled=compiled,
        source=source.name if source else "?",
        scope_key=json.dumps(compiled.scope, sort_keys=True),
        trees=trees,
        leaves=leaves,
    )


def _items(detection: Any) -> Iterator[Any]:
    if detection is None:
        return
    for item in detection.detection_items:
        if hasattr(item, "detection_items"):
            yield from _items(item)
        else:
            yield item


def _walk(node: Any, negated: bool = False) -> Iterator[tuple[Any, bool]]:
    from sigma.conditions import ConditionNOT

    yield node, negated
    inner = not negated if isinstance(node, ConditionNOT) else negated
    for arg in getattr(node, "args", None) or ():
        yield from _walk(arg, inner)


# -- live mappings ------------------------------------------------------------------------------------


class FieldTypes:
    """Field path -> Elasticsearch type of one index (multi-fields as `field.sub`, aliases resolved,
    sub-keys of `flattened` fields as keywords)."""

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self.types: dict[str, str] = {}
        self.flattened: list[str] = []
        aliases: dict[str, str] = {}
        self._walk(mapping.get("properties", {}), "", aliases)
        for name, spec in (mapping.get("runtime") or {}).items():
            self.types[name] = spec.get("type", "keyword")
        for name, target in aliases.items():
            if target in self.types:
                self.types[name] = self.types[target]

    def _walk(self, props: Mapping[str, Any], prefix: str, aliases: dict[str, str]) -> None:
        for name, spec in props.items():
            path = prefix + name
            if "properties" in spec:
                self._walk(spec["properties"], path + ".", aliases)
                continue
            kind = spec.get("type", "object")
            if kind == "alias":
                aliases[path] = spec.get("path", "")
                continue
            self.types[path] = kind
            if kind == "flattened":
                self.flattened.append(path + ".")
            for sub, sub_spec in (spec.get("fields") or {}).items():
                self.types[f"{path}.{sub}"] = sub_spec.get("type", "keyword")

    def get(self, path: str) -> str | None:
        if path in self.types:
            return self.types[path]
        if any(path.startswith(p) for p in self.flattened):
            return "keyword"
        return None


def template_types() -> FieldTypes:
    """The events template's static mapping: the view of a log source that has no index yet."""
    from hcm_soc.store.templates import ecs_mappings

    return FieldTypes(ecs_mappings())


def _check(leaf: Leaf, types: FieldTypes) -> tuple[str, str | None]:
    """('ok'|'missing'|'bad', reason) for one leaf on one index's mapping."""
    kind = types.get(leaf.field)
    if leaf.python or leaf.form == "exists":
        ok = kind is not None or types.get(leaf.base) is not None
        return ("ok", None) if ok else ("missing", None)
    if kind is None:
        base = types.get(leaf.base) if leaf.field != leaf.base else None
        if base is None:
            return "missing", None
        return "bad", (
            f"mapped as {base}, which has no {CASELESS} keyword sub-field: the case-insensitive match "
            f"on {leaf.field} can never match (map {leaf.base} as keyword with a .caseless sub-field, "
            "or give a value of its type)"
        )
    return _fits(leaf, kind)


def _fits(leaf: Leaf, kind: str) -> tuple[str, str | None]:
    form, value = leaf.form, leaf.value
    if form == "caseless":
        if kind in KEYWORDISH:
            return "ok", None
        return "bad", f"{leaf.field} is a {kind}, not a lower-cased keyword: the case-insensitive match fails"
    if form == "range":
        if kind in NUMERIC or kind in DATES:
            return "ok", None
        return "bad", (
            f"numeric comparison ({value}) on a {kind} field: Elasticsearch compares {kind} values as "
            "text ('10' < '9'), so the rule cannot match correctly; map the field as a number"
        )
    if form == "cidr":
        if kind == "ip":
            return "ok", None
        return "bad", f"CIDR range {value} needs an ip field; {leaf.field} is a {kind}"
    if form in ("wildcard", "regex"):
        if kind in KEYWORDISH or kind in TEXTISH:
            return "ok", None
        what = "wildcard pattern" if form == "wildcard" else "regular expression"
        return (
            "bad",
            f"{what} {value!r} on a {kind} field: only keyword, wildcard and text fields take patterns",
        )
    if form == "number":
        if kind in ("ip", "boolean", "geo_point"):
            return "bad", f"number {value} on a {kind} field can never match"
        return "ok", None
    if form == "bool":
        if kind in ("boolean", *KEYWORDISH):
            return "ok", None
        return "bad", f"boolean {value} on a {kind} field can never match"
    if form == "term":
        if kind in NUMERIC and not re.fullmatch(r"-?\d+(\.\d+)?", value):
            return "bad", f"value {value!r} on a numeric ({kind}) field can never match"
        if kind == "ip" and not _is_ip(value):
            return "bad", f"value {value!r} on an ip field can never match: it is not an address"
        if kind == "boolean" and value.lower() not in ("true", "false"):
            return "bad", f"value {value!r} on a boolean field can never match"
    return "ok", None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# -- the lint -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _ScopeFacts:
    indices: list[str] = field(default_factory=list)
    total: int = 0
    recent: int = 0
    values: dict[str, int] = field(default_factory=dict)  # field -> recent events with a value


def lint_rules(
    es: Elasticsearch,
    names: IndexNames,
    compiled_rules: Iterable[Any],
    *,
    recent: timedelta = timedelta(days=7),
    now: datetime | None = None,
) -> list[LintResult]:
    """Lint every compiled rule against the live mappings and recent data (module doc).

    Detection rules are `CompiledRule`s; a compiled correlation (anything with `bases`) is linted
    through its base rules (which get results of their own) and its group-by / counted fields.
    Duplicates (the same rule under its id and its name) are linted once; results keep input order."""
    seen: set[str] = set()
    plans: list[RulePlan] = []
    order: list[Any] = []  # RulePlan or correlation, in input order
    for compiled in compiled_rules:
        for item in (*getattr(compiled, "bases", ()), compiled):
            if item.rule.id in seen:
                continue
            seen.add(item.rule.id)
            if hasattr(item, "bases"):
                order.append(item)
            else:
                plans.append(plan_rule(item))
                order.append(plans[-1])
    if not plans:
        return []
    now = now or datetime.now(UTC)
    facts = _scope_facts(es, names, plans, now - recent, now)
    mappings = _mappings(es, names)
    template = template_types()
    days = _span(recent)
    results = {p.compiled.rule.id: _lint_one(p, facts[p.scope_key], mappings, template, days) for p in plans}
    return [
        results[x.compiled.rule.id] if isinstance(x, RulePlan) else _lint_correlation(x, results, mappings)
        for x in order
    ]


#: types a correlation cannot group or count on (no doc values: the composite aggregation fails)
NOT_AGGREGATABLE = TEXTISH | {"binary"}


def _lint_correlation(
    corr: Any, bases: Mapping[str, LintResult], mappings: Mapping[str, FieldTypes]
) -> LintResult:
    """A correlation through its base rules: a base that can never match, or a group-by/counted
    field without doc values (the aggregation fails), is an error; a group-by field a base's events
    lack (they all group under null) a warning."""
    findings: list[LintFinding] = []
    usable: list[bool] = []
    for b, base in enumerate(corr.bases):
        res = bases[base.rule.id]
        ok = res.can_match
        if not ok:
            findings.append(
                LintFinding("error", f"base rule {base.rule.id} '{base.rule.title}' can never match")
            )
        fields = [(gf.fields[b], "group-by") for gf in corr.group_by]
        fields += [(corr.value_fields[b], "counted")] if corr.value_fields else []
        views = [mappings[i] for i in res.indices if i in mappings]
        for fname, role in fields:
            kinds = {v.get(fname) for v in views}
            bad = sorted(k for k in kinds if k in NOT_AGGREGATABLE)
            if bad and not kinds - NOT_AGGREGATABLE - {None}:
                ok = False
                why = f"{role} field of base rule {base.rule.id} is a {bad[0]} field: it has no doc values"
                findings.append(
                    LintFinding("error", why + " to group or count on, the correlation fails", fname)
                )
            elif views and kinds == {None}:
                why = f"{role} field not in the mapping of base rule {base.rule.id}'s indices"
                findings.append(
                    LintFinding("warning", why + ": its events all fall in one group (null)", fname)
                )
        usable.append(ok)
    # a plain temporal correlation needs every base rule; the counting types any of them
    needs_all = str(corr.type).startswith("temporal") and not corr.expression
    can_match = all(usable) if needs_all else any(usable)
    if can_match:
        findings = [
            LintFinding("warning", f.reason, f.field) if f.severity == "error" else f for f in findings
        ]
    results = [bases[b.rule.id] for b in corr.bases]
    return LintResult(
        rule_id=corr.rule.id,
        title=corr.rule.title,
        path=str(corr.rule.path),
        source="correlation",
        can_match=can_match,
        events_total=sum(r.events_total for r in results),
        events_recent=sum(r.events_recent for r in results),
        indices=tuple(sorted({i for r in results for i in r.indices})),
        findings=tuple(findings),
    )


def _scope_facts(
    es: Elasticsearch, names: IndexNames, plans: Sequence[RulePlan], since: datetime, now: datetime
) -> dict[str, _ScopeFacts]:
    """One search: per distinct log-source scope, its indices, its event counts and, within the
    recent period, the events that have a value in each field its rules query."""
    scopes: dict[str, tuple[dict[str, Any], set[str]]] = {}
    for p in plans:
        query, fields = scopes.setdefault(p.scope_key, (p.compiled.scope or {"match_all": {}}, set()))
        fields.update(leaf.base for leaf in p.leaves.values() if leaf.form != "absent" and not leaf.scope)
    keys = {key: f"s{i}" for i, key in enumerate(scopes)}
    field_keys: dict[str, list[str]] = {key: sorted(fields) for key, (_, fields) in scopes.items()}
    recent_range = {
        "range": {
            "event.ingested": {"gte": _iso(since), "lt": _iso(now), "format": "strict_date_optional_time"}
        }
    }
    aggs: dict[str, Any] = {}
    for key, (query, _) in scopes.items():
        listed = field_keys[key]
        sub: dict[str, Any] = {"indices": {"terms": {"field": "_index", "size": MAX_INDICES}}}
        recent_aggs: dict[str, Any] = {}
        if listed:
            recent_aggs["values"] = {
                "filters": {"filters": {f"f{i}": {"exists": {"field": f}} for i, f in enumerate(listed)}}
            }
        sub["recent"] = {"filter": recent_range, **({"aggs": recent_aggs} if recent_aggs else {})}
        aggs[keys[key]] = {"filter": query, "aggs": sub}
    resp = es.search(
        index=names.events_pattern,
        size=0,
        aggs=aggs,
        ignore_unavailable=True,
        allow_no_indices=True,
        track_total_hits=False,
    )
    out: dict[str, _ScopeFacts] = {}
    got = resp.get("aggregations") or {}
    for key in scopes:
        agg = got.get(keys[key])
        facts = _ScopeFacts()
        if agg:
            facts.total = int(agg["doc_count"])
            facts.indices = [b["key"] for b in agg["indices"]["buckets"]]
            facts.recent = int(agg["recent"]["doc_count"])
            buckets = (agg["recent"].get("values") or {}).get("buckets") or {}
            for i, f in enumerate(field_keys[key]):
                facts.values[f] = int(buckets.get(f"f{i}", {}).get("doc_count", 0))
        out[key] = facts
    return out


def _mappings(es: Elasticsearch, names: IndexNames) -> dict[str, FieldTypes]:
    resp = es.indices.get_mapping(
        index=names.events_pattern, ignore_unavailable=True, allow_no_indices=True, expand_wildcards="all"
    )
    return {index: FieldTypes(body.get("mappings") or {}) for index, body in resp.items()}


def _lint_one(
    plan: RulePlan,
    facts: _ScopeFacts,
    mappings: Mapping[str, FieldTypes],
    template: FieldTypes,
    days: str,
) -> LintResult:
    indices = [i for i in facts.indices if i in mappings]
    views = [mappings[i] for i in indices] or [template]
    dead: dict[int, str] = {}  # id(leaf node) -> why it can never match
    partial: dict[str, str] = {}  # field -> why some indices cannot match it
    for node_id, leaf in plan.leaves.items():
        if leaf.form == "absent":
            continue  # a field that is missing makes `null` / `exists: false` true
        results = [_check(leaf, v) for v in views]
        oks = sum(1 for status, _ in results if status == "ok")
        if oks:
            bad = [(i, r) for i, (s, r) in zip(indices, results, strict=False) if s == "bad" and r]
            if bad:
                partial[leaf.field] = (
                    f"{bad[0][1]} (in {len(bad)} of {len(indices)} indices, e.g. {bad[0][0]})"
                )
            continue
        reasons = [r for s, r in results if s == "bad" and r]
        if reasons:
            dead[node_id] = reasons[0]
        elif indices:
            dead[node_id] = (
                f"not in the mapping of any of the {len(indices)} index(es) holding {plan.source} events: "
                f"no event of this log source ever had it (is the field name right for this source?)"
            )
        # with no index yet an unknown field is dynamic: it may still come
    can_match = any(_tri(tree, plan.leaves, dead) is not False for tree in plan.trees)
    findings: list[LintFinding] = []
    done: set[tuple[str, str]] = set()
    for node_id, reason in dead.items():
        leaf = plan.leaves[node_id]
        if (leaf.field, reason) in done:
            continue
        done.add((leaf.field, reason))
        if can_match and leaf.negated:
            reason += "; it is negated, so this filter never excludes any event (expect false positives)"
        elif can_match:
            reason += "; only this part of the condition is dead, the rest can still match"
        findings.append(LintFinding("error" if not can_match else "warning", reason, leaf.field))
    for fname, reason in partial.items():
        findings.append(LintFinding("warning", reason, fname))
    if facts.total == 0:
        findings.append(
            LintFinding(
                "warning",
                f"no events for log source {plan.source} at all: the rule is blind until a collector sends them",
            )
        )
    elif facts.recent == 0:
        findings.append(LintFinding("warning", f"no events for log source {plan.source} in the last {days}"))
    else:
        dead_fields = {plan.leaves[n].field for n in dead}
        for fname in sorted({x.base for x in plan.leaves.values() if x.form != "absent" and not x.scope}):
            if facts.values.get(fname, 0) == 0 and not dead_fields & {fname, fname + CASELESS}:
                findings.append(
                    LintFinding(
                        "warning",
                        f"no value in any of the {facts.recent} {plan.source} event(s) of the last {days}",
                        fname,
                    )
                )
    rule = plan.compiled.rule
    return LintResult(
        rule_id=rule.id,
        title=rule.title,
        path=str(rule.path),
        source=plan.source,
        can_match=can_match,
        events_total=facts.total,
        events_recent=facts.recent,
        indices=tuple(indices),
        findings=tuple(findings),
    )


def _tri(node: Any, leaves: Mapping[int, Leaf], dead: Mapping[int, str]) -> bool | None:
    """Three-valued evaluation: False = can never be true, True = always true, None = depends."""
    from sigma.conditions import ConditionAND, ConditionNOT, ConditionOR

    if isinstance(node, ConditionAND):
        values = [_tri(a, leaves, dead) for a in node.args]
        return False if False in values else True if all(v is True for v in values) else None
    if isinstance(node, ConditionOR):
        values = [_tri(a, leaves, dead) for a in node.args]
        return True if True in values else False if all(v is False for v in values) else None
    if isinstance(node, ConditionNOT):
        inner = _tri(node.args[0], leaves, dead)
        return None if inner is None else not inner
    return False if id(node) in dead else None


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
