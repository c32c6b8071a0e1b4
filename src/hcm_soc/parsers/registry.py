"""The table of built-in formats. One row per format; the parser module is imported
when the format is first used, so listing formats stays cheap."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from hcm_soc.errors import HcmSocError
from hcm_soc.parsers.base import Parser, ParserSpec


@dataclass(frozen=True, slots=True)
class _Row:
    target: str  # "module:function"
    module: str
    dataset: str
    description: str


_FORMATS: dict[str, _Row] = {
    "syslog": _Row(
        "hcm_soc.parsers.syslog:parse_syslog",
        "system",
        "syslog",
        "RFC 3164/5424 syslog (with or without <PRI>), each message parsed further by its program: "
        "sshd, sudo, useradd/usermod, kernel iptables/UFW",
    ),
    "nginx": _Row(
        "hcm_soc.parsers.web:parse_nginx", "nginx", "nginx.access", "nginx access log, combined or common"
    ),
    "apache": _Row(
        "hcm_soc.parsers.web:parse_apache", "apache", "apache.access", "Apache access log, combined or common"
    ),
    "jsonl": _Row(
        "hcm_soc.parsers.jsonl:parse_jsonl", "json", "json", "JSON lines, mapped to ECS by options.field_map"
    ),
    "evtx": _Row(
        "hcm_soc.parsers.evtx:parse_evtx_record",
        "windows",
        "windows.evtx",
        "Windows event log records, shaped like Winlogbeat (Security, Sysmon, PowerShell, System, …)",
    ),
    "raw": _Row(
        "hcm_soc.parsers.raw:parse_raw", "generic", "generic", "each line stored as message, unparsed"
    ),
}


def format_names() -> set[str]:
    return set(_FORMATS)


def describe() -> list[tuple[str, str, str]]:
    return [(name, row.dataset, row.description) for name, row in sorted(_FORMATS.items())]


def get_parser(name: str) -> ParserSpec:
    row = _FORMATS.get(name)
    if row is None:
        raise HcmSocError(f"unknown format {name!r}; expected one of {', '.join(sorted(_FORMATS))}")
    module_name, func = row.target.split(":")
    parse: Parser = getattr(importlib.import_module(module_name), func)
    return ParserSpec(name, parse, row.module, row.dataset, row.description)
