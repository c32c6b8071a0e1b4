"""The records of the notice pipeline: a Notice (one message to one recipient over one channel),
its rendered form, the delivery error that says whether to retry, and the Notifier protocol.

A notice's id is derived from what makes it unique (incident, kind, playbook step, channel,
recipient), so a playbook that runs again on the same alert queues nothing new.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hcm_soc.errors import HcmSocError

Channel = Literal["email", "webhook"]
Language = Literal["vi", "en"]
# "sending": claimed by one outbox worker until `next_attempt` (its lease); see notify/outbox.py
NoticeStatus = Literal["pending", "sending", "sent", "failed"]
Outcome = Literal["sent", "retry", "failed"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def notice_id(incident_id: str, kind: str, step: str | None, channel: str, recipient: str) -> str:
    """Deterministic id: the same (incident, kind, step, channel, recipient) is always one notice.

    The recipient is compared case-insensitively because e-mail addresses are, in practice."""
    key = "\x1f".join((incident_id, kind, step or "", channel, recipient.strip().lower()))
    return "ntc-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


class Notice(BaseModel):
    """One message to one recipient, and where its delivery stands (stored in `<prefix>-notices`)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    incident_id: str
    kind: str  # template name: incident_opened, incident_updated, escalation, incident_closed
    step: str | None = None  # the playbook step that queued it (part of the id)
    channel: Channel
    recipient: str  # e-mail address or webhook URL
    recipient_name: str | None = None
    language: Language = "vi"
    context: dict[str, Any] = Field(default_factory=dict)  # see render.notice_context
    status: NoticeStatus = "pending"
    attempts: int = Field(default=0, ge=0)  # delivery attempts started
    next_attempt: datetime  # due from then (for "sending": when the worker's claim lapses)
    last_error: str | None = None
    created: datetime
    updated: datetime | None = None
    sent_at: datetime | None = None
    subject: str | None = None  # as rendered at the last attempt (for the timeline and the console)
    claimed_by: str | None = None  # the outbox worker of the last attempt
    # webhooks: the environment variable holding this notice's signing key (a playbook step's
    # `secret_env`); the name only — the key itself is never stored. None: the notifier's own key
    secret_env: str | None = None
    # concurrency token of the read this object came from; not part of the stored document
    seq_no: int | None = Field(default=None, exclude=True)
    primary_term: int | None = Field(default=None, exclude=True)

    @field_validator("next_attempt", "created", "updated", "sent_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("expected a timezone-aware datetime (UTC)")
        return v

    @classmethod
    def new(
        cls,
        *,
        incident_id: str,
        kind: str,
        channel: Channel,
        recipient: str,
        context: dict[str, Any],
        step: str | None = None,
        recipient_name: str | None = None,
        language: Language = "vi",
        now: datetime | None = None,
        secret_env: str | None = None,
    ) -> Notice:
        """A pending notice, due at once, with its deterministic id."""
        now = now or utcnow()
        return cls(
            id=notice_id(incident_id, kind, step, channel, recipient),
            incident_id=incident_id,
            kind=kind,
            step=step,
            channel=channel,
            recipient=recipient,
            recipient_name=recipient_name,
            language=language,
            context=context,
            next_attempt=now,
            created=now,
            updated=now,
            secret_env=secret_env,
        )


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """What a notifier sends: the e-mail parts, or the JSON body of a webhook."""

    subject: str
    text: str
    html: str | None = None
    json: dict[str, Any] | None = None


class DeliveryError(HcmSocError):
    """A notice could not be delivered. `transient`: try again later (server down, timeout, 4xx
    SMTP, HTTP 408/429/5xx); otherwise retrying cannot help (recipient refused, HTTP 4xx)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Notifier(Protocol):
    """Delivers a rendered notice over one channel; raises DeliveryError when it could not."""

    channel: str

    def send(self, notice: Notice, message: RenderedMessage) -> None: ...
