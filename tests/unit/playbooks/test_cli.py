"""`hcm-soc playbooks validate|list|schema` (typer's CliRunner on the sub-application)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.playbooks import app

DATA = Path(__file__).resolve().parents[2] / "data" / "playbooks"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_validate_ok(runner: CliRunner) -> None:
    res = runner.invoke(app, ["validate", str(DATA / "valid-web.yml"), str(DATA / "dup-a.yml")])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "ok: 2 playbooks"


def test_validate_lists_every_problem_and_exits_1(runner: CliRunner) -> None:
    res = runner.invoke(app, ["validate", str(DATA)])
    assert res.exit_code == 1
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 7
    assert f"{DATA / 'broken-unknown-key.yml'}:7: steps[0].notify.chanel: unknown key" in res.stdout
    assert f"{DATA / 'dup-b.yml'}:1: id: duplicate playbook id 'test-dup'" in res.stdout
    assert "7 problem(s) in 9 file(s); 2 playbook(s) are valid" in res.stderr


def test_validate_json(runner: CliRunner) -> None:
    res = runner.invoke(
        app, ["validate", "--json", str(DATA / "broken-duration.yml"), str(DATA / "valid-web.yml")]
    )
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["playbooks"] == ["test-web"] and doc["files"] == 2
    (problem,) = doc["problems"]
    assert problem["line"] == 7 and problem["key"] == "steps[0].group.window"
    assert problem["file"].endswith("broken-duration.yml")


def test_validate_defaults_to_settings_paths_playbooks(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "pb"
    folder.mkdir()
    (folder / "one.yml").write_text((DATA / "valid-web.yml").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("HCM_SOC_PATHS_PLAYBOOKS", str(folder))
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["validate"], obj=AppContext())
    assert res.exit_code == 0, res.output
    assert "ok: 1 playbooks" in res.stdout


def test_list_table_and_json(runner: CliRunner) -> None:
    res = runner.invoke(app, ["list", str(DATA)])
    assert res.exit_code == 0
    rows = res.stdout.splitlines()
    assert rows[0].split() == ["ID", "ORDER", "ENABLED", "TRIGGER", "STEPS"]
    assert rows[2].split()[:3] == ["test-dup", "10", "yes"]
    assert rows[3].startswith("test-web") and rows[3].rstrip().endswith("enrich,group,set,notify")
    assert "7 problem(s) left playbooks out" in res.stderr
    res = runner.invoke(app, ["list", "--json", str(DATA / "valid-web.yml")])
    (doc,) = json.loads(res.stdout)
    assert doc["id"] == "test-web" and doc["order"] == 50 and doc["enabled"] is True
    assert doc["trigger"] == "all(tags: attack.t1190 attack.initial_access, level>=medium)"
    assert [s["id"] for s in doc["steps"]] == ["enrich-1", "group-2", "set-3", "notify-4"]


def test_schema(runner: CliRunner) -> None:
    res = runner.invoke(app, ["schema"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["title"] == "hcm-soc playbook"
    assert set(doc["required"]) == {"id", "title", "trigger", "steps"}
