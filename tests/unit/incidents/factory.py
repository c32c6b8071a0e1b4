"""Test factories for incidents: alerts as the detection engine stores them, and a controllable clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hcm_soc.models.alert import (
    AddressEntity,
    Alert,
    AlertEventFields,
    AlertHcmFields,
    AlertRuleFields,
    AlertWindow,
    HcmRuleFields,
    NamedEntity,
    UrlEntity,
)
from hcm_soc.models.incident import IncidentDraft

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def make_alert(
    *,
    rule_id: str = "rule-ssh-brute",
    title: str = "SSH brute force",
    level: str = "high",
    at: datetime = T0,
    src: str | None = "203.0.113.7",
    dst: str | None = "10.20.0.5",
    host: str | None = "portal-web-01",
    user: str | None = None,
    url: str | None = None,
) -> Alert:
    sev = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}[level]
    return Alert.model_validate(
        {
            "id": uuid.uuid4().hex,
            "timestamp": at,
            "message": title,
            "event": AlertEventFields(severity=sev, risk_score=50.0),
            "rule": AlertRuleFields(id=rule_id, name=title, ruleset="city"),
            "source": AddressEntity(ip=src) if src else None,
            "destination": AddressEntity(ip=dst) if dst else None,
            "host": NamedEntity(name=host) if host else None,
            "user": NamedEntity(name=user) if user else None,
            "url": UrlEntity(full=url) if url else None,
            "hcm": AlertHcmFields(
                created=at,
                rule=HcmRuleFields(id=rule_id, title=title, level=level),  # type: ignore[arg-type]
                window=AlertWindow(start=at - timedelta(minutes=1), end=at),
                match_key=uuid.uuid4().hex,
                events=[],
                events_total=0,
                count=1,
            ),
        }
    )


def draft(**kw: object) -> IncidentDraft:
    base: dict[str, object] = {"title": "SSH brute force on the public portal", "priority": "P2"}
    return IncidentDraft.model_validate({**base, **kw})
