"""`hcm-soc incidents ...` through typer's CliRunner against the real node: output, JSON, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from elasticsearch import Elasticsearch
from typer.testing import CliRunner, Result

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.incidents import app
from hcm_soc.errors import HcmSocError
from hcm_soc.incidents.service import IncidentService
from hcm_soc.models.alert import Alert
from hcm_soc.models.incident import AffectedAsset, IncidentConflict, IncidentNotFound, Sla
from hcm_soc.store.names import IndexNames
from tests.unit.incidents.factory import T0, draft


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, es_url: str, installed: IndexNames) -> Callable[..., Result]:
    for key in ("HCM_SOC_CONFIG", "HCM_SOC_ES_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HCM_SOC_ES_URL", es_url)
    monkeypatch.setenv("HCM_SOC_INDEX_PREFIX", installed.prefix)
    monkeypatch.setenv("HCM_SOC_INDEX_NAMESPACE", installed.namespace)
    monkeypatch.setenv("USER", "lan")
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), obj=AppContext())

    return run


def _exit(result: Result) -> int:
    """The exit code `hcm-soc` gives: HcmSocError subclasses carry theirs (cli.main maps them)."""
    if isinstance(result.exception, HcmSocError):
        return result.exception.exit_code
    return result.exit_code


def test_list_show_and_change_from_the_command_line(
    cli: Callable[..., Result],
    service: IncidentService,
    stored_alert: Callable[..., Alert],
    es: Elasticsearch,
) -> None:
    asset = AffectedAsset(
        id="egov-portal",
        name="Cổng dịch vụ công",
        department="so-tttt",
        department_name="Sở Thông tin và Truyền thông",
        sector="e_government",
        criticality=4,
        owners=["owner@tttt.example.vn"],
    )
    d = draft(title="Dò mật khẩu SSH", assets=[asset], sla=Sla(acknowledge_by=T0.replace(hour=4)))
    inc = service.open_for_alert(d, stored_alert(user="admin"), actor="playbook:ssh")[0]
    other = service.open_for_alert(draft(priority="P4"), stored_alert(), actor="system")[0]

    listed = cli("list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "PRI", "STATUS"]
    assert inc.id in lines[2] and "Dò mật khẩu SSH" in lines[2] and "2026-11-26 11:00:00 +07" in lines[2]
    assert other.id in lines[3]

    shown = cli("show", inc.id)
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert (
        "Cổng dịch vụ công" in text
        and "owner@tttt.example.vn" in text
        and "Sở Thông tin và Truyền thông" in text
    )
    assert "Created:      2026-11-26 10:00:00 +07" in text  # 03:00 UTC in Asia/Ho_Chi_Minh
    assert "Users: admin" in text and "203.0.113.7" in text
    assert "playbook:ssh" in text and "alert_linked" in text

    assert cli("ack", inc.id).exit_code == 0
    assert cli("assign", inc.id, "minh").exit_code == 0
    assert cli("comment", inc.id, "Đã liên hệ chủ hệ thống").exit_code == 0
    closed = cli("close", inc.id, "--reason", "Đã chặn IP nguồn", "--json")
    assert closed.exit_code == 0, closed.output
    doc = json.loads(closed.stdout)
    assert doc["status"] == "resolved" and doc["assignee"] == "minh" and doc["seq_no"] > inc.seq_no
    assert [c["text"] for c in doc["comments"]] == ["Đã liên hệ chủ hệ thống", "Đã chặn IP nguồn"]
    assert {e["actor"] for e in doc["timeline"][2:]} == {"user:lan"}

    open_only = json.loads(cli("list", "--json").stdout)
    assert [i["id"] for i in open_only["items"]] == [other.id]
    everything = json.loads(cli("list", "--all", "--json").stdout)
    assert everything["total"] == 2
    assert json.loads(cli("list", "--status", "resolved", "--json").stdout)["items"][0]["id"] == inc.id
    assert json.loads(cli("list", "--priority", "P4", "--json").stdout)["total"] == 1
    assert json.loads(cli("list", "--assignee", "minh", "--all", "--json").stdout)["total"] == 1

    shown_json = json.loads(cli("show", inc.id, "--json").stdout)
    assert shown_json["id"] == inc.id and shown_json["status"] == "resolved"


def test_errors_have_exit_codes_and_say_what_to_do(
    cli: Callable[..., Result], service: IncidentService, stored_alert: Callable[..., Alert]
) -> None:
    inc = service.open_for_alert(draft(), stored_alert(), actor="system")[0]
    refused = cli("status", inc.id, "contained")
    assert _exit(refused) == 2
    assert "new → contained is not allowed; allowed: acknowledged, investigating" in str(refused.exception)
    missing = cli("show", "INC-2026-424242")
    assert isinstance(missing.exception, IncidentNotFound) and _exit(missing) == 2
    stale = cli("comment", inc.id, "late", "--if-seq", str(inc.seq_no - 1))  # type: ignore[operator]
    assert isinstance(stale.exception, IncidentConflict) and _exit(stale) == 1
    assert "reload and retry" in str(stale.exception)
    fresh = cli("comment", inc.id, "on time", "--if-seq", str(inc.seq_no))
    assert fresh.exit_code == 0, fresh.output
    bad = cli("list", "--priority", "P9")
    assert bad.exit_code == 2 and "expected P1, P2, P3 or P4" in bad.output
    no_reason = cli("close", inc.id)
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
