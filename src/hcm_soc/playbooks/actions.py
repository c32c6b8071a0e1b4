"""Step actions of playbooks: what `enrich`, `group`, `set`, `notify`, `webhook`, `escalate` and
`close` do, registered in one table (`StepRunner.ACTIONS`).

Steps at alert time share an `ActionContext`. `enrich`, `group` and `set` only decide (assets,
reverse DNS, history, group key, priority, SLA…); the incident is materialised — a joined open
incident of the same group, or a new one — at the first step that needs it, and the decisions made
before are written to its timeline then. `escalate` and `close` are recorded with the playbook and
act later, from the scheduler (`escalate_due`, `auto_close`).

Every step is an isolation boundary: a failure is logged, recorded on the incident timeline as
`step_failed` (or, before the incident exists, carried into it) and the next step runs.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from hcm_soc.models.alert import Alert
from hcm_soc.models.incident import (
    AffectedAsset,
    Entities,
    Incident,
    IncidentDraft,
    Priority,
    Sla,
    TimelineEntry,
)
from hcm_soc.playbooks.model import template_context
from hcm_soc.playbooks.trigger import TriggerContext, matches

if TYPE_CHECKING:
    from hcm_soc.config import Settings
    from hcm_soc.incidents.service import IncidentService
    from hcm_soc.inventory import AssetMatch, Department, Inventory
    from hcm_soc.notify.outbox import NoticeOutbox
    from hcm_soc.playbooks.model import Playbook

log = logging.getLogger(__name__)

LEVELS = ("informational", "low", "medium", "high", "critical")
PRIORITIES = ("P1", "P2", "P3", "P4")
#: criticality assumed for an alert that matched no inventory asset (a `set` step may say otherwise)
UNKNOWN_CRITICALITY = 2
#: SLA when no `set` step gives one (minutes): (acknowledge, resolve) by priority
DEFAULT_SLA: dict[str, tuple[int, int]] = {
    "P1": (15, 4 * 60),
    "P2": (60, 24 * 60),
    "P3": (4 * 60, 3 * 24 * 60),
    "P4": (24 * 60, 7 * 24 * 60),
}


def level_rank(level: str | None) -> int:
    return LEVELS.index(level) if level in LEVELS else 0


def incident_entities(alert: Alert) -> dict[str, list[str]]:
    """The IPs, users, hosts and URLs an alert names (correlation group values included)."""
    out: dict[str, list[str]] = {"ips": [], "users": [], "hosts": [], "urls": []}

    def add(kind: str, value: object) -> None:
        if isinstance(value, str) and value and value not in out[kind]:
            out[kind].append(value)

    for e in (alert.source, alert.destination):
        if e is not None:
            add("ips", e.ip)
    if alert.user is not None:
        add("users", alert.user.name)
    if alert.host is not None:
        add("hosts", alert.host.name)
    if alert.url is not None:
        add("urls", alert.url.full or alert.url.original)
    for k, v in (alert.hcm.group or {}).items():
        if k.endswith(".ip"):
            add("ips", v)
        elif k.startswith("user."):
            add("users", v)
        elif k.startswith("host."):
            add("hosts", v)
    return out


@dataclass
class ActionContext:
    """What the steps of one playbook run on one alert know and decide."""

    alert: Alert
    playbook: Playbook
    assets: list[AssetMatch]
    now: datetime
    entities: dict[str, list[str]] = field(default_factory=dict)
    reverse_dns: dict[str, str] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    group_key: str | None = None
    group_until: datetime | None = None
    priority: Priority | None = None
    sla: tuple[int, int] | None = None  # minutes to acknowledge, to resolve
    assignee: str | None = None
    queue: str | None = None
    tags: list[str] = field(default_factory=list)
    incident: Incident | None = None
    opened: bool = False
    notices: int = 0
    errors: list[str] = field(default_factory=list)
    pending: list[TimelineEntry] = field(default_factory=list)  # decided before the incident existed

    @property
    def actor(self) -> str:
        return f"playbook:{self.playbook.id}"

    @property
    def criticality(self) -> int:
        return max((m.asset.criticality for m in self.assets), default=UNKNOWN_CRITICALITY)

    def template_context(self) -> dict[str, Any]:
        first = self.assets[0] if self.assets else None
        return template_context(
            self.alert.to_document(),
            first.asset.model_dump(mode="json") if first else None,
            department=first.department.model_dump(mode="json") if first else None,
            alert_id=self.alert.id,
        )


def _minutes(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return max(1, int(value.total_seconds() // 60))
    return int(str(value))


class StepRunner:
    """Executes step models (from `playbooks.model`) against an `ActionContext`."""

    def __init__(
        self,
        *,
        incidents: IncidentService,
        outbox: NoticeOutbox,
        inventory: Inventory,
        settings: Settings,
        secret: bytes,
        clock: Callable[[], datetime],
        resolver: Callable[[str], str | None] | None = None,
    ) -> None:
        self.incidents = incidents
        self.outbox = outbox
        self.inventory = inventory
        self.settings = settings
        self.secret = secret
        self.clock = clock
        self.resolver = resolver or reverse_lookup
        self._ptr: dict[str, str | None] = {}  # reverse DNS answers of this process (bounded below)
        self.actions: dict[str, Callable[[Any, ActionContext], None]] = {
            "enrich": self._enrich,
            "group": self._group,
            "set": self._set,
            "notify": self._notify,
            "webhook": self._webhook,
            "escalate": self._later,
            "close": self._later,
        }

    # -- running one step -----------------------------------------------------------------------

    def run(self, step: Any, ctx: ActionContext) -> None:
        action = self.actions.get(step.kind)
        if step.when is not None and not matches(
            step.when, TriggerContext(alert=ctx.alert, assets=ctx.assets)
        ):
            self._entry(
                ctx, step, "step_skipped", f"{step.kind}: its `when` condition does not hold for this alert"
            )
            return
        try:
            if action is None:
                raise ValueError(
                    f"no action for step kind {step.kind!r}; known: {', '.join(sorted(self.actions))}"
                )
            action(step, ctx)
        except Exception as e:  # isolation boundary: one step's failure never stops the others
            log.exception("playbook step failed", extra={"playbook": ctx.playbook.id, "step": step.id})
            message = f"{type(e).__name__}: {e}"
            ctx.errors.append(f"{step.id}: {message}")
            self._record(
                ctx,
                TimelineEntry(
                    at=self.clock(), actor=ctx.actor, action="step_failed", message=message, step=step.id
                ),
            )

    def _record(self, ctx: ActionContext, entry: TimelineEntry) -> None:
        if ctx.incident is None:
            ctx.pending.append(entry)
        elif ctx.opened:
            ctx.incident = self.incidents.add_timeline(ctx.incident.id, entry)

    def _entry(self, ctx: ActionContext, step: Any, action: str, message: str, after: Any = None) -> None:
        self._record(
            ctx,
            TimelineEntry(
                at=self.clock(), actor=ctx.actor, action=action, message=message, after=after, step=step.id
            ),
        )

    # -- alert-time steps -------------------------------------------------------------------------

    def _enrich(self, step: Any, ctx: ActionContext) -> None:
        parts: list[str] = []
        if getattr(step, "inventory", True):
            names = [f"{m.asset.name} ({m.department.name})" for m in ctx.assets]
            parts.append("assets: " + (", ".join(names) if names else "none in the inventory"))
        else:
            ctx.assets = []
        if getattr(step, "reverse_dns", False):
            for ip in ctx.entities.get("ips", [])[:8]:
                if ip not in self._ptr:
                    if len(self._ptr) > 10_000:
                        self._ptr.clear()
                    self._ptr[ip] = self.resolver(ip)  # a burst of alerts from one address asks once
                name = self._ptr[ip]
                if name:
                    ctx.reverse_dns[ip] = name
            parts.append(
                "reverse DNS: " + (", ".join(f"{k}={v}" for k, v in ctx.reverse_dns.items()) or "none")
            )
        days = getattr(step, "history_days", 0) or 0
        if days and ctx.assets:
            since = ctx.now - timedelta(days=days)
            ctx.history = self.incidents.history_for_assets([m.asset.id for m in ctx.assets], since=since)
            parts.append(
                f"earlier incidents on these assets in {days} d: " + (", ".join(ctx.history) or "none")
            )
        self._entry(
            ctx,
            step,
            "enriched",
            "; ".join(parts),
            after={
                "assets": [m.asset.id for m in ctx.assets],
                "reverse_dns": ctx.reverse_dns,
                "history": ctx.history,
            },
        )

    def _group(self, step: Any, ctx: ActionContext) -> None:
        key = step.render_key(ctx.template_context())
        ctx.group_key = f"{ctx.playbook.id}|{key}"
        ctx.group_until = ctx.alert.timestamp + step.window
        self._entry(ctx, step, "grouped", f"group key {key!r}, window {step.window}")

    def _set(self, step: Any, ctx: ActionContext) -> None:
        changes: dict[str, Any] = {}
        has_asset = bool(ctx.assets)
        priority = step.priority_for(ctx.alert.hcm.rule.level, ctx.criticality if has_asset else None)
        if priority is not None:
            ctx.priority = cast(Priority, priority)
            changes["priority"] = priority + (
                f" (level {ctx.alert.hcm.rule.level or 'low'} × criticality "
                f"{ctx.criticality if has_asset else step.default_criticality})"
                if step.priority == "matrix"
                else ""
            )
        if step.sla is not None:
            times = step.sla.for_priority(ctx.priority)
            if times is not None and (times.acknowledge or times.resolve):
                default = DEFAULT_SLA[ctx.priority or "P3"]
                ctx.sla = (_minutes(times.acknowledge) or default[0], _minutes(times.resolve) or default[1])
                changes["sla"] = f"acknowledge {ctx.sla[0]} min, resolve {ctx.sla[1]} min"
        for attr in ("assignee", "queue"):
            value = getattr(step, attr, None)
            if value:
                setattr(ctx, attr, value)
                changes[attr] = value
        for tag in step.tags:
            if tag not in ctx.tags:
                ctx.tags.append(tag)
        if step.tags:
            changes["tags"] = ctx.tags
        if ctx.incident is not None and ctx.opened:
            ctx.incident = self.incidents.set_fields(
                ctx.incident.id,
                actor=ctx.actor,
                priority=ctx.priority,
                sla=self._sla(ctx, ctx.incident.created),
                assignee=ctx.assignee,
                queue=ctx.queue,
                tags=ctx.tags or None,
                step=step.id,
            )
        else:
            self._entry(ctx, step, "set", ", ".join(f"{k}: {v}" for k, v in changes.items()), after=changes)

    def _sla_minutes(self, ctx: ActionContext) -> tuple[int, int]:
        return ctx.sla or DEFAULT_SLA[ctx.priority or "P3"]

    def _sla(self, ctx: ActionContext, start: datetime) -> Sla:
        ack, res = self._sla_minutes(ctx)
        return Sla(
            acknowledge_by=start + timedelta(minutes=ack),
            resolve_by=start + timedelta(minutes=res),
            acknowledge_minutes=ack,
            resolve_minutes=res,
        )

    def _notify(self, step: Any, ctx: ActionContext) -> None:
        self.materialise(ctx)
        if not ctx.opened and step.when is None:
            return  # the incident was already open: its people were told when it opened
        # a conditional notice (`when`, e.g. a critical alert) also fires for an alert that joins an
        # open incident — once per incident, as its id is per (incident, step, recipient)
        assert ctx.incident is not None
        language = step.language or self.settings.notify.language
        actions = step.actions.for_language(language) if step.actions else None
        for address, name in self.recipients(step.to, step.channel, [m.department for m in ctx.assets]):
            ctx.notices += self.queue_notice(
                ctx.incident,
                kind=step.template,
                step_id=step.id,
                channel=step.channel,
                recipient=address,
                recipient_name=name,
                language=language,
                actions=actions,
                actor=ctx.actor,
            )
        ctx.incident = self.incidents.get(ctx.incident.id)

    def _webhook(self, step: Any, ctx: ActionContext) -> None:
        self.materialise(ctx)
        if not ctx.opened:
            return
        assert ctx.incident is not None
        ctx.notices += self.queue_notice(
            ctx.incident,
            kind="incident_opened",
            step_id=step.id,
            channel="webhook",
            recipient=step.url,
            secret_env=step.secret_env,
            recipient_name=None,
            language=self.settings.notify.language,
            actions=None,
            actor=ctx.actor,
        )

    def _later(self, step: Any, ctx: ActionContext) -> None:
        """`escalate` and `close` act from the scheduler; at alert time they only say they are armed."""
        self._entry(ctx, step, "armed", f"{step.kind} step armed (runs from the scheduler)")

    # -- the incident -----------------------------------------------------------------------------

    def materialise(self, ctx: ActionContext) -> None:
        """Join the open incident of the alert's group, or open one; idempotent per context."""
        if ctx.incident is not None:
            return
        alert = ctx.alert
        if ctx.group_key:
            existing = self.incidents.find_open_for_group(ctx.group_key, alert.timestamp)
            if existing is not None:
                incident, _linked = self.incidents.link_alert(
                    existing.id,
                    alert,
                    actor=ctx.actor,
                    assets=[affected_asset(m, self.inventory) for m in ctx.assets],
                )
                ctx.incident, ctx.opened = incident, False
                if ctx.priority and PRIORITIES.index(ctx.priority) < PRIORITIES.index(incident.priority):
                    # a more urgent alert joined: the incident takes its priority and that priority's
                    # deadlines, counted from when the incident opened
                    ctx.incident = self.incidents.set_fields(
                        incident.id,
                        actor=ctx.actor,
                        priority=ctx.priority,
                        sla=self._sla(ctx, incident.created),
                    )
                return
        priority: Priority = ctx.priority or "P3"
        ctx.priority = priority
        draft = IncidentDraft(
            title=self.title(ctx),
            description=alert.rule.description or alert.message,
            priority=priority,
            level=alert.hcm.rule.level,
            group_key=ctx.group_key,
            group_until=ctx.group_until,
            playbook=ctx.playbook.id,
            assets=[affected_asset(m, self.inventory) for m in ctx.assets],
            entities=Entities.model_validate(ctx.entities),
            tags=sorted({*ctx.tags, *alert.hcm.rule.tags}),
            sla=self._sla(ctx, ctx.now),
            assignee=ctx.assignee,
            queue=ctx.queue,
        )
        incident, opened = self.incidents.open_for_alert(draft, alert, actor=ctx.actor)
        ctx.incident, ctx.opened = incident, opened
        if opened:
            for entry in ctx.pending:
                ctx.incident = self.incidents.add_timeline(incident.id, entry)
        ctx.pending = []

    def title(self, ctx: ActionContext) -> str:
        what = ctx.alert.rule.name
        where = ctx.assets[0].asset.name if ctx.assets else None
        names = ctx.entities.get("ips") or ctx.entities.get("hosts") or ctx.entities.get("users") or []
        who = names[0] if names else None
        return f"{what} – {where}" if where else (f"{what} – {who}" if who else what)

    # -- notices ----------------------------------------------------------------------------------

    def recipients(
        self, to: Iterable[str], channel: str, departments: Iterable[Department]
    ) -> list[tuple[str, str | None]]:
        """(address or URL, name) for each recipient spec: contacts of the affected departments by
        role (owner, technical, escalation), `analysts` / `escalation` from settings, or literal
        addresses; de-duplicated, in order."""
        out: dict[str, str | None] = {}
        departments = list({d.id: d for d in departments}.values())
        for spec in to:
            if spec in ("owner", "technical", "escalation"):
                for d in departments:
                    for c in d.contacts:
                        address = c.email if channel == "email" else c.webhook
                        if c.role == spec and address:
                            out.setdefault(address, c.name)
            if spec == "analysts":
                for a in self.settings.notify.analysts:
                    out.setdefault(a, None)
            elif spec == "escalation":
                for a in self.settings.notify.escalation:
                    out.setdefault(a, None)
            elif spec not in ("owner", "technical") and (
                "@" in spec or spec.startswith(("http://", "https://"))
            ):
                out.setdefault(spec, None)
        return list(out.items())

    def queue_notice(
        self,
        incident: Incident,
        *,
        kind: str,
        step_id: str,
        channel: str,
        recipient: str,
        recipient_name: str | None,
        language: str,
        actions: list[str] | None,
        actor: str,
        secret_env: str | None = None,
    ) -> int:
        """Put one notice in the durable outbox; 1 if it is new, 0 if it was queued before."""
        from hcm_soc.notify import Notice, ack_url, make_ack_token, notice_context

        now = self.clock()
        expires = now + timedelta(seconds=self.settings.notify.token_ttl)
        token = make_ack_token(self.secret, incident.id, recipient, expires)
        context = notice_context(
            incident.model_dump(mode="json"),
            settings=self.settings,
            recipient=recipient,
            actions=actions,
            ack_url=ack_url(self.settings, token),
            ack_expires=expires,
        )
        notice = Notice.new(
            incident_id=incident.id,
            kind=kind,
            channel=channel,  # type: ignore[arg-type]
            recipient=recipient,
            context=context,
            step=step_id,
            recipient_name=recipient_name,
            language=language,  # type: ignore[arg-type]
            now=now,
            secret_env=secret_env,
        )
        if not self.outbox.enqueue(notice):
            return 0
        self.incidents.add_timeline(
            incident.id,
            TimelineEntry(
                at=now,
                actor=actor,
                action="notice_queued",
                step=step_id,
                message=f"{channel} to {recipient} ({kind}, {language})",
                after={"notice": notice.id},
            ),
        )
        return 1

    # -- scheduled steps (playbooks/scheduled.py) -----------------------------------------------

    def escalate_due(self, playbooks: Mapping[str, Playbook]) -> int:
        from hcm_soc.playbooks.scheduled import escalate_due

        return escalate_due(self, playbooks)

    def auto_close(self, playbooks: Mapping[str, Playbook]) -> int:
        from hcm_soc.playbooks.scheduled import auto_close

        return auto_close(self, playbooks)


def affected_asset(match: AssetMatch, inventory: Inventory) -> AffectedAsset:
    a, d = match.asset, match.department
    owners = [c.email for c in inventory.owner_contacts(a, roles=("owner",)) if c.email]
    return AffectedAsset(
        id=a.id,
        name=a.name,
        department=d.id,
        department_name=d.name,
        sector=a.sector,
        criticality=a.criticality,
        owners=owners,
    )


def reverse_lookup(ip: str, timeout: float = 1.0) -> str | None:
    """PTR name of `ip` through the system resolver, bounded in time (None when there is none)."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(socket.gethostbyaddr, ip)
    try:
        return future.result(timeout=timeout)[0]
    except (FutureTimeout, OSError):
        return None
    finally:
        pool.shutdown(wait=False)  # a resolver that hangs must not hold the playbook run
