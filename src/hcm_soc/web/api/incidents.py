"""`/api/incidents`: the queue (filters, sort, paging), one incident with its notices, and the
changes a person makes (acknowledge, assign, comment, status).

Owners see only incidents with an asset of one of their departments: the list is filtered in the
query, and another department's incident answers 404 exactly like one that does not exist, so a
guessed id confirms nothing. Owners may acknowledge and comment (on their incidents); assigning
and moving the status are the analysts' (and admins') job.

Every change may be made conditional on the version the person saw (`expected_seq_no` in the
body or `If-Match: "<seq_no>"`): 409 `conflict` when the incident moved on since. A status
move the lifecycle does not allow is 409 `transition_not_allowed` with the allowed moves.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Response

from hcm_soc.incidents.lifecycle import TRANSITIONS, TransitionError
from hcm_soc.models.incident import Incident, IncidentNotFound, IncidentStatus, Priority
from hcm_soc.web.api.deps import actor, expected_seq_no, get_services, reader, writer
from hcm_soc.web.api.queries import notices_for_incident
from hcm_soc.web.api.schemas import (
    ERRORS,
    AcknowledgeIn,
    AssignIn,
    CommentIn,
    IncidentDetailOut,
    IncidentOut,
    IncidentPageOut,
    NoticeOut,
    StatusIn,
)
from hcm_soc.web.auth import Principal
from hcm_soc.web.errors import ApiError
from hcm_soc.web.services import WebServices

router = APIRouter(prefix="/incidents", tags=["incidents"], responses=ERRORS)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such incident (or not one of your departments')"}
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"description": "changed since expected_seq_no, or a status move the lifecycle does not allow"},
}


def visible(services: WebServices, principal: Principal, incident_id: str) -> Incident:
    """The incident if this caller may see it; 404 otherwise (also when it exists)."""
    try:
        incident = services.incidents.get(incident_id)
    except IncidentNotFound:
        raise ApiError(404, "not_found", f"incident {incident_id}: not found") from None
    if not principal.can_see_incident(incident):
        raise ApiError(404, "not_found", f"incident {incident_id}: not found")
    return incident


def owner_departments(principal: Principal, requested: str | None) -> list[str] | None:
    """The department filter of a list: None (no filter) for analysts and admins; for an owner
    their departments, narrowed to `requested` (an empty list when it is not theirs)."""
    if principal.role != "owner":
        return [requested] if requested else None
    mine = list(principal.departments)
    if requested:
        return [requested] if requested in mine else []
    return mine


def _answer(response: Response, incident: Incident) -> IncidentOut:
    if incident.seq_no is not None:
        response.headers["ETag"] = f'"{incident.seq_no}"'
    return IncidentOut.of(incident)


@router.get("", summary="List incidents (the queue)", response_model=IncidentPageOut)
def list_incidents(
    status: list[IncidentStatus] | None = Query(None, description="repeat for several"),
    priority: list[Priority] | None = Query(None, description="repeat for several"),
    assignee: str | None = Query(None, max_length=200),
    department: str | None = Query(None, max_length=200, description="inventory department id"),
    sector: str | None = Query(None, max_length=200),
    rule_id: str | None = Query(None, max_length=200),
    q: str | None = Query(None, max_length=500, description="words in id, title, comments, assets, entities"),
    sort: Literal["priority", "created", "updated"] = "priority",
    page: int = Query(1, ge=1, le=10_000),
    size: int = Query(50, ge=1, le=500),
    principal: Principal = reader("analyst", "owner", "admin"),
    services: WebServices = Depends(get_services),
) -> IncidentPageOut:
    if page * size > 10_000:
        raise ApiError(422, "invalid", "page × size may not exceed 10,000; narrow the filters instead")
    departments = owner_departments(principal, department)
    if departments == []:
        return IncidentPageOut(items=[], total=0, page=page, size=size)
    result = services.incidents.list(
        status=status,
        priority=priority,
        assignee=assignee,
        department=departments,
        sector=sector,
        rule_id=rule_id,
        query=q,
        sort=sort,
        page=page,
        size=size,
    )
    return IncidentPageOut(
        items=[IncidentOut.of(i) for i in result.items], total=result.total, page=page, size=size
    )


@router.get(
    "/{incident_id}",
    summary="One incident with its notices",
    response_model=IncidentDetailOut,
    responses=NOT_FOUND,
)
def get_incident(
    incident_id: str,
    response: Response,
    principal: Principal = reader("analyst", "owner", "admin"),
    services: WebServices = Depends(get_services),
) -> IncidentDetailOut:
    incident = visible(services, principal, incident_id)
    notices = [
        NoticeOut.model_validate(n.model_dump(include=set(NoticeOut.model_fields)))
        for n in notices_for_incident(services, incident.id)
    ]
    out = IncidentDetailOut.model_validate(
        {
            **IncidentOut.of(incident).model_dump(),
            "notices": notices,
            "allowed_transitions": list(TRANSITIONS[incident.status]),
        }
    )
    if incident.seq_no is not None:
        response.headers["ETag"] = f'"{incident.seq_no}"'
    return out


IF_MATCH = Header(None, alias="If-Match", description='"<seq_no>": act only if unchanged since')


@router.post(
    "/{incident_id}/acknowledge",
    summary="Acknowledge (new → acknowledged)",
    response_model=IncidentOut,
    responses=WRITE_ERRORS,
)
def acknowledge(
    incident_id: str,
    response: Response,
    body: AcknowledgeIn | None = None,
    if_match: str | None = IF_MATCH,
    principal: Principal = writer("analyst", "owner", "admin"),
    services: WebServices = Depends(get_services),
) -> IncidentOut:
    seq = expected_seq_no(body.expected_seq_no if body else None, if_match)
    visible(services, principal, incident_id)
    incident = services.incidents.acknowledge(incident_id, actor=actor(principal), expected_seq_no=seq)
    return _answer(response, incident)


@router.post(
    "/{incident_id}/assign",
    summary="Assign (or unassign)",
    response_model=IncidentOut,
    responses=WRITE_ERRORS,
)
def assign(
    incident_id: str,
    body: AssignIn,
    response: Response,
    if_match: str | None = IF_MATCH,
    principal: Principal = writer("analyst", "admin"),
    services: WebServices = Depends(get_services),
) -> IncidentOut:
    seq = expected_seq_no(body.expected_seq_no, if_match)
    visible(services, principal, incident_id)
    incident = services.incidents.assign(
        incident_id, body.assignee, actor=actor(principal), expected_seq_no=seq
    )
    return _answer(response, incident)


@router.post(
    "/{incident_id}/comment", summary="Add a comment", response_model=IncidentOut, responses=WRITE_ERRORS
)
def comment(
    incident_id: str,
    body: CommentIn,
    response: Response,
    if_match: str | None = IF_MATCH,
    principal: Principal = writer("analyst", "owner", "admin"),
    services: WebServices = Depends(get_services),
) -> IncidentOut:
    seq = expected_seq_no(body.expected_seq_no, if_match)
    visible(services, principal, incident_id)
    incident = services.incidents.comment(incident_id, body.text, actor=actor(principal), expected_seq_no=seq)
    return _answer(response, incident)


@router.post(
    "/{incident_id}/status",
    summary="Change the status (resolve, false positive, reopen, …)",
    response_model=IncidentOut,
    responses=WRITE_ERRORS,
)
def set_status(
    incident_id: str,
    body: StatusIn,
    response: Response,
    if_match: str | None = IF_MATCH,
    principal: Principal = writer("analyst", "admin"),
    services: WebServices = Depends(get_services),
) -> IncidentOut:
    seq = expected_seq_no(body.expected_seq_no, if_match)
    current = visible(services, principal, incident_id)
    try:
        incident = services.incidents.set_status(
            incident_id, body.status, actor=actor(principal), reason=body.reason, expected_seq_no=seq
        )
    except TransitionError as e:
        # the incident may have moved since `current` was read: name the moves allowed now
        latest = services.incidents.get(incident_id) if seq is None else current
        raise ApiError(
            409,
            "transition_not_allowed",
            str(e),
            details={"status": latest.status, "allowed": list(TRANSITIONS[latest.status])},
        ) from None
    return _answer(response, incident)
