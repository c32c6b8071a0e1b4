"""Correlation rules without Elasticsearch: the sliding-window evaluator and the compiler.

The evaluator gets hand-made group events (times in seconds here, milliseconds inside); the
compiler gets real Sigma YAML parsed by pySigma and base rules compiled by hand (the ES side
is proven in tests/integration/detection/test_correlation.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule

from hcm_soc.detection.correlation import CorrelationError, compile_correlation
from hcm_soc.detection.correlation_eval import (
    CorrelationCondition,
    EvalSpec,
    GroupEvent,
    Measure,
    merge_events,
    new_bursts,
)
from hcm_soc.detection.model import CompiledRule, LoadedRule

S = 1000  # ms per second
BASE_T = 1_800_000_000  # seconds; an arbitrary instant, not aligned to any minute


def ev(
    sec: float, id_: str | None = None, *, rules: int = 1, ingested: float = 0, values: tuple[str, ...] = ()
) -> GroupEvent:
    ms = int((BASE_T + sec) * S)
    return GroupEvent(ms, id_ or f"e{sec}", "idx", int(ingested * S), rules, frozenset(values))


def spec(
    measure: Measure = Measure.EVENTS, op: str = "gte", count: int = 5, timespan: int = 60, n_rules: int = 1
) -> EvalSpec:
    return EvalSpec(measure, timespan * S, n_rules, CorrelationCondition(op, count))  # type: ignore[arg-type]


def run(
    sp: EvalSpec, events: list[GroupEvent], start: float = 0, end: float = 10**12
) -> list[tuple[float, int]]:
    """(anchor second relative to BASE_T, measure) of the bursts a run over ingest [start, end) reports."""
    merged = merge_events(events)
    out = new_bursts(sp, merged, start=int(start * S), end=int(end * S), anchor_lo=-(2**62), anchor_hi=2**62)
    return [(b.start / S - BASE_T, b.measure) for b in out]


# --- event_count -----------------------------------------------------------------------------


def test_exactly_n_events_within_timespan_match_and_n_minus_one_do_not() -> None:
    five = [ev(i * 10) for i in range(5)]  # 0..40 s, all within 60 s
    assert run(spec(count=5), five) == [(0, 5)]
    assert run(spec(count=5), five[:4]) == []
    assert run(spec(op="gt", count=5), five) == []
    assert run(spec(op="gt", count=4), five) == [(0, 5)]


def test_timespan_is_inclusive_and_not_one_millisecond_more() -> None:
    inside = [ev(0), ev(30), ev(60)]
    assert run(spec(count=3), inside) == [(0, 3)]
    outside = [ev(0), ev(30), ev(60.001)]
    assert run(spec(count=3), outside) == []


def test_burst_straddling_a_minute_boundary_is_found() -> None:
    # 5 events from hh:mm:57 to hh:mm+1:03 (BASE_T is not minute-aligned; align here on purpose)
    aligned = (BASE_T // 60 + 1) * 60 - BASE_T  # seconds from BASE_T to the next minute boundary
    burst = [ev(aligned - 3 + i * 1.5) for i in range(5)]
    assert run(spec(count=5), burst) == [(aligned - 3, 5)]


def test_a_continuing_burst_is_one_match_and_a_new_burst_after_quiet_is_another() -> None:
    first = [ev(i * 5) for i in range(30)]  # 150 s of one event every 5 s: always >= 5 per minute
    second = [ev(1000 + i) for i in range(5)]  # long after, a new burst
    assert run(spec(count=5), first + second) == [(0, 13), (1000, 5)]


def test_anchors_only_at_events_slide_past_a_sparse_start() -> None:
    # a lone event, then a burst starting 50 s later: the window anchored at the lone event holds
    # only 3, the one anchored at the burst start holds 5
    events = [ev(0), ev(50), ev(55), ev(70), ev(80), ev(90), ev(100)]
    assert run(spec(count=5), events) == [(50, 6)]


# --- ingest windows: exactly once across runs ---------------------------------------------------


def test_burst_completed_in_a_later_run_is_reported_there_and_only_there() -> None:
    # three events ingested in run 1 ([0,100)), two more of the same burst in run 2 ([100,200))
    events = [ev(i * 5, ingested=50 if i < 3 else 150) for i in range(5)]
    assert run(spec(count=5), events, 0, 100) == []
    assert run(spec(count=5), events, 100, 200) == [(0, 5)]
    assert run(spec(count=5), events, 200, 300) == []  # nothing new: not reported again
    assert run(spec(count=5), events, 50, 250) == [(0, 5)]  # an overlapping re-run finds the same anchor


def test_events_ingested_after_the_window_are_not_seen() -> None:
    events = [ev(i, ingested=10 if i < 4 else 500) for i in range(5)]
    assert run(spec(count=5), events, 0, 100) == []


def test_merge_deduplicates_by_id_and_joins_rules() -> None:
    a = GroupEvent(5, "x", "i1", 7, 0b01, frozenset({"u1"}))
    b = GroupEvent(5, "x", "i2", 9, 0b10, frozenset({"u2"}))
    c = GroupEvent(3, "y", "i1", 1, 0b01)
    merged = merge_events([a, b, c])
    assert [e.id for e in merged] == ["y", "x"]
    assert merged[1] == GroupEvent(5, "x", "i1", 7, 0b11, frozenset({"u1", "u2"}))


# --- value_count -----------------------------------------------------------------------------


def test_value_count_counts_distinct_values_not_events() -> None:
    same_user = [ev(i, values=("admin",)) for i in range(10)]
    assert run(spec(Measure.VALUES, count=3), same_user) == []
    users = [ev(i, values=(f"u{i % 3}",)) for i in range(10)]
    assert run(spec(Measure.VALUES, count=3), users) == [(0, 3)]
    assert run(spec(Measure.VALUES, count=4), users) == []


def test_value_count_window_forgets_values_that_slid_out() -> None:
    # u0 at 0 s, u1..u3 from 70 s: no 60 s window holds 4 distinct users
    events = [ev(0, values=("u0",)), ev(70, values=("u1",)), ev(75, values=("u2",)), ev(80, values=("u3",))]
    assert run(spec(Measure.VALUES, count=4), events) == []
    assert run(spec(Measure.VALUES, count=3), events) == [(70, 3)]


# --- temporal --------------------------------------------------------------------------------


def test_temporal_needs_every_rule_within_timespan_in_any_order() -> None:
    sp = spec(Measure.RULES, count=2, n_rules=2)
    assert run(sp, [ev(0, rules=0b10), ev(30, rules=0b01)]) == [(0, 2)]
    assert run(sp, [ev(0, rules=0b01), ev(30, rules=0b01)]) == []
    assert run(sp, [ev(0, rules=0b10), ev(61, rules=0b01)]) == []


def test_temporal_ordered_needs_the_listed_order() -> None:
    sp = spec(Measure.ORDERED, count=2, n_rules=2)  # rule 0 (bit 1) then rule 1 (bit 2)
    assert run(sp, [ev(0, rules=0b01), ev(30, rules=0b10)]) == [(0, 2)]
    assert run(sp, [ev(0, rules=0b10), ev(30, rules=0b01)]) == []
    # wrong order first, then the right order later in the same window: found
    assert run(sp, [ev(0, rules=0b10), ev(10, rules=0b01), ev(20, rules=0b10)]) == [(0, 2)]


def test_temporal_ordered_three_rules_and_same_instant() -> None:
    sp = spec(Measure.ORDERED, count=3, n_rules=3)
    assert run(sp, [ev(0, rules=1), ev(5, rules=2), ev(9, rules=4)]) == [(0, 3)]
    assert run(sp, [ev(0, rules=1), ev(5, rules=4), ev(9, rules=2)]) == []
    # events at the same instant count as in order either way (second-resolution logs)
    assert run(sp, [ev(0, "b", rules=2), ev(0, "a", rules=1), ev(9, rules=4)]) == [(0, 3)]


def test_extended_temporal_condition_and_not() -> None:
    # "a and not b": sessions where a happened and b did not, decided once closed
    sp = EvalSpec(
        Measure.RULES, 60 * S, 2, expression=lambda m: bool(m & 1) and not m & 2, expression_monotone=False
    )
    only_a = [ev(0, rules=1, ingested=1)]
    assert run(sp, only_a, 0, BASE_T + 30) == []  # window still open
    assert run(sp, only_a, 0, BASE_T + 61) == [(0, 1)]
    with_b = [ev(0, rules=1, ingested=1), ev(20, rules=2, ingested=1)]
    assert run(sp, with_b, 0, BASE_T + 61) == []


# --- lt / lte: closed session windows ----------------------------------------------------------


def test_fewer_than_is_decided_on_closed_session_windows_only() -> None:
    sp = spec(op="lt", count=3)
    two = [ev(0, ingested=1), ev(10, ingested=1)]
    assert run(sp, two, 0, BASE_T + 30) == []  # the window [0, 60] is not over yet
    assert run(sp, two, 0, BASE_T + 61) == [(0, 2)]
    assert run(sp, two, BASE_T + 61, BASE_T + 200) == []  # decided once
    three = [ev(0, ingested=1), ev(10, ingested=1), ev(20, ingested=1)]
    assert run(sp, three, 0, BASE_T + 61) == []
    # the tail of a larger burst is not a "fewer than" session of its own
    tail = [ev(i * 10, ingested=1) for i in range(6)]
    assert run(spec(op="lte", count=2), tail, 0, BASE_T + 500) == []


def test_eq_condition() -> None:
    sp = spec(op="eq", count=2)
    assert run(sp, [ev(0, ingested=1), ev(5, ingested=1)], 0, BASE_T + 100) == [(0, 2)]
    assert run(sp, [ev(0, ingested=1), ev(5, ingested=1), ev(7, ingested=1)], 0, BASE_T + 100) == []


# --- the compiler --------------------------------------------------------------------------------

BASES = """
title: SSH failed login
id: 0b7c9e8a-1111-4c1d-9d7e-000000000001
name: ssh_failed
status: test
logsource: {product: linux, service: sshd}
detection:
  sel: {event.outcome: failure}
  condition: sel
