"""The durable outbox on a real Elasticsearch: nothing is lost when SMTP is down, each notice is
delivered once, permanent failures are kept, and two outbox workers never send the same notice."""

from __future__ import annotations

import email
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.policy import default
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.config import Settings, SmtpSettings, load_settings
from hcm_soc.notify.email import EmailNotifier
from hcm_soc.notify.model import Notice
from hcm_soc.notify.outbox import DeliveryReport, NoticeOutbox
from hcm_soc.notify.render import notice_context
from hcm_soc.notify.webhook import WebhookNotifier, verify_signature
from hcm_soc.store.names import IndexNames
from hcm_soc.store.notices import NoticeStore
from tests.conftest import free_port
from tests.integration.notify.conftest import REFUSED, HttpReceiver, SinkFactory
from tests.unit.notify.conftest import ACTIONS, incident_doc

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 7, 6, tzinfo=UTC)
OWNER = "quantri@sotttt.hcm.gov.vn"


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def settings(**env: str) -> Settings:
    return load_settings(env={"HCM_SOC_NOTIFY_RETRY_BASE": "30", "HCM_SOC_NOTIFY_RETRY_MAX": "600", **env})


def smtp(port: int) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=5)


def notice(recipient: str = OWNER, *, channel: str = "email", incident_id: str = "INC-2026-000123") -> Notice:
    ctx = notice_context(
        incident_doc(id=incident_id),
        settings=settings(),
        recipient=recipient,
        actions=ACTIONS,
        ack_url="https://soc.hcm.gov.vn/ack?token=x.y",
    )
    return Notice.new(
        incident_id=incident_id,
        kind="incident_opened",
        step="notify-4",
        channel=channel,  # type: ignore[arg-type]
        recipient=recipient,
        context=ctx,
        now=T0,
    )


Results = list[tuple[str, str, str | None]]


def outbox(
    store: NoticeStore, clock: Clock, results: Results, *, port: int = 25, webhook: bool = False, **kw: Any
) -> NoticeOutbox:
    s = kw.pop("settings", None) or settings()
    notifiers: dict[str, Any] = {"email": EmailNotifier(smtp(port), clock=clock)}
    if webhook:
        notifiers["webhook"] = WebhookNotifier(b"hook-secret", timeout=5, clock=clock)
    return NoticeOutbox(
        store,
        notifiers,
        settings=s,
        clock=clock,
        on_result=lambda n, outcome, err: results.append((n.id, outcome, err)),
        **kw,
    )


@pytest.fixture
def store(es: Elasticsearch, installed: IndexNames) -> NoticeStore:
    return NoticeStore(es, installed)


def test_smtp_down_keeps_the_notice_then_delivers_it_once(
    store: NoticeStore, smtp_server: SinkFactory
) -> None:
    port = free_port()  # nothing listens there yet
    clock, results = Clock(), []
    box = outbox(store, clock, results, port=port)
    n = notice()
    assert box.enqueue(n)
    assert not box.enqueue(notice())  # the same notice again (a playbook re-run): nothing new
    store.refresh()

    assert box.deliver_due() == DeliveryReport(retried=1)
    stored = store.get(n.id)
    assert stored is not None
    assert stored.status == "pending" and stored.attempts == 1
    assert stored.last_error is not None and "could not be reached" in stored.last_error
    assert T0 + timedelta(seconds=27) <= stored.next_attempt <= T0 + timedelta(seconds=33)
    assert stored.subject and stored.subject.startswith("[TTATTT-HCM][P1]")
    assert results == [(n.id, "retry", stored.last_error)]

    store.refresh()
    assert box.deliver_due() == DeliveryReport()  # not due yet

    sink = smtp_server(port=port)  # the mail relay comes back
    clock.advance(seconds=40)
    store.refresh()
    assert box.deliver_due() == DeliveryReport(sent=1)
    stored = store.get(n.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.sent_at, stored.last_error) == ("sent", 2, clock.now, None)
    assert results[-1] == (n.id, "sent", None)

    clock.advance(hours=2)
    store.refresh()
    assert box.deliver_due() == DeliveryReport()  # sent is final
    assert len(sink.messages) == 1
    msg = email.message_from_bytes(sink.messages[0].content, policy=default)
    assert msg["Message-ID"] == f"<{n.id}@hcm.gov.vn>"
    assert [x.id for x in store.list_for_incident("INC-2026-000123")] == [n.id]


def test_permanent_failure_is_kept_as_failed(store: NoticeStore, smtp_server: SinkFactory) -> None:
    sink = smtp_server()
    clock, results = Clock(), []
    box = outbox(store, clock, results, port=sink.port)
    bad, good = notice(REFUSED), notice()
    assert box.enqueue(bad) and box.enqueue(good)
    store.refresh()
    report = box.deliver_due()
    assert report == DeliveryReport(sent=1, failed=1)
    stored = store.get(bad.id)
    assert stored is not None and stored.status == "failed" and stored.attempts == 1
    assert stored.last_error is not None and "550" in stored.last_error
    assert sorted(r[1] for r in results) == ["failed", "sent"]
    clock.advance(days=1)
    store.refresh()
    assert box.deliver_due() == DeliveryReport()  # failed is final, and still there
    assert {x.status for x in store.list_for_incident("INC-2026-000123")} == {"failed", "sent"}


def test_gives_up_after_max_attempts(store: NoticeStore) -> None:
    clock, results = Clock(), []
    box = outbox(store, clock, results, port=free_port(), settings=settings(HCM_SOC_NOTIFY_MAX_ATTEMPTS="2"))
    n = notice()
    box.enqueue(n)
    store.refresh()
    assert box.deliver_due() == DeliveryReport(retried=1)
    clock.advance(minutes=5)
    store.refresh()
    assert box.deliver_due() == DeliveryReport(failed=1)
    stored = store.get(n.id)
    assert stored is not None and stored.status == "failed" and stored.attempts == 2
    assert stored.last_error is not None and stored.last_error.startswith("gave up after 2 attempt(s)")
    assert [r[1] for r in results] == ["retry", "failed"]


