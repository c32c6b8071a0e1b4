"""Fixtures of the REST API tests: one app (`create_app`) on the real Elasticsearch per test module,
with users of every role and their API tokens, a stored event, alerts and incidents of two
departments, the shipped inventory and playbooks, and a folder with one file rule.

The world is built once per module (installing templates and hashing passwords per test would
make the suite slow on two cores); tests that change an incident open their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient

from hcm_soc.config import DetectionSettings, IndexSettings, LocalNodeSettings, PathSettings, Settings
from hcm_soc.models.alert import Alert, AlertEventRef
from hcm_soc.models.incident import AffectedAsset, Incident
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, install, uninstall
from hcm_soc.store.users import Role
from hcm_soc.web.app import create_app
from hcm_soc.web.services import WebServices
from tests.integration.detection.conftest import SSH_FAILED_RULE, ssh_event
from tests.unit.incidents.factory import draft, make_alert

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "quiet river paper lantern"
SSH_RULE_ID = "5b0c6e43-6a3d-4d4b-9a57-1f0d3c2a9e01"
ROLES: dict[str, Role] = {"ana": "analyst", "adm": "admin", "own-a": "owner", "own-b": "owner"}
DEPARTMENTS = {"own-a": ["sotttt"], "own-b": ["ttattt"]}


def asset(department: str) -> AffectedAsset:
    return AffectedAsset(id=f"asset-{department}", name=f"System of {department}", department=department)


@dataclass
class World:
    http: TestClient
    services: WebServices
    settings: Settings
    names: IndexNames
    es: Elasticsearch
    tokens: dict[str, str] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)  # department -> its seeded incident
    alerts: dict[str, Alert] = field(default_factory=dict)  # department -> the alert of that incident
    event_id: str = ""

    def auth(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    def store_alert(self, *, refs: list[AlertEventRef] | None = None, **kw: Any) -> Alert:
        alert = make_alert(**kw)
        if refs:
            alert = alert.model_copy(
                update={"hcm": alert.hcm.model_copy(update={"events": refs, "events_total": len(refs)})}
            )
        assert AlertStore(self.es, self.names).create_many([alert], refresh="true").created == 1
        return alert

    def open_incident(
        self, department: str, *, priority: str = "P2", alert: Alert | None = None, title: str | None = None
    ) -> Incident:
        alert = alert or self.store_alert()
        incident, created = self.services.incidents.open_for_alert(
            draft(
                assets=[asset(department)],
                priority=priority,
                title=title or f"SSH brute force on {department}",
            ),
            alert,
            actor="system",
        )
        assert created
        return incident

    def session(self, username: str) -> tuple[str, str]:
        """A console session of `username`: (session id for the cookie, its CSRF token)."""
        return self.services.users.create_session(username, ttl=600)


def web_settings(names: IndexNames, tmp: Path) -> Settings:
    """Settings of a test app: its own prefix and state, one file rule, the shipped playbooks and inventory."""
    rules = tmp / "rules"
    rules.mkdir()
    (rules / "ssh_failed.yml").write_text(SSH_FAILED_RULE, encoding="utf-8")
    return Settings(
        index=IndexSettings(prefix=names.prefix, namespace=names.namespace),
        local_es=LocalNodeSettings(state_dir=tmp / "state"),
        paths=PathSettings(
            rules=[rules],
            playbooks=REPO / "playbooks",
            inventory=REPO / "inventory" / "city-systems.yml",
        ),
        detection=DetectionSettings(jitter=0, safety_margin=0, lease=False),
    )


@pytest.fixture(scope="module")
def world(es: Elasticsearch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    names = IndexNames(prefix=f"t{uuid.uuid4().hex[:10]}", namespace="test")
    install(es, build_items(names))
    settings = web_settings(names, tmp_path_factory.mktemp("web-api"))
    app = create_app(settings, es)
    try:
        with TestClient(app) as http:
            w = World(http=http, services=app.state.services, settings=settings, names=names, es=es)
            for username, role in ROLES.items():
                w.services.users.add(username, PASSWORD, role=role, departments=DEPARTMENTS.get(username, []))
                w.tokens[username] = w.services.users.create_token(username, "tests")
            # one stored sshd event, read back for the backing index the engine would name
            event = ssh_event("failure", user="root")
            event["event"]["original"] = "Nov 26 10:00:01 web01 sshd[4242]: Failed password for root"
            event["@timestamp"] = "2026-11-26T03:00:00Z"
            w.event_id = uuid.uuid4().hex
            es.index(
                index=names.events("system.auth"),
                id=w.event_id,
                document=event,
                op_type="create",
                refresh="wait_for",
            )
            hit = es.search(index=names.events("system.auth"), query={"ids": {"values": [w.event_id]}})[
                "hits"
            ]["hits"][0]
            ref = AlertEventRef(index=hit["_index"], id=w.event_id)
            for department, priority in (("sotttt", "P1"), ("ttattt", "P3")):
                alert = w.store_alert(rule_id=SSH_RULE_ID, refs=[ref])
                w.alerts[department] = alert
                w.incidents[department] = w.open_incident(department, priority=priority, alert=alert)
            w.services.alerts.refresh()
            yield w
    finally:
        uninstall(es, names)
