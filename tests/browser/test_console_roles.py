"""Each role does its main job in headless Chromium on the demo's data:

- the analyst acknowledges and resolves an incident the demo's playbooks opened;
- the owner sees only their department's incidents and acknowledges one through the link e-mailed to them;
- the admin writes a rule, sees a validation error, fixes it, tests it on sample events, enables it
  and sees it run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Console, login

pytestmark = pytest.mark.integration

RULE_BROKEN = """title: Root Password Guessing (console)
id: 0b5f3c2e-6a1d-4c8b-9e7f-2d4a6b8c0e1f
status: experimental
logsource:
  product: linux
  service: auth
detection:
  selection:
    event.action: ssh_login
    event.outcome: failure
    user.name: root
  condition: selectoin
level: medium
"""
RULE_FIXED = RULE_BROKEN.replace("condition: selectoin", "condition: selection")
SAMPLES = [
    {
        "@timestamp": "2026-11-26T01:00:00Z",
        "event": {"action": "ssh_login", "outcome": "failure", "dataset": "system.auth", "module": "system"},
        "process": {"name": "sshd"},
        "user": {"name": "root"},
        "source": {"ip": "203.0.113.45"},
        "host": {"name": "sotttt-web01"},
    },
    {
        "@timestamp": "2026-11-26T01:00:01Z",
        "event": {"action": "ssh_login", "outcome": "success", "dataset": "system.auth", "module": "system"},
        "process": {"name": "sshd"},
        "user": {"name": "root"},
        "source": {"ip": "10.10.1.31"},
        "host": {"name": "sotttt-web01"},
    },
]


def _page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
    return context.new_page()


def _departments(console: Console, incident_id: str) -> set[str]:
    return {a.department for a in console.services.incidents.get(incident_id).assets}


def test_analyst_acknowledges_and_resolves_a_demo_incident(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    owner_departments = set(console.users["owner"].departments)
    candidates = [
        i
        for i in console.services.incidents.list(size=50).items
        if i.status == "new" and not (_departments(console, i.id) & owner_departments)
    ]
    assert candidates, "the demo opened no incident outside the owner's department"
    target = candidates[0].id
    page = _page(browser)
    login(page, console, "analyst", "/incidents")
    page.wait_for_selector("#incident-table")
    assert target in page.inner_text("#incident-table")
    page.screenshot(path=str(tmp_path / "analyst-queue.png"), full_page=True)
    page.click(f"a[href='/incidents/{target}']")
    page.wait_for_selector("#incident-title")
    page.click("#btn-acknowledge")
    page.wait_for_selector("#flash")
    assert console.services.incidents.get(target).status == "acknowledged"
    page.select_option("#status-select", "resolved")
    page.click("#btn-status")
    page.wait_for_selector("#flash")
    page.screenshot(path=str(tmp_path / "analyst-resolved.png"), full_page=True)
    incident = console.services.incidents.get(target)
    assert incident.status == "resolved" and incident.resolved_at is not None
    actors = {e.actor for e in incident.timeline if e.action in ("status", "acknowledged", "status_changed")}
    assert any(
        a == f"user:{console.users['analyst'].username}" for a in {e.actor for e in incident.timeline}
    ), actors
    assert "user:" + console.users["analyst"].username in page.inner_text("#timeline")


def test_owner_sees_only_their_incidents_and_acknowledges_from_the_email(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    owner = console.users["owner"]
    assert owner.departments, "the demo's owner user has no department"
    everything = console.services.incidents.list(size=50).items
    mine = {i.id for i in everything if _departments(console, i.id) & set(owner.departments)}
    others = {i.id for i in everything} - mine
    assert mine and others, "the demo should open incidents in several departments"

    page = _page(browser)
    login(page, console, "owner", "/incidents")
    page.wait_for_selector("#incident-table")
    listed = set(re.findall(r"INC-\d{4}-\d{6}", page.inner_text("#incident-table")))
    assert listed and listed <= mine, (listed, mine)
    page.screenshot(path=str(tmp_path / "owner-queue.png"), full_page=True)
    other = sorted(others)[0]
    response = page.goto(f"{console.url}/incidents/{other}")
    assert response is not None and response.status == 404  # not even told it exists

    # the acknowledgement link from an e-mail the demo sent to this department's owner
    assert console.report.response is not None
    links = [
        (inc, link)
        for _to, inc, link in console.report.response.ack_links
        if inc in mine and console.services.incidents.get(inc).status == "new" and "truc-ban" not in _to
    ]
    assert links, console.report.response.ack_links
    incident_id, link = links[0]
    fresh = _page(browser)  # not logged in: the link goes through the login page and back
    fresh.goto(link)
    fresh.wait_for_selector("input[name=username]")
    fresh.fill("input[name=username]", owner.username)
    fresh.fill("input[name=password]", owner.password)
    fresh.click("button[type=submit]")
    fresh.wait_for_selector("#incident-title")
    fresh.screenshot(path=str(tmp_path / "owner-acknowledged.png"), full_page=True)
    incident = console.services.incidents.get(incident_id)
    assert incident.status == "acknowledged"
    assert any("e-mail" in (c.text or "") for c in incident.comments) or any(
        "e-mail" in (e.message or "") for e in incident.timeline
    )


def test_admin_writes_fixes_tests_enables_and_runs_a_rule(
    browser: Any, console: Console, tmp_path: Path
) -> None:
    page = _page(browser)
    login(page, console, "admin", "/admin/rules/new")
    page.wait_for_selector("#rule-yaml")
    page.fill("#rule-yaml", RULE_BROKEN)
    page.click("#btn-validate")
    page.wait_for_selector("#rule-result ul.problems li")
    problems = page.inner_text("#rule-result")
    assert "selectoin" in problems, problems
    page.screenshot(path=str(tmp_path / "admin-invalid.png"), full_page=True)

    page.fill("#rule-yaml", RULE_FIXED)
    page.click("#btn-validate")
    page.wait_for_selector("#rule-result .flash.ok")
    page.fill("#rule-samples", "\n".join(json.dumps(e) for e in SAMPLES))
    page.click("#btn-test")
    page.wait_for_selector("#rule-result ol.samples li, #rule-result ul.problems li")
    assert page.locator("#rule-result ol.samples li.hit").count() == 1, page.inner_text("#rule-result")
    assert page.locator("#rule-result ol.samples li.hit").count() == 1
    assert page.locator("#rule-result ol.samples li.miss").count() == 1
    page.screenshot(path=str(tmp_path / "admin-tested.png"), full_page=True)

    page.click("#btn-save-enable")
    page.wait_for_selector("#btn-run")
    page.click("#btn-run")
    page.wait_for_selector("#rule-result .flash.ok, #rule-result .flash.error")
    outcome = page.inner_text("#rule-result")
    page.screenshot(path=str(tmp_path / "admin-ran.png"), full_page=True)
    rule_id = "0b5f3c2e-6a1d-4c8b-9e7f-2d4a6b8c0e1f"
    alerts = console.services.alerts.search(rule_id=rule_id, size=100)
    assert alerts, outcome  # the demo's auth log has failed root logins from 203.0.113.45
    page.goto(f"{console.url}/admin/rules")
    page.wait_for_selector("#rules-table")
    assert "Root Password Guessing (console)" in page.inner_text("#rules-table")
