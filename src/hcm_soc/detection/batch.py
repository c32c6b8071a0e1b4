"""Evaluate many detection rules with a few `_msearch` requests instead of one search per rule.

`evaluate_batch(es, [(compiled, window), ...], limit=…)` returns, item by item, exactly what
`matcher.find_matches(es, compiled, window, limit=limit)` returns (same matches in the same
order, keys, `examined`, `truncated`), in four steps:

1. **Examine** — items are grouped by (indices, log-source scope) and, inside a group, by
   overlapping windows (a *cluster*). Each cluster becomes one size-0 search of its scope over
   its windows' span, with a `filters` aggregation per window (the events `examined`) and under
   it a `terms` aggregation on `_index` (which backing indices hold those events). All clusters
   go out in one `_msearch`. This costs term and range look-ups only, no rule query. A rule
   whose window holds no event of its log source cannot match: it is done.
2. **Screen** — each rule's screen (`hcm_soc.detection.screen`: its cheap conditions only, implied
   by the rule) is counted, the distinct screens of a cluster together, `SCREENS_PER_SEARCH` per
   search: a rule whose screen matches no event cannot match and is done without its query ever
   being built; an exact screen's count is the rule's count (the rule skips the next step).
3. **Count** — the other rules of a cluster are counted together, `RULES_PER_PAGE` per search,
   only on the indices that hold their events: one size-0 search of the cluster's scope and
   window with a `filters` aggregation whose buckets are the rules' queries (one bucket per
   item). A rule with no event in its bucket cannot match: it is done. In a SigmaHQ cycle
   nearly every rule ends here, so each rule query is built once, in a count, and only the few
   rules that match are searched for hits (docs/detection-cost.md).
4. **Hits** — the rules left of a cluster are searched together, `RULES_PER_PAGE` per search,
   only on the indices that hold their events: one search whose `should` clauses are the rules'
   queries, each named by its item (`_name`), sorted like the matcher (event.ingested, _index,
   _seq_no), as many hits per page as their counts call for (`_Pager.page_size`); each hit's
   `matched_queries` says which rules it belongs to. Pages continue with
   `search_after` only for the rules that still need hits: a rule is done at its `limit + 1`-th
   distinct event (truncated) or when the pages run out. Each round of pages is one `_msearch`.

Per rule the hits arrive in the matcher's order, and the matcher's de-duplication by `_id` and
its limit are applied to them, which is why the results are the same.

Why it is cheaper: besides the round trips, Elasticsearch's cost of a Sigma rule is building its
query on every shard it reaches (wildcards are walked against the terms of every field they
name — for a field-less keyword, every `.caseless` field); the matcher's search reaches every
index of the pattern that `can_match` cannot rule out, the batch only the backing indices that
hold events of the rule's log source in its window, and no shard at all when there are none.

Recent backing indices: the examine searches target the index pattern with a range on
`event.ingested` and `_msearch` is sent with `pre_filter_shard_size=1`, so the `can_match`
phase skips each backing index whose `event.ingested` values lie outside the window (min/max
are known per shard); the hits searches name the concrete indices found. (docs/detection-cost.md)

A search Elasticsearch refuses is cut in halves and sent again, so that one bad rule ends up
alone with its error. Not batchable: a `PythonCheckedRule` (its candidates are checked in
Python) is run through the matcher (`find_checked_matches`: the rules of one log source and window
page their candidates once, together); a correlation (not a `CompiledRule`) is refused with
ValueError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hcm_soc.detection.compiler import PythonCheckedRule

# the one place that turns a hit into a Match: reused so that batch and matcher cannot drift apart
from hcm_soc.detection.matcher import (
    PAGE_SIZE,
    SORT,
    find_checked_matches,
    find_matches,
    match_from_hit,
    window_filter,
)
from hcm_soc.detection.model import CompiledRule, Match, MatchResult, Window
from hcm_soc.detection.msearch import msearch_all as _msearch
from hcm_soc.detection.msearch import problem as _problem
from hcm_soc.errors import HcmSocError
from hcm_soc.store.grams import indices_with_grams

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: Named rule queries per hits search; halved automatically when Elasticsearch refuses a search
#: (e.g. for too many clauses together, `indices.query.bool.max_clause_count`).
RULES_PER_PAGE = 100
#: The largest page of hits (a page's size comes from the counts of its rules; index.max_result_window).
MAX_PAGE_SIZE = 10_000
#: Distinct screens per screen search (a `filters` bucket each).
SCREENS_PER_SEARCH = 250
#: Count the rules' screens before their queries (detection.screen); off only to measure without.
SCREEN = True
#: Use the trigram screens on indices with `.grams` sub-fields; off only to measure without.
GRAMS = True
#: Backing indices one window of one log source may span (a terms aggregation's size).
MAX_INDICES = 10_000

Item = tuple[CompiledRule, Window]


class BatchSearchError(HcmSocError):
    """Elasticsearch refused (or only partly answered) a batched search of some rules."""

    def __init__(self, rule_ids: Sequence[str], reason: str) -> None:
        self.rule_ids = tuple(rule_ids)
        self.reason = reason
        shown = ", ".join(self.rule_ids[:5]) + (" …" if len(self.rule_ids) > 5 else "")
        super().__init__(
            f"batched search of {len(self.rule_ids)} rule(s) ({shown}) failed: {reason}; "
            "run them one by one (detection.batch: false) to find the rule Elasticsearch refuses"
        )


@dataclass(slots=True, eq=False)
class _Entry:
    """One item's evaluation state (mirrors the local variables of find_matches)."""

    pos: int
    compiled: CompiledRule
    window: Window
    examined: int = 0
    targets: tuple[str, ...] = ()  # the indices holding events of its log source in its window
    seen: set[str] = field(default_factory=set)
    matches: list[Match] = field(default_factory=list)
    truncated: bool = False
    done: bool = False
    counted: bool = False  # its exact screen found events: its own count is not needed
    count: int | None = None  # events its query matches in its window (count step or exact screen)
    screen_key: str | None = None  # its screen as JSON (the screen step's de-duplication key)
    screen_exact: bool = False  # the screen searched was exact (not its trigram screen)
    error: Exception | None = None

    def take(self, hit: dict[str, Any], limit: int) -> None:
        """find_matches' loop body for one hit of this rule."""
        if hit["_id"] in self.seen:
            return
        if len(self.matches) == limit:
            self.truncated = self.done = True
            return
        self.seen.add(hit["_id"])
        self.matches.append(match_from_hit(self.compiled, hit))

    def result(self) -> MatchResult:
        return MatchResult(tuple(self.matches), self.examined, truncated=self.truncated)


