"""The alert document hcm-soc stores in `<prefix>-alerts`: an ECS document, validated on the way in and out.

Field names follow ECS where ECS has one (`event.kind: alert`, `rule.*`, `threat.*`, the
entity fields host/user/source/destination/url/process); what ECS lacks lives under
`hcm.*` (status, the rule's level and status, the window, the matched event refs, the
correlation group). Dotted ECS names are nested objects here, as Elasticsearch stores them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

AlertStatus = Literal["open", "acknowledged", "closed", "false_positive"]
RuleLevel = Literal["informational", "low", "medium", "high", "critical"]

#: Sigma level -> ECS `event.severity` (ordinal) and `event.risk_score` (Elastic's 0-100 scale).
SEVERITY: dict[str, int] = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
RISK_SCORE: dict[str, float] = {
    "informational": 1.0,
    "low": 21.0,
    "medium": 47.0,
    "high": 73.0,
    "critical": 99.0,
}


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _utc(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("expected a timezone-aware datetime (UTC)")
    return v


class AlertEventFields(_Doc):
    kind: Literal["alert"] = "alert"
    severity: int = Field(ge=0, le=5)
    risk_score: float = Field(ge=0, le=100)
    dataset: str | None = None  # the matched event's dataset (the log source the alert came from)
    module: str | None = None


class AlertRuleFields(_Doc):
    """ECS `rule.*`: `id` is the Sigma rule id, `name` its title."""

    id: str
    name: str
    ruleset: str
    description: str | None = None
    reference: list[str] = Field(default_factory=list)
    category: str | None = None  # the Sigma log source, e.g. "linux/auth" or "windows/process_creation"
    version: str | None = None


class ThreatTechnique(_Doc):
    id: list[str] = Field(default_factory=list)
    subtechnique: dict[str, list[str]] | None = None


class ThreatTactic(_Doc):
    id: list[str] = Field(default_factory=list)
    name: list[str] = Field(default_factory=list)


class ThreatFields(_Doc):
    framework: Literal["MITRE ATT&CK"] = "MITRE ATT&CK"
    technique: ThreatTechnique = ThreatTechnique()
    tactic: ThreatTactic = ThreatTactic()


class NamedEntity(_Doc):
    name: str | None = None


class AddressEntity(_Doc):
    ip: str | None = None


class UrlEntity(_Doc):
    full: str | None = None
    original: str | None = None


class ProcessEntity(_Doc):
    executable: str | None = None
    command_line: str | None = None


class AlertEventRef(_Doc):
    """One matched event: where it is stored and its id (enough to fetch it again)."""

    index: str
    id: str


class AlertWindow(_Doc):
    """The half-open `event.ingested` range [start, end) of the run that raised the alert."""

    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return _utc(v)


class HcmRuleFields(_Doc):
    id: str
    title: str
    level: RuleLevel | None = None
    status: str | None = None
    kind: Literal["detection", "correlation"] = "detection"
    version: str | None = None  # hash of the rule's definition when the alert was raised
    tags: list[str] = Field(default_factory=list)


class SuppressedKey(_Doc):
    key: str
    count: int = Field(ge=1)


class AlertSummary(_Doc):
    """Set on the one summary alert of a rule and window whose matches went over the alert caps."""

    suppressed: int = Field(ge=1)  # matches that raised no alert of their own
    exact: bool = True  # False: at least this many (the rest could not be counted)
    max_alerts_per_run: int
    max_alerts_per_group: int
    top_keys: list[SuppressedKey] = Field(default_factory=list)  # the group keys most suppressed


class AlertTriage(_Doc):
    """What the playbook runner did with the alert (set once; the runner skips triaged alerts)."""

    at: datetime
    outcome: Literal["incident", "no_playbook", "failed"]
    reason: str | None = None


class AlertHcmFields(_Doc):
    status: AlertStatus = "open"
    created: datetime
    rule: HcmRuleFields
    window: AlertWindow
    match_key: str  # the stable part of the alert id (event id, or group + correlation window)
    events: list[AlertEventRef]
    events_total: int = Field(ge=0)  # may exceed len(events): the refs are bounded
    count: int = Field(ge=1)  # events behind the alert (1 for a detection rule)
    group: dict[str, Any] | None = None  # correlation group-by values
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    summary: AlertSummary | None = None
    incident: str | None = None  # the incident id (e.g. INC-2026-000123) the alert is linked to
    playbook: str | None = None  # the playbook that took it
    triage: AlertTriage | None = None

    @field_validator("created", "first_seen", "last_seen")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return None if v is None else _utc(v)


class Alert(_Doc):
    """One alert document. Build it with `hcm_soc.detection.alerts.build_alert`."""

    id: str = Field(exclude=True)  # the document `_id`, deterministic (see detection.alerts.alert_id)
    timestamp: datetime = Field(
        validation_alias=AliasChoices("@timestamp", "timestamp"), serialization_alias="@timestamp"
    )
    message: str
    event: AlertEventFields
    rule: AlertRuleFields
    threat: ThreatFields | None = None
    tags: list[str] = Field(default_factory=list)
    host: NamedEntity | None = None
    user: NamedEntity | None = None
    source: AddressEntity | None = None
    destination: AddressEntity | None = None
    url: UrlEntity | None = None
    process: ProcessEntity | None = None
    hcm: AlertHcmFields

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return _utc(v)

    def to_document(self) -> dict[str, Any]:
        """The `_source` to index: ECS names, no empty entity objects, datetimes as ISO 8601."""
        doc = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        return {k: v for k, v in doc.items() if v != {}}

    @classmethod
    def from_document(cls, doc_id: str, source: dict[str, Any]) -> Alert:
        return cls.model_validate({**source, "id": doc_id})
