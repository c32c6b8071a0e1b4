"""The rest of the REST API on the real Elasticsearch: who may call what (401/403 on every route),
security headers and JSON errors, /openapi.json, health, metrics, rules (workbench), playbooks,
inventory, ingest (NDJSON and JSON arrays, idempotent) and users (audited)."""

from __future__ import annotations

import re

import httpx
import pytest

from hcm_soc.web.headers import CSP
from tests.integration.detection.conftest import SSH_FAILED_RULE, ssh_event
from tests.integration.web_api.conftest import PASSWORD, SSH_RULE_ID, World

CONSOLE_RULE_ID = "8e1f3a52-0c1d-4f7e-b1a2-6c9d0e4f5a77"
ROOT_LOGIN_RULE = (
    SSH_FAILED_RULE.replace(SSH_RULE_ID, CONSOLE_RULE_ID)
    .replace("title: SSH failed password", "title: SSH root login accepted")
    .replace("'failed password'", "'accepted password for root'")
)

#: every API route with a body that passes validation, and the roles allowed to call it
ROUTES: list[tuple[str, str, dict[str, object] | None, set[str]]] = [
    ("GET", "/api/incidents", {}, {"ana", "adm", "own-a"}),
    ("GET", "/api/alerts", {}, {"ana", "adm", "own-a"}),
    ("GET", "/api/rules", {}, {"ana", "adm"}),
    ("GET", f"/api/rules/{SSH_RULE_ID}", {}, {"ana", "adm"}),
    ("POST", "/api/rules/validate", {"yaml": SSH_FAILED_RULE}, {"ana", "adm"}),
    ("POST", "/api/rules/test", {"yaml": SSH_FAILED_RULE, "events": []}, {"adm"}),
    ("POST", "/api/rules/backtest", {"yaml": SSH_FAILED_RULE, "hours": 1}, {"adm"}),
    ("POST", "/api/rules", {"yaml": "title: x"}, {"adm"}),
    ("POST", f"/api/rules/{SSH_RULE_ID}/enable", None, {"adm"}),
    ("POST", f"/api/rules/{SSH_RULE_ID}/disable", None, {"adm"}),
    ("POST", f"/api/rules/{SSH_RULE_ID}/run", None, {"adm"}),
    ("GET", "/api/playbooks", {}, {"ana", "adm"}),
    ("POST", "/api/playbooks/validate", {"yaml": "id: x"}, {"adm"}),
    ("GET", "/api/inventory", {}, {"ana", "adm"}),
    ("GET", "/api/inventory/lookup?value=10.10.1.20", {}, {"ana", "adm"}),
    ("POST", "/api/ingest/webtest", None, {"ana", "adm"}),
    ("GET", "/api/users", {}, {"adm"}),
    ("POST", "/api/users", {"username": "x1", "password": PASSWORD, "role": "analyst"}, {"adm"}),
    ("POST", "/api/users/ana/disable", None, {"adm"}),
    ("POST", "/api/users/ana/enable", None, {"adm"}),
    ("POST", "/api/users/ana/tokens", {"name": "x"}, {"adm"}),
    ("GET", "/metrics", {}, {"adm"}),
]


