"""The Elasticsearch side of correlation rules: which groups to look at, and their events.

One run over ingest window [S, E) (epoch ms, `event.ingested`), timespan T:

1. Candidate groups, per base rule, with a paged composite aggregation over the group-by fields
   (the base rule's own event fields, so aliases work): groups with an event of that rule
   ingested in [S, E), plus, for conditions decided on closed windows (lt, lte, eq, neq, `not`),
   groups with an event whose @timestamp is in [S - T, E - T) (its window closes in this run).
   A sub-aggregation gives the @timestamp range of the new events: only anchors within T of
   them can change, so only [min - 2T, max + 2T] of the group is needed.
2. For "at least" conditions, one `filters` aggregation per base rule counts each candidate
   group's events in its range; a group whose count (or set of rules) cannot reach the
   condition is dropped without fetching anything.
3. The remaining groups' events (doc values only: @timestamp, event.ingested, the counted field)
   are fetched per base rule, merged by _id and handed to `correlation_eval.new_bursts`.

Every query also says `event.ingested < E`, so a run's result depends on its window only, never
on when it runs. No painless, no pipeline aggregations, no EQL/ES|QL: the open server's plain
aggregations and Python.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hcm_soc.detection.correlation import CompiledCorrelation
from hcm_soc.detection.correlation_eval import Burst, GroupEvent, merge_events, new_bursts
from hcm_soc.detection.model import EventRef, Match, MatchResult, Window

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger(__name__)

TIMESTAMP = "@timestamp"
INGESTED = "event.ingested"
#: composite page: candidate groups handled at once (bounds memory and the size of `filters`)
GROUP_PAGE = 500
#: events of one group and one base rule read per run; more and the run says `truncated`
MAX_GROUP_EVENTS = 10_000
#: event refs (with their _source) a match carries
MAX_MATCH_EVENTS = 100

GroupKey = tuple[Any, ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds, floored (Elasticsearch stores `date` fields with millisecond precision)."""
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def match_key(corr: CompiledCorrelation, group: GroupKey, start_ms: int) -> str:
    """Stable key of one burst: group values + the @timestamp its correlation window starts at."""
    digest = hashlib.sha256(json.dumps(list(group), default=str).encode()).hexdigest()[:16]
    return f"{digest}@{from_ms(start_ms).isoformat().replace('+00:00', 'Z')}"


def search_correlation(
    es: Elasticsearch, corr: CompiledCorrelation, window: Window, *, limit: int
) -> MatchResult:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    start, end = to_ms(window.start), to_ms(window.end)
    t = corr.spec.timespan_ms
    found: dict[str, tuple[GroupKey, Burst]] = {}
    truncated = False
    for b in range(len(corr.bases)):
        for page in _candidates(es, corr, b, start, end):
            groups = _prune(es, corr, page, end) if corr.spec.monotone else page
            for group, (a_lo, a_hi) in groups.items():
                events, capped = _fetch_group(es, corr, group, a_lo - t, a_hi + t, end)
                truncated |= capped
                for burst in new_bursts(
                    corr.spec, events, start=start, end=end, anchor_lo=a_lo, anchor_hi=a_hi
                ):
                    key = match_key(corr, group, burst.start)
                    if key in found:
                        continue
                    if len(found) >= limit:
                        log.warning("correlation %s: more than %d matches in %s", corr.id, limit, window)
                        return _result(es, corr, found, _examined(es, corr, start, end), truncated=True)
                    found[key] = (group, burst)
    return _result(es, corr, found, _examined(es, corr, start, end), truncated=truncated)


# --- queries ----------------------------------------------------------------------------------


def _range(field: str, *, gte: int | None = None, lt: int | None = None, lte: int | None = None) -> dict:
    bounds: dict[str, Any] = {"format": "epoch_millis"}
    for op, v in (("gte", gte), ("lt", lt), ("lte", lte)):
        if v is not None:
            bounds[op] = v
    return {"range": {field: bounds}}


def _search(es: Elasticsearch, indices: tuple[str, ...], **kw: Any) -> dict[str, Any]:
    return dict(es.search(index=",".join(indices), ignore_unavailable=True, allow_no_indices=True, **kw))


