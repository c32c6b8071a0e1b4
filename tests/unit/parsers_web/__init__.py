"""Unit tests of the web access-log and JSON-lines parsers, and the golden-file helper they share.

A golden file holds, for every line of a sample (1-based), either the ECS fields the
parser returns or the ParseError message. Regenerate after a deliberate change with
`HCM_SOC_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/parsers_web`, then review the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hcm_soc.parsers.base import ParseContext, ParseError

DATA = Path(__file__).resolve().parents[2] / "data" / "web"


def sample_lines(path: Path) -> list[str]:
    """The lines of a sample file, split on "\\n" only (no other Unicode line breaks)."""
    text = path.read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def parse_all(
    parse: Callable[[Any, ParseContext], dict[str, Any]], lines: list[str], ctx: ParseContext
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n, line in enumerate(lines, start=1):
        try:
            out.append({"line": n, "event": parse(line, ctx)})
        except ParseError as e:
            out.append({"line": n, "error": str(e)})
    return out


def check_golden(results: list[dict[str, Any]], golden: Path) -> None:
    if os.environ.get("HCM_SOC_UPDATE_GOLDEN") == "1":
        golden.write_text(json.dumps(results, ensure_ascii=False, indent=1, sort_keys=True) + "\n", "utf-8")
    expected = json.loads(golden.read_text(encoding="utf-8"))
    assert len(results) == len(expected), f"{golden.name}: {len(results)} results, golden has {len(expected)}"
    for got, want in zip(results, expected, strict=True):
        assert got == want, f"{golden.name} line {want['line']}"
