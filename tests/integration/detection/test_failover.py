"""Engine failover with two real `hcm-soc engine run` processes on one prefix: one holds the lease, the
other waits; kill -9 of the active one mid-cycle hands over within lease_ttl + lease_renew, and
afterwards every rule's ledger has no hole and no overlap and no alert exists twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from hcm_soc.detection.coverage import report
from hcm_soc.store.detection_state import CoverageLedger, DetectionStateStore
from hcm_soc.store.lease import LeaseStore
from hcm_soc.store.names import IndexNames
from tests.integration.detection.conftest import SSH_FAILED_RULE, Seeder, ssh_event
from tests.integration.detection.test_scheduling import wait_until

ROOT = Path(__file__).resolve().parents[3]
TTL, RENEW = 3.0, 1.0
BIG = 1500
RULE_IDS = [f"5b0c6e43-6a3d-4d4b-9a57-1f0d3c2a9e0{n}" for n in range(1, 5)]


def rules(rule_dir: Callable[..., Path]) -> Path:
    # four rules on the same events: a cycle has several rules to be in the middle of
    files = {f"ssh{n}.yml": SSH_FAILED_RULE.replace(RULE_IDS[0], rid) for n, rid in enumerate(RULE_IDS)}
    return rule_dir("city", files)


def start(folder: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hcm_soc.cli.main", "engine", "run", "--rules", str(folder)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def holder(es: Elasticsearch, names: IndexNames) -> str | None:
    record = LeaseStore(es, names).read("engine")
    if record is None or record.expired(datetime.now(UTC)):
        return None
    return record.holder


def match_keys(es: Elasticsearch, names: IndexNames) -> list[str]:
    es.indices.refresh(index=names.alerts, ignore_unavailable=True)
    resp = es.search(
        index=names.alerts,
        size=10_000,
        query={"match_all": {}},
        source=["rule.id", "hcm.match_key"],
        ignore_unavailable=True,
    )
    return [f"{h['_source']['rule']['id']}:{h['_source']['hcm']['match_key']}" for h in resp["hits"]["hits"]]


def alert_count(es: Elasticsearch, names: IndexNames) -> int:
    es.indices.refresh(index=names.alerts, ignore_unavailable=True)
    return int(es.count(index=names.alerts, ignore_unavailable=True)["count"])


def test_killing_the_active_engine_hands_over_without_hole_overlap_or_duplicate(
    es: Elasticsearch, es_url: str, installed: IndexNames, seed: Seeder, rule_dir: Callable[..., Path]
) -> None:
    folder = rules(rule_dir)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HCM_SOC_")},
        "HCM_SOC_ES_URL": es_url,
        "HCM_SOC_INDEX_PREFIX": installed.prefix,
        "HCM_SOC_INDEX_NAMESPACE": installed.namespace,
        "HCM_SOC_DETECTION_INTERVAL": "0.5",
        "HCM_SOC_DETECTION_SAFETY_MARGIN": "2",  # events become searchable at the next refresh (1 s)
        "HCM_SOC_DETECTION_JITTER": "0",
        "HCM_SOC_DETECTION_LEASE_TTL": str(TTL),
        "HCM_SOC_DETECTION_LEASE_RENEW": str(RENEW),
        "HCM_SOC_DETECTION_BACKFILL_EVERY": "1",
        "HCM_SOC_DETECTION_MAX_ALERTS_PER_RUN": "5000",
    }
    procs: list[subprocess.Popen[str]] = []
    try:
        first = start(folder, env)
        procs.append(first)
        wait_until(
            lambda: holder(es, installed) is not None or first.poll() is not None, 60, "a lease holder"
        )
        assert first.poll() is None, first.communicate()[1]
        second = start(folder, env)
        procs.append(second)
        active = holder(es, installed)
        assert active is not None and active.endswith(f":{first.pid}")

        seeded = seed("system.auth", [ssh_event(ip=f"203.0.113.{i}") for i in range(1, 21)])
        expected = {f"{r}:{i}" for r in RULE_IDS for i in seeded}
        wait_until(lambda: set(match_keys(es, installed)) == expected, 60, "the first engine's alerts")

        # a big batch (each rule writes its alerts for a while), then kill -9 once the first engine has
        # started on it and before it has finished: in the middle of a cycle
        before = len(expected)
        seeded += seed("system.auth", [ssh_event(ip=f"10.{i // 250}.{i % 250}.1") for i in range(BIG)])
        wait_until(lambda: before < alert_count(es, installed) < len(RULE_IDS) * len(seeded), 60, "mid-cycle")
        first.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        first.wait(10)
        wait_until(
            lambda: (h := holder(es, installed)) is not None and h.endswith(f":{second.pid}"),
            TTL + RENEW + 20,
            "the standby to take over",
        )
        took_over = time.monotonic() - killed
        # bounded: the lease lapses TTL after the last renewal; the standby polls every RENEW
        # (plus scheduling slack on a busy 2-core machine)
        assert took_over <= TTL + RENEW + 5, took_over

        seeded += seed("system.auth", [ssh_event(ip=f"192.0.2.{i}") for i in range(1, 11)])
        expected = {f"{r}:{i}" for r in RULE_IDS for i in seeded}
        wait_until(lambda: set(match_keys(es, installed)) == expected, 60, "every alert after the take-over")

        ledger, states = CoverageLedger(es, installed), DetectionStateStore(es, installed)

        def complete() -> bool:
            ledger.refresh()
            since = datetime.now(UTC) - timedelta(hours=2)
            for rid in RULE_IDS:
                h = states.load(rid).health
                r = report(rid, ledger.entries(rid), since=since, until=h.checkpoint, start=h.coverage_start)
                if r.holes or r.overlaps or not r.entries:
                    return False
            return True

        # a kill between a checkpoint and its ledger entry leaves a hole the new engine back-fills
        wait_until(complete, 30, "contiguous ledgers")
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=30)
        assert second.returncode == 0, stderr
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    keys = match_keys(es, installed)
    assert len(keys) == len(set(keys)) == len(RULE_IDS) * len(seeded)  # no alert twice
    engines: set[Any] = set()
    for rid in RULE_IDS:
        engines |= {e.engine_id for e in ledger.entries(rid)}
    assert any(e.endswith(f":{second.pid}") for e in engines)
