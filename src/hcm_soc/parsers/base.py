"""What every parser shares: the context it parses in, its error, its registry entry,
and the envelope that turns a parser's ECS fields into a stored event.

A parser is a function `(raw, ctx) -> Event` that returns the ECS fields it could
read from one record (no `event.original`, `event.dataset` or tags: the envelope
adds those) and raises `ParseError` with a reason when the record is not in its
format. `finish()` and `failure()` build the stored event either way, so a record
is never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

Event = dict[str, Any]

ECS_VERSION = "8.11.0"
PARSE_FAILURE_TAG = "_parse_failure"
TRUNCATED_TAG = "_truncated"
BINARY_TAG = "_binary"


class ParseError(ValueError):
    """The record is not in the parser's format; the message says why (and where, if known)."""


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What a parser may need besides the record."""

    dataset: str
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Ho_Chi_Minh"))
    #: when the record was received/read (UTC); RFC 3164's missing year is inferred from it
    received: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: per-source options of the format (e.g. the field map of `jsonl`)
    options: Mapping[str, Any] = field(default_factory=dict)


Parser = Callable[[Any, ParseContext], Event]


@dataclass(frozen=True, slots=True)
class ParserSpec:
    """A registered format: `hcm-soc ingest --format NAME` and `format: NAME` in collectors/."""

    name: str
    parse: Parser
    module: str
    default_dataset: str
    description: str


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Static facts about the source, copied into every event (from the collectors/ definition)."""

    name: str
    dataset: str
    module: str
    tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)  # department, sector, system -> hcm.*
    host: Mapping[str, Any] = field(default_factory=dict)  # static host.* when the source is one host
    observer: Mapping[str, Any] = field(default_factory=dict)


def deep_merge(into: Event, extra: Mapping[str, Any]) -> Event:
    """Merge `extra` into `into` without overwriting values the parser already set."""
    for key, value in extra.items():
        if isinstance(value, Mapping):
            node = into.setdefault(key, {})
            if isinstance(node, dict):
                deep_merge(node, value)
        else:
            into.setdefault(key, value)
    return into


def _envelope(event: Event, original: str, source: SourceInfo, received: datetime, tags: list[str]) -> Event:
    event.setdefault("@timestamp", received.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    ev = event.setdefault("event", {})
    ev["original"] = original
    ev["dataset"] = source.dataset
    ev.setdefault("module", source.module)
    ev.setdefault("kind", "event")
    ev.pop("ingested", None)  # Elasticsearch sets it
    event.setdefault("ecs", {"version": ECS_VERSION})
    all_tags = list(dict.fromkeys([*event.get("tags", []), *source.tags, *tags]))
    if all_tags:
        event["tags"] = all_tags
    hcm = event.setdefault("hcm", {})
    hcm["source"] = source.name
    for k, v in source.labels.items():
        hcm.setdefault(k, v)
    if source.host:
        deep_merge(event.setdefault("host", {}), source.host)
    if source.observer:
        deep_merge(event.setdefault("observer", {}), source.observer)
    return event


def finish(
    event: Event, original: str, source: SourceInfo, received: datetime, tags: list[str] | None = None
) -> Event:
    """The stored form of a parsed record."""
    return _envelope(event, original, source, received, list(tags or []))


def failure(
    original: str,
    source: SourceInfo,
    received: datetime,
    reason: str,
    extra: Event | None = None,
    tags: list[str] | None = None,
) -> Event:
    """The stored form of a record that did not parse: its text, the reason, a failure tag."""
    event: Event = dict(extra or {})
    event.setdefault("error", {})["message"] = reason
    # keyword (full-text) Sigma rules search `message`: an unparsed line stays findable
    event.setdefault("message", original)
    event.setdefault("event", {})["kind"] = "pipeline_error"
    return _envelope(event, original, source, received, [*(tags or []), PARSE_FAILURE_TAG])