def _group_filter(corr: CompiledCorrelation, b: int, group: GroupKey) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for gf, value in zip(corr.group_by, group, strict=True):
        field = gf.fields[b]
        if value is None:
            out.append({"bool": {"must_not": [{"exists": {"field": field}}]}})
        else:
            out.append({"term": {field: value}})
    return out


def _candidates(
    es: Elasticsearch, corr: CompiledCorrelation, b: int, start: int, end: int
) -> Iterator[dict[GroupKey, tuple[int, int]]]:
    """Pages of candidate groups of base rule `b` -> the @timestamp range of anchors to decide."""
    base = corr.bases[b]
    t = corr.spec.timespan_ms
    new = _range(INGESTED, gte=start, lt=end)
    closing = None if corr.spec.monotone else (start - t, end - t - 1)
    if closing is None:
        trigger: dict[str, Any] = new
    else:
        closes = {
            "bool": {"filter": [_range(TIMESTAMP, gte=closing[0], lte=closing[1]), _range(INGESTED, lt=end)]}
        }
        trigger = {"bool": {"should": [new, closes], "minimum_should_match": 1}}
    query = {"bool": {"filter": [base.query, trigger]}}
    sub = {
        "new": {
            "filter": new,
            "aggs": {"lo": {"min": {"field": TIMESTAMP}}, "hi": {"max": {"field": TIMESTAMP}}},
        }
    }

    def anchors(bucket: dict[str, Any]) -> tuple[int, int] | None:
        lo: int | None = None
        hi: int | None = None
        if bucket["new"]["doc_count"]:
            lo, hi = int(bucket["new"]["lo"]["value"]) - t, int(bucket["new"]["hi"]["value"]) + t
        if closing is not None:
            lo = closing[0] if lo is None else min(lo, closing[0])
            hi = closing[1] if hi is None else max(hi, closing[1])
        return None if lo is None or hi is None else (lo, hi)

    if not corr.group_by:
        resp = _search(es, base.indices, size=0, query=query, aggs=sub, track_total_hits=1)
        if resp["hits"]["total"]["value"] and (rng := anchors(resp["aggregations"])):
            yield {(): rng}
        return
    sources = [
        {f"g{i}": {"terms": {"field": gf.fields[b], "missing_bucket": True}}}
        for i, gf in enumerate(corr.group_by)
    ]
    after: dict[str, Any] | None = None
    while True:
        composite: dict[str, Any] = {"size": GROUP_PAGE, "sources": sources}
        if after is not None:
            composite["after"] = after
        resp = _search(
            es, base.indices, size=0, query=query, aggs={"groups": {"composite": composite, "aggs": sub}}
        )
        agg = resp.get("aggregations", {}).get("groups", {})
        buckets = agg.get("buckets", [])
        page: dict[GroupKey, tuple[int, int]] = {}
        for bucket in buckets:
            if rng := anchors(bucket):
                page[tuple(bucket["key"][f"g{i}"] for i in range(len(corr.group_by)))] = rng
        if page:
            yield page
        after = agg.get("after_key")
        if not buckets or after is None:
            return


def _prune(
    es: Elasticsearch, corr: CompiledCorrelation, page: dict[GroupKey, tuple[int, int]], end: int
) -> dict[GroupKey, tuple[int, int]]:
    """Drop groups whose events in their range cannot satisfy an "at least" condition anywhere."""
    t = corr.spec.timespan_ms
    keys = list(page)
    counts = [0] * len(keys)
    masks = [0] * len(keys)
    lo = min(a for a, _ in page.values()) - t
    hi = max(h for _, h in page.values()) + t
    for b, base in enumerate(corr.bases):
        filters = {
            str(k): {
                "bool": {
                    "filter": [
                        *_group_filter(corr, b, key),
                        _range(TIMESTAMP, gte=page[key][0] - t, lte=page[key][1] + t),
                    ]
                }
            }
            for k, key in enumerate(keys)
        }
        query = {
            "bool": {"filter": [base.query, _range(INGESTED, lt=end), _range(TIMESTAMP, gte=lo, lte=hi)]}
        }
        resp = _search(es, base.indices, size=0, query=query, aggs={"g": {"filters": {"filters": filters}}})
        got = resp.get("aggregations", {}).get("g", {}).get("buckets", {})
        for k in range(len(keys)):
            n = int(got.get(str(k), {}).get("doc_count", 0))
            counts[k] += n
            if n:
                masks[k] |= 1 << b
    return {
        key: page[key] for k, key in enumerate(keys) if corr.spec.upper_bound_possible(counts[k], masks[k])
    }


