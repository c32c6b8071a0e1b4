"""`/api/alerts`: alerts (filters, paging), one alert, and the stored events behind it (the full
`_source`, `event.original` included, read from the indices its refs name).

Owners see only the alerts linked to their departments' incidents; any other alert answers 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from fastapi import APIRouter, Depends, Query

from hcm_soc.models.alert import Alert, AlertStatus
from hcm_soc.web.api.deps import get_services, reader
from hcm_soc.web.api.incidents import owner_departments, visible
from hcm_soc.web.api.queries import MAX_WINDOW, alert_events, alert_out, search_alerts
from hcm_soc.web.api.schemas import ERRORS, AlertEventsOut, AlertPageOut, StoredEventOut
from hcm_soc.web.auth import Principal
from hcm_soc.web.errors import ApiError
from hcm_soc.web.services import WebServices

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=ERRORS)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such alert (or not linked to one of your departments' incidents)"}
}
_PAGE = 500


def _owner_incident_ids(services: WebServices, principal: Principal) -> list[str]:
    """Ids of the incidents an owner may see (at most MAX_WINDOW, newest first)."""
    departments = owner_departments(principal, None)
    ids: list[str] = []
    page = 1
    while departments and len(ids) < MAX_WINDOW:
        result = services.incidents.list(
            department=cast(Any, departments), sort="created", page=page, size=_PAGE
        )
        ids += [i.id for i in result.items]
        if len(result.items) < _PAGE or page * _PAGE >= result.total:
            break
        page += 1
    return ids


def visible_alert(services: WebServices, principal: Principal, alert_id: str) -> Alert:
    alert = services.alerts.get(alert_id)
    if alert is None:
        raise ApiError(404, "not_found", f"alert {alert_id}: not found")
    if principal.role == "owner":
        if alert.hcm.incident is None:
            raise ApiError(404, "not_found", f"alert {alert_id}: not found")
        try:
            visible(services, principal, alert.hcm.incident)
        except ApiError:
            raise ApiError(404, "not_found", f"alert {alert_id}: not found") from None
    return alert


@router.get("", summary="List alerts, newest first", response_model=AlertPageOut)
def list_alerts(
    rule_id: str | None = Query(None, max_length=200),
    status: AlertStatus | None = None,
    incident: str | None = Query(None, max_length=100, description="alerts linked to this incident"),
    since: datetime | None = Query(None, description="ISO 8601; alerts at or after this time"),
    page: int = Query(1, ge=1, le=10_000),
    size: int = Query(50, ge=1, le=500),
    principal: Principal = reader("analyst", "owner", "admin"),
    services: WebServices = Depends(get_services),
) -> AlertPageOut:
    if page * size > MAX_WINDOW:
        raise ApiError(422, "invalid", "page × size may not exceed 10,000; narrow the filters instead")
    if since is not None and since.tzinfo is None:
        raise ApiError(422, "invalid", "since: give a time zone, e.g. 2026-11-26T08:00:00+07:00 or …Z")
    incidents: list[str] | None = None
    if principal.role == "owner":
        if incident is not None:
            visible(services, principal, incident)
        else:
            incidents = _owner_incident_ids(services, principal)
            if not incidents:
                return AlertPageOut(items=[], total=0, page=page, size=size)
    alerts, total = search_alerts(
        services,
        rule_id=rule_id,
        status=status,
        incident=incident,
        incidents=incidents,
        since=since,
        page=page,
        size=size,
    )
    return AlertPageOut(items=[alert_out(a) for a in alerts], total=total, page=page, size=size)


@router.get("/{alert_id}", summary="One alert", responses=NOT_FOUND)
def get_alert(
    alert_id: str,
    principal: Principal = reader("analyst", "owner", "admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    return alert_out(visible_alert(services, principal, alert_id))


@router.get(
    "/{alert_id}/events",
    summary="The stored events behind an alert (full _source, event.original included)",
    response_model=AlertEventsOut,
    responses=NOT_FOUND,
)
def get_alert_events(
    alert_id: str,
    principal: Principal = reader("analyst", "owner", "admin"),
    services: WebServices = Depends(get_services),
) -> AlertEventsOut:
    alert = visible_alert(services, principal, alert_id)
    events = [StoredEventOut.model_validate(e) for e in alert_events(services, alert)]
    return AlertEventsOut(alert_id=alert.id, events_total=alert.hcm.events_total, events=events)
