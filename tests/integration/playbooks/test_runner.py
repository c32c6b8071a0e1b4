"""The playbook runner end to end on the real Elasticsearch: alerts → playbooks → incidents →
notices delivered to a real SMTP server and a real HTTP receiver on loopback, with a controllable
clock for grouping windows, SLA escalation and auto-close."""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.config import Settings, load_settings
from hcm_soc.demo_response import MailSink
from hcm_soc.models.alert import (
    AddressEntity,
    Alert,
    AlertEventFields,
    AlertEventRef,
    AlertHcmFields,
    AlertRuleFields,
    AlertWindow,
    HcmRuleFields,
    NamedEntity,
)
from hcm_soc.notify import load_secret, verify_ack_token
from hcm_soc.notify.webhook import verify_signature
from hcm_soc.playbooks.jobs import Response, build_response
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.names import IndexNames
from hcm_soc.store.notices import NoticeStore

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
BRUTE = "11111111-1111-4111-8111-111111111111"
INFO = "22222222-2222-4222-8222-222222222222"

INVENTORY = """
departments:
  - id: so-tttt
    name: Sở Thông tin và Truyền thông
    name_en: Department of Information and Communications
    contacts:
      - {name: Nguyễn Văn Chủ, email: chu.nv@sotttt.example.vn, role: owner}
      - {name: Trần Thị Kỹ, email: ky.tt@sotttt.example.vn, role: technical}
      - {name: Lê Văn Lãnh, email: lanh.lv@sotttt.example.vn, role: escalation}
assets:
  - id: cong-dvc
    name: Cổng dịch vụ công
    hostnames: [web01.dvc.example.vn]
    addresses: [10.1.0.0/24]
    department: so-tttt
    sector: e_government
    criticality: 4
    sensitivity: internal
"""

BRUTE_PLAYBOOK = """
id: brute
title: Dò mật khẩu
order: 10
trigger:
  rule_ids: [%(rule)s]
steps:
  - enrich: {inventory: true, reverse_dns: true, history_days: 30}
  - group: {key: "{{ rule.id }}:{{ source.ip }}", window: 1h}
  - set:
      priority: matrix
      sla: {acknowledge: 15m, resolve: 4h}
      queue: soc
      tags: [brute-force]
  - notify:
      to: [owner, analysts]
      template: incident_opened
      actions:
        vi: [Chặn địa chỉ IP nguồn trên tường lửa.]
        en: [Block the source IP at the firewall.]
  - notify:
      id: leaders
      when: {level: {min: critical}}
      to: [escalation]
      template: incident_opened
  - webhook: {url: "%(hook)s"}
  - escalate: {after: acknowledge_sla, to: [escalation], repeat: 30m, max_levels: 2}
"""

DEFAULT_PLAYBOOK = """
id: default
title: Mặc định
order: 1000
trigger: {always: true}
steps:
  - group: {key: "{{ rule.id }}:{{ 1 // 0 }}", window: 1h}
  - set: {priority: P4}
  - notify: {to: [analysts], template: incident_opened}
  - close: {when_quiet: 3d, max_level: informational, status: resolved}
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Hooks:
    """A webhook receiver on 127.0.0.1 that keeps the requests it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with MailSink() as s:
        yield s


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    h.thread.start()
    yield h
    h.server.shutdown()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(minutes=1))


@pytest.fixture
def settings(tmp_path: Path, sink: MailSink, hooks: Hooks, installed: IndexNames) -> Settings:
    (tmp_path / "inventory.yml").write_text(INVENTORY, "utf-8")
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "brute.yml").write_text(BRUTE_PLAYBOOK % {"rule": BRUTE, "hook": hooks.url}, "utf-8")
    (books / "default.yml").write_text(DEFAULT_PLAYBOOK, "utf-8")
    base = load_settings(env={})
    return base.model_copy(
        update={
            "index": base.index.model_copy(
                update={"prefix": installed.prefix, "namespace": installed.namespace}
            ),
            "paths": base.paths.model_copy(
                update={"playbooks": books, "inventory": tmp_path / "inventory.yml"}
            ),
            "smtp": base.smtp.model_copy(update={"host": "127.0.0.1", "port": sink.port, "security": "none"}),
            "notify": base.notify.model_copy(
                update={"analysts": ["truc-ban@soc.example.vn"], "escalation": ["lanh-dao@soc.example.vn"]}
            ),
            "local_es": base.local_es.model_copy(update={"state_dir": tmp_path / "state"}),
        }
    )


