"""Windows, checkpoints, chunks, backoff and alert ids of the detection engine, with a fake clock.

The engine runs here against in-memory stand-ins for its own two seams (the alert sink and
the state backend) and an evaluator over a list of events with `event.ingested` times; the
same engine runs against real Elasticsearch in tests/integration/detection.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hcm_soc.config import DetectionSettings
from hcm_soc.detection.alerts import MAX_EVENT_REFS, alert_id, build_alert, parse_attack_tags
from hcm_soc.detection.engine import (
    DetectionEngine,
    EngineRule,
    backoff,
    detect_gap,
    floor_ms,
    is_due,
    plan_windows,
)
from hcm_soc.detection.model import EventRef, LoadedRule, Match, MatchResult, Window
from hcm_soc.errors import DependencyUnavailable
from hcm_soc.models.alert import Alert
from hcm_soc.store.alerts import AlertWriteError, CreateResult
from hcm_soc.store.detection_state import RuleHealth, RuleState, StateConflict
from hcm_soc.store.names import IndexNames

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
H = timedelta(hours=1)


# --- fakes at our own seams -------------------------------------------------------------------


class FakeClock:
    def __init__(self, t: datetime = T0) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, d: timedelta) -> None:
        self.t += d


class MemoryState:
    """The state backend with the same optimistic-concurrency contract as DetectionStateStore."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[RuleHealth, int]] = {}
        self.saves: list[RuleHealth] = []

    def load(self, rule_id: str) -> RuleState:
        if rule_id not in self.docs:
            return RuleState(health=RuleHealth(rule_id=rule_id))
        health, seq = self.docs[rule_id]
        return RuleState(health=health, seq_no=seq, primary_term=1)

    def save(self, state: RuleState, *, updated: datetime) -> RuleState:
        current = self.docs.get(state.health.rule_id)
        if (current[1] if current else None) != state.seq_no:
            raise StateConflict(f"state of {state.health.rule_id} changed")
        seq = (current[1] + 1) if current else 0
        self.docs[state.health.rule_id] = (state.health, seq)
        self.saves.append(state.health)
        return state.model_copy(update={"seq_no": seq, "primary_term": 1})

    def health(self, rule_id: str) -> RuleHealth:
        return self.docs[rule_id][0]


class MemoryAlerts:
    """Create-once semantics of AlertStore (an existing id is a duplicate); can be told to fail."""

    def __init__(self) -> None:
        self.docs: dict[str, Alert] = {}
        self.fail_calls: set[int] = set()
        self.calls = 0

    def create_many(self, alerts: Sequence[Alert]) -> CreateResult:
        self.calls += 1
        if self.calls in self.fail_calls:
            raise AlertWriteError("alerts index refused the batch (test)")
        created = [a.id for a in alerts if a.id not in self.docs]
        for a in alerts:
            self.docs.setdefault(a.id, a)
        return CreateResult(len(created), len(alerts) - len(created), tuple(created))