---
title: SSH accepted login
id: 0b7c9e8a-1111-4c1d-9d7e-000000000002
name: ssh_ok
status: test
logsource: {product: linux, service: sshd}
detection:
  sel: {event.outcome: success}
  condition: sel
---
title: Web request
id: 0b7c9e8a-1111-4c1d-9d7e-000000000003
name: web_req
status: test
logsource: {category: webserver}
detection:
  sel: {http.request.method: POST}
  condition: sel
"""


def loaded(sig: Any) -> LoadedRule:
    ls = getattr(sig, "logsource", None)
    return LoadedRule(
        id=str(sig.id),
        title=sig.title,
        kind="correlation" if isinstance(sig, SigmaCorrelationRule) else "detection",
        path=Path("rules/test.yml"),
        ruleset="city",
        level=None,
        status=None,
        product=getattr(ls, "product", None),
        category=getattr(ls, "category", None),
        service=getattr(ls, "service", None),
        tags=(),
        references=(),
        description=None,
        interval=None,
        enabled=True,
        sigma=sig,
        name=sig.name,
    )


def compile_yaml(correlation: str) -> Any:
    coll = SigmaCollection.from_yaml(BASES + "---\n" + correlation, resolve_references=False)
    base: dict[str, CompiledRule] = {}
    corr_rule = None
    for sig in coll:
        rule = loaded(sig)
        if rule.kind == "correlation":
            corr_rule = rule
            continue
        compiled = CompiledRule(rule, "", {"match_all": {}}, ("hcm-events-*",))
        base[rule.id] = compiled
        base[str(rule.name)] = compiled
    assert corr_rule is not None
    return compile_correlation(corr_rule, base)


def test_compile_maps_group_by_through_the_pipeline_per_log_source() -> None:
    corr = compile_yaml("""
