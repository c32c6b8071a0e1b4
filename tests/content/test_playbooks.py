"""The shipped playbooks (`playbooks/`) validate, use only the shipped notice templates, carry
recommended actions in Vietnamese and English, and route every shipped city rule (`rules/`) to the
intended playbook for the shipped example inventory (`inventory/city-systems.yml`)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from hcm_soc.inventory import Inventory, load_inventory
from hcm_soc.playbooks.loader import PlaybookSet, load_playbooks
from hcm_soc.playbooks.model import NotifyStep
from hcm_soc.playbooks.trigger import TriggerContext, select_playbook
from tests.unit.playbooks.factory import make_alert

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
RULES = ROOT / "rules"
SHIPPED = {
    "brute-force-public-portal",
    "web-attack-egov",
    "malware-workstation",
    "internal-scan-dns-tunnel",
    "default",
}

# Where each shipped rule fires in its intended case: the host it names and the source address.
PORTAL_HOST = "sotttt-web01"  # internet-facing e-government portal (criticality 2)
DVC_HOST = "dvc-portal-01"  # online public service portal (e_government, criticality 3)
WINDOWS_HOST = "pc-ketoan-07.stc.hcm.example.vn"  # Department of Finance workstation LAN
INTERNET_IP = "203.0.113.45"
INSIDE_IP = "10.10.5.23"

#: rule file stem -> (intended playbook, host, source ip)
INTENDED: dict[str, tuple[str, str | None, str | None]] = {
    # linux
    "ssh_brute_force": ("brute-force-public-portal", PORTAL_HOST, INTERNET_IP),
    "ssh_success_after_failures": ("brute-force-public-portal", PORTAL_HOST, INTERNET_IP),
    "ssh_failed_login": ("default", PORTAL_HOST, INTERNET_IP),  # informational: one mistyped password
    "ssh_accepted_login": ("default", PORTAL_HOST, "10.10.1.32"),
    "new_local_user": ("default", PORTAL_HOST, None),
    "sudo_failures": ("default", PORTAL_HOST, None),
    "sudo_root_shell": ("default", PORTAL_HOST, None),
    "user_added_to_admin_group": ("default", PORTAL_HOST, None),
    # web
    "web_sql_injection": ("web-attack-egov", DVC_HOST, "198.51.100.23"),
    "web_path_traversal": ("web-attack-egov", DVC_HOST, "198.51.100.23"),
    "web_shell_access": ("web-attack-egov", DVC_HOST, "198.51.100.23"),
    "web_scanner_user_agent": ("web-attack-egov", DVC_HOST, "198.51.100.23"),
    # windows
    "mimikatz_command_line": ("malware-workstation", WINDOWS_HOST, None),
    "powershell_encoded_command": ("malware-workstation", WINDOWS_HOST, None),
    "new_service_installed": ("malware-workstation", WINDOWS_HOST, None),
    "security_log_cleared": ("malware-workstation", WINDOWS_HOST, None),
    "windows_user_added_to_admins": ("malware-workstation", WINDOWS_HOST, None),
    "windows_user_created": ("malware-workstation", WINDOWS_HOST, None),
    # network, from a workstation inside the city network
    "port_scan": ("internal-scan-dns-tunnel", None, INSIDE_IP),
    "firewall_deny_burst": ("internal-scan-dns-tunnel", None, INSIDE_IP),
    "dns_long_label": ("internal-scan-dns-tunnel", None, INSIDE_IP),
    "dns_many_subdomains": ("internal-scan-dns-tunnel", None, INSIDE_IP),
    "beaconing": ("internal-scan-dns-tunnel", None, INSIDE_IP),
    # informational network records: queued for triage by the catch-all
    "dns_query": ("default", None, INSIDE_IP),
    "firewall_connection": ("default", None, INSIDE_IP),
    "firewall_deny": ("default", None, INTERNET_IP),
    "network_flow": ("default", None, INSIDE_IP),
    "network_outbound_flow": ("default", None, INSIDE_IP),
}


@cache
def shipped() -> PlaybookSet:
    return load_playbooks([PLAYBOOKS])


@cache
def inventory() -> Inventory:
    return load_inventory(ROOT / "inventory" / "city-systems.yml")


@cache
def rules() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(RULES.rglob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        out[path.stem] = doc
    return out


def rule_alert(stem: str, host: str | None, source_ip: str | None) -> Any:
    """The alert `detection.alerts.build_alert` raises for this rule (id, title, level, tags, log source)."""
    doc = rules()[stem]
    ls = doc.get("logsource") or {}
    parts = [p for p in (ls.get("product"), ls.get("category") or ls.get("service")) if p]
    correlation = "correlation" in doc
    return make_alert(
        rule_id=doc["id"],
        title=doc["title"],
        level=doc.get("level"),
        tags=list(doc.get("tags") or []),
        category="/".join(parts) or None,
        kind="correlation" if correlation else "detection",
        host=host,
        source_ip=source_ip,
    )


def route(alert: Any) -> str | None:
    ips = [e.ip for e in (alert.source, alert.destination) if e is not None and e.ip]
    hosts = [alert.host.name] if alert.host is not None and alert.host.name else []
    ctx = TriggerContext(alert=alert, assets=inventory().match_entities(ips=ips, hostnames=hosts))
    chosen = select_playbook(shipped().playbooks, ctx)
    return chosen.id if chosen else None


def test_every_shipped_playbook_validates() -> None:
    loaded = shipped()
    assert [str(p) for p in loaded.problems] == []
    assert {p.id for p in loaded.playbooks} == SHIPPED
    assert len(loaded.files) == len(SHIPPED)
    for p in loaded.playbooks:
        assert Path(p.source).stem == p.id, "one playbook per file, named by its id"
        assert p.enabled and p.title and p.title_en and p.description


def test_default_is_the_catch_all_and_runs_last() -> None:
    default = shipped().get("default")
    assert default is not None and default.order == 1000
    assert default.trigger.model_dump() == {"always": True}
    assert max(p.order for p in shipped().playbooks if p.id != "default") < default.order
    notify = default.steps_of("notify")
    assert [n.to for n in notify] == [["analysts"]]
    (close,) = default.steps_of("close")
    assert close.when_quiet.days == 3 and close.max_level == "informational"


@pytest.mark.parametrize("playbook_id", sorted(SHIPPED))
def test_notices_use_shipped_templates_and_both_languages(playbook_id: str) -> None:
    playbook = shipped().get(playbook_id)
    assert playbook is not None
    notices = [s for s in playbook.steps if s.kind in ("notify", "escalate")]
    assert notices, "every shipped playbook tells someone"
    for step in notices:
        assert step.template in {"incident_opened", "incident_updated", "escalation", "incident_closed"}
    for step in playbook.steps_of("notify"):
        assert isinstance(step, NotifyStep) and step.actions is not None
        assert step.actions.vi and step.actions.en, f"{step.id}: actions in vi and en"
        assert len(step.actions.vi) == len(step.actions.en), f"{step.id}: the same actions in both"
    if playbook_id != "default":
        assert "owner" in playbook.steps_of("notify")[0].to
        assert playbook.steps_of("escalate"), "an unacknowledged incident is escalated"


def test_every_shipped_rule_has_an_intended_playbook() -> None:
    assert set(rules()) == set(INTENDED), "add the new rule to INTENDED with the playbook it should reach"


@pytest.mark.parametrize("stem", sorted(INTENDED))
def test_each_city_rule_reaches_the_intended_playbook(stem: str) -> None:
    playbook_id, host, source_ip = INTENDED[stem]
    assert route(rule_alert(stem, host, source_ip)) == playbook_id


@pytest.mark.parametrize(
    ("stem", "host", "source_ip", "why"),
    [
        ("web_sql_injection", "attp-web01", "198.51.100.23", "food safety portal: not e-government"),
        ("web_shell_access", None, "198.51.100.23", "no inventory asset matched"),
        ("port_scan", None, INTERNET_IP, "a scan from the Internet, not from inside"),
        ("beaconing", None, None, "no source address"),
        ("ssh_brute_force", "so-tai-chinh-dc01", "10.10.5.23", "internal brute force on an internal server"),
    ],
)
def test_outside_their_case_specific_playbooks_leave_the_alert_to_default(
    stem: str, host: str | None, source_ip: str | None, why: str
) -> None:
    assert route(rule_alert(stem, host, source_ip)) == "default", why


def test_brute_force_from_the_internet_on_an_unlisted_host_is_still_brute_force() -> None:
    assert route(rule_alert("ssh_brute_force", "unknown-host", INTERNET_IP)) == "brute-force-public-portal"


def test_priority_follows_the_matrix_for_the_demo_story() -> None:
    """SSH brute force (high) on the criticality-2 portal → P2; a web shell (critical) on the
    criticality-3 public service portal → P1; the default playbook is one step lower."""
    brute = shipped().get("brute-force-public-portal")
    web = shipped().get("web-attack-egov")
    default = shipped().get("default")
    assert brute and web and default
    assert brute.steps_of("set")[0].priority_for("high", 2) == "P2"
    assert web.steps_of("set")[0].priority_for("critical", 3) == "P1"
    assert default.steps_of("set")[0].priority_for("high", 2) == "P3"