@dataclass
class EventLog:
    """Events by `event.ingested`; the evaluator returns those in [start, end) whose `hit` is true."""

    events: list[tuple[datetime, str, dict[str, Any]]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    fail: Callable[[Window], bool] = lambda w: False

    def add(self, ingested: datetime, event_id: str, **source: Any) -> None:
        self.events.append((ingested, event_id, {"hit": True, **source}))

    def __call__(self, es: Any, compiled: Any, window: Window, *, limit: int) -> MatchResult:
        self.windows.append(window)
        if self.fail(window):
            raise RuntimeError(f"search failed for {window.start}")
        inside = [(i, s) for t, i, s in self.events if window.start <= t < window.end]
        hits = [(i, s) for i, s in inside if s.get("hit")]
        matches = tuple(Match(compiled, i, (EventRef("events-1", i, s),)) for i, s in hits[:limit])
        return MatchResult(matches, examined=len(inside), truncated=len(hits) > limit)


def make_rule(rule_id: str = "r-ssh", *, level: str = "high", tags: tuple[str, ...] = ()) -> LoadedRule:
    return LoadedRule(
        id=rule_id,
        title=f"Rule {rule_id}",
        kind="detection",
        path=Path(f"/nonexistent/{rule_id}.yml"),
        ruleset="city",
        level=level,
        status="stable",
        product="linux",
        category=None,
        service="auth",
        tags=tags,
        references=("https://attack.mitre.org/techniques/T1110/",),
        description="test rule",
        interval=None,
        enabled=True,
        sigma=None,
    )


def engine_rule(rule_id: str = "r-ssh", *, version: str = "v1", compiled: Any = "compiled") -> EngineRule:
    # the fake evaluator uses `compiled` as the rule id of its matches
    return EngineRule(make_rule(rule_id), rule_id if compiled == "compiled" else compiled, version, MIN)


def make_engine(
    events: EventLog,
    clock: FakeClock,
    *,
    state: MemoryState | None = None,
    alerts: MemoryAlerts | None = None,
    **settings: Any,
) -> tuple[DetectionEngine, MemoryState, MemoryAlerts]:
    defaults: dict[str, Any] = {
        "interval": 60,
        "safety_margin": 30,
        "max_chunk": 3600,
        "initial_lookback": 3600,
        "retry_backoff_max": 600,
    }
    state = state or MemoryState()
    alerts = alerts or MemoryAlerts()
    engine = DetectionEngine(
        None,  # type: ignore[arg-type]  # the fakes never touch Elasticsearch
        IndexNames("unit"),
        DetectionSettings(**{**defaults, **settings}),
        now=clock,
        evaluator=events,
        alerts=alerts,
        state=state,
    )
    return engine, state, alerts


# --- planning ---------------------------------------------------------------------------------


def test_first_run_starts_initial_lookback_back_and_stops_at_the_safety_margin() -> None:
    windows = plan_windows(
        None, T0, safety_margin=30 * timedelta(seconds=1), max_chunk=2 * H, initial_lookback=H
    )
    assert windows == [Window(T0 - H, T0 - timedelta(seconds=30))]


def test_long_window_is_cut_into_contiguous_half_open_chunks() -> None:
    cp = T0 - 5 * H
    windows = plan_windows(cp, T0, safety_margin=timedelta(0), max_chunk=H, initial_lookback=H)
    assert len(windows) == 5
    assert windows[0].start == cp and windows[-1].end == T0
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert all(w.end - w.start == H for w in windows)
    bounded = plan_windows(cp, T0, safety_margin=timedelta(0), max_chunk=H, initial_lookback=H, max_chunks=2)
    assert bounded == windows[:2]


def test_nothing_to_do_when_checkpoint_is_at_or_past_now_minus_margin() -> None:
    margin = timedelta(seconds=30)
    assert plan_windows(T0 - margin, T0, safety_margin=margin, max_chunk=H, initial_lookback=H) == []
    # the margin was raised since the last run: never look backwards
    assert plan_windows(T0, T0, safety_margin=margin, max_chunk=H, initial_lookback=H) == []


def test_window_bounds_are_whole_milliseconds_as_elasticsearch_stores_event_ingested() -> None:
    t = datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=UTC)
    assert floor_ms(t).microsecond == 123000
    (w,) = plan_windows(t - MIN, t, safety_margin=timedelta(0), max_chunk=H, initial_lookback=H)
    assert w.start.microsecond == 123000 and w.end.microsecond == 123000


def test_gap_is_reported_only_beyond_two_intervals_of_delay() -> None:
    margin = timedelta(seconds=30)
    on_time = T0 - margin - MIN
    assert detect_gap(on_time, T0, safety_margin=margin, interval=MIN) is None
    assert detect_gap(on_time - 2 * MIN, T0, safety_margin=margin, interval=MIN) is None
    gap = detect_gap(on_time - 2 * MIN - timedelta(seconds=1), T0, safety_margin=margin, interval=MIN)
    assert gap is not None and "older than expected" in gap
    assert detect_gap(None, T0, safety_margin=margin, interval=MIN) is None


def test_backoff_doubles_from_the_interval_up_to_the_cap() -> None:
    cap = timedelta(seconds=600)
    assert [backoff(n, MIN, cap).total_seconds() for n in range(1, 7)] == [60, 120, 240, 480, 600, 600]
    health = RuleHealth(rule_id="r", next_retry=T0)
    assert not is_due(health, T0 - MIN, MIN)
    assert is_due(health, T0 - timedelta(seconds=30), MIN)  # a tick within half an interval counts
    assert is_due(RuleHealth(rule_id="r"), T0, MIN)


# --- runs -------------------------------------------------------------------------------------


