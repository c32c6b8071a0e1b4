"""`hcm-soc rules ...` as an administrator runs it: exit codes, key phrases, JSON, the real Elasticsearch.

Every command runs in a subprocess (`python -m hcm_soc.cli.main`) with HCM_SOC_ES_URL set to
the test cluster and a unique HCM_SOC_INDEX_PREFIX, from the repository root so that the
default rule folder is the city's `rules/`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from elasticsearch import Elasticsearch

from hcm_soc.store.names import IndexNames
from tests.conftest import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "rules"
SUDO_FAILURES = "aef19ec3-3d93-4dfc-8e30-36f07e2a3a8c"
SSH_BRUTE_FORCE = "f7b2c3e1-5f45-4252-a793-033944e6b11c"
SQL_INJECTION = "dfc56350-c768-45e3-97da-91039d49aea0"
POWERSHELL_ENC = "42f589e8-8d23-4da0-8791-ed915a44a22b"


def hcm(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HCM_SOC_")}
    return subprocess.run(
        [sys.executable, "-m", "hcm_soc.cli.main", *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def env(es_url: str, es: Elasticsearch, tmp_path: Path) -> Iterator[dict[str, str]]:
    from hcm_soc.store.templates import uninstall

    prefix = f"rc{uuid.uuid4().hex[:8]}"
    yield {
        "HCM_SOC_ES_URL": es_url,
        "HCM_SOC_INDEX_PREFIX": prefix,
        "HCM_SOC_LOCAL_ES_STATE_DIR": str(tmp_path / "state"),
    }
    uninstall(es, IndexNames(prefix=prefix))


# -- validate -------------------------------------------------------------------------------------------
def test_validate_the_city_rules_is_clean(env: dict[str, str]) -> None:
    r = hcm("rules", "validate", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 problem(s)" in r.stdout
    assert "28 rule(s) loaded: 28 valid" in r.stdout


def test_validate_reports_every_problem_and_keeps_good_rules(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(ROOT / "rules" / "linux" / "sudo_failures.yml", folder / "good.yml")
    (folder / "broken.yml").write_text("title: Broken\nid: [unclosed\n", encoding="utf-8")
    (folder / "nosource.yml").write_text(
        "title: Mainframe Logon\nid: 0c0e1e8e-8a4a-4b5e-9d55-3b0a4f4f0001\nstatus: test\n"
        "logsource:\n  product: zos\n  service: racf\ndetection:\n  sel:\n    user: ibmuser\n"
        "  condition: sel\nlevel: low\n",
        encoding="utf-8",
    )
    (folder / "dangling.yml").write_text(
        "title: Dangling Correlation\nid: 0c0e1e8e-8a4a-4b5e-9d55-3b0a4f4f0002\nstatus: test\n"
        "correlation:\n  type: event_count\n  rules:\n    - no_such_rule\n  group-by:\n    - source.ip\n"
        "  timespan: 5m\n  condition:\n    gte: 3\nlevel: low\n",
        encoding="utf-8",
    )
    r = hcm("rules", "validate", str(folder), env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith(f"{folder / 'broken.yml'}") for line in lines), r.stdout
    nosource = [line for line in lines if "nosource.yml" in line]
    assert nosource and "0c0e1e8e-8a4a-4b5e-9d55-3b0a4f4f0001 'Mainframe Logon': " in nosource[0]
    assert "no hcm-soc data source for product=zos" in nosource[0]
    assert any("dangling.yml" in line and "no_such_rule" in line for line in lines), r.stdout
    assert "valid" in lines[-1] and "problem(s)" in lines[-1]

    j = hcm("rules", "validate", str(folder), "--json", env=env)
    assert j.returncode == 1
    report = json.loads(j.stdout)
    files = {Path(p["file"]).name for p in report["problems"]}
    assert {"broken.yml", "nosource.yml", "dangling.yml"} <= files
    assert "good.yml" not in files
    assert report["valid"] >= 1


# -- list / convert -------------------------------------------------------------------------------------
def test_list_shows_every_city_rule(env: dict[str, str]) -> None:
    r = hcm("rules", "list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in json.loads(r.stdout)}
    assert len(rows) == 28
    assert rows[SSH_BRUTE_FORCE]["kind"] == "correlation"
    assert rows[SUDO_FAILURES]["logsource"] == {"product": "linux", "category": None, "service": "sudo"}
    assert {row["ruleset"] for row in rows.values()} == {"city"}
    beacon = next(row for row in rows.values() if row["title"].startswith("Possible Beaconing"))
    assert beacon["interval"] == "5m" and beacon["interval_default"] is False
    assert rows[SUDO_FAILURES]["interval"] == "1m" and rows[SUDO_FAILURES]["interval_default"] is True

    table = hcm("rules", "list", env=env)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "TITLE", "STATUS"]
    assert "linux/*/sudo" in table.stdout


def test_convert_prints_what_sigma_cli_prints(env: dict[str, str]) -> None:
    ours = hcm("rules", "convert", SUDO_FAILURES, env=env)
    assert ours.returncode == 0, ours.stderr
    sigma = shutil.which("sigma", path=str(Path(sys.executable).parent))
    assert sigma is not None, "sigma-cli is a dependency of the project"
    theirs = subprocess.run(
        [sigma, "convert", "-t", "lucene", "-p", "hcm_soc", "rules/linux/sudo_failures.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert ours.stdout.strip() == theirs.stdout.strip().splitlines()[-1]
    assert "process.name.caseless:sudo" in ours.stdout

    j = hcm("rules", "convert", "rules/linux/sudo_failures.yml", "--json", env=env)
    assert j.returncode == 0, j.stderr
    doc = json.loads(j.stdout)
    assert doc["lucene"] == ours.stdout.strip()
    assert doc["indices"] == [f"{env['HCM_SOC_INDEX_PREFIX']}-events-*"]
    assert doc["query"]["query_string"]["query"] == doc["lucene"]


def test_convert_a_correlation_shows_its_rules(env: dict[str, str]) -> None:
    r = hcm("rules", "convert", "SSH Brute Force From One Source", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"# correlation {SSH_BRUTE_FORCE}")
    assert "event_count" in r.stdout and "hcm_ssh_failed_login" in r.stdout
    assert "event.action.caseless:ssh_login" in r.stdout


def test_convert_unknown_rule_exits_2_with_a_hint(env: dict[str, str]) -> None:
    r = hcm("rules", "convert", "sudo refused", env=env)
    assert r.returncode == 2
    assert "no rule with the id, name or title 'sudo refused'" in r.stderr
    assert SUDO_FAILURES in r.stderr  # the "did you mean" hint


# -- test -----------------------------------------------------------------------------------------------
def test_rule_test_detection_prints_matching_lines(env: dict[str, str], es: Elasticsearch) -> None:
    r = hcm("rules", "test", SQL_INJECTION, "--events", str(DATA / "web_attacks.jsonl"), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "line 2:" in r.stdout and "line 4:" in r.stdout
    assert "line 1:" not in r.stdout and "line 3:" not in r.stdout
    assert "2 of 5 event(s) matched" in r.stdout

    j = hcm("rules", "test", SQL_INJECTION, "--events", str(DATA / "web_attacks.jsonl"), "--json", env=env)
    assert j.returncode == 0
    doc = json.loads(j.stdout)
    assert doc["matched_lines"] == [2, 4]
    assert doc["matches"][0]["events"][0]["event"]["url"]["original"].startswith("/tra-cuu-ho-so")
    # the scratch store is gone afterwards
    prefix = env["HCM_SOC_INDEX_PREFIX"]
    assert es.indices.resolve_index(name=f"{prefix}_scratch_*", expand_wildcards="all")["indices"] == []


def test_rule_test_exits_1_when_nothing_matches(env: dict[str, str]) -> None:
    r = hcm("rules", "test", POWERSHELL_ENC, "--events", str(DATA / "web_attacks.jsonl"), env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "0 of 5 event(s) matched" in r.stdout


def test_rule_test_correlation(env: dict[str, str]) -> None:
    pos = hcm(
        "rules",
        "test",
        "rules/linux/ssh_brute_force.yml",
        "-e",
        str(DATA / "ssh_brute_force.positive.jsonl"),
        env=env,
    )
    assert pos.returncode == 0, pos.stdout + pos.stderr
    assert "source.ip=203.0.113.7" in pos.stdout
    neg = hcm("rules", "test", SSH_BRUTE_FORCE, "-e", str(DATA / "ssh_brute_force.negative.jsonl"), env=env)
    assert neg.returncode == 1, neg.stdout + neg.stderr
    assert "0 of 21 event(s) matched in 0 group(s)" in neg.stdout


def test_rule_test_bad_events_file_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"message": "ok"}\n{not json\n', encoding="utf-8")
    r = hcm("rules", "test", SUDO_FAILURES, "--events", str(bad), env=env)
    assert r.returncode == 2
    assert f"{bad}:2: not valid JSON" in r.stderr


# -- backtest / status ----------------------------------------------------------------------------------
def test_backtest_finds_stored_events_without_alerts(env: dict[str, str], es: Elasticsearch) -> None:
    from hcm_soc.store.templates import build_items, install

    names = IndexNames(prefix=env["HCM_SOC_INDEX_PREFIX"])
    install(es, build_items(names))
    events = [
        orjson.loads(line) for line in (DATA / "windows_process_creation.jsonl").read_bytes().splitlines()
    ]
    ops: list[dict[str, object]] = []
    for n, e in enumerate(events):
        ops += [{"create": {"_index": names.events("windows.evtx"), "_id": f"bt-{n}"}}, e]
    resp = es.bulk(operations=ops, refresh="wait_for")
    assert not resp["errors"], resp
    r = hcm("rules", "backtest", POWERSHELL_ENC, "--since", "1h", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    ids = [e["id"] for m in doc["matches"] for e in m["events"]]
    assert ids == ["bt-0"]
    assert doc["matches"][0]["events"][0]["event"]["process"]["command_line"].endswith(
        "-enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA"
    )
    assert doc["examined"] == 3
    assert es.count(index=names.alerts)["count"] == 0

    text = hcm("rules", "backtest", POWERSHELL_ENC, "--since", "1h", env=env)
    assert text.returncode == 0
    assert "bt-0:" in text.stdout and "1 match(es)" in text.stdout and "in 3 event(s)" in text.stdout
    assert hcm("rules", "backtest", POWERSHELL_ENC, "--since", "yesterday", env=env).returncode == 2


def test_status_shows_rule_health(env: dict[str, str], es: Elasticsearch) -> None:
    from hcm_soc.store.detection_state import DetectionStateStore, RuleHealth, RuleState
    from hcm_soc.store.templates import build_items, install

    empty = hcm("rules", "status", env=env)
    assert empty.returncode == 0, empty.stderr
    assert "no rule has run yet" in empty.stderr

    names = IndexNames(prefix=env["HCM_SOC_INDEX_PREFIX"])
    install(es, build_items(names))
    now = datetime.now(UTC)
    store = DetectionStateStore(es, names)
    health = RuleHealth(
        rule_id=SUDO_FAILURES,
        rule_name="Sudo Refused Or Wrong Password",
        status="failing",
        last_run_end=now,
        duration_ms=42,
        events_examined=7,
        matches=2,
        failures=1,
        consecutive_failures=1,
        last_error="search failed: timeout",
        gaps_detected=1,
    )
    store.save(RuleState(health=health), updated=now)
    store.refresh()
    r = hcm("rules", "status", env=env)
    assert r.returncode == 0, r.stderr
    assert SUDO_FAILURES in r.stdout and "42 ms" in r.stdout and "search failed: timeout" in r.stdout
    j = hcm("rules", "status", "--json", env=env)
    rows = json.loads(j.stdout)
    assert rows[0]["rule_id"] == SUDO_FAILURES and rows[0]["events_examined"] == 7


def test_unreachable_elasticsearch_exits_3(tmp_path: Path) -> None:
    env = {"HCM_SOC_ES_URL": f"http://127.0.0.1:{free_port()}", "HCM_SOC_INDEX_PREFIX": "unreach"}
    r = hcm("rules", "status", env=env)
    assert r.returncode == 3, r.stdout + r.stderr
    t = hcm("rules", "test", SUDO_FAILURES, "--events", str(DATA / "web_attacks.jsonl"), env=env)
    assert t.returncode == 3, t.stdout + t.stderr


def test_rule_test_uses_an_edited_copy_outside_the_rule_folders(env: dict[str, str], tmp_path: Path) -> None:
    original = (ROOT / "rules" / "windows" / "powershell_encoded_command.yml").read_text(encoding="utf-8")
    edited = original.replace("      - ' -e '\n", "      - ' -File '\n")
    assert edited != original
    copy = tmp_path / "powershell_edit.yml"
    copy.write_text(edited, encoding="utf-8")
    installed = hcm(
        "rules", "test", POWERSHELL_ENC, "-e", str(DATA / "windows_process_creation.jsonl"), "--json", env=env
    )
    assert json.loads(installed.stdout)["matched_lines"] == [1]
    r = hcm("rules", "test", str(copy), "-e", str(DATA / "windows_process_creation.jsonl"), "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["matched_lines"] == [1, 2]
