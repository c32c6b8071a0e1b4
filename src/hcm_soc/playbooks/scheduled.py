"""Playbook steps that act later, from the scheduler: `escalate` (an incident still `new` past its
acknowledgement deadline notifies the next level, up to `max_levels`) and `close` (an incident
with no new alert for `when_quiet` is closed). See docs/response.md.

Each incident and step is an isolation boundary: a failure is logged and put on the incident
timeline as `step_failed`, and the other incidents go on. Decisions are taken on the incident as
read by id (a search may return an older version), and the level is bumped with a conditional
update, so two schedulers never escalate the same level twice (the notices have the same ids).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hcm_soc.models.incident import Incident, TimelineEntry
from hcm_soc.playbooks.actions import level_rank

if TYPE_CHECKING:
    from hcm_soc.playbooks.actions import StepRunner
    from hcm_soc.playbooks.model import Playbook

log = logging.getLogger(__name__)


def escalate_due(runner: StepRunner, playbooks: Mapping[str, Playbook]) -> int:
    now = runner.clock()
    escalated = 0
    for candidate in runner.incidents.open_incidents():
        if candidate.status != "new":
            continue
        playbook = playbooks.get(candidate.playbook or "")
        if playbook is None or not any(s.kind == "escalate" for s in playbook.steps):
            continue
        incident = runner.incidents.get(candidate.id)  # a search may return an older version
        if incident.status != "new":
            continue
        steps = [s for s in playbook.steps if s.kind == "escalate"]
        for step in steps:
            try:
                escalated += _escalate(runner, step, incident, playbook, now)
            except Exception as e:  # isolation boundary per incident and step
                log.exception("escalation failed", extra={"incident": incident.id, "step": step.id})
                runner.incidents.add_timeline(
                    incident.id,
                    TimelineEntry(
                        at=now,
                        actor=f"playbook:{incident.playbook}",
                        action="step_failed",
                        step=step.id,
                        message=f"{type(e).__name__}: {e}",
                    ),
                )
    return escalated


def _escalate(runner: StepRunner, step: Any, incident: Incident, playbook: Playbook, now: datetime) -> int:
    after = step.after
    if isinstance(after, timedelta):
        base = incident.created + after
    else:
        if incident.sla.acknowledge_by is None:
            return 0
        base = incident.sla.acknowledge_by
    level = incident.escalation_level
    max_levels = getattr(step, "max_levels", 1) or 1
    if level >= max_levels:
        return 0
    repeat = getattr(step, "repeat", None) or timedelta(hours=1)
    due = base + repeat * level
    if now < due:
        return 0
    actor = f"playbook:{playbook.id}"
    language = getattr(step, "language", None) or runner.settings.notify.language
    channel = getattr(step, "channel", None) or "email"
    departments = [
        runner.inventory.departments[a.department]
        for a in incident.assets
        if a.department in runner.inventory.departments
    ]
    for address, name in runner.recipients(step.to, channel, departments):
        runner.queue_notice(
            incident,
            kind=getattr(step, "template", None) or "escalation",
            step_id=f"{step.id}:L{level + 1}",
            channel=channel,
            recipient=address,
            recipient_name=name,
            language=language,
            actions=step.actions.for_language(language) if getattr(step, "actions", None) else None,
            actor=actor,
        )

    def bump(inc: Incident) -> Incident | None:
        if inc.escalation_level != level:
            return None  # another runner escalated it meanwhile (its notices have the same ids)
        return inc.model_copy(update={"escalation_level": level + 1})

    runner.incidents.update(
        incident.id,
        bump,
        actor=actor,
        action="escalated",
        message=f"not acknowledged by {base:%Y-%m-%d %H:%M} UTC: escalation level {level + 1}",
    )
    return 1


def auto_close(runner: StepRunner, playbooks: Mapping[str, Playbook]) -> int:
    now = runner.clock()
    closed = 0
    for candidate in runner.incidents.open_incidents():
        playbook = playbooks.get(candidate.playbook or "")
        close_steps = [s for s in (playbook.steps if playbook else []) if s.kind == "close"]
        if not close_steps:
            continue
        incident = runner.incidents.get(candidate.id)
        for step in close_steps:
            quiet = step.when_quiet
            last = incident.last_alert_at or incident.created
            max_level = getattr(step, "max_level", None)
            if max_level is not None and level_rank(incident.level) > level_rank(max_level):
                continue
            if now - last < quiet:
                continue
            try:
                runner.incidents.set_status(
                    incident.id,
                    getattr(step, "status", None) or "resolved",
                    actor=f"playbook:{incident.playbook}",
                    reason=f"closed automatically: no new alert for {quiet} (step {step.id})",
                )
                closed += 1
            except Exception as e:  # isolation boundary per incident
                log.warning("auto-close failed", extra={"incident": incident.id, "error": str(e)})
            break
    return closed