def test_successive_runs_see_each_event_exactly_once_including_late_arrivals() -> None:
    clock, events = FakeClock(), EventLog()
    engine, state, alerts = make_engine(events, clock)
    rule = engine_rule()
    events.add(T0 - 10 * MIN, "e1")
    events.add(T0 - 10 * MIN, "quiet", hit=False)
    first = engine.run_rule(rule)
    assert (first.alerts_created, first.examined, first.chunks) == (1, 2, 1)
    assert state.health("r-ssh").checkpoint == T0 - timedelta(seconds=30)

    # e2 was ingested just before the first run's end bound but after its margin: seen by run 2;
    # e3 is a late event (old @timestamp) ingested after run 1: seen by run 2 too, once
    events.add(T0 - timedelta(seconds=10), "e2")
    clock.advance(MIN)
    events.add(T0 + timedelta(seconds=5), "e3", **{"@timestamp": "2026-11-20T00:00:00Z"})
    second = engine.run_rule(rule)
    assert second.alerts_created == 2 and second.duplicates == 0
    clock.advance(MIN)
    third = engine.run_rule(rule)
    assert third.matches == 0
    assert sorted(a.hcm.match_key for a in alerts.docs.values()) == ["e1", "e2", "e3"]
    # windows never overlap and leave no hole
    assert all(a.end == b.start for a, b in zip(events.windows, events.windows[1:], strict=False))
    health = state.health("r-ssh")
    assert health.status == "ok" and health.runs == 3 and health.checkpoint == clock.t - timedelta(seconds=30)


def test_first_run_without_lookback_starts_the_timeline_at_now_minus_margin() -> None:
    clock, events = FakeClock(), EventLog()
    events.add(T0 - H, "before-the-engine-existed")
    engine, state, alerts = make_engine(events, clock, initial_lookback=0)
    first = engine.run_rule(engine_rule())
    assert first.ok and first.chunks == 0
    assert state.health("r-ssh").checkpoint == T0 - timedelta(seconds=30)
    events.add(T0 + timedelta(seconds=10), "after")
    clock.advance(MIN)
    assert engine.run_rule(engine_rule()).alerts_created == 1
    assert [a.hcm.match_key for a in alerts.docs.values()] == ["after"]


def test_outage_is_caught_up_in_bounded_chunks_each_committed() -> None:
    clock, events = FakeClock(), EventLog()
    engine, state, _alerts = make_engine(events, clock, safety_margin=0)
    rule = engine_rule()
    engine.run_rule(rule)  # checkpoint = T0
    for h in range(5):
        events.add(T0 + h * H + MIN, f"during-outage-{h}")
    clock.advance(5 * H)  # the engine was down for five hours
    run = engine.run_rule(rule)
    assert run.chunks == 5 and run.alerts_created == 5
    assert [w.end - w.start for w in events.windows[1:]] == [H] * 5
    # one state write per chunk, each moving the checkpoint one chunk forward
    assert [s.checkpoint for s in state.saves[1:]] == [T0 + (h + 1) * H for h in range(5)]
    health = state.health("r-ssh")
    assert health.gaps_detected == 1 and "older than expected" in (health.last_gap or "")


def test_failed_chunk_keeps_the_checkpoint_of_the_last_committed_chunk_and_resumes_there() -> None:
    clock, events = FakeClock(), EventLog()
    engine, state, alerts = make_engine(events, clock, safety_margin=0)
    rule = engine_rule()
    engine.run_rule(rule)
    for h in range(4):
        events.add(T0 + h * H + MIN, f"e{h}")
    alerts.fail_calls = {alerts.calls + 3}  # the third chunk's alerts cannot be written
    clock.advance(4 * H)
    failed = engine.run_rule(rule)
    assert failed.error is not None and "refused" in failed.error and failed.chunks == 2
    health = state.health("r-ssh")
    assert health.checkpoint == T0 + 2 * H
    assert health.status == "failing" and health.consecutive_failures == 1 and health.failures == 1
    assert health.next_retry == clock.t + MIN and "AlertWriteError" in (health.last_error or "")

    clock.advance(MIN)
    retried = engine.run_rule(rule)
    assert retried.ok and retried.window is not None and retried.window.start == T0 + 2 * H
    assert sorted(a.hcm.match_key for a in alerts.docs.values()) == ["e0", "e1", "e2", "e3"]
    health = state.health("r-ssh")
    assert health.status == "ok" and health.consecutive_failures == 0 and health.next_retry is None
    assert health.last_error is not None  # the last failure stays visible


