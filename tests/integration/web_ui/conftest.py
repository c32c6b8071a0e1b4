"""Fixtures of the console page tests: one app (`create_app`) on the real Elasticsearch per test
module, users of every role who log in through the real login form, a stored sshd event (with
markup in `event.original`), alerts and incidents of two departments, the shipped inventory and
playbooks, and a folder with one file rule.

Built once per module: hashing passwords and installing templates per test would make the suite
slow on two cores. Tests that change an incident open their own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient

from hcm_soc.config import Settings
from hcm_soc.models.alert import Alert, AlertEventRef
from hcm_soc.models.incident import AffectedAsset, Incident
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, install, uninstall
from hcm_soc.web.app import create_app
from hcm_soc.web.services import WebServices
from tests.integration.detection.conftest import ssh_event
from tests.integration.web_api.conftest import web_settings
from tests.unit.incidents.factory import draft, make_alert

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "quiet river paper lantern"
SSH_RULE_ID = "5b0c6e43-6a3d-4d4b-9a57-1f0d3c2a9e01"
ROLES = {"ana": "analyst", "adm": "admin", "own-a": "owner", "own-b": "owner"}
DEPARTMENTS = {"own-a": ["sotttt"], "own-b": ["ttattt"]}
XSS = "<script>alert(1)</script>"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def asset(department: str) -> AffectedAsset:
    return AffectedAsset(
        id=f"asset-{department}", name=f"System of {department}", department=department, sector="e-gov"
    )


@dataclass
class Console:
    """One logged-in browser: its client and the CSRF token of its session."""

    http: TestClient
    csrf: str

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.http.post(
            path, data={"csrf_token": self.csrf, **(data or {})}, follow_redirects=False, **kw
        )

    def get(self, path: str, **kw: Any) -> Any:
        return self.http.get(path, follow_redirects=False, **kw)


@dataclass
class World:
    app: Any
    http: TestClient
    services: WebServices
    settings: Settings
    names: IndexNames
    es: Elasticsearch
    incidents: dict[str, Incident] = field(default_factory=dict)  # department -> its seeded incident
    event_ref: AlertEventRef | None = None

    def store_alert(self, **kw: Any) -> Alert:
        alert = make_alert(**kw)
        if self.event_ref is not None:
            hcm = alert.hcm.model_copy(update={"events": [self.event_ref], "events_total": 1})
            alert = alert.model_copy(update={"hcm": hcm})
        assert AlertStore(self.es, self.names).create_many([alert], refresh="true").created == 1
        return alert

    def open_incident(self, department: str, *, priority: str = "P2", **kw: Any) -> Incident:
        alert = self.store_alert(rule_id=SSH_RULE_ID)
        base: dict[str, Any] = {"title": f"SSH brute force on {department}"}
        incident, created = self.services.incidents.open_for_alert(
            draft(assets=[asset(department)], priority=priority, **{**base, **kw}), alert, actor="system"
        )
        assert created
        self.services.incidents.store.refresh()
        return incident

    def login(self, username: str) -> Console:
        """A new browser that signs in through the login form, as a person would."""
        http = TestClient(self.app)
        resp = http.post(
            "/login",
            data={"username": username, "password": PASSWORD, "next": "/incidents"},
            follow_redirects=False,
        )
        assert resp.status_code == 303, resp.text
        page = http.get("/incidents")
        assert page.status_code == 200, page.text
        found = CSRF_META.search(page.text)
        assert found, "the page carries the session's CSRF token"
        return Console(http=http, csrf=found.group(1))


@pytest.fixture(scope="module")
def world(es: Elasticsearch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    names = IndexNames(prefix=f"t{uuid.uuid4().hex[:10]}", namespace="test")
    install(es, build_items(names))
    settings = web_settings(names, tmp_path_factory.mktemp("web-ui"))
    app = create_app(settings, es)
    try:
        with TestClient(app) as http:
            w = World(app=app, http=http, services=app.state.services, settings=settings, names=names, es=es)
            for username, role in ROLES.items():
                w.services.users.add(username, PASSWORD, role=role, departments=DEPARTMENTS.get(username, []))  # type: ignore[arg-type]
            event = ssh_event("failure", user="root")
            event["event"]["original"] = f"Nov 26 10:00:01 web01 sshd[4242]: Failed password for {XSS}"
            event["@timestamp"] = "2026-11-26T03:00:00Z"
            event_id = uuid.uuid4().hex
            es.index(
                index=names.events("system.auth"),
                id=event_id,
                document=event,
                op_type="create",
                refresh="wait_for",
            )
            hit = es.search(index=names.events("system.auth"), query={"ids": {"values": [event_id]}})["hits"][
                "hits"
            ][0]
            w.event_ref = AlertEventRef(index=hit["_index"], id=event_id)
            for department, priority in (("sotttt", "P1"), ("ttattt", "P3")):
                w.incidents[department] = w.open_incident(department, priority=priority)
            yield w
    finally:
        uninstall(es, names)
