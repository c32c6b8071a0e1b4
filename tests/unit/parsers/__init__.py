"""Golden-file helpers shared by the parser tests.

A sample file `tests/data/<format>/NAME.log` holds one raw record per line; next to
it `NAME.golden.json` holds the context the lines are parsed in and, per line, either
every ECS field the parser must produce (dotted keys) or the ParseError message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hcm_soc.parsers.base import ParseContext

DATA = Path(__file__).resolve().parents[2] / "data"


def flatten(event: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in event.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass(frozen=True)
class GoldenCase:
    file: str
    line: int
    raw: str
    ctx: ParseContext
    fields: dict[str, Any] | None  # None: the line must raise ParseError
    error: str | None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def load_golden(fmt: str, name: str) -> list[GoldenCase]:
    log = DATA / fmt / f"{name}.log"
    golden = json.loads(log.with_suffix(".golden.json").read_text(encoding="utf-8"))
    context = golden["context"]
    ctx = ParseContext(
        dataset=fmt,
        timezone=ZoneInfo(context["timezone"]),
        received=datetime.fromisoformat(context["received"]),
    )
    # split on "\n" only: a message may hold other line separators (U+2028, \x1c, …) that are text
    lines = log.read_text(encoding="utf-8").split("\n")[:-1]
    events = golden["events"]
    assert [e["line"] for e in events] == list(range(1, len(lines) + 1)), (
        f"{log.name}: golden lines out of step"
    )
    return [GoldenCase(log.name, n, raw, ctx, e.get("fields"), e.get("error")) for n, (raw, e) in
            enumerate(zip(lines, events, strict=True), 1)]  # fmt: skip


def field_diff(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Every field that differs, is missing or is unexpected, one line each."""
    got, want = flatten(actual), dict(expected)
    problems = [f"missing {k} (expected {want[k]!r})" for k in want if k not in got]
    problems += [f"unexpected {k} = {got[k]!r}" for k in got if k not in want]
    problems += [f"{k}: got {got[k]!r}, expected {want[k]!r}" for k in want if k in got and got[k] != want[k]]
    return problems
