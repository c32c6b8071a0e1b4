"""The administrator's console pages against a real Elasticsearch: rules with health, the rule
editor (validate → fix → test on sample events → save → enable → run now), playbooks, inventory,
users (add, disable, API token shown once), the audit trail, and role checks."""

from __future__ import annotations

import json
import re

from tests.integration.detection.conftest import ssh_event
from tests.integration.web_ui.conftest import SSH_RULE_ID, XSS, World

BROKEN_RULE = """\
title: Console rule
logsource:
  product: linux
  service: sshd
detection:
  selection:
    message|contains: 'invalid user'
level: high
"""
FIXED_RULE = BROKEN_RULE.replace("level: high", "  condition: selection\nlevel: high")


def test_rules_page_lists_file_rules_with_health(world: World) -> None:
    adm = world.login("adm")
    page = adm.get("/admin/rules")
    assert page.status_code == 200
    row = re.search(rf'<tr class="[^"]*" data-id="{SSH_RULE_ID}">(.*?)</tr>', page.text, re.S)
    assert row, page.text
    assert "SSH failed password" in row.group(1) and "chưa chạy" in row.group(1)
    assert f'action="/admin/rules/{SSH_RULE_ID}/' in row.group(1)


def test_rule_editor_round_trip(world: World) -> None:
    adm = world.login("adm")
    assert adm.get("/admin/rules/new").status_code == 200
    htmx = {"HX-Request": "true", "X-CSRF-Token": adm.csrf}
    # no condition: the validation names the problem, as a partial for htmx
    bad = adm.http.post("/admin/rules/validate", data={"yaml": BROKEN_RULE}, headers=htmx)
    assert bad.status_code == 200
    assert bad.text.lstrip().startswith('<div id="rule-result"')
    assert "Luật chưa hợp lệ" in bad.text and "condition" in bad.text
    # saving an invalid rule is refused with the same problems, nothing stored
    refused = adm.post("/admin/rules/save", {"yaml": BROKEN_RULE, "enable": "0"})
    assert refused.status_code == 422 and "condition" in refused.text
    fixed = FIXED_RULE
    ok = adm.http.post("/admin/rules/validate", data={"yaml": fixed}, headers=htmx)
    assert "Luật hợp lệ" in ok.text and "message.caseless:*invalid" in ok.text  # the query is shown
    # test on sample events: one line matches, one does not, a broken line is reported
    hit, miss = ssh_event("failure"), ssh_event("success")
    hit["message"] = "Invalid user bob from 203.0.113.7 port 52144"
    samples = "\n".join(json.dumps(e) for e in (hit, miss))
    tested = adm.http.post("/admin/rules/test", data={"yaml": fixed, "samples": samples}, headers=htmx)
    assert tested.status_code == 200, tested.text
    assert "1/2 sự kiện khớp" in tested.text
    broken = adm.http.post("/admin/rules/test", data={"yaml": fixed, "samples": "{not json"}, headers=htmx)
    assert broken.status_code == 422 and "dòng 1" in broken.text
    backtest = adm.http.post("/admin/rules/backtest", data={"yaml": fixed, "hours": "2"}, headers=htmx)
    assert backtest.status_code == 200 and "2 giờ qua" in backtest.text
    # save, then enable from the editor, then run it now
    saved = adm.post("/admin/rules/save", {"yaml": fixed, "enable": "0"})
    assert saved.status_code == 303
    rule_path = saved.headers["location"].split("?")[0]
    rule_id = rule_path.rsplit("/", 1)[1]
    editor = adm.get(rule_path)
    assert editor.status_code == 200 and "Console rule" in editor.text and "invalid user" in editor.text
    enabled = adm.post(f"/admin/rules/{rule_id}/enable", {"back": "editor"})
    assert enabled.status_code == 303 and enabled.headers["location"].startswith(rule_path)
    assert {r.id: r.enabled for r in world.services.rules.catalog()}[rule_id] is True
    ran = adm.http.post(f"/admin/rules/{rule_id}/run", headers=htmx)
    assert ran.status_code == 200 and ("Đã chạy" in ran.text or "Chạy lỗi" in ran.text)
    # every change is in the audit trail, by who did it
    audit = adm.get("/admin/audit").text
    assert "rule.save" in audit and "rule.enable" in audit and "rule.run" in audit


def test_editor_escapes_rule_text(world: World) -> None:
    adm = world.login("adm")
    resp = adm.http.post(
        "/admin/rules/validate", data={"yaml": f"title: {XSS}\n"}, headers={"X-CSRF-Token": adm.csrf}
    )
    assert XSS not in resp.text and "&lt;script&gt;" in resp.text


def test_playbooks_and_inventory(world: World) -> None:
    adm = world.login("adm")
    playbooks = adm.get("/admin/playbooks")
    assert playbooks.status_code == 200
    expected = world.services.playbooks().playbooks
    assert expected and all(p.id in playbooks.text for p in expected)
    inventory = adm.get("/admin/inventory")
    assert inventory.status_code == 200
    assets = world.services.inventory().assets
    assert assets and all(a.id in inventory.text for a in assets)
    assert "sotttt" in inventory.text


def test_users_add_disable_token(world: World) -> None:
    adm = world.login("adm")
    added = adm.post(
        "/admin/users",
        {
            "username": "new-owner",
            "password": "long enough pass phrase",
            "role": "owner",
            "departments": "sotttt",
        },
    )
    assert added.status_code == 303
    user = world.services.users.get("new-owner")
    assert user is not None and user.role == "owner" and user.departments == ["sotttt"]
    again = adm.post(
        "/admin/users", {"username": "new-owner", "password": "another long phrase", "role": "admin"}
    )
    assert again.status_code == 422 and 'id="problem"' in again.text and "new-owner" in again.text
    assert world.services.users.get("new-owner").role == "owner"  # type: ignore[union-attr]
    token_page = adm.post("/admin/users/new-owner/token", {"name": "ci"})
    assert token_page.status_code == 200
    token = re.search(r'<pre class="secret">(hcm_[^<]+)</pre>', token_page.text)
    assert token and world.services.users.verify_token(token.group(1)) is not None
    assert token.group(1) not in adm.get("/admin/users").text  # shown once
    assert adm.post("/admin/users/new-owner/disable").status_code == 303
    assert world.services.users.get("new-owner").disabled  # type: ignore[union-attr]
    audit = adm.get("/admin/audit").text
    assert "user.add" in audit and "token.create" in audit and "user.disable" in audit


def test_admin_pages_are_for_admins(world: World) -> None:
    ana = world.login("ana")
    for path in ("/admin/rules", "/admin/rules/new", "/admin/users", "/admin/audit", "/admin/inventory"):
        assert ana.get(path).status_code == 403, path
    assert (
        ana.post("/admin/users", {"username": "x1", "password": "p" * 12, "role": "admin"}).status_code == 403
    )
    assert world.services.users.get("x1") is None
    nav = ana.get("/incidents").text
    assert "/admin/rules" not in nav and "/admin/users" not in nav