title: Many failures
id: 0b7c9e8a-1111-4c1d-9d7e-00000000000a
correlation:
  type: event_count
  rules: [ssh_failed]
  group-by: [rhost, User]
  timespan: 5m
  condition: {gte: 10}
""")
    assert [g.fields for g in corr.group_by] == [("source.address",), ("user.name",)]
    assert [g.label for g in corr.group_by] == ["source.address", "user.name"]
    assert corr.spec.timespan_ms == 300_000
    assert corr.condition == CorrelationCondition("gte", 10)
    assert corr.spec.monotone
    assert not corr.generate


def test_compile_aliases_give_each_rule_its_own_field() -> None:
    corr = compile_yaml("""
title: Web then SSH from the same address
id: 0b7c9e8a-1111-4c1d-9d7e-00000000000b
correlation:
  type: temporal_ordered
  rules: [web_req, ssh_ok]
  group-by: [attacker]
  timespan: 10m
  aliases:
    attacker:
      web_req: c-ip
      ssh_ok: rhost
  generate: true
""")
    assert [b.rule.name for b in corr.bases] == ["web_req", "ssh_ok"]
    assert corr.group_by[0].fields == ("source.ip", "source.address")
    assert corr.group_by[0].label == "attacker"
    assert corr.condition == CorrelationCondition("gte", 2)  # pySigma's default: all rules
    assert corr.generate


def test_compile_value_count_field_and_extended_condition() -> None:
    corr = compile_yaml("""
