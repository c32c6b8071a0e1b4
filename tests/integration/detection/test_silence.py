"""The silent-source check on the real Elasticsearch, with crafted ingest histories.

`event.ingested` is stamped by the events' final ingest pipeline at index time; to craft a
history of past ingest times the test turns that pipeline off on its own backing indices (the
mapping, data streams and queries stay the real ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.config import load_settings
from hcm_soc.detection.compiler import RuleCompiler
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.silence import RULE_ID, SilentSourceCheck, run_silence_check
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.names import IndexNames
from tests.integration.detection.conftest import SSH_FAILED_RULE, ssh_event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SSH_RULE_ID = "5b0c6e43-6a3d-4d4b-9a57-1f0d3c2a9e01"
WINDOWS_RULE = """\
title: Whoami run
id: 22222222-0000-4000-8000-000000000001
status: test
level: high
logsource:
    product: windows
    category: process_creation
detection:
    sel:
        Image|endswith: '\\\\whoami.exe'
    condition: sel
"""


def history(
    es: Elasticsearch, names: IndexNames, dataset: str, docs: list[tuple[datetime, dict[str, Any]]]
) -> None:
    """Store events with the given ingest times in the real data stream of `dataset`."""
    stream = names.events(dataset)
    if not es.indices.exists(index=stream):
        # this node has no create-data-stream API: the first document creates the stream, and goes
        first = es.index(
            index=stream, op_type="create", document={"@timestamp": datetime.now(UTC).isoformat()}
        )
        es.indices.put_settings(index=stream, settings={"index": {"final_pipeline": "_none"}})
        es.delete(index=first["_index"], id=first["_id"], refresh="wait_for")
    ops: list[dict[str, Any]] = []
    for ingested, doc in docs:
        body = {**doc, "@timestamp": ingested.isoformat()}
        body["event"] = {**body.get("event", {}), "dataset": dataset, "ingested": ingested.isoformat()}
        ops += [{"create": {"_index": stream, "_id": uuid.uuid4().hex}}, body]
    resp = es.bulk(operations=ops, refresh="wait_for")
    assert not resp["errors"], [i for i in resp["items"] if i["create"].get("error")][:3]


def every(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    out = []
    t = start
    while t <= end:
        out.append(t)
        t += step
    return out


@pytest.fixture
def rules_dir(rule_dir: Callable[..., Path]) -> Path:
    return rule_dir("silence", {"ssh.yml": SSH_FAILED_RULE, "win.yml": WINDOWS_RULE})


@pytest.fixture
def compiled(installed: IndexNames, rules_dir: Path) -> list[Any]:
    load = load_rules([rules_dir])
    out, problems = RuleCompiler(installed).compile_all(load.rules)
    assert not problems
    return out


def test_stopped_source_alerts_once_naming_blind_rules(
    es: Elasticsearch, installed: IndexNames, compiled: list[Any]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=24)
    stopped = every(start, now - timedelta(hours=2), timedelta(minutes=5))
    steady = every(start, now - timedelta(minutes=1), timedelta(minutes=5))
    sparse = every(now - timedelta(hours=67), now - timedelta(hours=1), timedelta(hours=6))
    history(es, installed, "system.auth", [(t, ssh_event(host="web01")) for t in stopped])
    history(es, installed, "system.auth", [(t, ssh_event(host="web02")) for t in steady])
    history(
        es, installed, "system.syslog", [(t, {"host": {"name": "sparse01"}, "message": "x"}) for t in sparse]
    )

    check = SilentSourceCheck(es, installed, compiled)
    states = {(s.dataset, s.host): s for s in check.assess(now)}
    assert set(states) == {("system.auth", "web01"), ("system.auth", "web02"), ("system.syslog", "sparse01")}
    web01 = states[("system.auth", "web01")]
    assert web01.silent and web01.threshold == timedelta(minutes=15)
    assert web01.blind_rules == (SSH_RULE_ID,)  # the Windows rule never read this source
    assert not states[("system.auth", "web02")].silent
    sparse01 = states[("system.syslog", "sparse01")]
    assert not sparse01.silent and sparse01.threshold >= timedelta(hours=18)

    alerts = check.run(now)
    assert check.last_created == 1 and [a.host.name for a in alerts if a.host] == ["web01"]
    store = AlertStore(es, installed)
    store.refresh()
    [stored] = store.search(rule_id=RULE_ID)
    assert stored.rule.ruleset == "built-in" and stored.hcm.group is not None
    assert stored.hcm.group["blind_rules"] == [SSH_RULE_ID]
    assert "SSH failed password" in stored.message and "web01" in stored.message
    assert stored.hcm.window.start == web01.last_seen

    # the same silence, checked again later: the same alert, nothing new
    assert (
        run_silence_check(es, installed, load_settings(env={}), now + timedelta(minutes=10), rules=compiled)
        == 0
    )

    # web01 resumes: not silent any more, no alert
    history(es, installed, "system.auth", [(now, ssh_event(host="web01"))])
    later = now + timedelta(minutes=1)
    assert not {(s.dataset, s.host): s for s in check.assess(later)}[("system.auth", "web01")].silent
    check.run(later)
    assert check.last_created == 0
    store.refresh()
    assert store.count(rule_id=RULE_ID) == 1


def test_cli_silent_sources(es: Elasticsearch, es_url: str, installed: IndexNames, rules_dir: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    stopped = every(now - timedelta(hours=6), now - timedelta(hours=1), timedelta(minutes=10))
    history(es, installed, "system.auth", [(t, ssh_event(host="db01")) for t in stopped])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HCM_SOC_")},
        "HCM_SOC_ES_URL": es_url,
        "HCM_SOC_INDEX_PREFIX": installed.prefix,
        "HCM_SOC_INDEX_NAMESPACE": installed.namespace,
        "HCM_SOC_PATHS_RULES": str(rules_dir),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "hcm_soc.cli.main", "rules", "silent-sources", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr  # a silent source is a finding
    [state] = json.loads(proc.stdout)
    assert state["host"] == "db01" and state["status"] == "silent" and state["blind_rules"] == [SSH_RULE_ID]
    assert AlertStore(es, installed).count(rule_id=RULE_ID) == 0  # showing the state raises nothing