def test_failing_rule_is_retried_with_exponential_backoff_capped() -> None:
    clock, events = FakeClock(), EventLog(fail=lambda w: True)
    engine, state, _ = make_engine(events, clock, retry_backoff_max=300)
    rule = engine_rule()
    attempted: list[int] = []
    for tick in range(0, 20):  # the scheduler's ticks, one interval apart
        clock.t = T0 + tick * MIN
        if not engine.run_rule(rule).skipped:
            attempted.append(tick)
    # waits of 1, 2, 4 intervals, then the cap of 5 intervals (300 s)
    assert attempted == [0, 1, 3, 7, 12, 17]
    health = state.health("r-ssh")
    assert health.consecutive_failures == 6 and health.checkpoint is None  # never advanced
    # --once ignores the backoff
    clock.t = T0 + 18 * MIN
    assert engine.run_rule(rule).skipped is not None
    assert engine.run_rule(rule, force=True).error is not None


def test_unreachable_state_store_backs_off_in_memory_and_recovers() -> None:
    clock, events = FakeClock(), EventLog()
    events.add(T0 - MIN, "e1")
    state = DownState()
    engine, _, _ = make_engine(events, clock, state=state)
    rule = engine_rule()
    state.down = True
    failed = engine.run_rule(rule)
    assert failed.error is not None and "did not answer" in failed.error
    clock.advance(timedelta(seconds=20))
    assert engine.run_rule(rule).skipped is not None  # not hammering a store that is down
    assert state.loads == 1
    state.down = False
    clock.advance(MIN)
    ok = engine.run_rule(rule)
    assert ok.ok and ok.alerts_created == 1 and state.health("r-ssh").status == "ok"
    clock.advance(MIN)
    assert engine.run_rule(rule).skipped is None  # the in-memory backoff was cleared by the success


class DownState(MemoryState):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.loads = 0

    def load(self, rule_id: str) -> RuleState:
        self.loads += 1
        if self.down:
            raise DependencyUnavailable("Elasticsearch did not answer (test)")
        return super().load(rule_id)


def test_one_failing_rule_never_stops_the_others() -> None:
    clock = FakeClock()
    events = EventLog(fail=lambda w: False)
    events.add(T0 - MIN, "e1")
    engine, state, _alerts = make_engine(events, clock)

    def evaluator(es: Any, compiled: Any, window: Window, *, limit: int) -> MatchResult:
        if compiled == "r-broken":
            raise ValueError("query_string parse error (test)")
        return events(es, compiled, window, limit=limit)

    engine.evaluator = evaluator
    invalid = engine_rule("r-invalid", compiled=None)
    invalid = EngineRule(invalid.rule, None, "v1", MIN, "cannot compile: |fieldref is not supported")
    summary = engine.run_all([engine_rule("r-broken"), invalid, engine_rule("r-good")])
    by_id = {r.rule_id: r for r in summary.runs}
    assert by_id["r-good"].alerts_created == 1
    assert "query_string parse error" in (by_id["r-broken"].error or "")
    assert "fieldref" in (by_id["r-invalid"].error or "")
    assert state.health("r-invalid").status == "invalid" and state.health("r-invalid").next_retry is None
    assert state.health("r-broken").status == "failing"
    # an invalid rule is recorded once, then skipped quietly until its definition changes
    clock.advance(MIN)
    assert engine.run_rule(invalid).skipped is not None
    assert engine.stats()["failures"] == 2


def test_stopping_ends_a_catch_up_after_its_current_chunk() -> None:
    clock, events = FakeClock(), EventLog()
    engine, state, _ = make_engine(events, clock, safety_margin=0)
    engine.run_rule(engine_rule())
    clock.advance(5 * H)

    def stop_during_second_chunk(es: Any, compiled: Any, window: Window, *, limit: int) -> MatchResult:
        if len(events.windows) == 2:
            engine.stop_event.set()
        return events(es, compiled, window, limit=limit)

    engine.evaluator = stop_during_second_chunk
    run = engine.run_rule(engine_rule())
    assert run.ok and run.chunks == 2 and run.window == Window(T0, T0 + 2 * H)
    assert state.health("r-ssh").checkpoint == T0 + 2 * H  # the next start continues from here