def _fetch_group(
    es: Elasticsearch, corr: CompiledCorrelation, group: GroupKey, lo: int, hi: int, end: int
) -> tuple[list[GroupEvent], bool]:
    """The group's events with @timestamp in [lo, hi] ingested before `end`, merged over base rules."""
    events: list[GroupEvent] = []
    capped = False
    for b, base in enumerate(corr.bases):
        value_field = corr.value_fields[b] if corr.value_fields else None
        docvalues: list[Any] = [{"field": INGESTED, "format": "epoch_millis"}]
        if value_field:
            docvalues.append(value_field)
        query = {
            "bool": {
                "filter": [
                    base.query,
                    *_group_filter(corr, b, group),
                    _range(TIMESTAMP, gte=lo, lte=hi),
                    _range(INGESTED, lt=end),
                ]
            }
        }
        resp = _search(
            es,
            base.indices,
            query=query,
            size=MAX_GROUP_EVENTS,
            sort=[{TIMESTAMP: "asc"}],
            source=False,
            docvalue_fields=docvalues,
            track_total_hits=MAX_GROUP_EVENTS + 1,
        )
        hits = resp["hits"]["hits"]
        if resp["hits"]["total"]["value"] > len(hits):
            capped = True
            log.warning(
                "correlation %s: group %r has more than %d events of rule %s in [%s, %s]; "
                "only the earliest are evaluated",
                corr.id,
                group,
                MAX_GROUP_EVENTS,
                base.rule.id,
                from_ms(lo),
                from_ms(hi),
            )
        for h in hits:
            fields = h.get("fields", {})
            ingested = fields.get(INGESTED)
            if not ingested or not h.get("sort"):
                continue  # no event.ingested: not written through our pipeline, never in a window
            values = frozenset(str(v) for v in fields.get(value_field, ())) if value_field else frozenset()
            events.append(
                GroupEvent(int(h["sort"][0]), h["_id"], h["_index"], int(float(ingested[0])), 1 << b, values)
            )
    return merge_events(events), capped


def _examined(es: Elasticsearch, corr: CompiledCorrelation, start: int, end: int) -> int:
    """Events of the base rules' log sources ingested in the window."""
    scopes = [b.scope or b.query for b in corr.bases]
    query = {
        "bool": {"filter": [_range(INGESTED, gte=start, lt=end)], "should": scopes, "minimum_should_match": 1}
    }
    resp = es.count(index=",".join(corr.indices), query=query, ignore_unavailable=True, allow_no_indices=True)
    return int(resp["count"])


def _result(
    es: Elasticsearch,
    corr: CompiledCorrelation,
    found: dict[str, tuple[GroupKey, Burst]],
    examined: int,
    *,
    truncated: bool,
) -> MatchResult:
    matches = []
    for key, (group, burst) in found.items():
        refs = burst.events[:MAX_MATCH_EVENTS]
        sources = _sources(es, corr, [e.id for e in refs])
        matches.append(
            Match(
                rule_id=corr.id,
                key=key,
                events=tuple(EventRef(e.index, e.id, sources.get(e.id, {})) for e in refs),
                group=tuple((gf.label, v) for gf, v in zip(corr.group_by, group, strict=True)),
                first_seen=from_ms(burst.start),
                last_seen=from_ms(burst.end),
                count=burst.measure,
            )
        )
    matches.sort(key=lambda m: (m.first_seen or _EPOCH, m.key))
    return MatchResult(tuple(matches), examined, truncated)


def _sources(es: Elasticsearch, corr: CompiledCorrelation, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    resp = _search(es, corr.indices, query={"ids": {"values": ids}}, size=len(ids) * 2)
    out: dict[str, dict[str, Any]] = {}
    for h in resp["hits"]["hits"]:
        out.setdefault(h["_id"], h.get("_source", {}))
    return out
