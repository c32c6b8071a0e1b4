"""JSON lines -> ECS through a per-source field map (the `jsonl` format).

Options (`options:` of the source definition, `ctx.options` here):

    field_map:         {"ts": "@timestamp", "client.ip": "source.ip", "msg": "message"}
    timestamp_field:   ts           # optional: the source field holding the event time
    timestamp_format:  auto         # auto | iso8601 | unix | unix_ms | unix_us | unix_ns | a strptime pattern

- A source path is dotted: `client.ip` reads the key `"client.ip"` if the object has it
  literally, else `obj["client"]["ip"]`. A target is an ECS path (`source.ip`, `@timestamp`).
  A mapped field is moved, not copied; JSON `null` is not stored.
- Fields the map does not name are kept, with their structure and JSON types (numbers,
  booleans, arrays), under `json.*`: nothing is dropped, and application fields cannot collide
  with ECS fields of another type (a top-level `"source": "app"` would break the `source.*`
  mapping and send the whole event to the dead-letter stream). `labels` is not used because
  ECS labels are flat keywords.
- `@timestamp` (mapped or from `timestamp_field`) is read with `timestamp_format`; times
  without a zone are in the source's time zone; it is stored in UTC. `auto` takes ISO 8601
  strings and epoch numbers (unit guessed from the magnitude: s, ms, µs, ns).
- A target ending in `.ip` must hold IP addresses (Elasticsearch would refuse the whole event
  otherwise): a value that is not one raises ParseError naming the field.
- A line that is not a JSON object raises ParseError with the position of the JSON error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from hcm_soc.parsers.base import Event, ParseContext, ParseError, deep_merge

_MISSING = object()
_EPOCH_UNITS = {"unix": 1, "unix_ms": 1e3, "unix_us": 1e6, "unix_ns": 1e9}
_FORMATS = {"auto", "iso8601", *_EPOCH_UNITS}

FieldMap = tuple[tuple[str, tuple[str, ...]], ...]


def parse_jsonl(raw: Any, ctx: ParseContext) -> Event:
    """One JSON object (a line of text, or an already decoded mapping) -> ECS fields."""
    obj = _load(raw)
    options = ctx.options
    field_map = _compile(options.get("field_map"))
    ts_field = options.get("timestamp_field")
    ts_format = options.get("timestamp_format") or "auto"
    if not isinstance(ts_format, str) or (ts_format not in _FORMATS and "%" not in ts_format):
        raise ParseError(
            f"option timestamp_format {ts_format!r}: expected one of {', '.join(sorted(_FORMATS))} "
            "or a strptime pattern such as '%d/%m/%Y %H:%M:%S'"
        )

    event: Event = {}
    timestamp: Any = _MISSING
    if ts_field is not None:
        if not isinstance(ts_field, str) or not ts_field:
            raise ParseError(f"option timestamp_field must be a field name, got {ts_field!r}")
        timestamp = _pop(obj, ts_field)
    for source, target in field_map:
        value = _pop(obj, source)
        if value is _MISSING or value is None:
            continue
        if target == ("@timestamp",):
            if timestamp is _MISSING:
                timestamp = value
            else:  # timestamp_field already gave the time: keep this one with the unmapped fields
                obj[source] = value
            continue
        if target[-1] == "ip":
            _check_ip(value, source, ".".join(target))
        _set(event, target, value, source)
    if timestamp is not _MISSING and timestamp is not None:
        event["@timestamp"] = _timestamp(timestamp, ts_format, ctx.timezone)
    _prune(obj)
    if obj:
        node = event.setdefault("json", {})
        if not isinstance(node, dict):
            raise ParseError("field_map sets 'json' to a value; it is where unmapped fields are kept")
        deep_merge(node, obj)
    return event


def _load(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    text = raw if isinstance(raw, str | bytes | bytearray) else str(raw)
    if not text.strip():
        raise ParseError("empty line; expected a JSON object")
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        reason = e.msg.partition(":")[0] if e.msg else str(e)
        raise ParseError(
            f"not valid JSON at line {e.lineno} column {e.colno} (char {e.pos}): {reason}"
        ) from None
    if not isinstance(obj, dict):
        raise ParseError(f"expected a JSON object, got a JSON {_json_type(obj)}")
    return obj


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _compile(field_map: Any) -> FieldMap:
    if not field_map:
        return ()
    if not isinstance(field_map, Mapping):
        raise ParseError(
            f"option field_map must map source fields to ECS fields, got {type(field_map).__name__}"
        )
    try:
        return _compile_items(tuple(field_map.items()))
    except TypeError:  # unhashable values
        raise ParseError("option field_map: every source field and ECS target must be a string") from None


@lru_cache(maxsize=64)
def _compile_items(items: tuple[tuple[Any, Any], ...]) -> FieldMap:
    out: list[tuple[str, tuple[str, ...]]] = []
    for source, target in items:
        if not isinstance(source, str) or not isinstance(target, str) or not source or not target:
            raise ParseError(f"option field_map: {source!r}: {target!r}: both must be non-empty strings")
        parts = tuple(target.split("."))
        if any(not p for p in parts):
            raise ParseError(f"option field_map: target {target!r} is not a dotted field path")
        out.append((source, parts))
    return tuple(out)


def _pop(obj: dict[str, Any], path: str) -> Any:
    """Remove and return the value at `path` (a literal key first, then nested keys)."""
    if path in obj:
        return obj.pop(path)
    parts = path.split(".")
    node: Any = obj
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return _MISSING
    if isinstance(node, dict) and parts[-1] in node:
        return node.pop(parts[-1])
    return _MISSING


def _set(event: Event, target: tuple[str, ...], value: Any, source: str) -> None:
    node = event
    for part in target[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParseError(
                f"field_map: {source!r} -> {'.'.join(target)} conflicts with another mapped field"
            )
        node = child
    if target[-1] in node:
        raise ParseError(f"field_map: {source!r} -> {'.'.join(target)} conflicts with another mapped field")
    node[target[-1]] = value


def _prune(node: dict[str, Any]) -> None:
    """Drop the empty objects left behind by moving nested fields out."""
    for key in [k for k, v in node.items() if isinstance(v, dict)]:
        _prune(node[key])
        if not node[key]:
            del node[key]


def _check_ip(value: Any, source: str, target: str) -> None:
    for item in value if isinstance(value, list) else [value]:
        try:
            ipaddress.ip_address(item if isinstance(item, str) else "")
        except ValueError:
            raise ParseError(
                f"field {source!r} (mapped to {target}) is not an IP address: {item!r}"
            ) from None


def _timestamp(value: Any, fmt: str, tz: ZoneInfo) -> str:
    dt = _to_datetime(value, fmt, tz)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _to_datetime(value: Any, fmt: str, tz: ZoneInfo) -> datetime:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ParseError(f"timestamp {value!r}: expected a string or a number")
    epoch = fmt in _EPOCH_UNITS or (fmt == "auto" and _is_number(value))
    if not epoch and not isinstance(value, str):
        raise ParseError(f"timestamp {value!r}: expected a text timestamp for format {fmt!r}")
    try:
        if epoch:
            number = float(value)
            unit = _EPOCH_UNITS.get(fmt) or _epoch_unit(number)
            return datetime.fromtimestamp(number / unit, UTC)
        assert isinstance(value, str)
        if fmt in ("auto", "iso8601"):
            return datetime.fromisoformat(value.strip())
        return datetime.strptime(value.strip(), fmt)
    except (ValueError, OverflowError, OSError) as e:
        raise ParseError(f"timestamp {value!r} does not match format {fmt!r}: {e}") from None


def _is_number(value: Any) -> bool:
    if isinstance(value, int | float):
        return True
    text = value.strip()
    return bool(text) and text.replace(".", "", 1).lstrip("-").isdigit()


def _epoch_unit(number: float) -> float:
    """Seconds until the year 5138, then ms, µs, ns: the unit is guessed from the magnitude."""
    magnitude = abs(number)
    if magnitude < 1e11:
        return 1
    if magnitude < 1e14:
        return 1e3
    if magnitude < 1e17:
        return 1e6
    return 1e9
