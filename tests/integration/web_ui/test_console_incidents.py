"""The console's incident pages against a real Elasticsearch: the queue, the incident page and its
actions for analysts and owners, the e-mailed acknowledgement link, the overview, the language
switch, escaping of user-supplied text and the CSRF check on forms."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from fastapi.testclient import TestClient

from hcm_soc.models.incident import Sla
from hcm_soc.notify.tokens import load_secret, make_ack_token
from tests.integration.web_ui.conftest import PASSWORD, XSS, World


def seq_no(page: str) -> str:
    found = re.search(r'name="seq_no" value="(\d+)"', page)
    assert found, "the action forms carry the incident's seq_no"
    return found.group(1)


def test_pages_need_a_login(world: World) -> None:
    resp = world.http.get("/incidents", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?next=/incidents"
    login = world.http.get("/login?next=/incidents")
    assert login.status_code == 200
    assert 'name="next" value="/incidents"' in login.text
    assert "Đăng nhập" in login.text  # Vietnamese by default


def test_an_expired_session_during_the_live_refresh_sends_the_window_to_the_login_page(world: World) -> None:
    # htmx would follow a 303 and swap the login form into the queue table; it gets HX-Redirect
    resp = world.http.get(
        "/incidents/_table?status=new",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/incidents?status=new"},
        follow_redirects=False,
    )
    assert resp.status_code == 401
    assert resp.headers["HX-Redirect"] == "/login?next=/incidents%3Fstatus%3Dnew"
    foreign = world.http.get(
        "/incidents/_table",
        headers={"HX-Request": "true", "HX-Current-URL": "https://evil.example//x"},
        follow_redirects=False,
    )
    assert foreign.headers["HX-Redirect"] == "/login?next=/"  # never back to another site


def test_analyst_queue_orders_by_priority_and_marks_overdue(world: World) -> None:
    late = world.open_incident(
        "sotttt",
        priority="P4",
        title="Quá hạn tiếp nhận",
        sla=Sla(acknowledge_by=datetime.now(UTC) - timedelta(minutes=30)),
    )
    ana = world.login("ana")
    page = ana.get("/incidents")
    assert page.status_code == 200
    ids = re.findall(r'<tr class="[^"]*" data-id="([^"]+)"', page.text)
    p1, p3 = world.incidents["sotttt"].id, world.incidents["ttattt"].id
    assert ids.index(p1) < ids.index(p3) < ids.index(late.id)
    row = re.search(rf'<tr class="([^"]*)" data-id="{late.id}"', page.text)
    assert row and "overdue" in row.group(1)
    assert "quá hạn 30 phút" in page.text or "quá hạn 29 phút" in page.text
    # the live refresh: the table asks for its partial every 15 s, with the filters kept
    filtered = ana.get("/incidents?status=new&department=sotttt")
    assert 'hx-get="/incidents/_table?status=new&amp;department=sotttt"' in filtered.text
    assert 'hx-trigger="every 15s"' in filtered.text
    assert world.incidents["ttattt"].id not in re.findall(r'data-id="([^"]+)"', filtered.text)
    partial = ana.get("/incidents/_table?status=new&department=sotttt")
    assert partial.status_code == 200
    assert "<html" not in partial.text and p1 in partial.text


def test_incident_page_shows_events_escaped(world: World) -> None:
    incident = world.open_incident("sotttt", title=f"Tấn công {XSS}")
    ana = world.login("ana")
    page = ana.get(f"/incidents/{incident.id}")
    assert page.status_code == 200, page.text
    assert XSS not in page.text
    assert html.escape(XSS) in page.text.replace("&#39;", "'")
    # the raw event: ECS fields and event.original, escaped too
    assert "event.dataset" in page.text and "system.auth" in page.text
    assert "Failed password for &lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "System of sotttt" in page.text
    # only allowed transitions are offered (new → acknowledged, investigating, false_positive, resolved)
    options = re.findall(r'<select name="status" id="status-select">(.*?)</select>', page.text, re.S)[0]
    assert 'value="contained"' not in options and 'value="investigating"' in options


def test_analyst_acknowledges_and_resolves(world: World) -> None:
    incident = world.open_incident("sotttt")
    ana = world.login("ana")
    page = ana.get(f"/incidents/{incident.id}").text
    resp = ana.post(f"/incidents/{incident.id}/acknowledge", {"seq_no": seq_no(page)})
    assert resp.status_code == 303
    assert resp.headers["location"] == f"/incidents/{incident.id}?msg=acknowledged"
    assert world.services.incidents.get(incident.id).status == "acknowledged"
    page = ana.get(f"/incidents/{incident.id}?msg=acknowledged").text
    assert "Đã tiếp nhận sự cố." in page
    resp = ana.post(f"/incidents/{incident.id}/assign", {"seq_no": seq_no(page), "assignee": "ana"})
    assert resp.status_code == 303
    page = ana.get(f"/incidents/{incident.id}").text
    resp = ana.post(
        f"/incidents/{incident.id}/status",
        {"seq_no": seq_no(page), "status": "resolved", "reason": "blocked the IP"},
    )
    assert resp.status_code == 303
    done = world.services.incidents.get(incident.id)
    assert (done.status, done.assignee) == ("resolved", "ana")
    assert any(c.text == "blocked the IP" and c.author == "user:ana" for c in done.comments)
    timeline = ana.get(f"/incidents/{incident.id}").text
    assert "user:ana" in timeline


def test_stale_form_is_a_conflict_not_an_overwrite(world: World) -> None:
    incident = world.open_incident("sotttt")
    ana = world.login("ana")
    stale = seq_no(ana.get(f"/incidents/{incident.id}").text)
    world.services.incidents.assign(incident.id, "someone", actor="user:adm")
    resp = ana.post(f"/incidents/{incident.id}/status", {"seq_no": stale, "status": "investigating"})
    assert resp.status_code == 409
    assert "Người khác vừa thay đổi sự cố này" in resp.text
    assert world.services.incidents.get(incident.id).status == "new"


def test_false_positive_needs_a_reason_and_closes(world: World) -> None:
    incident = world.open_incident("sotttt")
    ana = world.login("ana")
    seq = seq_no(ana.get(f"/incidents/{incident.id}").text)
    empty = ana.post(f"/incidents/{incident.id}/false-positive", {"seq_no": seq, "reason": " "})
    assert empty.status_code == 409 and "Không thực hiện được" in empty.text
    resp = ana.post(f"/incidents/{incident.id}/false-positive", {"seq_no": seq, "reason": "pentest"})
    assert resp.status_code == 303
    assert world.services.incidents.get(incident.id).status == "false_positive"


def test_post_without_csrf_token_is_refused(world: World) -> None:
    incident = world.incidents["sotttt"]
    ana = world.login("ana")
    resp = ana.http.post(
        f"/incidents/{incident.id}/comment", data={"text": "no token"}, follow_redirects=False
    )
    assert resp.status_code == 403
    wrong = ana.http.post(
        f"/incidents/{incident.id}/comment",
        data={"text": "bad", "csrf_token": "x" * 20},
        follow_redirects=False,
    )
    assert wrong.status_code == 403
    assert not any(c.text in ("no token", "bad") for c in world.services.incidents.get(incident.id).comments)
    # htmx sends the token as a header (base.html's hx-headers)
    ok = ana.http.post(
        f"/incidents/{incident.id}/comment",
        data={"text": "via header"},
        headers={"X-CSRF-Token": ana.csrf},
        follow_redirects=False,
    )
    assert ok.status_code == 303


def test_owner_sees_only_its_departments(world: World) -> None:
    own = world.login("own-a")
    page = own.get("/incidents?status=all&department=ttattt")
    assert page.status_code == 200
    ids = set(re.findall(r'data-id="([^"]+)"', page.text))
    assert world.incidents["ttattt"].id not in ids
    page = own.get("/incidents?status=all")
    ids = set(re.findall(r'data-id="([^"]+)"', page.text))
    assert world.incidents["sotttt"].id in ids and world.incidents["ttattt"].id not in ids
    assert 'id="owner-note"' in page.text and "sotttt" in page.text
    # another department's incident: the same 404 as a made-up id
    assert own.get(f"/incidents/{world.incidents['ttattt'].id}").status_code == 404
    assert own.get("/incidents/INC-1999-000001").status_code == 404
    assert own.post(f"/incidents/{world.incidents['ttattt'].id}/comment", {"text": "hi"}).status_code == 404
    # owners acknowledge and reply, nothing else
    mine = world.open_incident("sotttt")
    page = own.get(f"/incidents/{mine.id}").text
    assert "/status" not in page and "/assign" not in page and "Phản hồi" in page
    assert (
        own.post(f"/incidents/{mine.id}/status", {"status": "resolved", "seq_no": seq_no(page)}).status_code
        == 403
    )
    assert own.post(f"/incidents/{mine.id}/comment", {"text": "we are on it"}).status_code == 303
    assert (
        own.post(f"/incidents/{mine.id}/acknowledge", {"seq_no": seq_no(page)}).status_code == 409
    )  # moved on
    page = own.get(f"/incidents/{mine.id}").text
    assert own.post(f"/incidents/{mine.id}/acknowledge", {"seq_no": seq_no(page)}).status_code == 303
    current = world.services.incidents.get(mine.id)
    assert current.status == "acknowledged"
    assert [c.author for c in current.comments] == ["user:own-a"]
    # the overview is the security center's: an owner lands on its queue
    assert own.get("/").headers["location"] == "/incidents"


def test_ack_link(world: World) -> None:
    incident = world.open_incident("sotttt")
    secret = load_secret(world.settings)
    token = make_ack_token(
        secret, incident.id, "quantri@sotttt.example.vn", datetime.now(UTC) + timedelta(hours=1)
    )
    # not logged in: to the login page, which brings the person back to the link
    resp = world.http.get(f"/ack?token={quote(token)}", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?next=" + quote("/ack?token=" + quote(token, safe=""), safe="/")
    # an owner of another department: not theirs
    assert world.login("own-b").get(f"/ack?token={quote(token)}").status_code == 404
    # the owner signs in on the page the link led to and comes back to the link
    browser = TestClient(world.app)
    login_page = browser.get(resp.headers["location"])
    found = re.search(r'name="next" value="([^"]*)"', login_page.text)
    assert found
    back = browser.post(
        "/login",
        data={"username": "own-a", "password": PASSWORD, "next": html.unescape(found.group(1))},
        follow_redirects=False,
    )
    assert back.status_code == 303 and back.headers["location"] == "/ack?token=" + quote(token, safe="")
    landed = browser.get(back.headers["location"], follow_redirects=False)
    assert landed.status_code == 303
    assert landed.headers["location"] == f"/incidents/{incident.id}?msg=ack_link"
    assert "Đã tiếp nhận sự cố từ liên kết trong e-mail." in browser.get(landed.headers["location"]).text
    current = world.services.incidents.get(incident.id)
    assert current.status == "acknowledged"
    assert any(e.actor == "user:own-a" and e.action == "status" for e in current.timeline)
    assert [(c.author, c.text) for c in current.comments] == [
        ("user:own-a", "acknowledged from the e-mail link")
    ]
    # a second click changes nothing
    own = world.login("own-a")
    assert own.get(f"/ack?token={quote(token)}").status_code == 303
    assert len(world.services.incidents.get(incident.id).comments) == 1
    # a forged or expired link: a clear page
    bad = own.get(f"/ack?token={quote(token[:-2] + 'xx')}")
    assert bad.status_code == 400 and "Liên kết tiếp nhận không hợp lệ" in bad.text
    old = make_ack_token(secret, incident.id, "x@example.vn", datetime.now(UTC) - timedelta(minutes=1))
    assert own.get(f"/ack?token={quote(old)}").status_code == 400


def test_overview(world: World) -> None:
    now = datetime.now(UTC)
    for _ in range(3):
        doc = {"@timestamp": now.isoformat(), "event": {"dataset": "test.eps", "ingested": now.isoformat()}}
        world.es.index(
            index=world.names.events("test.eps"), document=doc, op_type="create", refresh="wait_for"
        )
    world.store_alert(at=now)
    ana = world.login("ana")
    page = ana.get("/")
    assert page.status_code == 200
    assert '<svg class="chart"' in page.text
    table = re.search(r'<table class="compact" id="open-by-priority">(.*?)</table>', page.text, re.S)
    assert table
    p1 = re.search(r"prio-P1\">[^<]*</span></td><td class=\"num\">(\d+)", table.group(1))
    assert p1 and int(p1.group(1)) >= 1
    assert "e-gov" in page.text  # by sector
    # 3 events in the last 5 minutes: 3/300 per second; over the hour 3/3600
    assert '<td>test.eps</td><td class="num">0.01</td><td class="num">0.00</td>' in page.text
    total = re.search(r'<span id="alerts-24h">(\d+)</span>', page.text)
    assert total and int(total.group(1)) >= 1
    assert re.search(r'<rect class="bar" [^>]*height="(?!0(?:\.0)?")[\d.]+"', page.text)  # a drawn bar
    # the file rule never ran
    assert re.search(r"Chưa chạy: <strong>(\d+)</strong>", page.text)


def test_language_switch(world: World) -> None:
    ana = world.login("ana")
    vi = ana.get("/incidents")
    assert "Hàng đợi sự cố" in vi.text and '<html lang="vi">' in vi.text
    en = ana.get("/incidents?lang=en")
    assert "Incident queue" in en.text and '<html lang="en">' in en.text
    assert "lang=en" in en.headers["set-cookie"]
    # remembered by the cookie
    assert "Incident queue" in ana.get("/incidents").text
    assert "Hàng đợi sự cố" in ana.get("/incidents?lang=vi").text


def test_security_headers_on_pages(world: World) -> None:
    ana = world.login("ana")
    resp = ana.get("/incidents")
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    assert 'style="' not in resp.text and "<script>" not in resp.text  # nothing the CSP would block