def test_invalid_rule_is_recorded_once_then_skipped_without_reading_state() -> None:
    state = DownState()
    engine, _, _ = make_engine(EventLog(), FakeClock(), state=state)
    invalid = EngineRule(make_rule("r-bad"), None, "v1", MIN, "cannot compile: no hcm-soc data source")
    assert engine.run_rule(invalid).error is not None
    assert engine.run_rule(invalid).skipped is not None
    assert state.loads == 1 and state.health("r-bad").status == "invalid"
    assert engine.run_rule(invalid, force=True).error is not None  # --once reports it again
    changed = EngineRule(invalid.rule, None, "v2", MIN, invalid.error)
    assert engine.run_rule(changed).error is not None  # a new definition is looked at again


def test_rerunning_the_same_window_creates_no_new_alert() -> None:
    clock, events = FakeClock(), EventLog()
    events.add(T0 - 5 * MIN, "e1")
    events.add(T0 - 4 * MIN, "e2")
    alerts = MemoryAlerts()
    engine, _, _ = make_engine(events, clock, alerts=alerts)
    assert engine.run_rule(engine_rule()).alerts_created == 2
    # a retry of the same window (its checkpoint was lost): same ids, nothing new
    again, _, _ = make_engine(events, clock, alerts=alerts)
    run = again.run_rule(engine_rule())
    assert (run.alerts_created, run.duplicates) == (0, 2)
    assert len(alerts.docs) == 2


def test_changed_definition_keeps_the_checkpoint_and_records_the_version() -> None:
    clock, events = FakeClock(), EventLog()
    engine, state, _ = make_engine(events, clock)
    engine.run_rule(engine_rule(version="v1"))
    checkpoint = state.health("r-ssh").checkpoint
    clock.advance(MIN)
    run = engine.run_rule(engine_rule(version="v2"))
    assert run.window is not None and run.window.start == checkpoint
    health = state.health("r-ssh")
    assert (health.version, health.previous_version) == ("v2", "v1")


def test_a_concurrent_engine_advancing_the_checkpoint_stops_this_run_without_failure() -> None:
    clock, events = FakeClock(), EventLog()
    engine, state, _ = make_engine(events, clock)
    rule = engine_rule()
    engine.run_rule(rule)
    clock.advance(MIN)

    def other_engine_wins(es: Any, compiled: Any, window: Window, *, limit: int) -> MatchResult:
        current = state.load("r-ssh")
        moved = current.health.model_copy(update={"checkpoint": window.end})
        state.save(current.model_copy(update={"health": moved}), updated=clock.t)
        return MatchResult((), 0)

    engine.evaluator = other_engine_wins
    run = engine.run_rule(rule)
    assert run.skipped is not None and "another engine" in run.skipped
    assert state.health("r-ssh").status == "ok" and engine.stats()["conflicts"] == 1


def test_matches_over_the_run_cap_are_counted_in_one_summary_alert() -> None:
    clock, events = FakeClock(), EventLog()
    for i in range(5):
        events.add(T0 - 5 * MIN, f"e{i}")
    engine, state, alerts = make_engine(events, clock, max_alerts_per_run=3)
    run = engine.run_rule(engine_rule())
    # 3 alerts + 1 summary; the evaluator stopped at the cap, so (no count possible here) "at least 1"
    assert (run.alerts_created, run.suppressed, run.gaps) == (4, 1, ())
    (summary,) = [a for a in alerts.docs.values() if a.hcm.summary is not None]
    assert summary.hcm.summary is not None and summary.hcm.summary.exact is False
    assert summary.hcm.summary.max_alerts_per_run == 3 and "at least 1 more" in summary.message
    assert run.window is not None
    assert summary.id == alert_id(
        "r-ssh", f"summary:{run.window.start.isoformat()}:{run.window.end.isoformat()}"
    )
    health = state.health("r-ssh")
    assert (health.suppressed, health.suppressed_total, health.checkpoint) == (1, 1, run.window.end)


def test_group_cap_keeps_other_keys_alerting_and_names_the_flooding_key() -> None:
    clock, events = FakeClock(), EventLog()
    for i in range(6):
        events.add(T0 - 5 * MIN, f"flood{i}", source={"ip": "203.0.113.9"})
    events.add(T0 - 4 * MIN, "quiet", source={"ip": "198.51.100.1"}, user={"name": "an"})
    engine, _state, alerts = make_engine(events, clock, max_alerts_per_group=2)
    run = engine.run_rule(engine_rule())
    assert (run.matches, run.alerts_created, run.suppressed) == (7, 4, 4)
    keys = sorted(a.hcm.match_key for a in alerts.docs.values() if a.hcm.summary is None)
    assert keys == ["flood0", "flood1", "quiet"]
    (summary,) = [a for a in alerts.docs.values() if a.hcm.summary is not None]
    assert summary.hcm.summary is not None and summary.hcm.summary.exact is True
    assert [(k.key, k.count) for k in summary.hcm.summary.top_keys] == [("source.ip=203.0.113.9", 4)]
    # the same window again (e.g. after a crash before the checkpoint): nothing new, summary included
    engine2, _, _ = make_engine(events, clock, alerts=alerts, max_alerts_per_group=2)
    again = engine2.run_rule(engine_rule())
    assert (again.alerts_created, again.duplicates) == (0, 4)


