"""`hcm-soc inventory validate|lookup|list` through typer's runner: exit codes and key output."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.inventory import app
from hcm_soc.inventory import InventoryError

DATA = Path(__file__).resolve().parents[2] / "data" / "inventory"
ASSET = (
    "  - id: web01\n    name: Máy chủ web\n    hostnames: [web01.sotttt.hcm.example.vn]\n"
    "    addresses: [10.10.1.20]\n    department: sotttt\n    sector: e_government\n    criticality: 2\n"
)


@pytest.fixture
def good(write_inventory: Callable[[str], Path]) -> Path:
    return write_inventory(ASSET)


def test_validate_ok(good: Path) -> None:
    r = CliRunner().invoke(app, ["validate", str(good)])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "ok: 1 assets, 2 departments"


def test_validate_uses_the_configured_path(good: Path) -> None:
    r = CliRunner().invoke(app, ["validate"], env={"HCM_SOC_PATHS_INVENTORY": str(good)})
    assert r.exit_code == 0, r.output
    assert "ok: 1 assets" in r.stdout
    # and the root command's context, when registered under `hcm-soc`
    r = CliRunner().invoke(app, ["validate"], obj=AppContext(), env={"HCM_SOC_PATHS_INVENTORY": str(good)})
    assert r.exit_code == 0, r.output


def test_validate_prints_every_problem_and_exits_1() -> None:
    r = CliRunner().invoke(app, ["validate", str(DATA / "broken.yml")])
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 19
    assert (
        f"{DATA / 'broken.yml'}:24: assets[0].addresses[1]: expected an IP address or CIDR range, got '10.0.0.300'"
        in lines
    )
    assert "19 problem(s)" in r.stderr


def test_validate_json() -> None:
    r = CliRunner().invoke(app, ["validate", str(DATA / "systems.csv"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["assets"] == 3 and doc["departments"] == 2 and doc["problems"] == []
    r = CliRunner().invoke(app, ["validate", str(DATA / "broken.csv"), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["assets"] is None
    assert {"file": str(DATA / "broken.csv"), "line": 1, "key": "columns.owner"}.items() <= doc["problems"][
        0
    ].items()


def test_validate_missing_file(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["validate", str(tmp_path / "nope.yml")])
    assert r.exit_code == 1
    assert "no such file" in r.stdout and "paths.inventory" in r.stdout


def test_lookup_table(good: Path) -> None:
    r = CliRunner().invoke(app, ["lookup", "10.10.1.20", "--inventory", str(good)])
    assert r.exit_code == 0, r.output
    header, _, row = r.stdout.splitlines()
    assert header.split() == ["asset", "department", "sector", "criticality", "owners", "matched", "by"]
    assert row.startswith("web01 (Máy chủ web)")
    for text in ("Sở Thông tin và Truyền thông", "e_government", "quantri@sotttt.example.vn", " ip"):
        assert text in row


def test_lookup_json(good: Path) -> None:
    r = CliRunner().invoke(app, ["lookup", "WEB01.sotttt.hcm.example.vn.", "-i", str(good), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    (m,) = doc["matches"]
    assert m["matched_by"] == "hostname" and m["asset"]["id"] == "web01"
    assert m["department"]["id"] == "sotttt"
    assert [o["email"] for o in m["owners"]] == ["quantri@sotttt.example.vn"]


def test_lookup_no_match_exits_1(good: Path) -> None:
    r = CliRunner().invoke(app, ["lookup", "8.8.8.8", "-i", str(good)])
    assert r.exit_code == 1
    assert r.stdout == ""
    assert "no asset matches '8.8.8.8'" in r.stderr
    r = CliRunner().invoke(app, ["lookup", "8.8.8.8", "-i", str(good), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["matches"] == []


def test_lookup_on_a_broken_inventory_raises_for_the_root_to_report() -> None:
    r = CliRunner().invoke(app, ["lookup", "10.0.0.1", "-i", str(DATA / "broken.yml")])
    assert isinstance(r.exception, InventoryError)
    assert r.exception.exit_code == 1


def test_list(good: Path) -> None:
    r = CliRunner().invoke(app, ["list", "-i", str(good)])
    assert r.exit_code == 0, r.output
    assert "web01" in r.stdout and "10.10.1.20, web01.sotttt.hcm.example.vn" in r.stdout
    r = CliRunner().invoke(app, ["list", "-i", str(good), "--json"])
    doc = json.loads(r.stdout)
    assert [a["id"] for a in doc["assets"]] == ["web01"] and len(doc["departments"]) == 2
