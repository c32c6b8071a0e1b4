"""The incident queue (`/incidents`, its 15-second htmx refresh `/incidents/_table`) and the
incident page (`/incidents/{id}`) with its actions.

Owners see only incidents that touch an asset of their departments: the queue filters on the
server, and the incident page answers 404 for any other (the same answer as for an id that does
not exist, so guessing ids tells nothing). Actions carry the `seq_no` the person saw: when the
incident moved on meanwhile, the page says so instead of applying a decision made on stale data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from hcm_soc.incidents.lifecycle import OPEN, STATUSES, TransitionError, allowed
from hcm_soc.incidents.service import InvalidIncidentChange
from hcm_soc.models.incident import Incident, IncidentConflict, IncidentNotFound
from hcm_soc.notify.model import Notice
from hcm_soc.store.notices import NoticeStoreError
from hcm_soc.web.api.queries import alert_events
from hcm_soc.web.auth import Principal, page_user
from hcm_soc.web.i18n import translator
from hcm_soc.web.pages.common import flash_of, form_of, int_or_none, see_other, services_of
from hcm_soc.web.services import WebServices
from hcm_soc.web.templating import render, request_lang, to_datetime

router = APIRouter()
log = logging.getLogger(__name__)

QUEUE_SIZE = 200
#: the incident page shows the raw events of at most this many alerts, this many events each
EVENT_ALERTS = 10
EVENTS_PER_ALERT = 5


@dataclass(frozen=True, slots=True)
class Filters:
    status: str = "open"  # "open", "all" or one status
    sector: str = ""
    department: str = ""
    rule: str = ""

    @classmethod
    def of(cls, request: Request) -> Filters:
        q = request.query_params
        status = q.get("status") or "open"
        if status not in ("open", "all", *STATUSES):
            status = "open"
        return cls(
            status=status,
            sector=(q.get("sector") or "").strip(),
            department=(q.get("department") or "").strip(),
            rule=(q.get("rule") or "").strip(),
        )

    def query_string(self) -> str:
        params = {
            k: v
            for k, v in (
                ("status", self.status),
                ("sector", self.sector),
                ("department", self.department),
                ("rule", self.rule),
            )
            if v
        }
        return "?" + urlencode(params) if params else ""


def queue(services: WebServices, principal: Principal, filters: Filters) -> tuple[list[Incident], int]:
    """The incidents the queue shows (priority then SLA order) and how many match in all."""
    status: list[str] | str | None
    status = list(OPEN) if filters.status == "open" else None if filters.status == "all" else filters.status
    common: dict[str, Any] = {
        "status": status,
        "sector": filters.sector or None,
        "rule_id": filters.rule or None,
        "sort": "priority",
        "size": QUEUE_SIZE,
    }
    if principal.role != "owner":
        page = services.incidents.list(department=filters.department or None, **common)
        return page.items, page.total
    # an owner: only its departments, decided here on the server, whatever the form says
    wanted = [d for d in principal.departments if not filters.department or d == filters.department]
    seen: dict[str, Incident] = {}
    total = 0
    for dep in wanted:
        page = services.incidents.list(department=dep, **common)
        total += page.total
        for inc in page.items:
            seen.setdefault(inc.id, inc)
    items = sorted(
        seen.values(),
        key=lambda i: (i.priority, i.sla.acknowledge_by is None, i.sla.acknowledge_by or i.created, i.id),
    )
    # with several departments an incident touching two of them would be counted twice
    return items, total if len(wanted) == 1 else len(seen)


def _queue_context(request: Request, principal: Principal) -> dict[str, Any]:
    services = services_of(request)
    filters = Filters.of(request)
    items, total = queue(services, principal, filters)
    inventory = services.inventory()
    departments = sorted(
        (d.id, d.name) for d in inventory.departments.values() if principal.can_see_department(d.id)
    )
    if principal.role == "owner":
        known = {d for d, _ in departments}
        departments += [(d, d) for d in principal.departments if d not in known]
    return {
        "incidents": items,
        "total": total,
        "filters": filters,
        "query_string": filters.query_string(),
        "statuses": STATUSES,
        "sectors": sorted({a.sector for a in inventory.assets}),
        "departments": departments,
        "owner_departments": list(principal.departments),
    }


@router.get("/incidents", response_class=HTMLResponse)
def incident_queue(request: Request, principal: Annotated[Principal, Depends(page_user())]) -> Response:
    return render(request, "incidents.html", _queue_context(request, principal))


@router.get("/incidents/_table", response_class=HTMLResponse)
def incident_table(request: Request, principal: Annotated[Principal, Depends(page_user())]) -> Response:
    return render(request, "_incident_table.html", _queue_context(request, principal))


# -- the incident page ------------------------------------------------------------------------------
def visible_incident(services: WebServices, principal: Principal, incident_id: str) -> Incident:
    """The incident, or IncidentNotFound also when the principal may not see it (no existence leak)."""
    incident = services.incidents.get(incident_id)
    if not principal.can_see_incident(incident):
        raise IncidentNotFound(f"incident {incident_id} not found")
    return incident


def _event_view(doc: dict[str, Any]) -> dict[str, Any]:
    """One stored event as the page shows it: flattened ECS fields (event.original apart)."""
    source = doc.get("_source") or {}
    fields: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k in sorted(value):
                walk(f"{prefix}.{k}" if prefix else k, value[k])
        elif prefix != "event.original":
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            fields.append((prefix, text))

    walk("", source)
    event: dict[str, Any] = source["event"] if isinstance(source.get("event"), dict) else {}
    return {
        "index": doc.get("_index"),
        "timestamp": to_datetime(source.get("@timestamp")),
        "dataset": event.get("dataset"),
        "original": event.get("original"),
        "fields": fields,
    }


def raw_events(services: WebServices, incident: Incident) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ref in incident.alerts[:EVENT_ALERTS]:
        alert = services.alerts.get(ref.id)
        if alert is None:
            continue
        docs = alert_events(services, alert)[:EVENTS_PER_ALERT]
        out.extend(_event_view(d) for d in docs if d.get("found"))
    return out


def notices_of(services: WebServices, incident_id: str) -> list[Notice]:
    try:
        return services.notices.list_for_incident(incident_id)
    except NoticeStoreError as e:
        # before the first notice is stored the index has no `id` mapping to sort on; the page
        # must still open (the incident matters more than its notices)
        log.warning("notices of %s could not be listed: %s", incident_id, e)
        return []


def incident_page(
    request: Request,
    principal: Principal,
    incident_id: str,
    *,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    services = services_of(request)
    incident = visible_incident(services, principal, incident_id)
    assignees: list[str] = []
    if principal.role != "owner":
        assignees = sorted(u.username for u in services.users.list() if u.role != "owner" and not u.disabled)
    return render(
        request,
        "incident.html",
        {
            "incident": incident,
            "transitions": allowed(incident.status),
            "events": raw_events(services, incident),
            "notices": notices_of(services, incident.id),
            "assignees": assignees,
            "flash_key": flash_of(request) if problem is None else None,
            "problem": problem,
        },
        status_code=status_code,
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_detail(
    incident_id: str, request: Request, principal: Annotated[Principal, Depends(page_user())]
) -> Response:
    return incident_page(request, principal, incident_id)


def _act(
    request: Request, principal: Principal, incident_id: str, action: str, form: dict[str, str]
) -> Response:
    """Apply one action for the principal; PRG on success, the page with the reason otherwise."""
    services = services_of(request)
    visible_incident(services, principal, incident_id)
    actor = f"user:{principal.username}"
    seq = int_or_none(form.get("seq_no"))
    svc = services.incidents
    try:
        if action == "acknowledge":
            svc.acknowledge(incident_id, actor=actor, expected_seq_no=seq)
        elif action == "comment":
            svc.comment(incident_id, form.get("text", ""), actor=actor)
        elif action == "assign":
            svc.assign(incident_id, form.get("assignee"), actor=actor, expected_seq_no=seq)
        elif action == "status":
            svc.set_status(
                incident_id,
                form.get("status", ""),
                actor=actor,
                reason=form.get("reason"),
                expected_seq_no=seq,
            )
        elif action == "false_positive":
            svc.close(
                incident_id,
                actor=actor,
                reason=form.get("reason", ""),
                false_positive=True,
                expected_seq_no=seq,
            )
        else:  # pragma: no cover - the routes below pass only the actions above
            raise ValueError(action)
    except IncidentConflict:
        return incident_page(
            request, principal, incident_id, problem=_t(request)("incident.conflict"), status_code=409
        )
    except (TransitionError, InvalidIncidentChange) as e:
        problem = _t(request)("incident.invalid", message=str(e))
        return incident_page(request, principal, incident_id, problem=problem, status_code=409)
    flash = {"acknowledge": "acknowledged", "comment": "commented", "assign": "assigned"}.get(action, action)
    return see_other(f"/incidents/{incident_id}", msg=flash)


def _t(request: Request) -> Callable[..., str]:
    return translator(request_lang(request)[0])


@router.post("/incidents/{incident_id}/acknowledge")
async def acknowledge(
    incident_id: str, request: Request, principal: Annotated[Principal, Depends(page_user())]
) -> Response:
    return await _run(request, principal, incident_id, "acknowledge")


@router.post("/incidents/{incident_id}/comment")
async def comment(
    incident_id: str, request: Request, principal: Annotated[Principal, Depends(page_user())]
) -> Response:
    return await _run(request, principal, incident_id, "comment")


@router.post("/incidents/{incident_id}/assign")
async def assign(
    incident_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(page_user("analyst", "admin"))],
) -> Response:
    return await _run(request, principal, incident_id, "assign")


@router.post("/incidents/{incident_id}/status")
async def change_status(
    incident_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(page_user("analyst", "admin"))],
) -> Response:
    return await _run(request, principal, incident_id, "status")


@router.post("/incidents/{incident_id}/false-positive")
async def false_positive(
    incident_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(page_user("analyst", "admin"))],
) -> Response:
    return await _run(request, principal, incident_id, "false_positive")


async def _run(request: Request, principal: Principal, incident_id: str, action: str) -> Response:
    form = await form_of(request)
    # the services block on Elasticsearch: keep them off the event loop
    response: Response = await run_in_threadpool(_act, request, principal, incident_id, action, form)
    return response
