"""The scheduler around the engine: grouping, job options, one run per rule at a time, stopping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from hcm_soc.detection.engine import DetectionEngine, EngineRule, RuleRun
from hcm_soc.detection.model import MatchResult, Window
from hcm_soc.detection.scheduler import COUNTERS_JOB, SILENCE_JOB, EngineScheduler, RuleGroup, group_rules
from tests.unit.detection.test_engine_windows import T0, EventLog, FakeClock, make_engine, make_rule


def rule_every(rule_id: str, seconds: float) -> EngineRule:
    return EngineRule(make_rule(rule_id), rule_id, "v1", timedelta(seconds=seconds))


def test_rules_are_grouped_by_interval_in_bounded_groups() -> None:
    rules = [rule_every(f"r{i:02d}", 60) for i in range(45)] + [rule_every("slow", 300)]
    groups = group_rules(rules, size=20)
    assert [(g.job_id, len(g.rules)) for g in groups] == [
        ("rules-60s-0", 20),
        ("rules-60s-1", 20),
        ("rules-60s-2", 5),
        ("rules-300s-0", 1),
    ]
    assert [r.id for g in groups for r in g.rules] == sorted(r.id for r in rules)
    assert all(len({r.interval for r in g.rules}) == 1 for g in groups)


def test_each_group_is_an_interval_job_with_one_instance_coalesced_and_jittered() -> None:
    engine, _, _ = make_engine(EventLog(), FakeClock())
    rules = [rule_every("a", 60), rule_every("b", 60), rule_every("c", 300)]
    sched = BackgroundScheduler(timezone=UTC)
    es = EngineScheduler(engine, rules, jitter=5.0, scheduler=sched)
    es.add_jobs(first_run=datetime.now(UTC) + timedelta(hours=1))
    sched.start(paused=True)  # the jobs are inspected, never run
    try:
        jobs = {j.id: j for j in sched.get_jobs()}
        assert set(jobs) == {"rules-60s-0", "rules-300s-0", COUNTERS_JOB}
        for job_id, seconds in (("rules-60s-0", 60), ("rules-300s-0", 300)):
            job = jobs[job_id]
            assert isinstance(job.trigger, IntervalTrigger)
            assert job.trigger.interval == timedelta(seconds=seconds)
            assert job.trigger.jitter == 5.0
            assert job.max_instances == 1 and job.coalesce is True
        assert [r.id for r in jobs["rules-60s-0"].args[0].rules] == ["a", "b"]
    finally:
        sched.shutdown(wait=False)


def test_a_rule_is_never_run_twice_at_once() -> None:
    clock, events = FakeClock(), EventLog()
    engine, _, _ = make_engine(events, clock)
    entered, release = threading.Event(), threading.Event()

    def blocking(es: Any, compiled: Any, window: Window, *, limit: int) -> MatchResult:
        entered.set()
        assert release.wait(10), "test did not release the first run"
        return MatchResult((), 0)

    engine.evaluator = blocking
    rule = rule_every("r-ssh", 60)
    results: list[RuleRun] = []
    first = threading.Thread(target=lambda: results.append(engine.run_rule(rule)))
    first.start()
    assert entered.wait(10)
    second = engine.run_rule(rule)
    assert second.skipped is not None and "still in progress" in second.skipped
    release.set()
    first.join(10)
    assert results and results[0].ok and results[0].skipped is None
    # another rule is not blocked by it
    entered.clear()
    engine.evaluator = events
    assert engine.run_rule(rule_every("other", 60)).ok


def test_group_run_isolates_a_crashing_rule_and_stops_when_asked() -> None:
    clock, events = FakeClock(), EventLog()
    events.add(T0 - timedelta(minutes=1), "e1")
    engine, _, _alerts = make_engine(events, clock)

    class CrashingEngine(DetectionEngine):
        def run_rule(self, rule: EngineRule, *, force: bool = False, **kw: Any) -> RuleRun:
            if rule.id == "crash":
                raise RuntimeError("bug outside the run's own isolation (test)")
            return super().run_rule(rule, force=force, **kw)

    engine.__class__ = CrashingEngine
    stop = threading.Event()
    sched = EngineScheduler(
        engine, [], jitter=0, stop_event=stop, scheduler=BackgroundScheduler(timezone=UTC)
    )
    group = RuleGroup("g", timedelta(minutes=1), (rule_every("crash", 60), rule_every("ok", 60)))
    runs = sched.run_group(group)
    assert [r.rule_id for r in runs] == ["ok"] and runs[0].alerts_created == 1
    stop.set()
    assert sched.run_group(group) == []


def test_a_batched_group_is_committed_together_and_a_conflict_stops_only_its_rule() -> None:
    from hcm_soc.detection.model import CompiledRule
    from tests.unit.detection.test_coverage import MemoryLedger

    clock, events = FakeClock(), EventLog()
    events.add(T0 - timedelta(minutes=2), "e1")
    engine, state, alerts = make_engine(events, clock)
    engine.ledger = ledger = MemoryLedger()
    rules = [
        EngineRule(
            make_rule(r), CompiledRule(make_rule(r), "", {}, ("events-1",)), "v1", timedelta(minutes=1)
        )
        for r in ("a", "b", "c")
    ]
    batches: list[int] = []

    def batch(es: Any, items: Any, *, limit: int) -> list[MatchResult]:
        batches.append(len(items))
        return [events(es, compiled.rule.id, window, limit=limit) for compiled, window in items]

    engine.batch_evaluator = batch
    saves_before = len(state.saves)

    def no_second_search(es: Any, compiled: Any, window: Window, *, limit: int) -> MatchResult:
        raise AssertionError("a batched rule must not search again")

    engine.evaluator = no_second_search
    # another engine commits rule b between this engine's batch and its group commit
    original = engine.state.save

    def save(st: Any, *, updated: datetime) -> Any:
        if st.health.rule_id == "b" and st.seq_no is None:
            original(
                st.model_copy(update={"health": st.health.model_copy(update={"runs": 9})}), updated=updated
            )
        return original(st, updated=updated)

    engine.state.save = save  # type: ignore[method-assign]
    runs = engine.run_group(rules)
    assert batches == [3] and engine.stats()["batched"] == 3
    by_id = {r.rule_id: r for r in runs}
    assert by_id["a"].ok and by_id["a"].skipped is None and by_id["a"].alerts_created == 1
    assert by_id["b"].skipped is not None and "another engine" in by_id["b"].skipped
    assert by_id["c"].ok and by_id["c"].alerts_created == 1
    assert len(state.saves) - saves_before == 3  # a, c, and the other engine's b
    assert state.health("b").runs == 9  # the newer state is left alone
    assert sorted(k[0] for k in ledger.docs) == ["a", "c"]  # only committed windows are in the ledger
    assert len(alerts.docs) == 3  # b's alert exists (deterministic id: the other engine's is the same)


def test_the_silent_source_check_is_a_job_and_a_crash_in_it_is_contained() -> None:
    engine, _, _ = make_engine(EventLog(), FakeClock())
    calls: list[datetime] = []

    def check(at: datetime) -> int:
        calls.append(at)
        if len(calls) == 2:
            raise RuntimeError("index missing")
        return 3

    sched = BackgroundScheduler(timezone=UTC)
    es = EngineScheduler(
        engine, [rule_every("a", 60)], jitter=0, scheduler=sched, silence=check, silence_every=120
    )
    es.add_jobs(first_run=datetime.now(UTC) + timedelta(hours=1))
    sched.start(paused=True)
    try:
        job = {j.id: j for j in sched.get_jobs()}[SILENCE_JOB]
        assert job.trigger.interval == timedelta(seconds=120) and job.max_instances == 1
    finally:
        sched.shutdown(wait=False)
    assert es.run_silence() == 3
    assert es.run_silence() == 0  # the failure is logged, not raised into the scheduler
    es.stop_event.set()
    assert es.run_silence() == 0 and len(calls) == 2  # a stopping engine runs no more checks
