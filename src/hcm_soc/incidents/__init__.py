"""Incidents: the lifecycle (statuses and allowed transitions) and IncidentService, the only writer
of incident state. The documents are `hcm_soc.models.incident`; Elasticsearch access is
`hcm_soc.store.incidents`."""

from hcm_soc.incidents.lifecycle import CLOSED, OPEN, STATUSES, TRANSITIONS, TransitionError
from hcm_soc.incidents.service import IncidentService, InvalidIncidentChange
from hcm_soc.models.incident import (
    Incident,
    IncidentConflict,
    IncidentDraft,
    IncidentNotFound,
    IncidentPage,
    TimelineEntry,
)

__all__ = [
    "CLOSED",
    "OPEN",
    "STATUSES",
    "TRANSITIONS",
    "Incident",
    "IncidentConflict",
    "IncidentDraft",
    "IncidentNotFound",
    "IncidentPage",
    "IncidentService",
    "InvalidIncidentChange",
    "TimelineEntry",
    "TransitionError",
]
