"""Scheduling against real Elasticsearch: restart, late events, outage catch-up in chunks, failed
runs and retries, the APScheduler loop, and `hcm-soc engine run --once`."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from hcm_soc.config import DetectionSettings, Settings
from hcm_soc.detection.engine import DetectionEngine, EngineRule, evaluate, floor_ms
from hcm_soc.detection.model import MatchResult, Window
from hcm_soc.detection.scheduler import start_engine
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.detection_state import DetectionStateStore, RuleHealth, RuleState
from hcm_soc.store.names import IndexNames
from tests.conftest import free_port
from tests.integration.detection.conftest import SSH_FAILED_RULE, Seeder, ssh_event
from tests.integration.detection.test_engine import RULE_ID, load


def alert_keys(es: Elasticsearch, names: IndexNames) -> list[str]:
    store = AlertStore(es, names)
    store.refresh()
    return sorted(a.hcm.match_key for a in store.search(rule_id=RULE_ID, size=1000))


def set_checkpoint(es: Elasticsearch, names: IndexNames, checkpoint: datetime) -> None:
    DetectionStateStore(es, names).save(
        RuleState(health=RuleHealth(rule_id=RULE_ID, checkpoint=checkpoint, status="ok")), updated=checkpoint
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)  # polling a condition with a deadline, not waiting for Elasticsearch blindly


def test_restart_resumes_from_the_stored_checkpoint_exactly_once(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    folder = rule_dir("city", {"ssh.yml": SSH_FAILED_RULE})
    first_batch = seed("system.auth", [ssh_event(ip=f"203.0.113.{i}") for i in range(1, 4)])
    (rule,) = load(folder, installed)
    assert make_engine().run_rule(rule).alerts_created == 3
    # the engine stops; more events arrive while it is down; a new process starts from the YAML again
    second_batch = seed("system.auth", [ssh_event(ip=f"198.51.100.{i}") for i in range(1, 3)])
    (rule_again,) = load(folder, installed)
    run = make_engine().run_rule(rule_again)
    assert (run.alerts_created, run.duplicates) == (2, 0)
    assert make_engine().run_rule(rule_again).matches == 0
    assert alert_keys(es, installed) == sorted(first_batch + second_batch)


def test_late_event_with_an_old_timestamp_is_seen_exactly_once(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    (rule,) = load(rule_dir("city", {"ssh.yml": SSH_FAILED_RULE}), installed)
    engine = make_engine(initial_lookback=60)
    assert engine.run_rule(rule).matches == 0
    # a relay held this event for three days: its @timestamp is far before the checkpoint
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    (late,) = seed("system.auth", [ssh_event(timestamp=three_days_ago)])
    run = engine.run_rule(rule)
    assert run.alerts_created == 1
    assert engine.run_rule(rule).matches == 0
    assert alert_keys(es, installed) == [late]
    alert = AlertStore(es, installed).search(rule_id=RULE_ID)[0]
    assert alert.hcm.first_seen is not None and alert.hcm.first_seen < datetime.now(UTC) - timedelta(days=2)


def test_outage_is_caught_up_in_bounded_chunks(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    (rule,) = load(rule_dir("city", {"ssh.yml": SSH_FAILED_RULE}), installed)
    down_since = floor_ms(datetime.now(UTC) - timedelta(hours=5))
    set_checkpoint(es, installed, down_since)  # the last run before a five-hour outage
    ids = seed("system.auth", [ssh_event(ip="203.0.113.50"), ssh_event(ip="203.0.113.51")])
    windows: list[Window] = []

    def recording(es: Elasticsearch, compiled: Any, window: Window, *, limit: int) -> MatchResult:
        windows.append(window)
        return evaluate(es, compiled, window, limit=limit)

    run = make_engine(evaluator=recording, max_chunk=3600).run_rule(rule)
    assert run.ok and run.chunks == len(windows) == 6  # five full hours and the minutes since
    assert windows[0].start == down_since
    assert all(w.end - w.start <= timedelta(hours=1) for w in windows)
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert run.alerts_created == 2 and alert_keys(es, installed) == sorted(ids)
    health = DetectionStateStore(es, installed).health(RULE_ID)
    assert health is not None and health.checkpoint == windows[-1].end
    assert health.gaps_detected == 1 and "older than expected" in (health.last_gap or "")


def test_failed_run_keeps_its_checkpoint_backs_off_and_the_retry_alerts_once(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    (rule,) = load(rule_dir("city", {"ssh.yml": SSH_FAILED_RULE}), installed)
    since = floor_ms(datetime.now(UTC) - timedelta(hours=2, minutes=30))
    set_checkpoint(es, installed, since)
    ids = seed("system.auth", [ssh_event(ip="203.0.113.60")])
    calls = {"n": 0}

    def fails_on_third_chunk(es: Elasticsearch, compiled: Any, window: Window, *, limit: int) -> MatchResult:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("Elasticsearch went away (test)")
        return evaluate(es, compiled, window, limit=limit)

    failed = make_engine(evaluator=fails_on_third_chunk, max_chunk=3600).run_rule(rule)
    assert failed.error is not None and "went away" in failed.error and failed.chunks == 2
    state = DetectionStateStore(es, installed)
    health = state.health(RULE_ID)
    assert health is not None and health.checkpoint == since + timedelta(hours=2)
    assert health.status == "failing" and health.consecutive_failures == 1 and health.next_retry is not None
    assert alert_keys(es, installed) == []

    engine = make_engine(max_chunk=3600)
    assert engine.run_rule(rule).skipped is not None  # still backing off
    retried = engine.run_rule(rule, force=True)  # what --once does
    assert retried.ok and retried.window is not None and retried.window.start == since + timedelta(hours=2)
    assert make_engine().run_rule(rule).matches == 0
    assert alert_keys(es, installed) == ids
    health = state.health(RULE_ID)
    assert health is not None and health.status == "ok" and health.consecutive_failures == 0


def test_scheduler_runs_rules_on_their_interval_until_stopped(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
) -> None:
    rules: list[EngineRule] = load(rule_dir("city", {"ssh.yml": SSH_FAILED_RULE}), installed)
    rules = [EngineRule(r.rule, r.compiled, r.version, timedelta(seconds=0.5)) for r in rules]
    # runs overlap with seeding here: the safety margin must exceed the refresh interval (1 s), else a run
    # could pass an event's event.ingested before a refresh made the event searchable
    settings = Settings(
        detection=DetectionSettings(interval=0.5, jitter=0, safety_margin=3, initial_lookback=600)
    )
    first = seed("system.auth", [ssh_event(ip="203.0.113.70"), ssh_event(ip="203.0.113.71")])
    stop = threading.Event()
    handle = start_engine(settings, es, installed, stop_event=stop, rules=rules)
    try:
        wait_until(lambda: alert_keys(es, installed) == sorted(first), 30, "the first two alerts")
        second = seed("system.auth", [ssh_event(ip="203.0.113.72")])
        wait_until(lambda: alert_keys(es, installed) == sorted(first + second), 30, "the third alert")
        state = DetectionStateStore(es, installed)
        runs_then = state.health(RULE_ID).runs  # type: ignore[union-attr]
        wait_until(lambda: state.health(RULE_ID).runs >= runs_then + 2, 30, "two more runs")  # type: ignore[union-attr]
        assert alert_keys(es, installed) == sorted(first + second)  # more runs, no duplicates
    finally:
        stop.set()
        assert handle.join(30), "the engine did not stop"
    assert not handle.scheduler.scheduler.running
    stats = handle.engine.stats()
    assert stats["alerts_created"] == 3 and stats["failures"] == 0 and stats["runs"] >= 4


def _hcm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HCM_SOC_")}
    return subprocess.run(
        [sys.executable, "-m", "hcm_soc.cli.main", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_engine_run_once_command(
    es: Elasticsearch,
    es_url: str,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
) -> None:
    good = rule_dir("city", {"ssh.yml": SSH_FAILED_RULE})
    env = {
        "HCM_SOC_ES_URL": es_url,
        "HCM_SOC_INDEX_PREFIX": installed.prefix,
        "HCM_SOC_INDEX_NAMESPACE": installed.namespace,
        "HCM_SOC_DETECTION_SAFETY_MARGIN": "0",
    }
    ids = seed("system.auth", [ssh_event(ip="203.0.113.80")])
    first = _hcm("engine", "run", "--once", "--json", "--rules", str(good), env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["rules_run"], summary["alerts_created"], summary["rules_failed"]) == (1, 1, 0)
    assert summary["runs"][0]["rule_id"] == RULE_ID
    assert alert_keys(es, installed) == ids

    broken = rule_dir("broken", {"bad.yml": "title: no detection\nid: not-a-uuid\nlogsource: {}\n"})
    second = _hcm("engine", "run", "--once", "--rules", str(good), "--rules", str(broken), env=env)
    assert second.returncode == 1, second.stderr
    assert "rule skipped:" in second.stderr and "bad.yml" in second.stderr
    assert "0 alert(s) created" in second.stdout and "0 failed" in second.stdout
    assert "rule problem(s)" in second.stdout and "0 rule problem(s)" not in second.stdout

    down = _hcm(
        "engine",
        "run",
        "--once",
        "--rules",
        str(good),
        env={**env, "HCM_SOC_ES_URL": f"http://127.0.0.1:{free_port()}"},
    )
    assert down.returncode == 3 and "Elasticsearch did not answer" in down.stderr


def test_engine_run_command_runs_until_sigterm(
    es: Elasticsearch,
    es_url: str,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
) -> None:
    good = rule_dir("city", {"ssh.yml": SSH_FAILED_RULE})
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HCM_SOC_")},
        "HCM_SOC_ES_URL": es_url,
        "HCM_SOC_INDEX_PREFIX": installed.prefix,
        "HCM_SOC_INDEX_NAMESPACE": installed.namespace,
        "HCM_SOC_DETECTION_INTERVAL": "0.5",
        "HCM_SOC_DETECTION_SAFETY_MARGIN": "3",
        "HCM_SOC_DETECTION_JITTER": "0",
    }
    ids = seed("system.auth", [ssh_event(ip="203.0.113.90")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "hcm_soc.cli.main", "engine", "run", "--rules", str(good)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: alert_keys(es, installed) == ids or proc.poll() is not None, 60, "the alert")
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "engine running" in stderr and "engine stopped" in stderr
    assert alert_keys(es, installed) == ids
