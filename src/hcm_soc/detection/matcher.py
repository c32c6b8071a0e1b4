"""Run one compiled detection rule over one window of `event.ingested` and return what matched.

`find_matches(es, compiled, window, limit=…)`:

- selects events with `window.start <= event.ingested < window.end` (half-open, so consecutive
  windows never see an event twice) that match the rule's query;
- pages with `search_after` on (event.ingested, _index, _seq_no): the rule's hits in ingest
  order, each page continuing exactly after the last hit of the previous one;
- de-duplicates by `_id`: an event id is independent of the backing index it landed in;
- stops at `limit` matches (`truncated=True` when more existed);
- counts `examined`, the events of the rule's log source in the window, in the same first
  request (the rule query is a `post_filter`, the count an aggregation over the scope).

A small window costs one request. `find_checked_matches` does the same for several
Python-checked rules with the same candidates in one pass over their pages (the batch uses it).

A `PythonCheckedRule` (a condition Lucene cannot express: `|fieldref`, some regexes) selects
the events of its log source and `sigma_match` evaluates the whole rule on each, with the same
value semantics as the Lucene query (case-insensitive on `.caseless`, wildcards, CIDR, …).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hcm_soc.detection.compiler import PythonCheckedRule
from hcm_soc.detection.model import CompiledRule, EventRef, Match, MatchResult, Window
from hcm_soc.detection.pipeline import CASELESS

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

PAGE_SIZE = 500
SORT: list[dict[str, Any]] = [
    {"event.ingested": {"order": "asc", "format": "strict_date_optional_time_nanos"}},
    {"_index": "asc"},
    {"_seq_no": "asc"},
]


def window_filter(window: Window) -> dict[str, Any]:
    """The `event.ingested` range of a window (gte start, lt end)."""
    return {
        "range": {
            "event.ingested": {
                "gte": _iso(window.start),
                "lt": _iso(window.end),
                "format": "strict_date_optional_time_nanos",
            }
        }
    }


def find_matches(es: Elasticsearch, compiled: CompiledRule, window: Window, *, limit: int) -> MatchResult:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    scope_filter = [window_filter(window)]
    if compiled.scope:
        scope_filter.append(compiled.scope)
    seen: set[str] = set()
    matches: list[Match] = []
    examined = 0
    search_after: list[Any] | None = None
    first = True
    checked = condition_trees(compiled.checked) if isinstance(compiled, PythonCheckedRule) else None
    while True:
        # hits of a Python-checked rule are candidates: fetch whole pages
        size = PAGE_SIZE if checked is not None else min(PAGE_SIZE, limit + 1 - len(matches))
        hits, counted = _page(es, compiled, scope_filter, size, search_after, count=first)
        if first:
            examined, first = counted, False
        for hit in hits:
            if hit["_id"] in seen:
                continue
            if checked is not None and not checks(checked, hit.get("_source", {})):
                continue
            if len(matches) == limit:
                return MatchResult(tuple(matches), examined, truncated=True)
            seen.add(hit["_id"])
            matches.append(match_from_hit(compiled, hit))
        if len(hits) < size:
            return MatchResult(tuple(matches), examined)
        search_after = hits[-1]["sort"]


def _page(
    es: Elasticsearch,
    compiled: CompiledRule,
    scope_filter: list[dict[str, Any]],
    size: int,
    search_after: list[Any] | None,
    *,
    count: bool,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the rule's hits in the window, in SORT order; with `count`, also how many events
    of its log source the window holds (the `examined` of the result; 0 otherwise)."""
    body: dict[str, Any] = {
        "query": {"bool": {"filter": scope_filter}},
        "post_filter": compiled.query,
        "sort": SORT,
        "size": size,
        "track_total_hits": False,
    }
    if count:
        body["aggs"] = {"examined": {"filter": {"match_all": {}}}}
    if search_after is not None:
        body["search_after"] = search_after
    resp = es.search(index=",".join(compiled.indices), allow_no_indices=True, ignore_unavailable=True, **body)
    examined = int(resp.get("aggregations", {}).get("examined", {}).get("doc_count", 0)) if count else 0
    return resp["hits"]["hits"], examined