# --- alert documents --------------------------------------------------------------------------


def test_alert_id_depends_only_on_rule_and_match_key() -> None:
    assert alert_id("r1", "ev1") == alert_id("r1", "ev1")
    assert len({alert_id("r1", "ev1"), alert_id("r2", "ev1"), alert_id("r1", "ev2")}) == 3
    assert alert_id("r1", "a\x1fb") != alert_id("r1\x1fa", "b")


def test_attack_tags_become_ecs_threat_fields() -> None:
    threat = parse_attack_tags(
        [
            "attack.credential_access",
            "attack.t1110.001",
            "attack.T1110",
            "attack.ta0001",
            "attack.g0032",
            "cve.2021",
        ]
    )
    assert threat is not None
    assert threat.technique.id == ["T1110"]
    assert threat.technique.subtechnique == {"id": ["T1110.001"]}
    assert threat.tactic.id == ["TA0006", "TA0001"]
    assert threat.tactic.name == ["Credential Access", "Initial Access"]
    assert parse_attack_tags(["cve.2021-44228", "detection.threat_hunting"]) is None


def test_alert_document_carries_rule_entities_window_and_bounded_refs() -> None:
    rule = make_rule(level="high", tags=("attack.credential_access", "attack.t1110"))
    source = {
        "host": {"name": "so-tttt-web01"},
        "user": {"name": "root"},
        "source": {"ip": "203.0.113.7"},
        "event": {"dataset": "system.auth", "module": "system"},
        "process.executable": "/usr/sbin/sshd",
    }
    refs = tuple(EventRef("hcm-events-x", f"id{i}", source if i == 0 else {}) for i in range(150))
    window = Window(T0 - MIN, T0)
    match = Match("r-ssh", "grp", refs, group=(("source.ip", "203.0.113.7"),), count=150)
    alert = build_alert(rule, match, window, raised=T0, version="abc")
    doc = alert.to_document()
    assert doc["event"] == {
        "kind": "alert",
        "severity": 4,
        "risk_score": 73.0,
        "dataset": "system.auth",
        "module": "system",
    }
    assert (
        doc["rule"]["id"] == "r-ssh"
        and doc["rule"]["name"] == "Rule r-ssh"
        and doc["rule"]["ruleset"] == "city"
    )
    assert doc["rule"]["category"] == "linux/auth"
    assert doc["threat"]["technique"]["id"] == ["T1110"]
    assert doc["host"] == {"name": "so-tttt-web01"} and doc["user"] == {"name": "root"}
    assert doc["source"] == {"ip": "203.0.113.7"} and doc["process"] == {"executable": "/usr/sbin/sshd"}
    assert "destination" not in doc and "url" not in doc
    assert len(doc["hcm"]["events"]) == MAX_EVENT_REFS and doc["hcm"]["events_total"] == 150
    assert doc["hcm"]["group"] == {"source.ip": "203.0.113.7"} and doc["hcm"]["status"] == "open"
    assert doc["hcm"]["window"] == {"start": "2026-11-26T07:59:00Z", "end": "2026-11-26T08:00:00Z"}
    assert doc["@timestamp"] == "2026-11-26T08:00:00Z"
    assert Alert.from_document(alert.id, doc) == alert


def test_alert_model_rejects_unknown_fields_and_naive_times() -> None:
    alert = build_alert(make_rule(), Match("r", "k", (EventRef("i", "e"),)), Window(T0 - MIN, T0), raised=T0)
    doc = alert.to_document()
    with pytest.raises(ValueError, match="extra"):
        Alert.from_document("x", {**doc, "surprise": 1})
    with pytest.raises(ValueError, match="timezone"):
        Alert.from_document("x", {**doc, "@timestamp": "2026-11-26T08:00:00"})
