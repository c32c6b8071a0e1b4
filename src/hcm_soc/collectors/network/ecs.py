"""The parts of an ECS network record every protocol analyzer builds the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(ts: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with a Z."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def protocol_event(
    ts: float,
    dataset: str,
    protocol: str,
    categories: list[str],
    endpoints: tuple[str, int, str, int] | None,
    transport: str = "tcp",
) -> dict[str, Any]:
    """The skeleton of one protocol record; `endpoints` = (client ip, port, server ip, port)."""
    event: dict[str, Any] = {
        "@timestamp": iso(ts),
        "event": {"dataset": dataset, "category": categories, "type": ["protocol"], "kind": "event"},
        "network": {"protocol": protocol, "transport": transport},
    }
    if endpoints is not None:
        event["source"] = {"ip": endpoints[0], "port": endpoints[1]}
        event["destination"] = {"ip": endpoints[2], "port": endpoints[3]}
    return event