def find_checked_matches(
    es: Elasticsearch, rules: Sequence[PythonCheckedRule], window: Window, *, limit: int
) -> list[MatchResult]:
    """For Python-checked rules that select the same candidates (same indices, query and scope),
    what `find_matches` returns for each, from one pass over the candidate pages instead of one
    per rule: each rule reads the same hits in the same order and stops where it would alone."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if not rules:
        return []
    first_rule = rules[0]
    key = _candidates_key(first_rule)
    if any(_candidates_key(r) != key for r in rules):
        raise ValueError("find_checked_matches: the rules select different candidates")
    scope_filter = [window_filter(window)]
    if first_rule.scope:
        scope_filter.append(first_rule.scope)
    states = [_CheckedState(condition_trees(r.checked)) for r in rules]
    examined = 0
    search_after: list[Any] | None = None
    first = True
    while True:
        hits, counted = _page(es, first_rule, scope_filter, PAGE_SIZE, search_after, count=first)
        if first:
            examined, first = counted, False
        for rule, state in zip(rules, states, strict=True):
            if not state.truncated:
                state.take(rule, hits, limit)
        if len(hits) < PAGE_SIZE or all(st.truncated for st in states):
            return [MatchResult(tuple(st.matches), examined, truncated=st.truncated) for st in states]
        search_after = hits[-1]["sort"]


def _candidates_key(rule: CompiledRule) -> str:
    return json.dumps([list(rule.indices), rule.query, rule.scope], sort_keys=True)


class _CheckedState:
    """find_matches' loop variables for one Python-checked rule."""

    def __init__(self, trees: list[Any]) -> None:
        self.trees = trees
        self.seen: set[str] = set()
        self.matches: list[Match] = []
        self.truncated = False

    def take(self, rule: CompiledRule, hits: list[dict[str, Any]], limit: int) -> None:
        for hit in hits:
            if hit["_id"] in self.seen:
                continue
            if not checks(self.trees, hit.get("_source", {})):
                continue
            if len(self.matches) == limit:
                self.truncated = True
                return
            self.seen.add(hit["_id"])
            self.matches.append(match_from_hit(rule, hit))


def match_from_hit(compiled: CompiledRule, hit: dict[str, Any]) -> Match:
    source = hit.get("_source", {})
    when = _timestamp(source.get("@timestamp"))
    return Match(
        rule_id=compiled.rule.id,
        key=hit["_id"],
        events=(EventRef(hit["_index"], hit["_id"], source),),
        first_seen=when,
        last_seen=when,
    )


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


# -- the Python check of rules Lucene cannot express ------------------------------------------------


def condition_trees(rule: Any) -> list[Any]:
    """The parsed conditions of a pySigma rule (parsing is costly: once per run, not per event)."""
    return [cond.parsed for cond in rule.detection.parsed_condition]


def sigma_match(rule: Any, event: dict[str, Any]) -> bool:
    """Whether `event` matches `rule` (a pySigma rule after the hcm-soc pipeline with residual
    conditions kept): any of its conditions holds."""
    return checks(condition_trees(rule), event)


def checks(trees: Sequence[Any], event: dict[str, Any]) -> bool:
    """Whether any of the parsed conditions `trees` (`condition_trees`) holds for `event`."""
    return any(_eval(tree, event) for tree in trees)


def _eval(node: Any, event: dict[str, Any]) -> bool:
    from sigma.conditions import (
        ConditionAND,
        ConditionFieldEqualsValueExpression,
        ConditionNOT,
        ConditionOR,
        ConditionValueExpression,
    )

    if isinstance(node, ConditionAND):
        return all(_eval(a, event) for a in node.args)
    if isinstance(node, ConditionOR):
        return any(_eval(a, event) for a in node.args)
    if isinstance(node, ConditionNOT):
        return not _eval(node.args[0], event)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _field_matches(node.field, node.value, event)
    if isinstance(node, ConditionValueExpression):  # keyword: contained in any string (Lucene *v*)
        return any(_keyword_matches(node.value, s.lower()) for s in _strings(event))
    raise ValueError(f"unexpected condition node {type(node).__name__}")


def _field_matches(field: str, value: Any, event: dict[str, Any]) -> bool:
    from sigma.types import SigmaExists, SigmaNull

    caseless = field.endswith(CASELESS)
    name = field[: -len(CASELESS)] if caseless else field
    found = _values(event, name)
    if isinstance(value, SigmaNull):
        return not found
    if isinstance(value, SigmaExists):
        return bool(found) == value.exists
    return any(
        _value_matches(value, v.lower() if caseless and isinstance(v, str) else v, caseless, event)
        for v in found
    )


