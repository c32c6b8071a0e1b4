"""Alerts and inventory assets for playbook tests, built with the real models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hcm_soc.inventory import Asset, AssetMatch, Contact, Department
from hcm_soc.models.alert import RISK_SCORE, SEVERITY, Alert

T0 = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def make_alert(
    *,
    rule_id: str = "00000000-0000-0000-0000-000000000001",
    title: str = "Test rule",
    level: str | None = "medium",
    tags: list[str] | None = None,
    category: str | None = None,
    kind: str = "detection",
    host: str | None = None,
    source_ip: str | None = None,
    destination_ip: str | None = None,
    url: str | None = None,
    group: dict[str, Any] | None = None,
) -> Alert:
    """An alert as `detection.alerts.build_alert` makes it: rule id/level/tags/log source, entities."""
    tags = list(tags or [])
    doc: dict[str, Any] = {
        "id": f"alert-{rule_id[:8]}-{host or source_ip or 'x'}",
        "@timestamp": T0,
        "message": title,
        "event": {
            "kind": "alert",
            "severity": SEVERITY.get(level or "", 0),
            "risk_score": RISK_SCORE.get(level or "", 0.0),
        },
        "rule": {"id": rule_id, "name": title, "ruleset": "hcm-soc", "category": category},
        "tags": tags,
        "hcm": {
            "created": T0,
            "rule": {"id": rule_id, "title": title, "level": level, "kind": kind, "tags": tags},
            "window": {"start": T0, "end": T0},
            "match_key": "k",
            "events": [],
            "events_total": 1,
            "count": 1,
            "group": group,
        },
    }
    if host:
        doc["host"] = {"name": host}
    if source_ip:
        doc["source"] = {"ip": source_ip}
    if destination_ip:
        doc["destination"] = {"ip": destination_ip}
    if url:
        doc["url"] = {"original": url}
    return Alert.model_validate(doc)


DEPARTMENT = Department(
    id="sotttt",
    name="Sở Thông tin và Truyền thông",
    contacts=[Contact(name="Quản trị", email="quantri@sotttt.example.vn", role="owner")],
)


def make_match(
    *,
    asset_id: str = "portal",
    sector: str = "e_government",
    criticality: int = 3,
    sensitivity: str = "internal",
    tags: list[str] | None = None,
    department: str = "sotttt",
) -> AssetMatch:
    asset = Asset.model_validate(
        {
            "id": asset_id,
            "name": "Cổng thử nghiệm",
            "hostnames": [f"{asset_id}-01"],
            "department": department,
            "sector": sector,
            "criticality": criticality,
            "sensitivity": sensitivity,
            "tags": tags or [],
        }
    )
    return AssetMatch(asset=asset, department=DEPARTMENT, matched_by="hostname", value=f"{asset_id}-01")
