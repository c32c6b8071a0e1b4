"""Incident statuses and the transitions between them: which moves are allowed, and what a move sets.

new → acknowledged | investigating | false_positive | resolved
acknowledged → investigating | contained | resolved | false_positive
investigating → contained | resolved | false_positive
contained → resolved | investigating
resolved → investigating (reopen);  false_positive → investigating (reopen)
"""

from __future__ import annotations

from datetime import datetime
from typing import get_args

from hcm_soc.errors import HcmSocError
from hcm_soc.models.incident import Incident, IncidentStatus

STATUSES: tuple[IncidentStatus, ...] = get_args(IncidentStatus)
CLOSED: frozenset[IncidentStatus] = frozenset({"resolved", "false_positive"})
OPEN: tuple[IncidentStatus, ...] = tuple(s for s in STATUSES if s not in CLOSED)

TRANSITIONS: dict[IncidentStatus, tuple[IncidentStatus, ...]] = {
    "new": ("acknowledged", "investigating", "false_positive", "resolved"),
    "acknowledged": ("investigating", "contained", "resolved", "false_positive"),
    "investigating": ("contained", "resolved", "false_positive"),
    "contained": ("resolved", "investigating"),
    "resolved": ("investigating",),
    "false_positive": ("investigating",),
}


class TransitionError(HcmSocError):
    """A status change the lifecycle does not allow; the message lists the allowed ones."""

    exit_code = 2


def check_status(value: str) -> IncidentStatus:
    """`value` as a status, or TransitionError naming the valid ones."""
    for s in STATUSES:
        if s == value:
            return s
    raise TransitionError(f"unknown status {value!r}; expected one of: {', '.join(STATUSES)}")


def allowed(current: IncidentStatus) -> tuple[IncidentStatus, ...]:
    return TRANSITIONS[current]


def check_transition(incident_id: str, current: IncidentStatus, target: IncidentStatus) -> None:
    if target in TRANSITIONS[current]:
        return
    options = ", ".join(TRANSITIONS[current])
    if target == current:
        raise TransitionError(f"{incident_id} is already {current}; allowed: {options}")
    raise TransitionError(f"{incident_id}: {current} → {target} is not allowed; allowed: {options}")


def apply_status(incident: Incident, target: IncidentStatus, *, now: datetime) -> Incident:
    """`incident` moved to `target` with the timestamps the move sets (checked first).

    Any move out of `new` counts as the acknowledgement (it stops the acknowledgement SLA);
    closing sets `resolved_at`, reopening clears it."""
    check_transition(incident.id, incident.status, target)
    update: dict[str, object] = {"status": target}
    if incident.acknowledged_at is None:
        update["acknowledged_at"] = now
    if target in CLOSED:
        update["resolved_at"] = now
    elif incident.status in CLOSED:
        update["resolved_at"] = None
    return incident.model_copy(update=update)
