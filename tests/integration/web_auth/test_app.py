"""The auth routes and dependencies inside the real application (`hcm_soc.web.app.create_app`):
login through the console's own login page, the pages' redirect, CSRF on the REST API, logout."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient

from hcm_soc.store.names import IndexNames
from hcm_soc.web.app import create_app
from tests.integration.web_auth.conftest import PASSWORD, FakeClock, settings_for


@pytest.fixture
def app_client(es: Elasticsearch, installed: IndexNames, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(settings_for(installed), es, clock=clock)
    with TestClient(app, follow_redirects=False) as client:
        yield client


def test_console_login_flow(app_client: TestClient) -> None:
    users = app_client.app.state.services.users  # type: ignore[attr-defined]
    users.add("analyst1", PASSWORD, role="analyst")
    home = app_client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/login?next=/"
    page = app_client.get("/login?next=/")
    assert page.status_code == 200 and 'name="username"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    bad = app_client.post("/login", data={"username": "analyst1", "password": "wrong password!!"})
    assert bad.status_code == 401 and "Tên đăng nhập hoặc mật khẩu không đúng" in bad.text
    ok = app_client.post("/login", data={"username": "analyst1", "password": PASSWORD, "next": "/"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    me = app_client.get("/api/me")
    assert me.status_code == 200 and me.json()["role"] == "analyst"
    assert me.headers.get("cache-control") == "no-store"
    assert app_client.get("/").status_code == 200
    # the page carries the CSRF token its forms send back (the logout form among them)
    csrf = me.json()["csrf_token"]
    assert csrf in app_client.get("/").text
    assert app_client.post("/logout").status_code == 403
    assert app_client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert app_client.get("/api/me").status_code == 401


def test_api_token_and_csrf_in_the_app(app_client: TestClient) -> None:
    users = app_client.app.state.services.users  # type: ignore[attr-defined]
    users.add("admin1", PASSWORD, role="admin")
    token = users.create_token("admin1", "ci")
    auth = {"Authorization": f"Bearer {token}"}
    listed = app_client.get("/api/users", headers=auth)
    assert listed.status_code == 200
    assert [u["username"] for u in listed.json()["items"]] == ["admin1"]
    assert app_client.get("/api/users", params={"token": token}).status_code == 401
    app_client.post("/login", data={"username": "admin1", "password": PASSWORD})
    body = {"username": "analyst2", "password": PASSWORD, "role": "analyst"}
    refused = app_client.post("/api/users", json=body)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
    csrf = app_client.get("/api/me").json()["csrf_token"]
    created = app_client.post("/api/users", json=body, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", csrf)
