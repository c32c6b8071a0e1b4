"""Loading inventories: every problem with file, line and key; YAML and CSV; the fatal cases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hcm_soc.inventory import (
    Inventory,
    InventoryError,
    departments_file_for,
    load_inventory,
    read_inventory,
    validate_inventory,
)

from .conftest import DEPARTMENTS

DATA = Path(__file__).resolve().parents[2] / "data" / "inventory"


def _where(path: Path) -> list[tuple[int | None, str | None]]:
    return [(p.location.line, p.location.key) for p in validate_inventory(path)]


def test_broken_yaml_reports_every_problem_at_its_line() -> None:
    problems = validate_inventory(DATA / "broken.yml")
    got = {(p.location.line, p.location.key): p.message for p in problems}
    assert all(p.location.file == str(DATA / "broken.yml") for p in problems)
    expected = {
        (8, "departments[0].contacts[0].email"): "expected an e-mail address",
        (9, "departments[0].contacts[0].pager"): "unknown key; valid keys: name, email, phone, webhook, role",
        (10, "departments[1].id"): "duplicate department id 'sotttt' (first at line 4)",
        (15, "departments[1].contacts[0].role"): "unknown role 'boss'; valid: owner, technical, escalation",
        (18, "departments[2].contacts"): "at least one contact is required",
        (24, "assets[0].addresses[1]"): "expected an IP address or CIDR range, got '10.0.0.300'",
        (25, "assets[0].urls[0]"): "expected an http:// or https:// URL",
        (28, "assets[0].criticality"): "expected a criticality from 1 to 4 (4 = most critical), got 5",
        (29, "assets[0].owner"): "unknown key; valid keys: id, name,",
        (30, "assets[1].id"): "duplicate asset id 'web01' (first at line 21)",
        (32, "assets[1].hostnames[0]"): "is also listed by asset 'web01' (line 23)",
        (33, "assets[1].addresses[0]"): "address range 10.0.0.1/32 is also listed by asset 'web01' (line 24)",
        (35, "assets[1].sector"): "unknown sector 'egov'; valid: e_government, transport, flood_control, "
        "environment, health_food_safety, public_security, urban_management, other",
        (39, "assets[2].addresses[0]"): "has host bits set; the range is 10.20.0.0/16",
        (40, "assets[2].department"): "unknown department 'sogtvt'; known: sotttt, soyte",
        (43, "assets[2].sensitivity"): "unknown sensitivity 'top-secret'",
        (44, "assets[3]"): "lists no hostnames, addresses or urls",
        (49, "assets[4].id"): "required key is missing",
        (51, "assets[4].department"): "duplicate key (first at line 50)",
    }
    assert set(got) == set(expected)
    for where, text in expected.items():
        assert text in got[where], (where, got[where])
    # printed form: file:line: key: message, sorted by line
    assert str(problems[0]).startswith(f"{DATA / 'broken.yml'}:8: departments[0].contacts[0].email: ")
    assert [p.location.line for p in problems] == sorted(p.location.line or 0 for p in problems)


def test_load_raises_with_every_problem() -> None:
    with pytest.raises(InventoryError) as e:
        load_inventory(DATA / "broken.yml")
    assert len(e.value.problems) == 19
    assert "hcm-soc inventory validate" in str(e.value)
    assert "broken.yml:24: assets[0].addresses[1]" in str(e.value)


@pytest.mark.parametrize(
    ("name", "line", "text"),
    [
        ("bad-syntax.yml", 4, "invalid YAML"),
        ("empty.yml", None, "the file is empty"),
        ("list-top.yml", 1, "expected a mapping with departments and assets lists, got list"),
        ("missing.yml", None, "no such file"),
        ("inventory.txt", None, "unknown inventory format '.txt'"),
    ],
)
def test_fatal_files(name: str, line: int | None, text: str, tmp_path: Path) -> None:
    path = DATA / name
    if name == "inventory.txt":
        path = tmp_path / name
        path.write_text("x", "utf-8")
    problems = validate_inventory(path)
    assert len(problems) == 1
    assert problems[0].location.line == line
    assert text in problems[0].message
    with pytest.raises(InventoryError):
        load_inventory(path)


def test_missing_top_level_keys(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("assets: []\nsystems: []\n", "utf-8")
    got = {(p.location.line, p.location.key): p.message for p in validate_inventory(path)}
    assert got[(2, "systems")].startswith("unknown key; valid top-level keys: departments, assets")
    assert "missing top-level key `departments:`" in got[(1, None)]


def test_a_folder_is_not_an_inventory(tmp_path: Path) -> None:
    (problem,) = validate_inventory(tmp_path)
    assert "is a folder" in problem.message


def test_good_yaml_loads(write_inventory: Callable[[str], Path]) -> None:
    path = write_inventory(
        "  - id: web01\n"
        "    name: Máy chủ web\n"
        "    hostnames: [web01.sotttt.hcm.example.vn]\n"
        "    addresses: [10.10.1.20, 10.10.1.0/24]\n"
        "    department: sotttt\n"
        "    sector: e_government\n"
        "    criticality: 2\n"
    )
    inv = load_inventory(path)
    assert isinstance(inv, Inventory)
    assert inv.source == str(path)
    assert [a.id for a in inv.assets] == ["web01"]
    assert inv.assets[0].sensitivity == "internal"  # the default
    assert set(inv.departments) == {"sotttt", "sogtvt"}
    assert inv.departments["sotttt"].name == "Sở Thông tin và Truyền thông"


def test_nested_ranges_of_two_assets_are_fine_but_the_same_range_is_not(
    write_inventory: Callable[[str], Path],
) -> None:
    asset = (
        "  - id: {id}\n    name: X\n    addresses: [{addr}]\n    department: sotttt\n"
        "    sector: other\n    criticality: 1\n"
    )
    nested = write_inventory(
        asset.format(id="lan", addr="10.10.0.0/16") + asset.format(id="srv", addr="10.10.1.0/24")
    )
    assert validate_inventory(nested) == []
    same = write_inventory(
        asset.format(id="lan", addr="10.10.0.0/16") + asset.format(id="srv", addr="10.10.0.0/16"), "same.yml"
    )
    # the second asset's `addresses:` line: after the departments, `assets:` and the first asset
    line = len(DEPARTMENTS.splitlines()) + 1 + 6 + 3
    assert _where(same) == [(line, "assets[1].addresses[0]")]


def test_duplicate_hostnames_and_urls_ignore_case_and_trailing_dot(
    write_inventory: Callable[[str], Path],
) -> None:
    path = write_inventory(
        "  - id: a\n    name: A\n    hostnames: [web01.example.vn]\n    urls: [https://x.example.vn/app/]\n"
        "    department: sotttt\n    sector: other\n    criticality: 1\n"
        "  - id: b\n    name: B\n    hostnames: [WEB01.example.vn.]\n    urls: [http://X.example.vn/app]\n"
        "    department: sotttt\n    sector: other\n    criticality: 1\n"
    )
    got = {p.location.key: p.message for p in validate_inventory(path)}
    assert set(got) == {"assets[1].hostnames[0]", "assets[1].urls[0]"}
    assert "also listed by asset 'a'" in got["assets[1].hostnames[0]"]


def test_wrong_types_are_reported_not_crashed_on(write_inventory: Callable[[str], Path]) -> None:
    path = write_inventory(
        "  - just a string\n"
        "  - id: a\n    name: A\n    hostnames: web01\n    addresses: [1234]\n"
        "    department: sotttt\n    sector: other\n    criticality: high\n"
    )
    got = {p.location.key: p.message for p in validate_inventory(path)}
    assert got["assets[0]"].startswith("expected a mapping")
    assert got["assets[1].hostnames"].startswith("expected a list")
    assert "expected text, got int 1234" in got["assets[1].addresses[0]"]
    assert "got 'high'" in got["assets[1].criticality"]


# -- CSV ----------------------------------------------------------------------------------------------
def test_csv_inventory_with_sibling_departments() -> None:
    assert departments_file_for(DATA / "systems.csv") == DATA / "systems.departments.yml"
    inv = load_inventory(DATA / "systems.csv")
    assert [a.id for a in inv.assets] == ["cong-dvc", "camera", "ws-lan"]
    dvc, camera, lan = inv.assets
    assert dvc.hostnames == ["dichvucong.hcm.example.vn", "*.dichvucong.hcm.example.vn", "dvc-portal-01"]
    assert dvc.addresses == ["10.10.2.10", "2001:db8:10:2::10"]
    assert dvc.tags == ["internet-facing", "portal"]
    assert dvc.criticality == 3
    assert camera.name == "Hệ thống camera giao thông, ITS"  # quoted cell with a comma
    assert camera.urls == []
    assert lan.sensitivity == "internal"  # empty cell -> default
    assert inv.lookup("10.10.20.7")[0].asset.id == "camera"


def test_broken_csv_reports_row_lines_and_the_departments_file() -> None:
    problems = validate_inventory(DATA / "broken.csv")
    got = {(Path(p.location.file).name, p.location.line, p.location.key): p.message for p in problems}
    assert got[("broken.csv", 1, "columns.owner")].startswith("unknown column; valid columns: id, name,")
    assert "got '10.0.0.300'" in got[("broken.csv", 2, "assets[0].addresses[1]")]
    assert "unknown sector 'egov'" in got[("broken.csv", 3, "assets[1].sector")]
    assert "got '9'" in got[("broken.csv", 3, "assets[1].criticality")]
    assert "duplicate asset id 'web01' (first at line 2)" in got[("broken.csv", 3, "assets[1].id")]
    assert "also listed by asset 'web01'" in got[("broken.csv", 3, "assets[1].addresses[0]")]
    assert "got 'not a url'" in got[("broken.csv", 4, "assets[2].urls[0]")]
    assert "unknown department 'soxyz'" in got[("broken.csv", 4, "assets[2].department")]
    assert "got 'not-an-email'" in got[("broken.departments.yml", 6, "departments[0].contacts[0].email")]
    assert len(problems) == 9


def test_csv_without_departments_file_says_where_it_is_expected() -> None:
    problems = validate_inventory(DATA / "orphan.csv")
    assert len(problems) == 1  # not also "unknown department" for every row
    assert problems[0].location.file == str(DATA / "orphan.departments.yml")
    assert "no such file: the departments of the CSV inventory orphan.csv" in problems[0].message


def test_csv_header_problems(tmp_path: Path) -> None:
    (tmp_path / "x.departments.yml").write_text(
        "departments:\n  - id: d\n    name: D\n    contacts: [{name: N, email: n@d.example.vn}]\n", "utf-8"
    )
    path = tmp_path / "x.csv"
    path.write_text("id,name,addresses\na,A,10.0.0.1\n", "utf-8")
    (problem,) = validate_inventory(path)
    assert (problem.location.line, problem.location.key) == (1, "columns")
    assert "missing required column(s): department, sector, criticality" in problem.message
    path.write_text(
        "\ufeffid,name,addresses,department,sector,criticality\na,A,10.0.0.1,d,other,1,extra\n", "utf-8"
    )
    (problem,) = validate_inventory(path)
    assert (problem.location.line, problem.location.key) == (2, "assets[0]")
    assert "expected 6 cells like the header, got 7" in problem.message
    path.write_text("", "utf-8")
    (problem,) = validate_inventory(path)
    assert "the file is empty" in problem.message


def test_read_inventory_returns_none_with_problems() -> None:
    inv, problems = read_inventory(DATA / "broken.yml")
    assert inv is None and problems