def test_webhook_500_then_200_is_delivered_once(store: NoticeStore, http_receiver: HttpReceiver) -> None:
    http_receiver.statuses.append(500)
    clock, results = Clock(), []
    box = outbox(store, clock, results, webhook=True)
    n = notice(http_receiver.url, channel="webhook")
    box.enqueue(n)
    store.refresh()
    assert box.deliver_due() == DeliveryReport(retried=1)
    clock.advance(minutes=1)
    store.refresh()
    assert box.deliver_due() == DeliveryReport(sent=1)
    clock.advance(hours=1)
    store.refresh()
    assert box.deliver_due() == DeliveryReport()
    assert len(http_receiver.requests) == 2  # one refused with 500, one accepted
    keys = {r["headers"]["Idempotency-Key"] for r in http_receiver.requests}
    assert keys == {n.id}
    for req, at in zip(http_receiver.requests, (T0, T0 + timedelta(minutes=1)), strict=True):
        h = req["headers"]
        assert h["X-HCM-Timestamp"] == str(int(at.timestamp()))
        assert verify_signature(
            b"hook-secret",
            timestamp=h["X-HCM-Timestamp"],
            body=req["body"],
            signature=h["X-HCM-Signature"],
            now=at,
        )
    assert [r[1] for r in results] == ["retry", "sent"]


def test_a_claim_is_won_by_exactly_one_reader(store: NoticeStore) -> None:
    n = notice()
    store.create(n, refresh=True)
    [a] = store.due(T0)
    [b] = store.due(T0)
    won = store.claim(a, now=T0, until=T0 + timedelta(minutes=5), worker="a")
    assert won is not None and won.status == "sending" and won.attempts == 1
    assert store.claim(b, now=T0, until=T0 + timedelta(minutes=5), worker="b") is None
    stored = store.get(n.id)
    assert stored is not None and stored.claimed_by == "a"


def test_a_lapsed_claim_is_delivered_by_another_worker(store: NoticeStore, smtp_server: SinkFactory) -> None:
    sink = smtp_server()
    n = notice()
    store.create(n, refresh=True)
    [due] = store.due(T0)
    # worker "crashed" took the notice and died before sending
    assert store.claim(due, now=T0, until=T0 + timedelta(minutes=2), worker="crashed") is not None
    clock, results = Clock(), []
    box = outbox(store, clock, results, port=sink.port, worker="survivor")
    store.refresh()
    assert box.deliver_due() == DeliveryReport()  # still claimed
    clock.advance(minutes=3)
    store.refresh()
    assert box.deliver_due() == DeliveryReport(sent=1)
    stored = store.get(n.id)
    assert stored is not None and (stored.status, stored.attempts, stored.claimed_by) == (
        "sent",
        2,
        "survivor",
    )
    assert len(sink.messages) == 1


def test_two_outboxes_at_once_send_each_notice_once(
    es: Elasticsearch, store: NoticeStore, smtp_server: SinkFactory
) -> None:
    sink = smtp_server()
    notices = [notice(f"owner{i}@so-{i}.hcm.gov.vn", incident_id=f"INC-2026-{i:06d}") for i in range(12)]
    for n in notices:
        assert store.create(n)
    store.refresh()
    clock = Clock()
    results: Results = []
    boxes = [
        outbox(NoticeStore(es, store.names), clock, results, port=sink.port, worker=f"w{i}") for i in range(2)
    ]
    reports: list[DeliveryReport] = []
    start = threading.Barrier(2)

    def run(box: NoticeOutbox) -> None:
        start.wait(timeout=10)
        reports.append(box.deliver_due())

    threads = [threading.Thread(target=run, args=(b,)) for b in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(reports) == 2
    assert sum(r.sent for r in reports) == 12
    assert sum(r.retried + r.failed for r in reports) == 0
    ids = [email.message_from_bytes(m.content, policy=default)["Message-ID"] for m in sink.messages]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert sorted(r[0] for r in results) == sorted(n.id for n in notices)
    store.refresh()
    assert all(store.get(n.id).status == "sent" for n in notices)  # type: ignore[union-attr]


def test_list_filters_by_incident_and_status(store: NoticeStore) -> None:
    a = notice(incident_id="INC-2026-000001")
    b = notice(incident_id="INC-2026-000002")
    c = notice("other@hcm.gov.vn", incident_id="INC-2026-000002").model_copy(
        update={"created": T0 + timedelta(minutes=1), "status": "failed"}
    )
    for n in (a, b, c):
        assert store.create(n)
    store.refresh()
    assert [n.id for n in store.list()] == [c.id, *sorted([a.id, b.id])]
    assert [n.id for n in store.list(incident_id="INC-2026-000002")] == [c.id, b.id]
    assert [n.id for n in store.list(status="failed")] == [c.id]
    assert store.list(incident_id="INC-2026-000001", status="failed") == []


def test_elasticsearch_down_is_reported_not_swallowed() -> None:
    from hcm_soc.errors import DependencyUnavailable
    from hcm_soc.store.client import make_client

    dead = make_client(load_settings(env={}), urls=[f"http://127.0.0.1:{free_port()}"])
    box = outbox(NoticeStore(dead, IndexNames(prefix="nowhere")), Clock(), [])
    with pytest.raises(DependencyUnavailable, match=r"could not (search|refresh) .*notices"):
        box.deliver_due()
    with pytest.raises(DependencyUnavailable, match="could not queue notice"):
        box.enqueue(notice())
