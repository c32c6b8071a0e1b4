"""The planning half of batch evaluation: clusters, request bodies, the per-rule hit loop, errors.

(That the batch returns exactly what find_matches returns is proven on the real Elasticsearch in
tests/integration/detection/test_batch.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hcm_soc.detection.batch import (
    PAGE_SIZE,
    _Entry,
    _Pager,
    _problem,
    evaluate_batch,
    evaluate_batch_outcomes,
    examine_body,
    page_body,
    plan_clusters,
)
from hcm_soc.detection.matcher import SORT, window_filter
from hcm_soc.detection.model import CompiledRule, LoadedRule, MatchResult, Window

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
SYSMON = {"terms": {"winlog.channel.caseless": ["microsoft-windows-sysmon/operational"]}}
AUTH = {"terms": {"event.module.caseless": ["system"]}}


def rule(
    rid: str, scope: dict[str, Any], query: str = "process.name:x", indices: tuple[str, ...] = ("h-events-*",)
) -> CompiledRule:
    loaded = LoadedRule(
        id=rid, title=rid, kind="detection", path=Path(f"{rid}.yml"), ruleset="t", level="high",
        status="test", product=None, category=None, service=None, tags=(), references=(),
        description=None, interval=None, enabled=True, sigma=None,
    )  # fmt: skip
    return CompiledRule(loaded, query, {"query_string": {"query": query}}, indices, scope)


def win(start_s: int, end_s: int) -> Window:
    return Window(T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s))


def entries(*pairs: tuple[CompiledRule, Window]) -> list[_Entry]:
    return [_Entry(i, c, w) for i, (c, w) in enumerate(pairs)]


def test_clusters_group_scope_and_indices_and_merge_only_overlapping_windows() -> None:
    a, b, c = rule("a", SYSMON), rule("b", SYSMON), rule("c", AUTH)
    d = rule("d", SYSMON, indices=("other-*",))
    es = entries(
        (a, win(0, 60)),
        (b, win(30, 90)),
        (c, win(0, 60)),
        (d, win(0, 60)),
        (a, win(90, 120)),
        (b, win(200, 260)),
    )
    clusters = plan_clusters(es)
    got = sorted(sorted(e.pos for e in cl.entries) for cl in clusters)
    # 0,1 overlap; 4 touches 1's end (90) -> same cluster; 5 is apart; 2 another scope; 3 other indices
    assert got == [[0, 1, 4], [2], [3], [5]]
    merged = next(cl for cl in clusters if len(cl.entries) == 3)
    assert merged.windows == [win(0, 60), win(30, 90), win(90, 120)]


def test_examine_body_counts_each_window_and_lists_its_indices_without_rule_queries() -> None:
    es = entries((rule("a", SYSMON), win(0, 60)), (rule("b", SYSMON), win(30, 90)))
    (cluster,) = plan_clusters(es)
    body = examine_body(cluster)
    assert body["size"] == 0
    assert body["query"]["bool"]["filter"] == [window_filter(win(0, 90)), SYSMON]
    buckets = body["aggs"]["examined"]["filters"]["filters"]
    assert buckets == {"w0": window_filter(win(0, 60)), "w1": window_filter(win(30, 90))}
    assert body["aggs"]["examined"]["aggs"]["indices"]["terms"]["field"] == "_index"
    assert "query_string" not in repr(body)


def test_page_body_names_each_rule_and_adds_its_window_only_when_windows_differ() -> None:
    same = entries((rule("a", SYSMON, "x:1"), win(0, 60)), (rule("b", SYSMON, "y:2"), win(0, 60)))
    (cluster,) = plan_clusters(same)
    body = page_body(_Pager(cluster, ("i1",), same))
    q = body["query"]["bool"]
    assert q["minimum_should_match"] == 1 and q["filter"] == [window_filter(win(0, 60)), SYSMON]
    assert q["should"] == [
        {"bool": {"filter": [{"query_string": {"query": "x:1"}}], "_name": "0"}},
        {"bool": {"filter": [{"query_string": {"query": "y:2"}}], "_name": "1"}},
    ]
    assert body["sort"] == SORT and body["size"] == PAGE_SIZE and "search_after" not in body

    differ = entries((rule("a", SYSMON, "x:1"), win(0, 60)), (rule("b", SYSMON, "y:2"), win(30, 90)))
    (cluster,) = plan_clusters(differ)
    pager = _Pager(cluster, ("i1",), differ, search_after=["2026-11-26T03:00:01Z", "i1", 7])
    body = page_body(pager)
    first = body["query"]["bool"]["should"][0]["bool"]["filter"][0]
    assert first == {"bool": {"filter": [{"query_string": {"query": "x:1"}}, window_filter(win(0, 60))]}}
    assert body["search_after"] == ["2026-11-26T03:00:01Z", "i1", 7]
    assert body["query"]["bool"]["filter"][0] == window_filter(win(0, 90))


def test_page_body_leaves_out_rules_that_are_done() -> None:
    es = entries((rule("a", SYSMON), win(0, 60)), (rule("b", SYSMON), win(0, 60)))
    es[0].done = True
    (cluster,) = plan_clusters(es)
    names = [c["bool"]["_name"] for c in page_body(_Pager(cluster, ("i",), es))["query"]["bool"]["should"]]
    assert names == ["1"]


def hit(doc_id: str, index: str = "i1") -> dict[str, Any]:
    return {"_id": doc_id, "_index": index, "_source": {"@timestamp": "2026-11-26T03:00:00Z"}}


def test_the_hit_loop_is_the_matchers_dedup_by_id_then_limit_plus_one_truncates() -> None:
    (e,) = entries((rule("a", SYSMON), win(0, 60)))
    for h in (hit("x"), hit("x", "i2"), hit("y")):
        e.take(h, limit=2)
    assert [m.key for m in e.matches] == ["x", "y"] and not e.truncated and not e.done
    e.take(hit("y", "i2"), limit=2)  # a duplicate is not a third match
    assert not e.truncated
    e.take(hit("z"), limit=2)
    assert e.truncated and e.done and [m.key for m in e.matches] == ["x", "y"]
    assert e.result() == MatchResult(tuple(e.matches), 0, truncated=True)
    assert e.matches[0].events[0].index == "i1"  # the first copy in sort order is kept


def test_problem_reads_errors_and_failed_shards() -> None:
    assert _problem({"hits": {"hits": []}, "_shards": {"total": 2, "failed": 0}}) is None
    err = {
        "error": {"type": "search_phase_execution_exception", "root_cause": [{"reason": "bad ip"}]},
        "status": 400,
    }
    assert _problem(err) == "search_phase_execution_exception: bad ip"
    partial = {"_shards": {"total": 3, "failed": 1, "failures": [{"reason": {"reason": "too_many_clauses"}}]}}
    assert _problem(partial) == "1 of 3 shard(s) failed: too_many_clauses"
    assert _problem({"timed_out": True, "_shards": {}}) == "the search timed out"


class NoClient:
    """Any request is a test failure: these batches must be answered without Elasticsearch."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected request: {name}")


def test_empty_windows_need_no_request_and_bad_input_is_refused() -> None:
    items = [(rule("a", SYSMON), win(10, 10)), (rule("b", AUTH), win(0, 0))]
    assert evaluate_batch(NoClient(), items, limit=5) == [MatchResult((), 0), MatchResult((), 0)]  # type: ignore[arg-type]
    assert evaluate_batch(NoClient(), [], limit=5) == []  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        evaluate_batch(NoClient(), items, limit=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a detection rule"):
        evaluate_batch_outcomes(NoClient(), [(object(), win(0, 10))], limit=5)  # type: ignore[arg-type,list-item]
