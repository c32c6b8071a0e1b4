"""Helpers for the YAML files people write (settings, collectors/, later rules and playbooks):
where each key is, and the checks several of them share."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml


def key_lines(text: str) -> dict[str, int]:
    """Dotted key -> 1-based line of that key in a YAML mapping document."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")

    root = yaml.compose(text)
    if root is not None:
        walk(root, "")
    return lines


def check_timezone(name: str) -> str:
    """`name` if it is an IANA time zone, else ValueError saying what was expected."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"expected an IANA time zone such as Asia/Ho_Chi_Minh, got {name!r}") from None
    return name
