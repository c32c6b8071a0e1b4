"""The playbook runner: takes each new alert, picks its playbook, runs the steps, records the outcome.

For one alert (`PlaybookRunner.process`):

1. the assets it touches are looked up in the inventory (host name, source/destination IP, URL);
2. the first enabled playbook whose trigger matches takes it (`select_playbook`); none → the alert is
   marked `no_playbook` and stays in the alert list;
3. the steps run in order (`actions.py`). The incident is materialised at the first step that needs
   one (`notify`, `webhook`) or after the last step: a `group` step joins an open incident with the
   same key inside its window, otherwise a new incident is opened. Steps that ran before the incident
   existed are written to its timeline when it is opened;
4. the alert is marked triaged (`hcm.triage`), so the next pass does not take it again.

Idempotence: an alert already linked to an incident (`hcm.incident`) or triaged is not run again;
opening an incident for an alert is idempotent in `IncidentService.open_for_alert`; notices have
deterministic ids. A crash in the middle is therefore repaired by the next pass without duplicates.
One failing step is logged on the timeline and the other steps go on; one failing alert is marked
`failed` with the reason and the other alerts go on (STYLE.md isolation boundaries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from hcm_soc.models.alert import Alert, AlertTriage
from hcm_soc.playbooks.actions import ActionContext, StepRunner, incident_entities
from hcm_soc.playbooks.trigger import TriggerContext, select_playbook

if TYPE_CHECKING:
    from hcm_soc.config import Settings
    from hcm_soc.incidents.service import IncidentService
    from hcm_soc.inventory import AssetMatch, Inventory
    from hcm_soc.notify.outbox import DeliveryReport, NoticeOutbox
    from hcm_soc.playbooks.model import Playbook
    from hcm_soc.store.alerts import AlertStore

log = logging.getLogger(__name__)

#: datasets whose host.name is the reporting device rather than the system the alert is about
REPORTER_DATASETS = ("network.firewall",)

Outcome = Literal["opened", "joined", "no_playbook", "failed", "already_handled"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AlertOutcome:
    alert_id: str
    outcome: Outcome
    playbook: str | None = None
    incident: str | None = None
    notices: int = 0
    error: str | None = None


@dataclass
class RunReport:
    """What one pass over new alerts did (the counters `hcm-soc playbooks run` prints and logs)."""

    alerts: int = 0
    opened: int = 0
    joined: int = 0
    no_playbook: int = 0
    failed: int = 0
    already_handled: int = 0
    notices_queued: int = 0
    outcomes: list[AlertOutcome] = field(default_factory=list)
    delivery: DeliveryReport | None = None

    def add(self, o: AlertOutcome) -> None:
        self.alerts += 1
        setattr(self, o.outcome, getattr(self, o.outcome) + 1)
        self.notices_queued += o.notices
        self.outcomes.append(o)

    def counters(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in (
                "alerts",
                "opened",
                "joined",
                "no_playbook",
                "failed",
                "already_handled",
                "notices_queued",
            )
        }


def alert_assets(inventory: Inventory, alert: Alert) -> list[AssetMatch]:
    """The inventory assets an alert touches: its host, its addresses and its URL."""
    ips = [e.ip for e in (alert.source, alert.destination) if e is not None and e.ip]
    hosts = [alert.host.name] if alert.host is not None and alert.host.name else []
    if (alert.event.dataset or "").startswith(REPORTER_DATASETS):
        hosts = []  # the host is the device that reported (a firewall), not the system involved
    urls = [u for u in ((alert.url.full or alert.url.original) if alert.url else None,) if u]
    # correlation alerts carry their entities in the group-by values
    for k, v in (alert.hcm.group or {}).items():
        if not isinstance(v, str) or not v:
            continue
        if k.endswith(".ip"):
            ips.append(v)
        elif k in ("host.name", "host.hostname", "destination.domain", "url.domain"):
            hosts.append(v)
    return inventory.match_entities(ips=ips, hostnames=hosts, urls=urls)


class PlaybookRunner:
    """Runs the playbooks over alerts; one instance per process, `run_once` from the scheduler."""

    def __init__(
        self,
        *,
        alerts: AlertStore,
        incidents: IncidentService,
        outbox: NoticeOutbox,
        playbooks: Sequence[Playbook],
        inventory: Inventory,
        settings: Settings,
        secret: bytes,
        clock: Callable[[], datetime] = utc_now,
        resolver: Callable[[str], str | None] | None = None,
    ) -> None:
        self.alerts = alerts
        self.incidents = incidents
        self.outbox = outbox
        self.playbooks = list(playbooks)
        self.by_id = {p.id: p for p in self.playbooks}
        self.inventory = inventory
        self.settings = settings
        self.clock = clock
        self.steps = StepRunner(
            incidents=incidents,
            outbox=outbox,
            inventory=inventory,
            settings=settings,
            secret=secret,
            clock=clock,
            resolver=resolver,
        )

    # -- new alerts ---------------------------------------------------------------------------------

    def run_once(self, *, limit: int | None = None, deliver: bool = True) -> RunReport:
        """Take every alert not triaged yet (oldest first, up to `limit`), then send due notices."""
        report = RunReport()
        size = limit or self.settings.response.batch
        self.alerts.refresh()
        for alert in self.alerts.untriaged(size=size):
            report.add(self.process(alert))
        if deliver:
            report.delivery = self.outbox.deliver_due()
        if report.alerts:
            log.info("playbook pass", extra=report.counters())
        return report

    def process(self, alert: Alert) -> AlertOutcome:
        """Run the matching playbook on one alert (isolation boundary: never raises for a bad step)."""
        if alert.hcm.incident is not None or alert.hcm.triage is not None:
            return AlertOutcome(alert.id, "already_handled", alert.hcm.playbook, alert.hcm.incident)
        try:
            outcome = self._process(alert)
        except Exception as e:  # one alert's failure must not stop the pass
            log.exception("playbook run failed", extra={"alert": alert.id, "rule": alert.rule.id})
            outcome = AlertOutcome(alert.id, "failed", error=f"{type(e).__name__}: {e}")
        triage = AlertTriage(
            at=self.clock(),
            outcome="incident"
            if outcome.incident
            else ("failed" if outcome.outcome == "failed" else "no_playbook"),
            reason=outcome.error,
        )
        try:
            self.alerts.mark_triaged(alert.id, triage, playbook=outcome.playbook)
        except Exception as e:  # the next pass retries the alert; its incident is found again
            log.error("could not mark the alert triaged", extra={"alert": alert.id, "error": str(e)})
        return outcome

    def _process(self, alert: Alert) -> AlertOutcome:
        assets = alert_assets(self.inventory, alert)
        playbook = select_playbook(self.playbooks, TriggerContext(alert=alert, assets=assets))
        if playbook is None:
            return AlertOutcome(alert.id, "no_playbook", error="no enabled playbook matches this alert")
        ctx = ActionContext(alert=alert, playbook=playbook, assets=list(assets), now=self.clock())
        ctx.entities = incident_entities(alert)
        for step in playbook.steps:
            self.steps.run(step, ctx)
        self.steps.materialise(ctx)  # after the last step at the latest
        assert ctx.incident is not None
        return AlertOutcome(
            alert.id,
            "opened" if ctx.opened else "joined",
            playbook.id,
            ctx.incident.id,
            notices=ctx.notices,
            error="; ".join(ctx.errors) or None,
        )

    # -- scheduled steps ----------------------------------------------------------------------------

    def escalate_due(self) -> int:
        """Escalate unacknowledged incidents past their playbook's `escalate` deadline; returns how many."""
        return self.steps.escalate_due(self.by_id)

    def auto_close(self) -> int:
        """Close quiet incidents per their playbook's `close` step; returns how many were closed."""
        return self.steps.auto_close(self.by_id)
