"""Every shipped collectors/ definition validates (paths are production paths, not checked here)."""

from __future__ import annotations

from pathlib import Path

from hcm_soc.collectors.definition import load_definitions
from hcm_soc.parsers.registry import format_names

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_definitions_validate() -> None:
    good, bad = load_definitions(ROOT / "collectors", format_names(), check_paths=False)
    assert not bad, "\n".join(str(e) for e in bad)
    kinds = {(d.type, d.format) for d in good}
    # the examples the collectors issue asks for: portal nginx, Linux auth over syslog,
    # core switch/firewall over syslog, a Windows server's EVTX
    assert {("file", "nginx"), ("syslog", "syslog"), ("evtx", "evtx")} <= kinds
    assert sum(d.type == "syslog" for d in good) >= 2
    assert all(d.labels.get("department") for d in good)