class Resolver:
    """Reverse DNS of the test: answers from a table and counts the questions (no network)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, ip: str) -> str | None:
        self.asked.append(ip)
        return {"203.0.113.7": "scanner.attacker.example"}.get(ip)


@pytest.fixture
def resolver() -> Resolver:
    return Resolver()


@pytest.fixture
def response(
    es: Elasticsearch, installed: IndexNames, settings: Settings, clock: Clock, resolver: Resolver
) -> Response:
    return build_response(settings, es, installed, clock=clock, resolver=resolver)


def alert(
    n: int, *, rule: str = BRUTE, ip: str = "203.0.113.7", at: datetime = T0, level: str = "high"
) -> Alert:
    return Alert(
        id=f"alert-{rule[:4]}-{n}",
        timestamp=at,
        message=f"SSH brute force from {ip}",
        event=AlertEventFields(severity=4, risk_score=73.0, dataset="system.auth"),
        rule=AlertRuleFields(id=rule, name="SSH Brute Force <script>x</script>", ruleset="city"),
        source=AddressEntity(ip=ip),
        host=NamedEntity(name="web01.dvc.example.vn"),
        hcm=AlertHcmFields(
            created=at,
            rule=HcmRuleFields(
                id=rule, title="SSH Brute Force", level=level, tags=["attack.credential-access"]
            ),  # type: ignore[arg-type]
            window=AlertWindow(start=at - timedelta(minutes=1), end=at),
            match_key=f"k{n}",
            events=[AlertEventRef(index="hcm-events-system.auth-test", id=f"e{n}")],
            events_total=1,
            count=1,
        ),
    )


def store_alerts(es: Elasticsearch, names: IndexNames, alerts: list[Alert]) -> AlertStore:
    store = AlertStore(es, names)
    store.create_many(alerts, refresh="wait_for")
    return store


def incidents_now(response: Response) -> list[Any]:
    """Every incident, each read by id (a search may show an older version until the next refresh)."""
    service = response.runner.incidents
    return [service.get(i.id) for i in service.list(size=50).items]


def rcpt(m: email.message.EmailMessage) -> str:
    return str(m["To"].addresses[0].addr_spec)


def mails(sink: MailSink) -> list[email.message.EmailMessage]:
    return list(sink.messages)


def test_alerts_group_into_incidents_and_owners_are_told(
    es: Elasticsearch,
    installed: IndexNames,
    response: Response,
    sink: MailSink,
    hooks: Hooks,
    settings: Settings,
    resolver: Resolver,
) -> None:
    assert response.problems == []
    store = store_alerts(
        es,
        installed,
        [
            alert(1, at=T0),
            alert(2, at=T0 + timedelta(minutes=5)),
            alert(3, at=T0 + timedelta(minutes=10)),
            alert(4, ip="198.51.100.9", at=T0 + timedelta(minutes=2)),
        ],
    )
    report = response.runner.run_once()
    assert (report.alerts, report.opened, report.joined, report.failed) == (4, 2, 2, 0)

    incidents = incidents_now(response)
    by_ip = {i.entities.ips[0]: i for i in incidents}
    first = by_ip["203.0.113.7"]
    assert re.fullmatch(r"INC-2026-\d{6}", first.id)
    assert first.alert_count == 3 and first.priority == "P1"  # high × criticality 4
    assert first.sla.acknowledge_minutes == 15 and first.sla.resolve_minutes == 240
    assert first.queue == "soc" and "brute-force" in first.tags
    assert [a.id for a in first.assets] == ["cong-dvc"] and first.assets[0].owners == [
        "chu.nv@sotttt.example.vn"
    ]
    enriched = next(e for e in first.timeline if e.action == "enriched")
    assert "203.0.113.7=scanner.attacker.example" in (enriched.message or "")
    assert sorted(resolver.asked) == ["198.51.100.9", "203.0.113.7"]  # once per address, not per alert
    actions = [e.action for e in first.timeline]
    for expected in ("enriched", "grouped", "set", "notice_queued", "notice_sent"):
        assert expected in actions, actions
    store.refresh()
    for a in store.search(size=10):
        assert a.hcm.incident == by_ip[a.source.ip].id and a.hcm.triage is not None  # type: ignore[union-attr]
        assert a.hcm.playbook == "brute"

    # two incidents x (owner + analyst) by e-mail, one webhook each
    received = mails(sink)
    assert sorted(rcpt(m) for m in received) == sorted(
        ["chu.nv@sotttt.example.vn", "truc-ban@soc.example.vn"] * 2
    )
    owner_mail = next(m for m in received if first.id in str(m["Subject"]) and rcpt(m).startswith("chu.nv"))
    text = owner_mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = owner_mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Chặn địa chỉ IP nguồn trên tường lửa." in text and "Cổng dịch vụ công" in text
    assert "<script>x</script>" not in html
    token = re.search(r"token=([A-Za-z0-9_.-]+)", text).group(1)  # type: ignore[union-attr]
    claim = verify_ack_token(load_secret(settings), token, now=T0)
    assert (claim.incident_id, claim.recipient) == (first.id, "chu.nv@sotttt.example.vn")

    assert len(hooks.requests) == 2
    headers, body = next((h, b) for h, b in hooks.requests if first.id.encode() in b)
    assert verify_signature(
        load_secret(settings),
        timestamp=headers["x-hcm-timestamp"],
        body=body,
        signature=headers["x-hcm-signature"],
        now=datetime.fromtimestamp(int(headers["x-hcm-timestamp"]), UTC),
    )
    assert json.loads(body)["incident"]["id"] == first.id


def test_rerun_changes_nothing_and_a_crash_is_repaired(
    es: Elasticsearch, installed: IndexNames, response: Response, sink: MailSink
) -> None:
    store = store_alerts(es, installed, [alert(1), alert(2, at=T0 + timedelta(minutes=1))])
    assert response.runner.run_once().opened == 1
    incident = incidents_now(response)[0]
    sent = len(sink.messages)

    again = response.runner.run_once()
    assert again.alerts == 0
    a1 = store.get("alert-1111-1")
    assert a1 is not None
    assert response.runner.process(a1).outcome == "already_handled"

    # a crash after the incident was opened but before the alert was linked and triaged
    doc = es.get(index=installed.alerts, id="alert-1111-1")["_source"]
    for key in ("triage", "incident", "playbook"):
        doc["hcm"].pop(key, None)
    es.index(index=installed.alerts, id="alert-1111-1", document=doc, refresh="wait_for")
    repaired = response.runner.run_once()
    assert (repaired.alerts, repaired.opened, repaired.failed) == (1, 0, 0)
    after = response.runner.incidents.get(incident.id)
    assert after.alert_count == incident.alert_count == 2
    assert len(incidents_now(response)) == 1
    assert len(sink.messages) == sent
    assert len(NoticeStore(es, installed).list_for_incident(incident.id)) == 3  # owner, analyst, webhook


def test_a_failing_step_is_recorded_and_the_others_run(
    es: Elasticsearch, installed: IndexNames, response: Response, sink: MailSink
) -> None:
    store_alerts(es, installed, [alert(1, rule=INFO, level="informational")])
    report = response.runner.run_once()
    assert (report.opened, report.failed) == (1, 0)
    incident = incidents_now(response)[0]
    assert incident.playbook == "default" and incident.priority == "P4"
    failed = [e for e in incident.timeline if e.action == "step_failed"]
    assert failed and "ZeroDivisionError" in (failed[0].message or "") and failed[0].step == "group-1"
    assert [rcpt(m) for m in sink.messages] == ["truc-ban@soc.example.vn"]


def test_unacknowledged_incidents_escalate_and_quiet_ones_close(
    es: Elasticsearch, installed: IndexNames, response: Response, sink: MailSink, clock: Clock
) -> None:
    store_alerts(es, installed, [alert(1), alert(9, rule=INFO, level="informational", ip="10.1.0.5")])
    response.runner.run_once()
    runner = response.runner
    brute = next(i for i in incidents_now(response) if i.playbook == "brute")
    quiet = next(i for i in incidents_now(response) if i.playbook == "default")
    before = len(sink.messages)

    assert runner.escalate_due() == 0  # not due yet
    clock.now = brute.sla.acknowledge_by + timedelta(seconds=1)  # type: ignore[operator]
    assert runner.escalate_due() == 1
    assert runner.escalate_due() == 0  # level 2 is 30 min later
    clock.now += timedelta(minutes=30)
    assert runner.escalate_due() == 1
    clock.now += timedelta(hours=5)
    assert runner.escalate_due() == 0  # max_levels reached
    runner.outbox.deliver_due()
    escalations = [m for m in sink.messages[before:] if rcpt(m).startswith("lanh")]
    assert sorted(rcpt(m) for m in escalations) == sorted(
        ["lanh.lv@sotttt.example.vn", "lanh-dao@soc.example.vn"] * 2
    )
    assert runner.incidents.get(brute.id).escalation_level == 2

    # acknowledged in time: no escalation at all
    store_alerts(es, installed, [alert(5, ip="192.0.2.1", at=clock.now)])
    runner.run_once()
    fresh = next(i for i in incidents_now(response) if "192.0.2.1" in i.entities.ips)
    runner.incidents.acknowledge(fresh.id, actor="user:analyst")
    clock.now += timedelta(hours=2)
    runner.escalate_due()
    assert runner.incidents.get(fresh.id).escalation_level == 0

    assert runner.incidents.get(quiet.id).status == "new"
    clock.now = T0 + timedelta(days=3, minutes=1)
    assert runner.auto_close() >= 1
    closed = runner.incidents.get(quiet.id)
    assert closed.status == "resolved"
    assert runner.incidents.get(brute.id).status == "new"  # high: no close step in its playbook


def test_a_critical_alert_joining_an_open_incident_tells_the_leaders_once(
    es: Elasticsearch, installed: IndexNames, response: Response, sink: MailSink
) -> None:
    store_alerts(es, installed, [alert(1, level="medium")])
    response.runner.run_once()
    assert not [m for m in sink.messages if rcpt(m).startswith("lanh")]  # medium: no `leaders` notice
    assert incidents_now(response)[0].priority == "P2"  # medium x criticality 4
    store_alerts(
        es,
        installed,
        [
            alert(2, level="critical", at=T0 + timedelta(minutes=3)),
            alert(3, level="critical", at=T0 + timedelta(minutes=4)),
        ],
    )
    report = response.runner.run_once()
    assert (report.opened, report.joined) == (0, 2)
    leaders = sorted(rcpt(m) for m in sink.messages if rcpt(m).startswith("lanh"))
    assert leaders == ["lanh-dao@soc.example.vn", "lanh.lv@sotttt.example.vn"]
    (incident,) = incidents_now(response)
    assert incident.level == "critical" and incident.alert_count == 3
    # the critical alert raised the incident to P1 (the playbook's SLA is the same for every priority)
    assert incident.priority == "P1" and incident.sla.acknowledge_minutes == 15
    assert any("P2" in str(e.before) and "P1" in str(e.after) for e in incident.timeline), incident.timeline