@dataclass(slots=True, eq=False)
class _Cluster:
    """Entries with the same indices and scope whose windows overlap: one examine search."""

    indices: tuple[str, ...]
    scope: dict[str, Any]
    entries: list[_Entry]

    @property
    def windows(self) -> list[Window]:
        return sorted({e.window for e in self.entries}, key=lambda w: (w.start, w.end))


@dataclass(slots=True, eq=False)
class _Pager:
    """Entries of one cluster with the same target indices, searched together page by page."""

    cluster: _Cluster
    targets: tuple[str, ...]
    entries: list[_Entry]
    search_after: list[Any] | None = None

    @property
    def pending(self) -> list[_Entry]:
        return [e for e in self.entries if not e.done and e.error is None]

    def page_size(self, limit: int) -> int:
        """Hits per page: enough for every pending rule's events up to its `limit + 1` (their counts
        are known), so that one page usually ends the search; at least the matcher's PAGE_SIZE and
        at most MAX_PAGE_SIZE."""
        wanted = 0
        for e in self.pending:
            wanted += PAGE_SIZE if e.count is None else min(e.count, limit + 1)
        return max(PAGE_SIZE, min(MAX_PAGE_SIZE, wanted + 1))


def evaluate_batch(es: Elasticsearch, items: Sequence[Item], *, limit: int) -> list[MatchResult]:
    """For each `(compiled, window)` in order, what `find_matches(es, compiled, window, limit=limit)`
    returns, with one `_msearch` to examine and one per round of pages (see the module doc).
    Raises the first error of any item (BatchSearchError, or the matcher's own error)."""
    results = evaluate_batch_outcomes(es, items, limit=limit)
    for outcome in results:
        if isinstance(outcome, Exception):
            raise outcome
    return [r for r in results if isinstance(r, MatchResult)]