title: Spraying
id: 0b7c9e8a-1111-4c1d-9d7e-00000000000c
correlation:
  type: value_count
  rules: [ssh_failed]
  group-by: [rhost]
  timespan: 1h
  condition: {gt: 3, field: User}
""")
    assert corr.value_fields == ("user.name",)
    ext = compile_yaml("""
title: Failure without success
id: 0b7c9e8a-1111-4c1d-9d7e-00000000000d
correlation:
  type: temporal
  rules: [ssh_failed, ssh_ok]
  group-by: [rhost]
  timespan: 1h
  condition: ssh_failed and not ssh_ok
""")
    assert ext.expression == "ssh_failed and not ssh_ok"
    assert not ext.spec.monotone
    assert ext.spec.satisfied(0, 0b01) and not ext.spec.satisfied(0, 0b11)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "type: value_sum\n  rules: [ssh_failed]\n  timespan: 5m\n  condition: {gt: 3, field: x}",
            "not supported",
        ),
        ("type: event_count\n  rules: [nope]\n  timespan: 5m\n  condition: {gt: 3}", "'nope'"),
        (
            "type: temporal_ordered\n  rules: [ssh_failed, ssh_ok]\n  timespan: 5m\n  condition: ssh_failed and ssh_ok",
            "extended condition",
        ),
        (
            "type: temporal\n  rules: [ssh_failed, web_req]\n  group-by: [ip]\n  timespan: 5m\n"
            "  aliases:\n    ip:\n      ssh_failed: rhost",
            "alias 'ip' names no field",
        ),
    ],
)
def test_compile_rejects_with_rule_id_and_reason(body: str, reason: str) -> None:
    with pytest.raises(CorrelationError) as err:
        compile_yaml(f"title: Bad\nid: 0b7c9e8a-1111-4c1d-9d7e-0000000000ff\ncorrelation:\n  {body}\n")
    assert "0b7c9e8a-1111-4c1d-9d7e-0000000000ff" in str(err.value)
    assert reason in str(err.value)
