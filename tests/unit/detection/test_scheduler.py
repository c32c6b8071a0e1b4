"""The scheduler around the engine: grouping, job options, one run per rule at a time, stopping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from hcm_soc.detection.engine import DetectionEngine, EngineRule, RuleRun
from hcm_soc.detection.model import MatchResult, Window
from hcm_soc.detection.scheduler import COUNTERS_JOB, EngineScheduler, RuleGroup, group_rules
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
        def run_rule(self, rule: EngineRule, *, force: bool = False) -> RuleRun:
            if rule.id == "crash":
                raise RuntimeError("bug outside the run's own isolation (test)")
            return super().run_rule(rule, force=force)

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
