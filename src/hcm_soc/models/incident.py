"""The incident document hcm-soc stores in `<prefix>-incidents`, and the errors about incidents.

An incident is the work item the city security center owns: alerts join it, people and
playbooks change it, and every change leaves a `TimelineEntry` (who, when, what, before/after).
The document `_id` is the human id (`INC-2026-000123`). `seq_no`/`primary_term` are the
optimistic-concurrency token of the read that produced the object; they are not stored.

Bounds: `alerts` embeds the first `MAX_ALERT_REFS` alert refs (the detail a person reads);
`alert_ids` keeps every linked alert id (what idempotent linking checks) and `alert_count`
counts them. Each entity list keeps at most `MAX_ENTITIES` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hcm_soc.errors import HcmSocError

IncidentStatus = Literal["new", "acknowledged", "investigating", "contained", "resolved", "false_positive"]
Priority = Literal["P1", "P2", "P3", "P4"]  # P1 highest

MAX_ALERT_REFS = 200
MAX_ENTITIES = 200

#: Sigma levels, lowest first: an incident's level is the highest of its alerts'.
LEVEL_ORDER: dict[str, int] = {"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


class IncidentConflict(HcmSocError):
    """Someone else changed the incident first; reload it and retry."""

    exit_code = 1


class IncidentNotFound(HcmSocError):
    """No incident with that id (or the alert it should belong to is not stored)."""

    exit_code = 2


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("expected a timezone-aware datetime (UTC)")
    return v


#: every datetime of an incident is timezone-aware (UTC inside, local time only for display)
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TimelineEntry(_Doc):
    """One change of an incident or one playbook step: who, when, what, before/after."""

    at: AwareDatetime
    actor: str  # "system", "playbook:<id>", "user:<name>"
    action: str  # created, alert_linked, status, assigned, comment, priority, sla, notice_sent, ...
    message: str | None = None
    before: Any | None = None
    after: Any | None = None
    step: str | None = None  # the playbook step id


class AffectedAsset(_Doc):
    """An inventory asset the incident touches, with its owning department and owner e-mails."""

    id: str
    name: str
    department: str
    department_name: str | None = None
    sector: str | None = None
    criticality: int | None = Field(default=None, ge=1, le=4)
    owners: list[str] = Field(default_factory=list)


class IncidentAlertRef(_Doc):
    id: str
    rule_id: str
    rule_title: str
    level: str | None = None
    timestamp: AwareDatetime


class Sla(_Doc):
    acknowledge_by: AwareDatetime | None = None
    resolve_by: AwareDatetime | None = None
    acknowledge_minutes: int | None = Field(default=None, ge=0)
    resolve_minutes: int | None = Field(default=None, ge=0)


class Comment(_Doc):
    at: AwareDatetime
    author: str
    text: str = Field(min_length=1)


class Entities(_Doc):
    ips: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)

    def merged(self, other: Entities) -> Entities:
        """Union of both, first-seen order, each list capped at MAX_ENTITIES."""

        def union(a: list[str], b: list[str]) -> list[str]:
            out = list(dict.fromkeys([*a, *b]))
            return out[:MAX_ENTITIES]

        return Entities(
            ips=union(self.ips, other.ips),
            users=union(self.users, other.users),
            hosts=union(self.hosts, other.hosts),
            urls=union(self.urls, other.urls),
        )


class Incident(_Doc):
    id: str  # INC-2026-000123, also the document _id
    title: str
    description: str | None = None
    status: IncidentStatus = "new"
    priority: Priority = "P3"
    level: str | None = None  # the highest level of the linked alerts
    created: AwareDatetime
    updated: AwareDatetime
    acknowledged_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None
    assignee: str | None = None
    queue: str | None = None
    sla: Sla = Field(default_factory=Sla)
    group_key: str | None = None
    group_until: AwareDatetime | None = None  # alerts with the same group key join until then
    playbook: str | None = None
    assets: list[AffectedAsset] = Field(default_factory=list)
    alerts: list[IncidentAlertRef] = Field(default_factory=list)  # the first MAX_ALERT_REFS
    alert_ids: list[str] = Field(default_factory=list)  # every linked alert
    alert_count: int = Field(default=0, ge=0)
    rule_ids: list[str] = Field(default_factory=list)  # distinct rules of the linked alerts
    entities: Entities = Field(default_factory=Entities)
    tags: list[str] = Field(default_factory=list)
    comments: list[Comment] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    escalation_level: int = Field(default=0, ge=0)
    last_alert_at: AwareDatetime | None = None
    seq_no: int | None = Field(default=None, exclude=True)
    primary_term: int | None = Field(default=None, exclude=True)

    @property
    def is_open(self) -> bool:
        return self.status not in ("resolved", "false_positive")

    def to_document(self) -> dict[str, Any]:
        """The `_source` to index (no seq_no/primary_term; datetimes as ISO 8601)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_hit(cls, hit: dict[str, Any]) -> Incident:
        """From a get/search hit; the concurrency token comes along when the hit has it."""
        return cls.model_validate(
            {
                **hit["_source"],
                "id": hit["_id"],
                "seq_no": hit.get("_seq_no"),
                "primary_term": hit.get("_primary_term"),
            }
        )


class IncidentDraft(_Doc):
    """What the playbook runner knows when it opens an incident for a first alert."""

    title: str
    description: str | None = None
    priority: Priority = "P3"
    level: str | None = None
    group_key: str | None = None
    group_until: AwareDatetime | None = None
    playbook: str | None = None
    assets: list[AffectedAsset] = Field(default_factory=list)
    entities: Entities = Field(default_factory=Entities)
    tags: list[str] = Field(default_factory=list)
    sla: Sla = Field(default_factory=Sla)
    assignee: str | None = None
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class IncidentPage:
    items: list[Incident]
    total: int