def evaluate_batch_outcomes(
    es: Elasticsearch, items: Sequence[Item], *, limit: int
) -> list[MatchResult | Exception]:
    """Like `evaluate_batch`, but a rule Elasticsearch refuses does not fail the others: when a
    batched search fails, its rules are run one by one with find_matches, and the item whose own
    search fails gets the exception in its place. Connection errors are raised (nothing to isolate)."""
    from elasticsearch import ApiError

    if limit < 1:
        raise ValueError("limit must be at least 1")
    entries: list[_Entry] = []
    for pos, item in enumerate(items):
        compiled, window = item
        if not isinstance(compiled, CompiledRule):
            raise ValueError(
                f"item {pos}: {type(compiled).__name__} is not a detection rule; correlations are "
                "evaluated by hcm_soc.detection.correlation, not in a batch"
            )
        entries.append(_Entry(pos, compiled, window))
    out: dict[int, MatchResult | Exception] = {}
    batchable: list[_Entry] = []
    alone: list[_Entry] = []
    for e in entries:
        if isinstance(e.compiled, PythonCheckedRule):
            alone.append(e)  # candidates checked in Python: the matcher pages them itself
        elif e.window.start >= e.window.end:
            out[e.pos] = MatchResult((), 0)  # an empty range holds no event: nothing to ask
        else:
            batchable.append(e)
    clusters = plan_clusters(batchable)
    _examine(es, clusters)
    groups: list[_Pager] = []  # the entries of a cluster with the same target indices (not pages)
    for c in clusters:
        by_targets: dict[tuple[str, ...], list[_Entry]] = {}
        for e in c.entries:
            if e.error is None and e.examined > 0:
                by_targets.setdefault(e.targets, []).append(e)
            else:
                e.done = True
        groups += [_Pager(c, targets, members) for targets, members in by_targets.items()]
    if SCREEN:
        _screen(es, groups)
    counters: list[_Pager] = []
    for g in groups:
        uncounted = [e for e in g.pending if not e.counted]
        # a rule Lucene may refuse to build (a long bounded repetition in a regex can determinize
        # past its limit) is counted in a search of its own: a refusal then needs no halving
        risky: list[_Entry] = []
        safe: list[_Entry] = []
        for e in uncounted:
            (risky if risky_regex(e.compiled.lucene) else safe).append(e)
        counters += [_Pager(g.cluster, g.targets, part) for part in _chunks(safe, RULES_PER_PAGE)]
        counters += [_Pager(g.cluster, g.targets, [e]) for e in risky]
    _count(es, counters)
    pagers = [  # the rules that have events: their hits
        _Pager(g.cluster, g.targets, part) for g in groups for part in _chunks(g.pending, RULES_PER_PAGE)
    ]
    _page(es, pagers, limit)
    for e in batchable:
        if e.error is not None:
            alone.append(e)  # its batched search failed: isolate it
        else:
            out[e.pos] = e.result()
    for group in _checked_groups(alone):
        # Python-checked rules with the same candidates page them once, together
        rules = [e.compiled for e in group if isinstance(e.compiled, PythonCheckedRule)]
        try:
            for e, result in zip(
                group, find_checked_matches(es, rules, group[0].window, limit=limit), strict=True
            ):
                out[e.pos] = result
        except ApiError:  # run them alone below: the one whose search is refused gets the error
            alone += group
    done = set(out)
    for e in alone:
        if e.pos in done:
            continue
        try:
            out[e.pos] = find_matches(es, e.compiled, e.window, limit=limit)
        except ApiError as err:  # this rule's own search is refused: the others keep their results
            out[e.pos] = err
    return [out[e.pos] for e in entries]


