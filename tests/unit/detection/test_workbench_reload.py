"""Console rules in the loader (texts and overrides) and the scheduler's reload: jobs whose rules
changed are replaced, new ones added, gone ones removed, unchanged ones keep their schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from hcm_soc.detection.engine import EngineRule
from hcm_soc.detection.loader import RuleText, load_rules
from hcm_soc.detection.ruleset import console_path, console_rules
from hcm_soc.detection.scheduler import RELOAD_JOB, EngineScheduler
from hcm_soc.store.rules import StoredRule
from tests.unit.detection.test_engine_windows import EventLog, FakeClock, make_engine, make_rule

RULE = """\
title: {title}
id: 0d6f6f7e-3b5a-4e8a-9d57-0b2f8f1c4a10
status: test
logsource:
    product: linux
    service: sudo
detection:
    selection:
        message|contains: 'incorrect password attempt'
    condition: selection
level: medium
"""
RID = "0d6f6f7e-3b5a-4e8a-9d57-0b2f8f1c4a10"


def test_a_console_text_replaces_the_file_rule_with_its_id_quietly(tmp_path: Path) -> None:
    (tmp_path / "sudo.yml").write_text(RULE.format(title="From the file"), encoding="utf-8")
    label = console_path(RID)
    load = load_rules([tmp_path], texts=[RuleText(label, RULE.format(title="From the console"))])
    assert [(r.title, r.path, r.ruleset) for r in load.rules] == [("From the console", label, "console")]
    assert load.problems == []


def test_overrides_switch_rules_and_console_rules_are_off_until_enabled(tmp_path: Path) -> None:
    (tmp_path / "sudo.yml").write_text(RULE.format(title="From the file"), encoding="utf-8")
    assert load_rules([tmp_path], overrides={RID: False}).rules[0].enabled is False
    assert load_rules([tmp_path], overrides={}).rules[0].enabled is True
    docs = [StoredRule(id=RID, title="x", yaml=RULE.format(title="Console"), enabled=False)]
    console = console_rules(docs)
    assert console.overrides == {RID: False} and [t.path for t in console.texts] == [console_path(RID)]
    loaded = load_rules([tmp_path], texts=console.texts, overrides=console.overrides).rules
    assert [(r.title, r.enabled) for r in loaded] == [("Console", False)]
    override = console_rules([StoredRule(id=RID, enabled=False)])
    assert override.texts == () and override.overrides == {RID: False}


def rule(rule_id: str, version: str = "v1", seconds: float = 60) -> EngineRule:
    return EngineRule(make_rule(rule_id), rule_id, version, timedelta(seconds=seconds))


def test_replace_rules_touches_only_the_jobs_whose_rules_changed() -> None:
    engine, _, _ = make_engine(EventLog(), FakeClock())
    sched = BackgroundScheduler(timezone=UTC)
    es = EngineScheduler(
        engine, [rule("a"), rule("slow", seconds=300)], jitter=0, scheduler=sched, reload=lambda: None
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    es.add_jobs(first_run=later)
    sched.start(paused=True)  # the jobs are inspected, never run
    try:
        assert RELOAD_JOB in {j.id for j in sched.get_jobs()}
        counts = es.replace_rules([rule("a"), rule("b"), rule("c", seconds=120)])
        assert counts == {"added": 2, "removed": 1, "changed": 0}
        jobs = {j.id: j for j in sched.get_jobs()}
        assert "rules-300s-0" not in jobs
        assert [r.id for r in jobs["rules-60s-0"].args[0].rules] == ["a", "b"]
        assert jobs["rules-60s-0"].next_run_time < later  # changed group: runs now
        assert [r.id for r in jobs["rules-120s-0"].args[0].rules] == ["c"]

        es.replace_rules([rule("a"), rule("b"), rule("c", "v2", seconds=120)])
        jobs = {j.id: j for j in sched.get_jobs()}
        assert jobs["rules-120s-0"].args[0].rules[0].version == "v2"
        first = jobs["rules-60s-0"].next_run_time
        assert es.replace_rules([rule("a"), rule("b"), rule("c", "v2", seconds=120)]) == {
            "added": 0,
            "removed": 0,
            "changed": 0,
        }
        assert {j.id: j for j in sched.get_jobs()}["rules-60s-0"].next_run_time == first  # untouched
        assert [r.id for r in es.rules] == ["a", "b", "c"]
    finally:
        sched.shutdown(wait=False)


def test_a_failing_reload_keeps_the_current_rules() -> None:
    engine, _, _ = make_engine(EventLog(), FakeClock())

    def broken() -> list[EngineRule]:
        raise RuntimeError("Elasticsearch went away")

    es = EngineScheduler(
        engine, [rule("a")], jitter=0, scheduler=BackgroundScheduler(timezone=UTC), reload=broken
    )
    assert es.run_reload() is None
    assert [r.id for r in es.rules] == ["a"]
    unchanged = EngineScheduler(
        engine, [rule("a")], jitter=0, scheduler=BackgroundScheduler(timezone=UTC), reload=lambda: None
    )
    assert unchanged.run_reload() is None
