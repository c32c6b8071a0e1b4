"""The running engine picks up console rules without a restart: the reload job adds a rule that
was enabled in the console (and runs it), and removes one that was switched off."""

from __future__ import annotations

import threading

from elasticsearch import Elasticsearch

from hcm_soc.config import Settings
from hcm_soc.detection.scheduler import start_engine
from hcm_soc.detection.workbench import RuleWorkbench
from hcm_soc.store.names import IndexNames
from tests.integration.rules_console.conftest import (
    CONSOLE_RULE_ID,
    FILE_RULE_ID,
    ROOT_LOGIN_RULE,
    Seeder,
    ssh_event,
    wait_until,
)

RELOAD_EVERY = 0.5


def alert_ids(es: Elasticsearch, names: IndexNames, rule_id: str) -> list[str]:
    es.indices.refresh(index=names.alerts, ignore_unavailable=True)
    resp = es.search(
        index=names.alerts, query={"term": {"hcm.rule.id": rule_id}}, size=100, ignore_unavailable=True
    )
    return [h["_id"] for h in resp["hits"]["hits"]]


def test_reload_job_adds_an_enabled_console_rule_and_removes_a_disabled_one(
    bench: RuleWorkbench, settings: Settings, es: Elasticsearch, installed: IndexNames, seed: Seeder
) -> None:
    settings = settings.model_copy(
        update={"detection": settings.detection.model_copy(update={"silence_check": False})}
    )
    bench.save(ROOT_LOGIN_RULE, author="admin")  # off: the engine must not run it yet
    seed("system.auth", [ssh_event("success", user="root")])
    stop = threading.Event()
    handle = start_engine(settings, es, installed, stop_event=stop, reload_every=RELOAD_EVERY)
    try:
        sched = handle.scheduler
        assert [r.id for r in handle.rules] == [FILE_RULE_ID]
        jobs_before = {j.id for j in sched.scheduler.get_jobs()}
        assert "rules-reload" in jobs_before

        bench.set_enabled(CONSOLE_RULE_ID, True, author="admin")
        # one reload period plus the time to load, compile and run: well under the deadline
        wait_until(lambda: CONSOLE_RULE_ID in {r.id for r in sched.rules}, 20, "the reload to add the rule")
        wait_until(
            lambda: len(alert_ids(es, installed, CONSOLE_RULE_ID)) == 1, 20, "the console rule's alert"
        )
        assert sched.scheduler.running  # no restart: the same scheduler

        bench.set_enabled(CONSOLE_RULE_ID, False, author="admin")
        wait_until(lambda: CONSOLE_RULE_ID not in {r.id for r in sched.rules}, 20, "the reload to remove it")
        job_rules = {
            r.id
            for j in sched.scheduler.get_jobs()
            if j.id.startswith("rules-") and j.args
            for r in j.args[0].rules
        }
        assert job_rules == {FILE_RULE_ID}
    finally:
        stop.set()
        assert handle.join(30), "the engine did not stop"
    assert len(alert_ids(es, installed, CONSOLE_RULE_ID)) == 1  # raised once, never again