_REPEAT = re.compile(r"\{\d*,?(\d+)\}")


def risky_regex(lucene: str) -> bool:
    """Whether a rule's Lucene text holds a bounded repetition of 32 or more (`{0,64}`, `{36}`):
    such regexes are the ones Lucene may refuse to determinize (TooComplexToDeterminize)."""
    return "{" in lucene and any(int(m) >= 32 for m in _REPEAT.findall(lucene))


def _checked_groups(alone: list[_Entry]) -> list[list[_Entry]]:
    """Python-checked entries (not failed ones) with the same candidates and window, 2 or more
    per group; they are taken out of `alone`."""
    groups: dict[tuple[str, Window], list[_Entry]] = {}
    for e in alone:
        if isinstance(e.compiled, PythonCheckedRule) and e.error is None:
            key = json.dumps([list(e.compiled.indices), e.compiled.query, e.compiled.scope], sort_keys=True)
            groups.setdefault((key, e.window), []).append(e)
    out = [g for g in groups.values() if len(g) > 1]
    taken = {id(e) for g in out for e in g}
    alone[:] = [e for e in alone if id(e) not in taken]
    return out


# --- planning --------------------------------------------------------------------------------------


def plan_clusters(entries: Sequence[_Entry]) -> list[_Cluster]:
    """Entries grouped by (indices, scope), then by overlapping (or touching) windows: a cluster's
    span is never longer than its members' windows together."""
    groups: dict[tuple[tuple[str, ...], str], list[_Entry]] = {}
    for e in entries:
        key = (tuple(e.compiled.indices), json.dumps(e.compiled.scope, sort_keys=True))
        groups.setdefault(key, []).append(e)
    clusters: list[_Cluster] = []
    for (indices, _), members in groups.items():
        members.sort(key=lambda e: (e.window.start, e.window.end, e.pos))
        current: list[_Entry] = []
        end = None
        for e in members:
            if current and end is not None and e.window.start > end:
                clusters.append(_Cluster(indices, current[0].compiled.scope, current))
                current, end = [], None
            current.append(e)
            end = e.window.end if end is None else max(end, e.window.end)
        if current:
            clusters.append(_Cluster(indices, current[0].compiled.scope, current))
    return clusters


def span(windows: Sequence[Window]) -> Window:
    return Window(min(w.start for w in windows), max(w.end for w in windows))


def _chunks(entries: list[_Entry], size: int) -> list[list[_Entry]]:
    return [entries[i : i + size] for i in range(0, len(entries), size)]


def _top_filter(scope: dict[str, Any], windows: Sequence[Window]) -> list[dict[str, Any]]:
    top = [window_filter(span(windows))]
    if scope:
        top.append(scope)
    return top


def _rule_clause(e: _Entry, shared_window: bool) -> dict[str, Any]:
    """The rule's query, restricted to its own window unless every entry of the search shares it."""
    if shared_window:
        return e.compiled.query
    return {"bool": {"filter": [e.compiled.query, window_filter(e.window)]}}


def examine_body(cluster: _Cluster) -> dict[str, Any]:
    """How many events of the cluster's log source each of its windows holds, and in which indices
    (cheap: term and range look-ups, no rule query)."""
    windows = cluster.windows
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"filter": _top_filter(cluster.scope, windows)}},
        "aggs": {
            "examined": {
                "filters": {"filters": {f"w{j}": window_filter(w) for j, w in enumerate(windows)}},
                # which backing indices hold them: the hits searches go there and nowhere else
                "aggs": {"indices": {"terms": {"field": "_index", "size": MAX_INDICES}}},
            }
        },
    }


