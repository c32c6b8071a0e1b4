"""The shipped asset inventory validates, and the demo's sample data (logs, capture) and the
shipped collector definitions all land on an asset with an owner."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
import yaml

from hcm_soc.config import PathSettings
from hcm_soc.inventory import SECTORS, Inventory, load_inventory, validate_inventory

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventory" / "city-systems.yml"
DEMO_LOGS = ROOT / "src" / "hcm_soc" / "data" / "demo-logs"
DEMO_PCAP = ROOT / "src" / "hcm_soc" / "data" / "demo-pcap" / "city-segment.pcap"
CITY_NET = re.compile(r"\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(INVENTORY)


def _asset(inv: Inventory, value: str) -> str:
    matches = inv.lookup(value)
    assert matches, f"{value} (used by the demo) matches no asset of {INVENTORY.name}"
    m = matches[0]
    assert inv.owner_contacts(m.asset), f"{m.asset.id} has no owner contact"
    return m.asset.id


def test_shipped_inventory_validates(inv: Inventory) -> None:
    assert validate_inventory(INVENTORY) == []
    assert PathSettings().inventory == Path("inventory/city-systems.yml")  # the default points here
    assert len(inv.assets) >= 8
    # every priority sector of the city has a system, except the catch-all
    assert {a.sector for a in inv.assets} >= set(SECTORS) - {"other"}
    for dep in inv.departments.values():
        assert dep.name_en and any(c.role == "owner" for c in dep.contacts), dep.id
        for c in dep.contacts:
            assert c.email is None or c.email.endswith(".example.vn"), c.email  # fictional contacts only


def test_demo_log_hosts_and_internal_addresses_have_owners(inv: Inventory) -> None:
    hosts: set[str] = set()
    addresses: set[str] = set()
    for name in ("auth.log", "firewall.log", "access.log"):
        for line in (DEMO_LOGS / name).read_text("utf-8").splitlines():
            addresses.update(CITY_NET.findall(line))
            m = re.match(r"^(?:<\d+>)?\w{3} [ \d]\d \d\d:\d\d:\d\d (\S+) ", line)
            if m:
                hosts.add(m.group(1))
    assert {"sotttt-web01", "hcm-core-fw01"} <= hosts and "10.10.20.11" in addresses
    for value in sorted(hosts | addresses):
        _asset(inv, value)
    # the SSH server of auth.log is the web server the capture scans (10.10.1.20, ports 22/80/443)
    assert _asset(inv, "sotttt-web01") == _asset(inv, "10.10.1.20") == "cong-thong-tin-sotttt"
    # the administrators' machines that log in to it are their own segment
    assert _asset(inv, "10.10.1.32") == "vung-quan-tri-sotttt"
    assert _asset(inv, "10.10.20.11") == "camera-giao-thong"


def _pcap_ipv4(path: Path) -> tuple[set[str], bytes]:
    """Source and destination IPv4 addresses of an Ethernet pcap (classic format), and its bytes."""
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    addresses: set[str] = set()
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[pos + 8 : pos + 12])[0]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
            addresses.add(".".join(map(str, frame[26:30])))
            addresses.add(".".join(map(str, frame[30:34])))
    return addresses, data


def test_demo_capture_internal_hosts_and_http_hosts_have_owners(inv: Inventory) -> None:
    addresses, data = _pcap_ipv4(DEMO_PCAP)
    internal = sorted(a for a in addresses if a.startswith("10."))
    # the scanned server, the portal, the tunnelling and beaconing workstations, the resolver
    assert {"10.10.1.20", "10.10.2.10", "10.10.5.23", "10.10.5.60", "10.10.0.53"} <= set(internal)
    for value in internal:
        _asset(inv, value)
    assert _asset(inv, "10.10.5.23") == _asset(inv, "10.10.5.60") == "may-tram-so-tai-chinh"
    http_hosts = {h.decode() for h in re.findall(rb"\r\nHost: ([^\r\n]+)\r\n", data)}
    assert http_hosts
    for host in http_hosts:
        assert _asset(inv, host) == "cong-dich-vu-cong"
        assert _asset(inv, f"http://{host}/dvc/thu-tuc?id=12") == "cong-dich-vu-cong"


def test_collector_hosts_have_owners(inv: Inventory) -> None:
    """A shipped collectors/ definition with a static host.name belongs to an asset."""
    names = []
    for path in sorted((ROOT / "collectors").glob("*.yml")):
        doc = yaml.safe_load(path.read_text("utf-8")) or {}
        host = (doc.get("host") or {}).get("name")
        if host:
            names.append(host)
        # an EVTX folder named after its machine
        for p in (doc.get("evtx") or {}).get("paths", []):
            names.append(Path(p).parent.name)
    assert "dvc-portal-01" in names and "so-tai-chinh-dc01" in names
    for name in names:
        _asset(inv, name)
    assert _asset(inv, "dvc-portal-01") == "cong-dich-vu-cong"


@pytest.mark.parametrize(
    ("value", "asset"),
    [
        ("https://dichvucong.hcm.example.vn/tra-cuu-ho-so", "cong-dich-vu-cong"),
        ("hoso.dichvucong.hcm.example.vn", "cong-dich-vu-cong"),
        ("mail.tphcm.gov.vn", "thu-dien-tu-cong-vu"),
        ("10.10.30.44", "cam-bien-chong-ngap"),
        ("2001:db8:40::7", "tin-bao-an-ninh-trat-tu"),
        ("https://www.soyte.hcm.example.vn/attp/tra-cuu", "cong-an-toan-thuc-pham"),
        ("10.10.5.10", "ad-so-tai-chinh"),  # the DC inside the workstation LAN: more specific wins
        ("pc-ketoan-07.stc.hcm.example.vn", "may-tram-so-tai-chinh"),
    ],
)
def test_example_lookups(inv: Inventory, value: str, asset: str) -> None:
    assert _asset(inv, value) == asset
