"""`/api/incidents` and `/api/alerts` on the real Elasticsearch: lists with filters and paging,
owners confined to their departments (404 for a guessed id), changes with optimistic
concurrency (409), lifecycle refusals, CSRF on session writes, and invalid input (422, never 500)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hcm_soc.notify.model import Notice
from tests.integration.web_api.conftest import SSH_RULE_ID, World


def ids(body: dict[str, Any]) -> set[str]:
    return {item["id"] for item in body["items"]}


def test_list_filters_sorts_and_pages(world: World) -> None:
    a, b = world.incidents["sotttt"].id, world.incidents["ttattt"].id
    r = world.http.get("/api/incidents", headers=world.auth("ana"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {a, b} <= ids(body) and body["total"] >= 2 and body["page"] == 1
    assert r.headers["cache-control"] == "no-store"

    p1 = world.http.get("/api/incidents", params={"priority": "P1"}, headers=world.auth("ana")).json()
    assert a in ids(p1) and b not in ids(p1)
    dep = world.http.get("/api/incidents", params={"department": "ttattt"}, headers=world.auth("adm")).json()
    assert ids(dep) == {b}
    several = world.http.get(
        "/api/incidents", params=[("status", "new"), ("status", "acknowledged")], headers=world.auth("ana")
    ).json()
    assert {a, b} <= ids(several)
    by_rule = world.http.get("/api/incidents", params={"rule_id": SSH_RULE_ID}, headers=world.auth("ana"))
    assert {a, b} <= ids(by_rule.json())
    # priority sort puts P1 first; paging by one keeps the total
    first = world.http.get(
        "/api/incidents", params={"size": 1, "sort": "priority"}, headers=world.auth("ana")
    )
    assert first.json()["items"][0]["priority"] == "P1" and first.json()["total"] == body["total"]
    second = world.http.get("/api/incidents", params={"size": 1, "page": 2}, headers=world.auth("ana")).json()
    assert second["items"][0]["id"] != first.json()["items"][0]["id"]


def test_owner_sees_only_own_departments_incidents(world: World) -> None:
    a, b = world.incidents["sotttt"].id, world.incidents["ttattt"].id
    mine = world.http.get("/api/incidents", headers=world.auth("own-a")).json()
    assert a in ids(mine) and b not in ids(mine)
    other = world.http.get(
        "/api/incidents", params={"department": "ttattt"}, headers=world.auth("own-a")
    ).json()
    assert other == {"items": [], "total": 0, "page": 1, "size": 50}
    # an id the owner guesses: 404, the same answer as for an id that does not exist
    guessed = world.http.get(f"/api/incidents/{b}", headers=world.auth("own-a"))
    missing = world.http.get("/api/incidents/INC-1999-999999", headers=world.auth("own-a"))
    assert guessed.status_code == missing.status_code == 404
    assert guessed.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    for action, body in (("acknowledge", {}), ("comment", {"text": "hello"})):
        r = world.http.post(f"/api/incidents/{b}/{action}", json=body, headers=world.auth("own-a"))
        assert r.status_code == 404, (action, r.text)
    # nor the alerts and events of that incident
    alert_b = world.alerts["ttattt"].id
    assert world.http.get(f"/api/alerts/{alert_b}", headers=world.auth("own-a")).status_code == 404
    assert world.http.get(f"/api/alerts/{alert_b}/events", headers=world.auth("own-a")).status_code == 404
    assert (
        world.http.get("/api/alerts", params={"incident": b}, headers=world.auth("own-a")).status_code == 404
    )
    listed = world.http.get("/api/alerts", headers=world.auth("own-a")).json()
    assert {x["id"] for x in listed["items"]} == {world.alerts["sotttt"].id}
    # and the incident of their own department is readable
    own = world.http.get(f"/api/incidents/{a}", headers=world.auth("own-a"))
    assert own.status_code == 200, own.text


def test_detail_has_notices_transitions_and_etag(world: World) -> None:
    incident = world.open_incident("sotttt")
    notice = Notice.new(
        incident_id=incident.id,
        kind="incident_opened",
        channel="email",
        recipient="quantri@sotttt.example.vn",
        context={"incident": incident.id},
    )
    assert world.services.notices.create(notice, refresh=True)
    r = world.http.get(f"/api/incidents/{incident.id}", headers=world.auth("ana"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == incident.id and body["status"] == "new"
    assert [n["recipient"] for n in body["notices"]] == ["quantri@sotttt.example.vn"]
    assert body["allowed_transitions"] == ["acknowledged", "investigating", "false_positive", "resolved"]
    assert r.headers["etag"] == f'"{body["seq_no"]}"'
    assert body["assets"][0]["department"] == "sotttt"


def test_changes_conflicts_and_lifecycle(world: World) -> None:
    incident = world.open_incident("sotttt")
    url = f"/api/incidents/{incident.id}"
    seq = world.http.get(url, headers=world.auth("ana")).json()["seq_no"]

    stale = world.http.post(
        f"{url}/acknowledge", json={"expected_seq_no": seq + 7}, headers=world.auth("ana")
    )
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "conflict"

    acked = world.http.post(f"{url}/acknowledge", headers={**world.auth("ana"), "If-Match": f'"{seq}"'})
    assert acked.status_code == 200, acked.text
    assert acked.json()["status"] == "acknowledged" and acked.json()["acknowledged_at"]
    new_seq = acked.json()["seq_no"]
    assert acked.headers["etag"] == f'"{new_seq}"' and new_seq > seq

    # a change based on the old version loses, whether the version comes in the body or If-Match
    late = world.http.post(
        f"{url}/comment", json={"text": "late", "expected_seq_no": seq}, headers=world.auth("adm")
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "conflict"

    assigned = world.http.post(f"{url}/assign", json={"assignee": "ana"}, headers=world.auth("adm"))
    assert assigned.status_code == 200 and assigned.json()["assignee"] == "ana"
    commented = world.http.post(
        f"{url}/comment", json={"text": "  checking the portal  "}, headers=world.auth("ana")
    )
    assert commented.json()["comments"][-1] == {
        "at": commented.json()["comments"][-1]["at"],
        "author": "user:ana",
        "text": "checking the portal",
    }

    # contained → acknowledged is not a move the lifecycle has: 409 with the allowed moves
    contained = world.http.post(f"{url}/status", json={"status": "contained"}, headers=world.auth("ana"))
    assert contained.status_code == 200
    back = world.http.post(f"{url}/status", json={"status": "acknowledged"}, headers=world.auth("ana"))
    assert back.status_code == 409
    err = back.json()["error"]
    assert err["code"] == "transition_not_allowed" and err["allowed"] == ["resolved", "investigating"]
    assert err["status"] == "contained"

    resolved = world.http.post(
        f"{url}/status",
        json={"status": "resolved", "reason": "blocked the source"},
        headers=world.auth("ana"),
    )
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    actors = [(e["actor"], e["action"]) for e in resolved.json()["timeline"]]
    assert ("user:ana", "status") in actors and ("user:ana", "closed") in actors


def test_owner_may_acknowledge_and_comment_but_not_assign_or_move(world: World) -> None:
    incident = world.open_incident("sotttt")
    url = f"/api/incidents/{incident.id}"
    assert (
        world.http.post(f"{url}/acknowledge", headers=world.auth("own-a")).json()["status"] == "acknowledged"
    )
    reply = world.http.post(f"{url}/comment", json={"text": "we restarted it"}, headers=world.auth("own-a"))
    assert reply.status_code == 200 and reply.json()["comments"][-1]["author"] == "user:own-a"
    for action, body in (("assign", {"assignee": "own-a"}), ("status", {"status": "resolved"})):
        r = world.http.post(f"{url}/{action}", json=body, headers=world.auth("own-a"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", action


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("comment", {"json": {"text": "   "}}),
        ("comment", {"json": {"text": "x", "extra": 1}}),
        ("comment", {"json": {"text": "x", "expected_seq_no": -1}}),
        ("comment", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}),
        ("status", {"json": {"status": "bogus"}}),
        ("assign", {"json": {}}),
        ("acknowledge", {"headers": {"If-Match": "W/abc"}}),
        ("comment", {"json": {"text": "x", "expected_seq_no": 1}, "headers": {"If-Match": '"2"'}}),
    ],
)
def test_invalid_input_is_422_with_a_json_error(world: World, path: str, kwargs: dict[str, Any]) -> None:
    incident_id = world.incidents["sotttt"].id
    headers = {**world.auth("ana"), **kwargs.pop("headers", {})}
    r = world.http.post(f"/api/incidents/{incident_id}/{path}", headers=headers, **kwargs)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid" and r.json()["error"]["message"]


@pytest.mark.parametrize(
    "params",
    [{"page": 0}, {"size": 100000}, {"sort": "title"}, {"priority": "P9"}, {"page": 9000, "size": 500}],
)
def test_invalid_list_parameters_are_422(world: World, params: dict[str, Any]) -> None:
    r = world.http.get("/api/incidents", params=params, headers=world.auth("ana"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid"


def test_session_writes_need_the_csrf_token(world: World) -> None:
    incident = world.open_incident("sotttt")
    session_id, csrf = world.session("ana")
    url = f"/api/incidents/{incident.id}/comment"
    world.http.cookies.clear()
    try:
        world.http.cookies.set("hcm_session", session_id)
        assert world.http.get(f"/api/incidents/{incident.id}").status_code == 200  # reads need no token
        refused = world.http.post(url, json={"text": "from another site"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
        wrong = world.http.post(url, json={"text": "x"}, headers={"X-CSRF-Token": "not-it"})
        assert wrong.status_code == 403
        ok = world.http.post(url, json={"text": "from the console"}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200 and ok.json()["comments"][-1]["text"] == "from the console"
    finally:
        world.http.cookies.clear()  # the other tests call with tokens only


def test_alerts_list_detail_and_events(world: World) -> None:
    alert = world.alerts["sotttt"]
    listed = world.http.get("/api/alerts", params={"rule_id": SSH_RULE_ID}, headers=world.auth("ana")).json()
    assert {world.alerts["sotttt"].id, world.alerts["ttattt"].id} <= {x["id"] for x in listed["items"]}
    by_incident = world.http.get(
        "/api/alerts", params={"incident": world.incidents["sotttt"].id}, headers=world.auth("ana")
    ).json()
    assert [x["id"] for x in by_incident["items"]] == [alert.id] and by_incident["total"] == 1
    future = (datetime.now(UTC) + timedelta(days=3650)).isoformat()
    assert (
        world.http.get("/api/alerts", params={"since": future}, headers=world.auth("ana")).json()["total"]
        == 0
    )
    naive = world.http.get("/api/alerts", params={"since": "2026-11-26T08:00:00"}, headers=world.auth("ana"))
    assert naive.status_code == 422

    one = world.http.get(f"/api/alerts/{alert.id}", headers=world.auth("ana")).json()
    assert one["id"] == alert.id and one["rule"]["id"] == SSH_RULE_ID
    assert one["hcm"]["incident"] == world.incidents["sotttt"].id

    events = world.http.get(f"/api/alerts/{alert.id}/events", headers=world.auth("own-a"))
    assert events.status_code == 200, events.text
    body = events.json()
    assert body["events_total"] == 1 and body["events"][0]["found"] is True
    source = body["events"][0]["_source"]
    assert source["event"]["original"].endswith("Failed password for root")
    assert body["events"][0]["_id"] == world.event_id
    assert world.http.get("/api/alerts/no-such-alert", headers=world.auth("ana")).status_code == 404
