"""Changing incidents against a real Elasticsearch: optimistic concurrency (no lost change, one clear
conflict), the lifecycle, the timeline, playbook `set`, listing and sorting, escalation queries."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.incidents.lifecycle import TransitionError
from hcm_soc.incidents.service import IncidentService
from hcm_soc.models.alert import Alert
from hcm_soc.models.incident import (
    AffectedAsset,
    Incident,
    IncidentConflict,
    IncidentNotFound,
    Sla,
    TimelineEntry,
)
from hcm_soc.store.names import IndexNames
from tests.unit.incidents.factory import T0, FakeClock, draft


@pytest.fixture
def incident(service: IncidentService, stored_alert: Callable[..., Alert]) -> Incident:
    return service.open_for_alert(draft(), stored_alert(), actor="system")[0]


def _threads(n: int, target: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as e:  # collected for the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_twenty_concurrent_comments_all_land(
    es: Elasticsearch, installed: IndexNames, incident: Incident
) -> None:
    def analyst(i: int) -> None:
        svc = IncidentService(es, installed, clock=FakeClock())
        for n in range(10):
            svc.comment(incident.id, f"analyst {i} note {n}", actor=f"user:a{i}")

    assert _threads(2, analyst) == []
    final = IncidentService(es, installed).get(incident.id)
    texts = sorted(c.text for c in final.comments)
    assert texts == sorted(f"analyst {i} note {n}" for i in range(2) for n in range(10))
    assert sum(1 for e in final.timeline if e.action == "comment") == 20


def test_two_analysts_with_the_same_view_exactly_one_conflict(
    es: Elasticsearch, installed: IndexNames, incident: Incident
) -> None:
    seen = incident.seq_no
    assert seen is not None
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def analyst(i: int) -> None:
        svc = IncidentService(es, installed, clock=FakeClock())
        barrier.wait()
        try:
            svc.assign(incident.id, f"analyst{i}", actor=f"user:analyst{i}", expected_seq_no=seen)
            outcomes.append("ok")
        except IncidentConflict as e:
            assert "changed by someone else since you loaded it" in str(e) and "reload and retry" in str(e)
            assert f"seq {seen} → " in str(e)
            outcomes.append("conflict")

    assert _threads(2, analyst) == []
    assert sorted(outcomes) == ["conflict", "ok"]
    final = IncidentService(es, installed).get(incident.id)
    assert final.assignee in ("analyst0", "analyst1")
    assert sum(1 for e in final.timeline if e.action == "assigned") == 1


def test_stale_expected_seq_no_is_refused_with_both_numbers(
    service: IncidentService, incident: Incident
) -> None:
    seen = incident.seq_no
    service.comment(incident.id, "first", actor="user:a")
    with pytest.raises(
        IncidentConflict, match=rf"{incident.id}: changed by someone else .*seq {seen} → {seen + 1}"
    ):  # type: ignore[operator]
        service.acknowledge(incident.id, actor="user:b", expected_seq_no=seen)
    assert service.get(incident.id).status == "new"


def test_lifecycle_transitions_and_timestamps(
    service: IncidentService, incident: Incident, clock: FakeClock
) -> None:
    clock.advance(minutes=3)
    acked = service.acknowledge(incident.id, actor="user:lan")
    assert acked.status == "acknowledged" and acked.acknowledged_at == T0 + timedelta(minutes=3)
    entry = acked.timeline[-1]
    assert (entry.actor, entry.action, entry.before, entry.after) == (
        "user:lan",
        "status",
        {"status": "new", "acknowledged_at": None},
        {"status": "acknowledged", "acknowledged_at": "2026-11-26T03:03:00Z"},
    )
    # a second acknowledgement is a no-op, not an error and not a new timeline entry
    assert service.acknowledge(incident.id, actor="user:lan").seq_no == acked.seq_no
    with pytest.raises(
        TransitionError, match="acknowledged → new is not allowed; allowed: investigating, contained"
    ):
        service.set_status(incident.id, "new", actor="user:lan")
    service.set_status(incident.id, "contained", actor="user:lan")
    clock.advance(hours=1)
    closed = service.close(incident.id, actor="user:lan", reason="Đã chặn IP tại tường lửa")
    assert closed.status == "resolved" and closed.resolved_at == T0 + timedelta(hours=1, minutes=3)
    assert closed.comments[-1].text == "Đã chặn IP tại tường lửa" and closed.comments[-1].author == "user:lan"
    assert (
        closed.timeline[-1].action == "closed" and closed.timeline[-1].message == "Đã chặn IP tại tường lửa"
    )
    with pytest.raises(TransitionError, match="allowed: investigating"):
        service.set_status(incident.id, "contained", actor="user:lan")
    reopened = service.set_status(incident.id, "investigating", actor="user:lan", reason="seen again")
    assert reopened.status == "investigating" and reopened.resolved_at is None
    fp = service.close(incident.id, actor="user:lan", reason="test traffic", false_positive=True)
    assert fp.status == "false_positive"
    with pytest.raises(TransitionError, match="unknown status 'done'"):
        service.set_status(incident.id, "done", actor="user:lan")


def test_set_fields_is_idempotent_and_timelined(service: IncidentService, incident: Incident) -> None:
    sla = Sla(
        acknowledge_by=T0 + timedelta(minutes=15), resolve_by=T0 + timedelta(hours=4), acknowledge_minutes=15
    )
    once = service.set_fields(
        incident.id,
        actor="playbook:web",
        priority="P1",
        sla=sla,
        queue="web-team",
        tags=["web"],
        step="set-1",
    )
    assert once.priority == "P1" and once.queue == "web-team" and once.tags == ["web"]
    entry = once.timeline[-1]
    assert entry.action == "set" and entry.step == "set-1" and entry.actor == "playbook:web"
    assert entry.before is not None and entry.before["priority"] == "P2" and entry.after["priority"] == "P1"
    again = service.set_fields(
        incident.id,
        actor="playbook:web",
        priority="P1",
        sla=sla,
        queue="web-team",
        tags=["web"],
        step="set-1",
    )
    assert again.seq_no == once.seq_no and len(again.timeline) == len(once.timeline)
    only_prio = service.set_fields(incident.id, actor="playbook:web", priority="P2")
    assert only_prio.timeline[-1].action == "priority"
    note = TimelineEntry(at=T0, actor="system", action="notice_sent", message="email to owner@example.vn")
    added = service.add_timeline(incident.id, note)
    assert added.timeline[-1] == note and added.priority == "P2"


def test_list_filters_sorts_and_pages(
    service: IncidentService,
    stored_alert: Callable[..., Alert],
    clock: FakeClock,
    es: Elasticsearch,
    installed: IndexNames,
) -> None:
    egov = AffectedAsset(
        id="egov", name="Cổng DVC", department="so-tttt", sector="e_government", criticality=4
    )
    flood = AffectedAsset(
        id="flood", name="Cảm biến", department="ttcn", sector="flood_control", criticality=3
    )
    made = {}
    specs = [
        ("a", "P3", None, [flood]),
        ("b", "P1", T0 + timedelta(minutes=30), [egov]),
        ("c", "P1", T0 + timedelta(minutes=10), [egov]),
        ("d", "P2", None, []),
    ]
    for name, prio, ack_by, assets in specs:
        clock.advance(minutes=1)
        d = draft(title=f"incident {name}", priority=prio, sla=Sla(acknowledge_by=ack_by), assets=assets)
        made[name] = service.open_for_alert(d, stored_alert(rule_id=f"rule-{name}"), actor="system")[0]
    service.assign(made["d"].id, "lan", actor="user:lan")
    service.close(made["a"].id, actor="user:lan", reason="done")
    clock.advance(minutes=1)
    service.comment(made["b"].id, "mật khẩu bị dò", actor="user:lan")
    es.indices.refresh(index=installed.incidents)

    def ids(page: object) -> list[str]:
        return [i.id for i in page.items]  # type: ignore[attr-defined]

    page = service.list()
    assert page.total == 4
    assert ids(page) == [made["c"].id, made["b"].id, made["d"].id, made["a"].id]
    assert ids(service.list(sort="created")) == [made[n].id for n in "dcba"]
    assert ids(service.list(sort="updated"))[0] == made["b"].id
    assert ids(service.list(status=["new", "acknowledged", "investigating", "contained"])) == [
        made["c"].id,
        made["b"].id,
        made["d"].id,
    ]
    assert ids(service.list(priority="P1", sector="e_government")) == [made["c"].id, made["b"].id]
    assert ids(service.list(department="ttcn")) == [made["a"].id]
    assert ids(service.list(assignee="lan")) == [made["d"].id]
    assert ids(service.list(rule_id="rule-b")) == [made["b"].id]
    assert ids(service.list(query="dò")) == [made["b"].id]
    second = service.list(size=3, page=2)
    assert second.total == 4 and ids(second) == [made["a"].id]


def test_due_for_escalation_and_open_incidents(
    service: IncidentService, stored_alert: Callable[..., Alert], es: Elasticsearch, installed: IndexNames
) -> None:
    late = service.open_for_alert(
        draft(sla=Sla(acknowledge_by=T0 + timedelta(minutes=15))), stored_alert(), actor="system"
    )[0]
    acked = service.open_for_alert(
        draft(sla=Sla(acknowledge_by=T0 + timedelta(minutes=15))), stored_alert(), actor="system"
    )[0]
    later = service.open_for_alert(
        draft(sla=Sla(acknowledge_by=T0 + timedelta(hours=2))), stored_alert(), actor="system"
    )[0]
    closed = service.open_for_alert(draft(), stored_alert(), actor="system")[0]
    service.acknowledge(acked.id, actor="user:lan")
    service.close(closed.id, actor="user:lan", reason="noise")
    es.indices.refresh(index=installed.incidents)
    due = service.due_for_escalation(T0 + timedelta(minutes=20))
    assert [i.id for i in due] == [late.id]
    assert {i.id for i in service.open_incidents()} == {late.id, acked.id, later.id}


def test_unknown_incident_says_how_to_find_one(service: IncidentService) -> None:
    with pytest.raises(IncidentNotFound, match=r"INC-2026-999999: no such incident .*hcm-soc incidents list"):
        service.comment("INC-2026-999999", "x", actor="user:a")