def call(
    world: World, method: str, path: str, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    if method == "GET":
        return world.http.get(path, headers=headers)
    return world.http.post(path, json=body, headers=headers)


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
def test_every_route_refuses_anonymous_and_wrong_roles(
    world: World, method: str, path: str, body: object, allowed: set[str]
) -> None:
    anonymous = call(world, method, path, body)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    for user in {"ana", "adm", "own-a"} - allowed:
        r = call(world, method, path, body, world.auth(user))
        assert r.status_code == 403, (user, r.text)
        assert r.json()["error"]["code"] == "forbidden"
    bad_token = call(world, method, path, body, {"Authorization": "Bearer hcm_" + "x" * 43})
    assert bad_token.status_code == 401


def test_openapi_lists_every_route_with_a_summary(world: World) -> None:
    spec = world.http.get("/openapi.json").json()
    paths = spec["paths"]
    for method, path, _, _ in ROUTES:
        template = (
            re.sub(r"\?.*$", "", path).replace(SSH_RULE_ID, "{rule_id}").replace("/ana/", "/{username}/")
        )
        template = template.replace("/webtest", "/{dataset}")
        assert method.lower() in paths[template], template
        assert paths[template][method.lower()]["summary"], template
    for template in (
        "/api/incidents/{incident_id}",
        "/api/incidents/{incident_id}/acknowledge",
        "/api/incidents/{incident_id}/assign",
        "/api/incidents/{incident_id}/comment",
        "/api/incidents/{incident_id}/status",
        "/api/alerts/{alert_id}",
        "/api/alerts/{alert_id}/events",
        "/api/health",
    ):
        assert all(op["summary"] for op in paths[template].values()), template


def test_security_headers_and_json_errors(world: World) -> None:
    for r in (
        world.http.get("/api/health"),
        world.http.get("/api/no-such-thing"),
        world.http.get("/api/incidents"),
        world.http.get("/static/htmx.min.js"),
    ):
        assert r.headers["content-security-policy"] == CSP
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
    unknown = world.http.get("/api/no-such-thing")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert world.http.get("/api/health").headers["cache-control"] == "no-store"
    # outside /api errors are the console's HTML page, with the same headers
    page = world.http.get("/no-such-page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP and "404" in page.text
    login = world.http.get("/incidents", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/login?next=/incidents"
    wrong_method = world.http.delete("/api/incidents", headers=world.auth("ana"))
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_health_public_and_detailed(world: World) -> None:
    public = world.http.get("/api/health")
    assert public.status_code == 200
    body = public.json()
    assert body["status"] == "ok" and body["elasticsearch"]["status"] == "up"
    assert body["elasticsearch"]["version"].startswith("8.")
    assert "outbox" not in body and "engine" not in body
    detailed = world.http.get("/api/health", headers=world.auth("ana")).json()
    assert detailed["outbox"] == {"pending": 0, "failed": 0}
    assert detailed["rules"]["failing"] == 0 and detailed["engine"] == {"lease": None}
    owner = world.http.get("/api/health", headers=world.auth("own-a")).json()
    assert "outbox" not in owner


def test_metrics_text_format(world: World) -> None:
    r = world.http.get("/metrics", headers=world.auth("adm"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = r.text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(values['hcm_incidents_open{priority="P1"}']) >= 1
    assert float(values['hcm_incidents_open{priority="P4"}']) == 0
    assert float(values['hcm_events_ingested_total{dataset="system.auth"}']) >= 1
    assert 'hcm_rules{state="never_run"}' in values or 'hcm_rules{state="ok"}' in values
    assert "hcm_rule_failures_total" in values and "process_resident_memory_bytes" in values
    assert "# TYPE hcm_alerts_total gauge" in text and "# TYPE hcm_events_ingested_total counter" in text
    # an analyst's console session may read it too, an analyst's token may not
    session_id, _ = world.session("ana")
    world.http.cookies.set("hcm_session", session_id)
    try:
        assert world.http.get("/metrics").status_code == 200
    finally:
        world.http.cookies.clear()
    refused = world.http.get("/metrics", headers=world.auth("ana"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


def test_rules_catalog_workbench_and_audit(world: World) -> None:
    adm = world.auth("adm")
    catalog = world.http.get("/api/rules", headers=world.auth("ana")).json()
    assert SSH_RULE_ID in {r["id"] for r in catalog["items"]}
    detail = world.http.get(f"/api/rules/{SSH_RULE_ID}", headers=world.auth("ana")).json()
    assert "failed password" in detail["yaml"] and detail["query"]
    assert world.http.get("/api/rules/nope", headers=adm).json()["error"]["code"] == "not_found"

    broken = world.http.post(
        "/api/rules/validate", json={"yaml": "title: x\nlogsource: [linux\n"}, headers=adm
    )
    assert broken.status_code == 200 and broken.json()["ok"] is False and broken.json()["problems"]
    tested = world.http.post(
        "/api/rules/test",
        json={
            "yaml": ROOT_LOGIN_RULE,
            "events": [ssh_event("failure", user="root"), ssh_event("success", user="root")],
        },
        headers=adm,
    )
    assert tested.status_code == 200 and tested.json()["matches"] == [1]
    backtest = world.http.post("/api/rules/backtest", json={"yaml": SSH_FAILED_RULE, "hours": 1}, headers=adm)
    assert backtest.status_code == 200 and "examined" in backtest.json()

    invalid = world.http.post(
        "/api/rules", json={"yaml": ROOT_LOGIN_RULE.replace("    condition: selection\n", "")}, headers=adm
    )
    assert invalid.status_code == 422 and invalid.json()["error"]["problems"]
    saved = world.http.post("/api/rules", json={"yaml": ROOT_LOGIN_RULE, "enabled": False}, headers=adm)
    assert saved.status_code == 201, saved.text
    assert saved.json()["id"] == CONSOLE_RULE_ID and saved.json()["enabled"] is False
    assert (
        world.http.post(f"/api/rules/{CONSOLE_RULE_ID}/run", headers=adm).json()["error"]["code"]
        == "conflict"
    )
    assert world.http.post(f"/api/rules/{CONSOLE_RULE_ID}/enable", headers=adm).json()["enabled"] is True
    ran = world.http.post(f"/api/rules/{CONSOLE_RULE_ID}/run", headers=adm)
    assert ran.status_code == 200 and ran.json()["error"] is None
    assert world.http.post(f"/api/rules/{CONSOLE_RULE_ID}/disable", headers=adm).json()["enabled"] is False
    listed = {r["id"]: r for r in world.http.get("/api/rules", headers=adm).json()["items"]}
    assert listed[CONSOLE_RULE_ID]["enabled"] is False and listed[CONSOLE_RULE_ID]["source"] == "console"
    assert world.http.post("/api/rules/nope/enable", headers=adm).status_code == 404

    world.es.indices.refresh(index=world.names.audit)
    actions = [e.action for e in world.services.audit.list(limit=50)]
    for action in ("rule.save", "rule.enable", "rule.run", "rule.disable"):
        assert action in actions


def test_playbooks_and_inventory(world: World) -> None:
    listed = world.http.get("/api/playbooks", headers=world.auth("ana")).json()
    assert listed["total"] >= 4 and listed["problems"] == []
    assert "brute-force-public-portal" in {p["id"] for p in listed["items"]}
    bad = world.http.post(
        "/api/playbooks/validate", json={"yaml": "id: x\ntitle: t\nsteps: []\n"}, headers=world.auth("adm")
    )
    assert bad.status_code == 200 and bad.json()["ok"] is False
    assert all(p["file"] == "<request>" and p["message"] for p in bad.json()["problems"])
    good_text = (world.settings.paths.playbooks / "default.yml").read_text(encoding="utf-8")
    good = world.http.post(
        "/api/playbooks/validate", json={"yaml": good_text}, headers=world.auth("adm")
    ).json()
    assert good["ok"] is True and good["problems"] == [] and good["note"]

    inventory = world.http.get("/api/inventory", headers=world.auth("ana")).json()
    assert inventory["problems"] == [] and inventory["total"] > 0
    assert {"sotttt", "ttattt"} <= {d["id"] for d in inventory["departments"]}
    found = world.http.get(
        "/api/inventory/lookup", params={"value": "10.10.1.20"}, headers=world.auth("ana")
    ).json()
    assert found["matches"] and found["matches"][0]["matched_by"]
    none = world.http.get(
        "/api/inventory/lookup", params={"value": "192.0.2.250"}, headers=world.auth("ana")
    ).json()
    assert none["matches"] == []
    assert world.http.get("/api/inventory/lookup", headers=world.auth("ana")).status_code == 422


def test_ingest_ndjson_and_arrays_idempotently(world: World) -> None:
    index = world.names.events("webtest.app")

    def count() -> int:
        world.es.indices.refresh(index=index, ignore_unavailable=True)
        return int(world.es.count(index=index, ignore_unavailable=True)["count"])

    body = b'{"message": "login ok", "user": "a"}\n\n{not json}\n{"message": "logout"}\n'
    r = world.http.post("/api/ingest/webtest.app", content=body, headers=world.auth("ana"))
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["accepted"] == 2 and answer["stored"] == 3 and answer["rejected_count"] == 1
    assert answer["rejected"][0]["line"] == 3 and answer["source"] == "api.ana"
    assert count() == 3
    # the same body again (a retry) writes nothing new
    assert (
        world.http.post("/api/ingest/webtest.app", content=body, headers=world.auth("ana")).status_code == 202
    )
    assert count() == 3
    batch = world.http.post(
        "/api/ingest/webtest.app",
        json=[{"message": "a"}, {"message": "b"}],
        headers={**world.auth("adm"), "X-Batch-Id": "batch-1"},
    )
    assert (
        batch.status_code == 202 and batch.json()["accepted"] == 2 and batch.json()["batch_id"] == "batch-1"
    )
    assert count() == 5
    docs = [h["_source"] for h in world.es.search(index=index, size=20)["hits"]["hits"]]
    login = next(d for d in docs if d["event"]["original"] == '{"message": "login ok", "user": "a"}')
    assert login["json"] == {"message": "login ok", "user": "a"}  # the jsonl parser keeps unmapped fields
    assert login["event"]["dataset"] == "webtest.app" and "rest-api" in login["tags"]
    failed = world.es.search(index=index, query={"term": {"tags": "_parse_failure"}})["hits"]["total"][
        "value"
    ]
    assert failed == 1

    for dataset, content in (("Bad-Name", b'{"a":1}'), ("webtest.app", b""), ("webtest.app", b"[1, 2")):
        r = world.http.post(f"/api/ingest/{dataset}", content=content, headers=world.auth("ana"))
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid", (dataset, content)
    # a console session may push events too, with its CSRF token
    session_id, csrf = world.session("adm")
    world.http.cookies.set("hcm_session", session_id)
    try:
        line = b'{"message": "from the console"}'
        refused = world.http.post("/api/ingest/webtest.app", content=line)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
        taken = world.http.post("/api/ingest/webtest.app", content=line, headers={"X-CSRF-Token": csrf})
        assert taken.status_code == 202 and taken.json()["source"] == "api.adm"
    finally:
        world.http.cookies.clear()
    assert count() == 6
    too_big = world.http.post(
        "/api/ingest/webtest.app", content=b"x" * (10 * 1024 * 1024 + 1), headers=world.auth("ana")
    )
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "too_large"
    assert count() == 6


def test_users_are_managed_by_admins_and_audited(world: World) -> None:
    adm = world.auth("adm")
    listed = world.http.get("/api/users", headers=adm).json()
    by_name = {u["username"]: u for u in listed["items"]}
    assert by_name["own-a"]["departments"] == ["sotttt"] and by_name["ana"]["tokens"][0]["name"] == "tests"
    assert "password_hash" not in str(listed) and world.tokens["ana"] not in str(listed)

    new = {"username": "new.analyst", "password": PASSWORD, "role": "analyst", "display_name": "Nguyễn Văn A"}
    created = world.http.post("/api/users", json=new, headers=adm)
    assert created.status_code == 201, created.text
    assert created.json()["username"] == "new.analyst" and "password" not in created.text
    again = world.http.post("/api/users", json=new, headers=adm)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    weak = world.http.post(
        "/api/users", json={**new, "username": "weak.one", "password": "short"}, headers=adm
    )
    assert weak.status_code == 422
    bad_role = world.http.post("/api/users", json={**new, "username": "x2", "role": "root"}, headers=adm)
    assert bad_role.status_code == 422

    token = world.http.post("/api/users/new.analyst/tokens", json={"name": "siem"}, headers=adm)
    assert token.status_code == 201 and token.json()["token"].startswith("hcm_")
    headers = {"Authorization": f"Bearer {token.json()['token']}"}
    assert world.http.get("/api/incidents", headers=headers).status_code == 200
    assert (
        world.http.post("/api/users/new.analyst/tokens", json={"name": "siem"}, headers=adm).status_code
        == 409
    )

    assert world.http.post("/api/users/new.analyst/disable", headers=adm).json()["disabled"] is True
    assert world.http.get("/api/incidents", headers=headers).status_code == 401
    assert world.http.post("/api/users/new.analyst/enable", headers=adm).json()["disabled"] is False
    assert world.http.get("/api/incidents", headers=headers).status_code == 200
    assert world.http.post("/api/users/nobody/disable", headers=adm).status_code == 404
    itself = world.http.post("/api/users/adm/disable", headers=adm)
    admin = world.services.users.get("adm")
    assert itself.status_code == 409 and admin is not None and admin.disabled is False

    world.es.indices.refresh(index=world.names.audit)
    entries = world.services.audit.list(limit=100)
    seen = {(e.action, e.outcome) for e in entries}
    for expected in (
        ("user.add", "success"),
        ("user.add", "failure"),
        ("token.create", "success"),
        ("user.disable", "success"),
        ("user.enable", "success"),
    ):
        assert expected in seen, expected
    assert all(e.actor == "user:adm" for e in entries if e.action.startswith(("user.", "token.")))


JUNK: list[object] = [[], "text", 12, None, {"yaml": 5}, {"yaml": "x" * (256 * 1024 + 1)}, {"unknown": 1}]


@pytest.mark.parametrize("body", JUNK, ids=[type(b).__name__ + str(n) for n, b in enumerate(JUNK)])
def test_junk_bodies_are_4xx_never_500(world: World, body: object) -> None:
    incident = world.incidents["sotttt"].id
    for path in (
        "/api/rules/validate",
        "/api/rules/test",
        "/api/rules/backtest",
        "/api/rules",
        "/api/playbooks/validate",
        "/api/users",
        "/api/users/ana/tokens",
        f"/api/incidents/{incident}/assign",
        f"/api/incidents/{incident}/comment",
        f"/api/incidents/{incident}/status",
    ):
        r = world.http.post(path, json=body, headers=world.auth("adm"))
        assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
        assert r.json()["error"]["code"] in ("invalid", "bad_request"), (path, r.text)


@pytest.mark.parametrize(
    "text",
    ["- a\n- b\n", "{{{", "title: [unclosed", "\x00\x01", "id: 1\ntitle: 2\nlogsource: 3\ndetection: 4\n"],
)
def test_odd_rule_texts_are_answered_not_crashed(world: World, text: str) -> None:
    adm = world.auth("adm")
    checked = world.http.post("/api/rules/validate", json={"yaml": text}, headers=adm)
    assert checked.status_code == 200 and checked.json()["ok"] is False and checked.json()["problems"]
    tested = world.http.post("/api/rules/test", json={"yaml": text, "events": [{}]}, headers=adm)
    assert tested.status_code in (200, 422) and tested.json()
    saved = world.http.post("/api/rules", json={"yaml": text}, headers=adm)
    assert saved.status_code == 422, saved.text
    playbook = world.http.post("/api/playbooks/validate", json={"yaml": text}, headers=adm)
    assert playbook.status_code == 200 and playbook.json()["ok"] is False
