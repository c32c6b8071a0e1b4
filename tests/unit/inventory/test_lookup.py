"""Lookups: IP (v4/v6, most specific range wins), host names (exact, case, trailing dot, short
name vs FQDN, wildcards), URLs (host, path prefix, IP host), match_entities and owners."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hcm_soc.inventory import Asset, Department, Inventory, load_inventory

ASSETS = """\
  - id: lan
    name: Mạng máy trạm
    hostnames: ["*.ws.sotttt.hcm.example.vn"]
    addresses: [10.10.0.0/16, "2001:db8::/32"]
    department: sotttt
    sector: other
    criticality: 1
  - id: servers
    name: Vùng máy chủ
    addresses: [10.10.1.0/24]
    department: sotttt
    sector: e_government
    criticality: 2
  - id: web01
    name: Máy chủ web
    hostnames: [web01.sotttt.hcm.example.vn, sotttt-web01]
    addresses: [10.10.1.20, "2001:db8:1::20"]
    urls: [https://www.sotttt.hcm.example.vn/]
    department: sotttt
    sector: e_government
    criticality: 2
  - id: dvc
    name: Cổng dịch vụ công
    hostnames: [dichvucong.hcm.example.vn, "*.dichvucong.hcm.example.vn"]
    urls: [https://dichvucong.hcm.example.vn/]
    department: sotttt
    sector: e_government
    criticality: 3
  - id: dvc-api
    name: API của cổng dịch vụ công
    hostnames: ["*.api.dichvucong.hcm.example.vn"]
    urls: [https://dichvucong.hcm.example.vn/api, https://dichvucong.hcm.example.vn/api/v2/thanh-toan]
    department: sotttt
    sector: e_government
    criticality: 4
  - id: camera
    name: Camera giao thông
    hostnames: [web01.camera.giaothong.hcm.example.vn, its-vms01]
    addresses: [10.20.0.0/16]
    department: sogtvt
    sector: transport
    criticality: 3
"""


@pytest.fixture
def inv(write_inventory: Callable[[str], Path]) -> Inventory:
    return load_inventory(write_inventory(ASSETS))


def ids(inv: Inventory, value: str) -> list[tuple[str, str]]:
    return [(m.asset.id, m.matched_by) for m in inv.lookup(value)]


def test_ip_most_specific_range_wins(inv: Inventory) -> None:
    assert ids(inv, "10.10.1.20") == [("web01", "ip")]
    assert ids(inv, "10.10.1.21") == [("servers", "ip")]
    assert ids(inv, "10.10.7.7") == [("lan", "ip")]
    assert ids(inv, "10.20.3.4") == [("camera", "ip")]
    assert ids(inv, "203.0.113.45") == []
    assert ids(inv, "10.30.0.1") == []


def test_ipv6_and_ip_forms(inv: Inventory) -> None:
    assert ids(inv, "2001:db8:1::20") == [("web01", "ip")]
    assert ids(inv, "2001:db8:ffff::1") == [("lan", "ip")]
    assert ids(inv, "[2001:db8:1::20]") == [("web01", "ip")]
    assert ids(inv, "fe80::1%eth0") == []
    assert ids(inv, "::ffff:10.10.1.20") == [("web01", "ip")]  # IPv4-mapped
    assert ids(inv, " 10.10.1.20:22 ") == [("web01", "ip")]  # ip:port


def test_match_carries_department_and_value(inv: Inventory) -> None:
    (m,) = inv.lookup("10.20.0.9")
    assert m.department.id == "sogtvt" and m.department.name == "Sở Giao thông vận tải"
    assert m.value == "10.20.0.9"
    assert m.asset.criticality == 3


def test_hostname_exact_case_and_trailing_dot(inv: Inventory) -> None:
    assert ids(inv, "web01.sotttt.hcm.example.vn") == [("web01", "hostname")]
    assert ids(inv, "WEB01.Sotttt.HCM.example.vn.") == [("web01", "hostname")]
    assert ids(inv, "its-vms01") == [("camera", "hostname")]
    assert ids(inv, "unknown.example.vn") == []


def test_short_name_and_fqdn(inv: Inventory) -> None:
    # a short name finds the FQDN it starts, when only one asset has such a name
    assert ids(inv, "sotttt-web01") == [("web01", "hostname")]  # listed as short name too
    assert ids(inv, "web01") == []  # web01.sotttt… and web01.camera… : ambiguous, no guess
    assert ids(inv, "its-vms01.giaothong.hcm.example.vn") == [
        ("camera", "hostname")
    ]  # FQDN of a listed short name
    assert ids(inv, "SOTTTT-WEB01.corp.example.vn") == [("web01", "hostname")]


def test_short_name_unique_fqdn(write_inventory: Callable[[str], Path]) -> None:
    inv = load_inventory(
        write_inventory(
            "  - id: web01\n    name: W\n    hostnames: [web01.sotttt.hcm.example.vn]\n"
            "    department: sotttt\n    sector: other\n    criticality: 1\n"
        )
    )
    assert ids(inv, "web01") == [("web01", "hostname")]
    assert ids(inv, "WEB01.") == [("web01", "hostname")]


def test_wildcards_longest_suffix_first(inv: Inventory) -> None:
    assert ids(inv, "hoso.dichvucong.hcm.example.vn") == [("dvc", "hostname")]
    assert ids(inv, "a.b.dichvucong.hcm.example.vn") == [("dvc", "hostname")]
    assert ids(inv, "v1.api.dichvucong.hcm.example.vn") == [("dvc-api", "hostname")]
    assert ids(inv, "pc-0042.ws.sotttt.hcm.example.vn") == [("lan", "hostname")]
    assert ids(inv, "ws.sotttt.hcm.example.vn") == []  # *.x does not match x itself
    assert ids(inv, "dichvucong.hcm.example.vn") == [("dvc", "hostname")]


def test_urls_by_host_and_longest_path_prefix(inv: Inventory) -> None:
    assert ids(inv, "https://dichvucong.hcm.example.vn/thu-tuc?id=1") == [("dvc", "url")]
    assert ids(inv, "https://dichvucong.hcm.example.vn/api/ho-so") == [("dvc-api", "url")]
    assert ids(inv, "https://dichvucong.hcm.example.vn/api") == [("dvc-api", "url")]
    assert ids(inv, "https://dichvucong.hcm.example.vn/apis") == [("dvc", "url")]  # not a path segment
    assert ids(inv, "http://DichVuCong.hcm.example.vn:8080/api/v2/thanh-toan/123") == [("dvc-api", "url")]
    assert ids(inv, "https://www.sotttt.hcm.example.vn/tin-tuc") == [("web01", "url")]
    # the host of a URL through the host names (wildcard) and addresses
    assert ids(inv, "https://x.api.dichvucong.hcm.example.vn/") == [("dvc-api", "url")]
    assert ids(inv, "http://10.10.1.20/phpmyadmin/") == [("web01", "url")]
    assert ids(inv, "http://[2001:db8:1::20]:8443/") == [("web01", "url")]
    assert ids(inv, "dichvucong.hcm.example.vn/api/x") == [("dvc-api", "url")]  # no scheme
    # no short-name guessing for a URL's host
    assert ids(inv, "http://sotttt-web01.other.example/") == []
    assert ids(inv, "https://example.org/") == []


def test_match_entities_dedups_and_orders(inv: Inventory) -> None:
    got = inv.match_entities(
        ips=["203.0.113.45", "10.10.1.20", "10.20.0.1"],
        hostnames=["web01.sotttt.hcm.example.vn", ""],
        urls=["https://dichvucong.hcm.example.vn/api/x"],
    )
    assert [(m.asset.id, m.matched_by, m.value) for m in got] == [
        ("dvc-api", "url", "https://dichvucong.hcm.example.vn/api/x"),  # path prefix: most specific
        ("web01", "hostname", "web01.sotttt.hcm.example.vn"),  # exact name before the same IP
        ("camera", "ip", "10.20.0.1"),  # an address in a range comes last
    ]
    assert inv.match_entities() == []


def test_owner_contacts_by_role(inv: Inventory) -> None:
    web = inv.get("web01")
    assert web is not None
    assert [c.email for c in inv.owner_contacts(web)] == ["quantri@sotttt.example.vn"]
    assert [c.email for c in inv.owner_contacts(web, roles=("technical", "escalation"))] == [
        "kythuat@sotttt.example.vn",
        "lanhdao@sotttt.example.vn",
    ]
    assert inv.get("nope") is None


def test_empty_inventory() -> None:
    inv = Inventory.empty()
    assert len(inv) == 0 and inv.departments == {}
    assert inv.lookup("10.0.0.1") == []
    assert inv.match_entities(ips=["10.0.0.1"], hostnames=["web01"]) == []


def test_inventory_refuses_an_asset_of_an_unknown_department() -> None:
    a = Asset(id="a", name="A", addresses=["10.0.0.1"], department="x", sector="other", criticality=1)
    with pytest.raises(ValueError, match="unknown department 'x'"):
        Inventory([a], {}, source="t")
    d = Department(id="x", name="X", contacts=[{"name": "N", "email": "n@x.example.vn"}])  # type: ignore[list-item]
    assert Inventory([a], {"x": d}, source="t").lookup("10.0.0.1")[0].asset is a


def test_ip_lookup_stays_fast_with_many_ranges() -> None:
    """The runner looks up every alert's addresses: 5,000 ranges, 20,000 lookups well under a second (2 s bound: shared CI cores)."""
    dep = Department(id="d", name="D", contacts=[{"name": "N", "email": "n@d.example.vn"}])  # type: ignore[list-item]
    assets = []
    for i in range(5000):
        net = ipaddress.ip_network((0x0A000000 + (i << 8), 24 if i % 2 else 28))
        assets.append(
            Asset(id=f"a{i}", name="A", addresses=[str(net)], department="d", sector="other", criticality=1)
        )
    inv = Inventory(assets, {"d": dep}, source="t")
    start = time.perf_counter()
    for i in range(20000):
        inv.lookup(f"10.{(i >> 8) & 0x3F}.{i & 0xFF}.5")
    assert time.perf_counter() - start < 2.0
    assert inv.lookup("10.0.3.5")[0].asset.id == "a3"
    assert inv.lookup("10.0.2.200") == []  # a2 is a /28: .0-.15 only


@pytest.mark.parametrize("value", ["/tra-cuu-ho-so?ma=1", "http://[::1", "http://", "", "   ", "a b c", "*"])
def test_odd_values_match_nothing_and_do_not_raise(inv: Inventory, value: str) -> None:
    assert inv.lookup(value) == []
    assert inv.match_entities(urls=[value], hostnames=[value], ips=[value]) == []
