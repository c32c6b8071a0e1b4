"""Request and response bodies of the REST API (pydantic): what enters is checked here (unknown
keys refused, sizes bounded) before a service sees it; what leaves is documented in /openapi.json.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hcm_soc.models.incident import Incident, IncidentStatus

Role = Literal["analyst", "owner", "admin"]

#: a Sigma rule or a playbook is a few kB; this bounds what one request can make us parse
MAX_YAML = 256 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _stripped(v: str) -> str:
    out = v.strip()
    if not out:
        raise ValueError("must not be empty")
    return out


# -- errors ----------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: invalid, not_found, conflict, …")
    message: str = Field(description="what failed and what to do, for a person")
    model_config = ConfigDict(extra="allow")


class ErrorOut(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "not logged in / no valid token"},
    403: {"model": ErrorOut, "description": "the role may not do this, or the CSRF token is missing"},
    422: {"model": ErrorOut, "description": "invalid input"},
}


# -- incidents -------------------------------------------------------------------------------------
class IncidentOut(Incident):
    """An incident with `seq_no`: send it back (body `expected_seq_no` or `If-Match: "<seq_no>"`)
    to change the incident only if nobody changed it since you read it."""

    seq_no: int | None = None

    @classmethod
    def of(cls, incident: Incident) -> IncidentOut:
        return cls.model_validate({**incident.model_dump(), "seq_no": incident.seq_no})


class IncidentPageOut(BaseModel):
    items: list[IncidentOut]
    total: int
    page: int
    size: int


class NoticeOut(BaseModel):
    id: str
    kind: str
    channel: str
    recipient: str
    recipient_name: str | None = None
    status: str
    attempts: int
    created: datetime
    sent_at: datetime | None = None
    subject: str | None = None
    last_error: str | None = None


class IncidentDetailOut(IncidentOut):
    notices: list[NoticeOut] = Field(default_factory=list)
    allowed_transitions: list[str] = Field(default_factory=list)


class _Write(_Body):
    expected_seq_no: int | None = Field(
        default=None, ge=0, description="act only if the incident is still at this seq_no (else 409)"
    )


class AcknowledgeIn(_Write):
    pass


class AssignIn(_Write):
    assignee: str | None = Field(max_length=200, description="user name; null or empty to unassign")


class CommentIn(_Write):
    text: str = Field(max_length=20_000)

    _text = field_validator("text")(_stripped)


class StatusIn(_Write):
    status: IncidentStatus
    reason: str | None = Field(default=None, max_length=20_000)


# -- alerts ----------------------------------------------------------------------------------------
class AlertPageOut(BaseModel):
    items: list[dict[str, Any]]
    total: int
    page: int
    size: int


class StoredEventOut(BaseModel):
    index: str = Field(alias="_index")
    id: str = Field(alias="_id")
    found: bool
    source: dict[str, Any] | None = Field(default=None, alias="_source")
    model_config = ConfigDict(populate_by_name=True)


class AlertEventsOut(BaseModel):
    alert_id: str
    events_total: int = Field(description="events behind the alert (the refs kept may be fewer)")
    events: list[StoredEventOut]


# -- rules -----------------------------------------------------------------------------------------
class RuleTextIn(_Body):
    yaml: str = Field(max_length=MAX_YAML, description="the Sigma rule (YAML text)")


class RuleTestIn(RuleTextIn):
    events: list[dict[str, Any]] = Field(max_length=1000, description="sample ECS events")


class RuleBacktestIn(RuleTextIn):
    hours: float = Field(gt=0, le=24 * 31, description="search the events of the last N hours")
    limit: int = Field(default=100, ge=1, le=1000)


class RuleSaveIn(RuleTextIn):
    enabled: bool = False


# -- playbooks -------------------------------------------------------------------------------------
class PlaybookTextIn(_Body):
    yaml: str = Field(max_length=MAX_YAML, description="one playbook (YAML text)")


class ProblemOut(BaseModel):
    file: str
    line: int | None = None
    key: str | None = None
    message: str


# -- users -----------------------------------------------------------------------------------------
class UserIn(_Body):
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")
    password: str = Field(min_length=1, max_length=1024, description="the password policy is checked too")
    role: Role
    departments: list[str] = Field(default_factory=list, max_length=100)
    display_name: str | None = Field(default=None, max_length=200)


class TokenIn(_Body):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="what the token is for")


class TokenOut(BaseModel):
    username: str
    name: str
    token: str = Field(description="shown once: only its hash is stored")


# -- ingest ----------------------------------------------------------------------------------------
class IngestOut(BaseModel):
    source: str
    dataset: str
    accepted: int = Field(description="events the parser took as they are")
    stored: int = Field(description="events written (a rejected one is stored as a parse failure)")
    rejected: list[dict[str, Any]]
    rejected_count: int
    batch_id: str | None = None