def _value_matches(value: Any, actual: Any, caseless: bool, event: dict[str, Any]) -> bool:
    from sigma.types import (
        CompareOperators,
        SigmaBool,
        SigmaCIDRExpression,
        SigmaCompareExpression,
        SigmaExpansion,
        SigmaFieldReference,
        SigmaNumber,
        SigmaRegularExpression,
        SigmaRegularExpressionFlag,
        SigmaString,
    )

    if isinstance(value, SigmaExpansion):
        return any(_value_matches(v, actual, caseless, event) for v in value.values)
    if isinstance(value, SigmaString):
        return isinstance(actual, str | int | float) and bool(_wildcard_re(value).fullmatch(str(actual)))
    if isinstance(value, SigmaRegularExpression):
        flags = re.IGNORECASE if SigmaRegularExpressionFlag.IGNORECASE in value.flags else 0
        flags |= re.MULTILINE if SigmaRegularExpressionFlag.MULTILINE in value.flags else 0
        flags |= re.DOTALL if SigmaRegularExpressionFlag.DOTALL in value.flags else 0
        return isinstance(actual, str) and re.search(str(value.regexp), actual, flags) is not None
    if isinstance(value, SigmaFieldReference):
        other = [v.lower() if isinstance(v, str) else v for v in _values(event, value.field)]
        mine = actual.lower() if isinstance(actual, str) else actual
        if not isinstance(mine, str):
            return mine in other
        if value.starts_with or value.ends_with:
            return any(
                isinstance(o, str)
                and (not value.starts_with or mine.startswith(o))
                and (not value.ends_with or mine.endswith(o))
                for o in other
            )
        return mine in other
    if isinstance(value, SigmaCIDRExpression):
        try:
            return ipaddress.ip_address(str(actual)) in value.network
        except ValueError:
            return False
    if isinstance(value, SigmaCompareExpression):
        number = _number(actual)
        if number is None:
            return False
        ops = {
            CompareOperators.LT: number < value.number.number,
            CompareOperators.LTE: number <= value.number.number,
            CompareOperators.GT: number > value.number.number,
            CompareOperators.GTE: number >= value.number.number,
        }
        return ops.get(value.op, False)
    if isinstance(value, SigmaBool):
        return actual is value.boolean or str(actual).lower() == str(value.boolean).lower()
    if isinstance(value, SigmaNumber):
        return str(actual) == str(value.number) or _number(actual) == value.number
    return False


def _keyword_matches(value: Any, text: str) -> bool:
    from sigma.types import SigmaExpansion, SigmaString

    if isinstance(value, SigmaExpansion):
        return any(_keyword_matches(v, text) for v in value.values)
    if isinstance(value, SigmaString):
        return _wildcard_re(value).search(text) is not None
    return str(value).lower() in text


def _wildcard_re(value: Any) -> re.Pattern[str]:
    from sigma.types import SpecialChars

    parts = []
    for part in value.s:
        if part == SpecialChars.WILDCARD_MULTI:
            parts.append(".*")
        elif part == SpecialChars.WILDCARD_SINGLE:
            parts.append(".")
        else:
            parts.append(re.escape(str(part)))
    return re.compile("".join(parts), re.DOTALL)


def _values(event: Any, path: str) -> list[Any]:
    """The leaf values at a dotted path (objects nested or with dotted keys; arrays flattened)."""
    if path == "":
        return [x for x in (event if isinstance(event, list) else [event]) if x is not None]
    if isinstance(event, list):
        return [v for item in event for v in _values(item, path)]
    if not isinstance(event, dict):
        return []
    out: list[Any] = []
    parts = path.split(".")
    for i in range(1, len(parts) + 1):
        key = ".".join(parts[:i])
        if key in event:
            out += _values(event[key], ".".join(parts[i:]))
    return out


def _strings(event: Any) -> list[str]:
    if isinstance(event, dict):
        return [s for v in event.values() for s in _strings(v)]
    if isinstance(event, list):
        return [s for v in event for s in _strings(v)]
    return [str(event)] if isinstance(event, str | int | float) and not isinstance(event, bool) else []


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
