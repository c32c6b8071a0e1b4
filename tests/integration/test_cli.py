"""The `hcm-soc` command as a user runs it: exit codes, key phrases, the local node's lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from tests.conftest import free_port


def hcm(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HCM_SOC_")}
    return subprocess.run(
        [sys.executable, "-m", "hcm_soc.cli.main", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def external(es_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "HCM_SOC_ES_URL": es_url,
        "HCM_SOC_INDEX_PREFIX": f"cli{uuid.uuid4().hex[:8]}",
        "HCM_SOC_LOCAL_ES_STATE_DIR": str(tmp_path / "state"),
    }


def test_status_and_start_with_an_external_cluster(external: dict[str, str], tmp_path: Path) -> None:
    status = hcm("es", "status", env=external)
    assert status.returncode == 0, status.stderr
    assert "answers (Elasticsearch 8." in status.stdout
    start = hcm("es", "start", env=external)
    assert start.returncode == 0
    assert "no local node is managed" in start.stdout
    assert not (tmp_path / "state" / "elasticsearch").exists(), (
        "a local node was started although HCM_SOC_ES_URL is set"
    )


def test_init_json_then_nothing_to_do(external: dict[str, str], es: Elasticsearch) -> None:
    first = hcm("init", "--json", env=external)
    assert first.returncode == 0, first.stderr
    actions = {(r["kind"], r["name"]): r["action"] for r in json.loads(first.stdout)}
    prefix = external["HCM_SOC_INDEX_PREFIX"]
    assert actions[("index_template", f"{prefix}-events")] == "created"
    assert es.indices.exists(index=f"{prefix}-alerts")
    second = hcm("init", env=external)
    assert second.returncode == 0
    assert "0 of 18 items written; 18 already current" in second.stdout


def test_configuration_errors_exit_2_naming_the_setting(tmp_path: Path) -> None:
    r = hcm("init", env={"HCM_SOC_ES_URL": "es.local:9200", "HCM_SOC_BULK_MAX_DOCS": "-1"})
    assert r.returncode == 2
    assert "HCM_SOC_ES_URL" in r.stderr and "expected an http(s) URL" in r.stderr
    assert "bulk.max_docs" in r.stderr


def test_unreachable_cluster_exits_3(tmp_path: Path) -> None:
    r = hcm("es", "status", env={"HCM_SOC_ES_URL": f"http://127.0.0.1:{free_port()}"})
    assert r.returncode == 3
    assert "does not answer" in r.stderr


@pytest.mark.slow
def test_local_node_lifecycle_and_demo(tmp_path: Path) -> None:
    env = {
        "HCM_SOC_LOCAL_ES_STATE_DIR": str(tmp_path / "state"),
        "HCM_SOC_LOCAL_ES_PORT": str(free_port()),
        "HCM_SOC_LOCAL_ES_HEAP": "512m",
        "HCM_SOC_INDEX_PREFIX": "clidemo",
    }
    port = env["HCM_SOC_LOCAL_ES_PORT"]
    before = hcm("es", "status", env=env)
    assert before.returncode == 3 and "not running" in before.stdout
    try:
        started = hcm("es", "start", env=env)
        assert started.returncode == 0, started.stderr
        assert f"local Elasticsearch started: http://127.0.0.1:{port}" in started.stdout
        again = hcm("es", "start", env=env)
        assert "already running" in again.stdout
        status = hcm("es", "status", "--json", env=env)
        assert status.returncode == 0
        info = json.loads(status.stdout)
        assert info["answering"] and info["health"] in ("green", "yellow") and info["pid"] > 0

        demo = hcm("demo", "--json", env=env)
        assert demo.returncode == 0, demo.stderr
        report = json.loads(demo.stdout)
        assert report["es_version"].startswith("8.")
        network = sum(report["network"].values())
        assert report["network"]["network.flow"] > 300 and report["network"]["network.dns"] > 80
        assert report["writer"]["sent"] == report["events_in_sample"] + network
        assert report["events_in_sample"] > 100
        logs = {"network.firewall": 30, "nginx.access": 57, "system.auth": 48}
        assert report["counts"] == {**logs, **report["network"]}
        assert report["parse_failures"] == 0
        assert report["ssh_failures_by_source"][0] == ["203.0.113.45", 40]
        assert report["latest_ingested"]
        # the engine ran the city rules once: the attacks in the bundled logs and capture are found
        assert report["rules_failed"] == 0 and report["rules_loaded"] > 15
        found = {(rule, who) for _, _, rule, who, _, _ in report["alerts"]}
        assert ("SSH Brute Force From One Source", "203.0.113.45") in found
        assert ("Port Scan From One Source", "203.0.113.66") in found
        assert ("SQL Injection Attempt On A City Portal", "198.51.100.23") in found
        assert report["alerts_created"] == sum(n for *_, n, _ in report["alerts"])
        rerun = json.loads(hcm("demo", "--json", env=env).stdout)
        assert rerun["writer"]["sent"] == 0
        assert rerun["writer"]["duplicates"] == report["events_in_sample"] + network
        assert rerun["counts"] == report["counts"]
        assert rerun["alerts_created"] == 0 and rerun["alerts"] == report["alerts"]
    finally:
        stopped = hcm("es", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    after = hcm("es", "status", env=env)
    assert after.returncode == 3


def test_ingest_files_twice_stores_once(external: dict[str, str], tmp_path: Path, es: Elasticsearch) -> None:
    log = tmp_path / "auth.log"
    log.write_text(
        "Nov 25 10:00:01 sotttt-web01 sshd[811]: Failed password for root from 203.0.113.45 port 50000 ssh2\n"
        "Nov 25 10:00:02 sotttt-web01 sshd[811]: Accepted password for nguyễn.văn.an from 10.10.1.5 port 50001 ssh2\n"
        "\x00\x01 not syslog at all\n",
        encoding="utf-8",
    )
    first = hcm("ingest", "--format", "syslog", "--dataset", "system.auth", "--json", str(log), env=external)
    assert first.returncode == 0, first.stderr
    counters = json.loads(first.stdout)
    assert (counters["parsed"], counters["parse_failures"], counters["sent"]) == (2, 1, 3)
    again = hcm("ingest", "--format", "syslog", "--dataset", "system.auth", str(log), env=external)
    assert again.returncode == 0, again.stderr
    assert "sent 0, already stored 3" in again.stdout
    index = f"{external['HCM_SOC_INDEX_PREFIX']}-events-system.auth-default"
    es.indices.refresh(index=index)
    assert es.count(index=index)["count"] == 3
    failed = es.search(index=index, query={"term": {"tags": "_parse_failure"}})["hits"]["hits"]
    assert [h["_source"]["event"]["original"] for h in failed] == ["\x00\x01 not syslog at all"]
    ok = es.search(index=index, query={"term": {"user.name": "nguyễn.văn.an"}})["hits"]["hits"]
    assert ok and ok[0]["_source"]["event"]["outcome"] == "success"


def test_ingest_rejects_an_unknown_format(external: dict[str, str], tmp_path: Path) -> None:
    r = hcm("ingest", "--format", "cef", str(tmp_path), env=external)
    assert r.returncode == 2
    assert "expected one of" in r.stderr and "syslog" in r.stderr


def test_ingest_evtx_recordings(external: dict[str, str], es: Elasticsearch) -> None:
    corpus = Path(
        os.environ.get(
            "HCM_SOC_EVTX_DIR", Path(__file__).resolve().parents[3] / "shared/corpus/evtx-attack-samples"
        )
    )
    files = sorted(corpus.glob("Execution/*.evtx"))[:3]
    if not files:
        pytest.skip(f"EVTX corpus not found at {corpus} (set HCM_SOC_EVTX_DIR)")
    r = hcm("ingest", "--format", "evtx", "--json", *map(str, files), env=external)
    assert r.returncode == 0, r.stderr
    counters = json.loads(r.stdout)
    assert counters["parsed"] > 0 and counters["parse_failures"] == 0
    index = counters["index"]
    es.indices.refresh(index=index)
    assert es.count(index=index)["count"] == counters["sent"] > 0
    doc = es.search(index=index, size=1)["hits"]["hits"][0]["_source"]
    assert doc["winlog"]["channel"] and doc["event"]["code"] and doc["host"]["name"]
    again = json.loads(hcm("ingest", "--format", "evtx", "--json", *map(str, files), env=external).stdout)
    assert again["sent"] == 0 and again["duplicates"] == counters["sent"]
