"""Opening incidents for alerts and linking alerts, against a real Elasticsearch: ids, idempotent
re-runs, crash recovery, at most one incident per alert, entity and level merging."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from elasticsearch import Elasticsearch

from hcm_soc.incidents.service import IncidentService
from hcm_soc.models.alert import Alert
from hcm_soc.models.incident import AffectedAsset
from hcm_soc.store.names import IndexNames
from tests.unit.incidents.factory import T0, FakeClock, draft


def _alert_owner(es: Elasticsearch, names: IndexNames, alert_id: str) -> str | None:
    src = es.get(index=names.alerts, id=alert_id)["_source"]
    return (src.get("hcm") or {}).get("incident")


def test_open_creates_a_human_id_and_links_the_alert(
    service: IncidentService, stored_alert: Callable[..., Alert], es: Elasticsearch, installed: IndexNames
) -> None:
    alert = stored_alert(user="nguyenvana", url="https://dichvucong.example.vn/login")
    inc, created = service.open_for_alert(draft(), alert, actor="playbook:ssh")
    assert created
    assert inc.id == "INC-2026-000001"
    assert inc.status == "new" and inc.priority == "P2" and inc.level == "high"
    assert inc.alert_ids == [alert.id] and inc.alert_count == 1 and inc.alerts[0].rule_id == "rule-ssh-brute"
    assert inc.entities.ips == ["203.0.113.7", "10.20.0.5"]
    assert inc.entities.users == ["nguyenvana"] and inc.entities.hosts == ["portal-web-01"]
    assert inc.entities.urls == ["https://dichvucong.example.vn/login"]
    assert [e.action for e in inc.timeline] == ["created", "alert_linked"]
    assert inc.timeline[0].actor == "playbook:ssh"
    assert _alert_owner(es, installed, alert.id) == inc.id
    stored = service.get(inc.id)
    assert stored.seq_no is not None and stored.model_dump() == inc.model_dump()


def test_rerunning_open_for_the_same_alert_creates_nothing(
    service: IncidentService, stored_alert: Callable[..., Alert], es: Elasticsearch, installed: IndexNames
) -> None:
    alert = stored_alert()
    first, created = service.open_for_alert(draft(), alert, actor="system")
    assert created
    again, created_again = service.open_for_alert(draft(title="another title"), alert, actor="system")
    assert not created_again
    assert again.id == first.id and again.seq_no == first.seq_no and again.title == first.title
    es.indices.refresh(index=installed.incidents)
    assert es.count(index=installed.incidents)["count"] == 1
    # the counter did not move: the next alert gets the next number
    other, _ = service.open_for_alert(draft(), stored_alert(), actor="system")
    assert other.id == "INC-2026-000002"


def test_a_crash_after_allocating_gives_the_same_id_on_rerun(
    service: IncidentService, stored_alert: Callable[..., Alert], es: Elasticsearch, installed: IndexNames
) -> None:
    alert = stored_alert()
    # a run that allocated the id and claimed the alert, then died before creating the incident
    number = service.store.next_number(2026, now=T0)
    allocated = service.store.allocate(alert.id, service.format_id(2026, number), now=T0)
    assert service.store.claim_alert(alert.id, allocated) == (allocated, True)
    assert service.store.find(allocated) is None
    inc, created = service.open_for_alert(draft(), alert, actor="system")
    assert created and inc.id == allocated == "INC-2026-000001"
    assert inc.alert_ids == [alert.id]
    inc2, created2 = service.open_for_alert(draft(), alert, actor="system")
    assert not created2 and inc2.id == inc.id and inc2.alert_count == 1


def test_concurrent_opens_get_distinct_consecutive_ids(
    es: Elasticsearch, installed: IndexNames, stored_alert: Callable[..., Alert]
) -> None:
    alerts = [stored_alert() for _ in range(8)]
    clock = FakeClock()
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def run(chunk: list[Alert]) -> None:
        svc = IncidentService(es, installed, clock=clock)  # one service per thread, like two runners
        try:
            for a in chunk:
                inc, created = svc.open_for_alert(draft(), a, actor="system")
                assert created
                results[a.id] = inc.id
        except BaseException as e:  # report in the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(alerts[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(results.values()) == [f"INC-2026-{n:06d}" for n in range(1, 9)]
    for a in alerts:
        assert _alert_owner(es, installed, a.id) == results[a.id]


def test_same_alert_opened_by_two_runners_at_once_gives_one_incident(
    es: Elasticsearch, installed: IndexNames, stored_alert: Callable[..., Alert]
) -> None:
    alert = stored_alert()
    barrier = threading.Barrier(2)
    out: list[tuple[str, bool]] = []

    def run() -> None:
        svc = IncidentService(es, installed, clock=FakeClock())
        barrier.wait()
        inc, created = svc.open_for_alert(draft(), alert, actor="system")
        out.append((inc.id, created))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(out) == 2 and out[0][0] == out[1][0]
    assert sorted(c for _, c in out) == [False, True]
    es.indices.refresh(index=installed.incidents)
    assert es.count(index=installed.incidents)["count"] == 1


def test_link_alert_merges_and_an_alert_joins_at_most_one_incident(
    service: IncidentService,
    stored_alert: Callable[..., Alert],
    clock: FakeClock,
    es: Elasticsearch,
    installed: IndexNames,
) -> None:
    until = T0 + timedelta(hours=1)
    first = stored_alert(level="medium")
    a, _ = service.open_for_alert(draft(group_key="k1", group_until=until), first, actor="system")
    b, _ = service.open_for_alert(draft(group_key="k2"), stored_alert(), actor="system")
    clock.advance(minutes=5)
    second = stored_alert(level="critical", src="198.51.100.9", user="admin", at=T0 + timedelta(minutes=5))
    asset = AffectedAsset(id="egov-portal", name="Cổng dịch vụ công", department="so-tttt", criticality=4)
    linked, changed = service.link_alert(a.id, second, actor="system", assets=[asset])
    assert changed
    assert linked.alert_ids == [first.id, second.id] and linked.alert_count == 2
    assert linked.level == "critical"
    assert linked.entities.ips == ["203.0.113.7", "10.20.0.5", "198.51.100.9"]
    assert linked.entities.users == ["admin"]
    assert linked.last_alert_at == T0 + timedelta(minutes=5)
    assert linked.group_until == until  # fixed by the first alert
    assert [x.id for x in linked.assets] == ["egov-portal"]
    entry = linked.timeline[-1]
    assert entry.action == "alert_linked" and entry.before == {"level": "medium", "alert_count": 1}
    assert entry.after == {"level": "critical", "alert_count": 2}
    # again to the same incident, or to another one: nothing changes
    same, changed_again = service.link_alert(a.id, second, actor="system")
    assert not changed_again and same.seq_no == linked.seq_no
    other, stolen = service.link_alert(b.id, second, actor="system")
    assert not stolen and other.alert_ids == b.alert_ids and other.seq_no == b.seq_no
    assert _alert_owner(es, installed, second.id) == a.id
    # opening for an alert that belongs elsewhere returns that incident, creating nothing
    owner, created = service.open_for_alert(draft(), second, actor="system")
    assert not created and owner.id == a.id


def test_find_open_for_group_respects_window_and_status(
    service: IncidentService, stored_alert: Callable[..., Alert]
) -> None:
    until = T0 + timedelta(hours=1)
    inc, _ = service.open_for_alert(draft(group_key="g", group_until=until), stored_alert(), actor="system")
    assert service.find_open_for_group("g", T0 + timedelta(minutes=30)).id == inc.id  # type: ignore[union-attr]
    assert service.find_open_for_group("g", until + timedelta(seconds=1)) is None
    assert service.find_open_for_group("other", T0) is None
    service.set_status(inc.id, "resolved", actor="user:an", reason="blocked at the firewall")
    # found by search (not refreshed yet), rejected by the realtime read
    assert service.find_open_for_group("g", T0 + timedelta(minutes=30)) is None


def test_a_crash_after_claiming_the_alert_is_finished_by_a_rerun(
    service: IncidentService, stored_alert: Callable[..., Alert]
) -> None:
    inc, _ = service.open_for_alert(draft(), stored_alert(), actor="system")
    late = stored_alert(src="192.0.2.44")
    # a link that marked the alert and died before updating the incident
    assert service.store.claim_alert(late.id, inc.id) == (inc.id, True)
    assert late.id not in service.get(inc.id).alert_ids
    finished, changed = service.link_alert(inc.id, late, actor="system")
    assert (
        changed and finished.alert_ids == [*inc.alert_ids, late.id] and "192.0.2.44" in finished.entities.ips
    )
    assert service.link_alert(inc.id, late, actor="system")[1] is False


def test_history_for_assets_lists_earlier_incidents_on_the_same_assets(
    service: IncidentService, stored_alert: Callable[..., Alert], clock: FakeClock
) -> None:
    portal = AffectedAsset(id="egov-portal", name="Cổng DVC", department="so-tttt")
    other = AffectedAsset(id="traffic-cams", name="Camera giao thông", department="so-gtvt")
    old, _ = service.open_for_alert(draft(assets=[portal]), stored_alert(), actor="system")
    clock.advance(days=10)
    recent, _ = service.open_for_alert(draft(assets=[portal, other]), stored_alert(), actor="system")
    service.close(recent.id, actor="user:lan", reason="handled")
    elsewhere, _ = service.open_for_alert(draft(assets=[other]), stored_alert(), actor="system")
    since = T0 + timedelta(days=5)
    assert service.history_for_assets(["egov-portal"], since=T0) == [recent.id, old.id]
    assert service.history_for_assets(["egov-portal"], since=since) == [recent.id]
    assert service.history_for_assets(["traffic-cams"], since=T0, exclude=elsewhere.id) == [recent.id]
    assert service.history_for_assets([], since=T0) == []
