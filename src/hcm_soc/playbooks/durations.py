"""Durations in playbooks (`30s`, `15m`, `4h`, `3d`, `1w` or plain seconds): parsing, the compact
spelling used when a playbook is printed, and the pydantic type with its JSON Schema."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """`30s`, `15m`, `4h`, `3d`, `1w` or plain seconds (`90`, `"90"`) → a positive timedelta.

    Raises ValueError saying what was expected (pydantic turns it into a validation problem)."""
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, bool):  # YAML `yes`/`no` are bools, and bool is an int
        raise ValueError(f"expected a duration like 30s, 15m, 4h or 3d, got {text!r}")
    elif isinstance(text, int | float):
        seconds = float(text)
    elif isinstance(text, str) and (m := _DURATION.match(text)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"expected a duration like 30s, 15m, 4h or 3d (or seconds), got {text!r}")
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: 1800 s → `30m`, 86400 s → `1d`, 90 s → `90s`."""
    seconds = value.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhdw]?\s*$"},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": "a duration: 30s, 15m, 4h, 3d, 1w or plain seconds",
        }
    ),
]