def count_body(pager: _Pager) -> dict[str, Any]:
    """How many events each pending entry of `pager` matches: a `filters` bucket per entry."""
    pending = pager.pending
    windows = sorted({e.window for e in pending}, key=lambda w: (w.start, w.end))
    shared = len(windows) == 1
    return {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"filter": _top_filter(pager.cluster.scope, windows)}},
        "aggs": {"rules": {"filters": {"filters": {str(e.pos): _rule_clause(e, shared) for e in pending}}}},
    }


def page_body(pager: _Pager, size: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of the hits of the pending entries of `pager`, each clause named by its entry."""
    pending = pager.pending
    windows = sorted({e.window for e in pending}, key=lambda w: (w.start, w.end))
    shared = len(windows) == 1
    should = []
    for e in pending:
        clause = _rule_clause(e, shared)
        # a bool wrapper carries the name whatever the rule's own query type is
        should.append({"bool": {"filter": [clause], "_name": str(e.pos)}})
    body: dict[str, Any] = {
        "size": size,
        "track_total_hits": False,
        "sort": SORT,
        "query": {
            "bool": {
                "filter": _top_filter(pager.cluster.scope, windows),
                "should": should,
                "minimum_should_match": 1,
            }
        },
    }
    if pager.search_after is not None:
        body["search_after"] = pager.search_after
    return body


# --- running ---------------------------------------------------------------------------------------


def _examine(es: Elasticsearch, clusters: list[_Cluster]) -> None:
    """`examined` and the target indices of every entry (a failed search marks its entries failed:
    they are then run alone)."""
    requests = [(c.indices, examine_body(c)) for c in clusters]
    for cluster, resp in zip(clusters, _msearch(es, requests), strict=True):
        problem = _problem(resp)
        if problem is not None:
            for e in cluster.entries:
                e.error = BatchSearchError([x.compiled.rule.id for x in cluster.entries], problem)
            continue
        buckets = resp.get("aggregations", {}).get("examined", {}).get("buckets", {})
        for j, w in enumerate(cluster.windows):
            bucket = buckets.get(f"w{j}", {})
            targets = tuple(sorted(b["key"] for b in bucket.get("indices", {}).get("buckets", [])))
            for e in cluster.entries:
                if e.window == w:
                    e.examined = int(bucket.get("doc_count", 0))
                    e.targets = targets


def screen_bodies(
    group: _Pager, grams: bool = False
) -> list[tuple[list[tuple[str, Window]], dict[str, Any]]]:
    """The screen searches of a group: its pending entries' distinct (screen, window) pairs,
    `SCREENS_PER_SEARCH` per size-0 search, a `filters` bucket each; with the keys of the buckets.
    `grams`: the group's indices have `.grams` sub-fields, the trigram screens are used."""
    keys: dict[tuple[str, Window], dict[str, Any]] = {}
    for e in group.pending:
        screen = e.compiled.screen
        if grams and e.compiled.screen_grams is not None:
            screen = e.compiled.screen_grams
        if screen is not None:
            e.screen_key = json.dumps(screen, sort_keys=True)
            e.screen_exact = e.compiled.screen_exact and screen is e.compiled.screen
            keys.setdefault((e.screen_key, e.window), screen)
    ordered = list(keys.items())
    out = []
    for i in range(0, len(ordered), SCREENS_PER_SEARCH):
        part = ordered[i : i + SCREENS_PER_SEARCH]
        windows = sorted({w for (_, w), _ in part}, key=lambda w: (w.start, w.end))
        shared = len(windows) == 1
        filters = {
            str(j): q if shared else {"bool": {"filter": [q, window_filter(w)]}}
            for j, ((_, w), q) in enumerate(part)
        }
        body = {
            "size": 0,
            "track_total_hits": False,
            "query": {"bool": {"filter": _top_filter(group.cluster.scope, windows)}},
            "aggs": {"screens": {"filters": {"filters": filters}}},
        }
        out.append(([k for k, _ in part], body))
    return out


def _screen(es: Elasticsearch, groups: list[_Pager]) -> None:
    """Count the distinct screens of the pending entries (one `_msearch`): an entry whose screen
    matches no event is done (its rule cannot match either); one whose exact screen matches events
    is `counted`. A screen search that fails decides nothing: its rules are counted as usual."""
    with_grams = indices_with_grams(es, {t for g in groups for t in g.targets}) if GRAMS else set()
    plans = [
        (g, keys, body)
        for g in groups
        for keys, body in screen_bodies(g, grams=bool(g.targets) and with_grams.issuperset(g.targets))
    ]
    responses = _msearch(es, [(g.targets, body) for g, _, body in plans])
    for (group, keys, _), resp in zip(plans, responses, strict=True):
        if _problem(resp) is not None:
            continue
        buckets = resp.get("aggregations", {}).get("screens", {}).get("buckets", {})
        found = {
            key: int(buckets[str(j)].get("doc_count", 0)) for j, key in enumerate(keys) if str(j) in buckets
        }
        for e in group.pending:
            if e.screen_key is None:
                continue
            n = found.get((e.screen_key, e.window))
            if n == 0:
                e.done = True  # nothing its screen matches: the rule matches nothing either
            elif n is not None and e.screen_exact:
                e.counted, e.count = True, n


def _count(es: Elasticsearch, counters: list[_Pager]) -> None:
    """Mark done every pending entry whose rule matches no event (one `_msearch` per round; a
    refused search is cut in halves like a page, a rule refused alone gets the error)."""
    active = [p for p in counters if p.pending]
    while active:
        following: list[_Pager] = []
        bodies = [(p.targets, count_body(p)) for p in active]
        for pager, resp in zip(active, _msearch(es, bodies), strict=True):
            problem = _problem(resp)
            pending = pager.pending
            if problem is not None:
                if len(pending) > 1:
                    half = len(pending) // 2
                    following += [
                        _Pager(pager.cluster, pager.targets, pending[:half]),
                        _Pager(pager.cluster, pager.targets, pending[half:]),
                    ]
                    continue
                for e in pending:
                    e.error = BatchSearchError([x.compiled.rule.id for x in pending], problem)
                continue
            buckets = resp.get("aggregations", {}).get("rules", {}).get("buckets", {})
            for e in pending:
                bucket = buckets.get(str(e.pos))
                if bucket is None:
                    continue
                e.count = int(bucket.get("doc_count", 0))
                if e.count == 0:
                    e.done = True  # no event: an empty result, as find_matches would return
        active = following


def _page(es: Elasticsearch, pagers: list[_Pager], limit: int) -> None:
    active = [p for p in pagers if p.pending]
    while active:
        sizes = [p.page_size(limit) for p in active]
        bodies = [(p.targets, page_body(p, size)) for p, size in zip(active, sizes, strict=True)]
        following: list[_Pager] = []
        for pager, size, resp in zip(active, sizes, _msearch(es, bodies), strict=True):
            problem = _problem(resp)
            if problem is not None:
                pending = pager.pending
                if len(pending) > 1:  # e.g. too many clauses together: cut in halves, send again
                    half, after = len(pending) // 2, pager.search_after
                    following += [
                        _Pager(pager.cluster, pager.targets, pending[:half], after),
                        _Pager(pager.cluster, pager.targets, pending[half:], after),
                    ]
                    continue
                for e in pending:
                    e.error = BatchSearchError([x.compiled.rule.id for x in pending], problem)
                continue
            hits = resp["hits"]["hits"]
            by_name = {str(e.pos): e for e in pager.pending}
            for hit in hits:
                for name in hit.get("matched_queries", ()):
                    entry = by_name.get(name)
                    if entry is not None and not entry.done:
                        entry.take(hit, limit)
            last_page = len(hits) < size
            if last_page:  # every hit of every pending rule has been seen
                for e in by_name.values():
                    e.done = True
            if pager.pending:
                pager.search_after = hits[-1]["sort"]
                following.append(pager)
        active = following
