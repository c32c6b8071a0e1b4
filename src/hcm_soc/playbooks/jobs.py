"""Wiring of the response side: build the playbook runner from settings, and run it on a schedule.

`build_response(settings, client, names)` loads the playbooks (broken files are reported and
skipped) and the asset inventory (a missing file is an empty inventory, with a warning), and
connects the incident service, the notice outbox and its notifiers. Delivery outcomes of notices
are written to the incident timeline (`notice_sent`, `notice_retry`, `notice_failed`).

`start_response(...)` runs three APScheduler jobs until the stop event is set: new alerts →
playbooks (every `response.every` s), the outbox (every `notify.deliver_every` s), escalation and
auto-close (every `response.escalate_every` s). With `detection.lease` on, only the holder of the
`response` lease runs them, so two `hcm-soc run` processes never handle the same alert at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hcm_soc.playbooks.runner import PlaybookRunner

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.config import Settings
    from hcm_soc.store.names import IndexNames

log = logging.getLogger(__name__)
LEASE_NAME = "response"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Response:
    runner: PlaybookRunner
    problems: list[str] = field(default_factory=list)  # playbook and inventory problems, one per line
    inventory_source: str | None = None


def build_response(
    settings: Settings,
    client: Elasticsearch,
    names: IndexNames,
    *,
    clock: Callable[[], datetime] = utc_now,
    notifiers: dict[str, Any] | None = None,
    resolver: Callable[[str], str | None] | None = None,
) -> Response:
    from hcm_soc.incidents.service import IncidentService
    from hcm_soc.inventory import Inventory, InventoryError, load_inventory
    from hcm_soc.models.incident import TimelineEntry
    from hcm_soc.notify import NoticeOutbox, load_secret
    from hcm_soc.notify.outbox import notifiers_from_settings
    from hcm_soc.playbooks.loader import load_playbooks
    from hcm_soc.store.alerts import AlertStore
    from hcm_soc.store.notices import NoticeStore

    problems: list[str] = []
    loaded = load_playbooks([settings.paths.playbooks])
    problems += [str(p) for p in loaded.problems]
    inventory_path = settings.paths.inventory
    if inventory_path.exists():
        try:
            inventory = load_inventory(inventory_path)
        except InventoryError as e:
            problems += [str(p) for p in e.problems]
            inventory = Inventory.empty()
    else:
        log.warning(
            "no asset inventory: alerts will not be matched to systems and owners",
            extra={"path": str(inventory_path)},
        )
        problems.append(f"{inventory_path}: the asset inventory does not exist (set HCM_SOC_PATHS_INVENTORY)")
        inventory = Inventory.empty()
    for p in problems:
        log.warning("response configuration problem", extra={"problem": p})

    secret = load_secret(settings)
    incidents = IncidentService(client, names, id_prefix=settings.response.id_prefix, clock=clock)

    def on_result(notice: Any, outcome: str, error: str | None) -> None:
        what = f"{notice.channel} to {notice.recipient} ({notice.kind})"
        message = f"{what}: {outcome}" + (f" — {error}" if error else "")
        try:
            incidents.add_timeline(
                notice.incident_id,
                TimelineEntry(
                    at=clock(),
                    actor="system:outbox",
                    action=f"notice_{outcome}",
                    message=message,
                    after={"notice": notice.id, "attempts": notice.attempts},
                ),
            )
        except Exception as e:  # the delivery itself is recorded in the outbox either way
            log.warning(
                "notice outcome not written to the timeline", extra={"notice": notice.id, "error": str(e)}
            )

    outbox = NoticeOutbox(
        NoticeStore(client, names),
        notifiers or notifiers_from_settings(settings),
        settings=settings,
        on_result=on_result,
        clock=clock,
    )
    runner = PlaybookRunner(
        alerts=AlertStore(client, names),
        incidents=incidents,
        outbox=outbox,
        playbooks=loaded.playbooks,
        inventory=inventory,
        settings=settings,
        secret=secret,
        clock=clock,
        resolver=resolver,
    )
    return Response(runner, problems, str(inventory_path))


@dataclass
class ResponseHandle:
    response: Response
    scheduler: Any
    thread: threading.Thread

    def join(self, timeout: float | None = None) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def start_response(
    settings: Settings, client: Elasticsearch, names: IndexNames, *, stop_event: threading.Event
) -> ResponseHandle:
    """Run playbooks, the outbox and escalations in the background until `stop_event` is set."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from hcm_soc.detection.lease import EngineLease, default_engine_id
    from hcm_soc.store.lease import LeaseStore

    response = build_response(settings, client, names)
    runner = response.runner
    lease = None
    if settings.detection.lease:
        lease = EngineLease(
            LeaseStore(client, names),
            settings.detection.engine_id or default_engine_id(),
            ttl=settings.detection.lease_ttl,
            renew=settings.detection.lease_renew,
            name=LEASE_NAME,
        )
        lease.tick()
        lease.start(stop_event)

    def guarded(name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def job() -> None:
            if lease is not None and not lease.held():
                return  # a standby: the other process handles the response
            try:
                fn()
            except Exception:  # isolation boundary: the next run tries again
                log.exception("response job failed", extra={"job": name})

        return job

    sched = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
    now = datetime.now(UTC)
    sched.add_job(
        guarded("playbooks", lambda: runner.run_once(deliver=False)),
        "interval",
        seconds=settings.response.every,
        next_run_time=now,
        id="playbooks",
    )
    sched.add_job(
        guarded("outbox", runner.outbox.deliver_due),
        "interval",
        seconds=settings.notify.deliver_every,
        next_run_time=now,
        id="outbox",
    )

    def scheduled_steps() -> None:
        runner.escalate_due()
        runner.auto_close()

    sched.add_job(
        guarded("escalation", scheduled_steps),
        "interval",
        seconds=settings.response.escalate_every,
        next_run_time=now,
        id="escalation",
    )
    sched.start()

    def wait_for_stop() -> None:
        stop_event.wait()
        sched.shutdown(wait=True)
        if lease is not None:
            lease.release()

    thread = threading.Thread(target=wait_for_stop, name="hcm-soc-response", daemon=True)
    thread.start()
    return ResponseHandle(response, sched, thread)
