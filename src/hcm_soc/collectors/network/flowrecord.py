"""The state of one flow (:class:`Flow`) and its ECS ``network.flow`` record, with the lookups
the record needs (names, directions).

Responsible for the ``Flow`` object the flow table (:mod:`flows`) keeps per connection, for
turning it into its record (ECS ``source.*``, ``destination.*``, ``network.*``, ``event.*``,
Zeek's ``conn_state``/``history`` under ``zeek.connection``, our ``hcm.flow`` details), for
the transport and port-to-protocol names, and for ``network.direction`` from the internal
ranges. Kept apart from :mod:`flows` so the flow table holds only the per-packet logic;
``Flow`` lives here so that both modules share its C type when compiled (``flowrecord.pxd``).

A record is built once per flow (segment), so this is a hot path of record-heavy
captures: every dict is written as one literal, the timestamps come from the
per-second cache in :mod:`ecs`, and the direction from a per-address cache.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import cython

from hcm_soc.collectors.network.community_id import _dotted_quad, icmp_ports
from hcm_soc.collectors.network.ecs import fixed6, iso_us
from hcm_soc.collectors.network.packet import Packet
from hcm_soc.collectors.network.tcpstream import INACTIVE, STATE_DESCRIPTIONS, tcp_conn_state

__all__ = ["PORT_PROTOCOLS", "TRANSPORT_NAMES", "Flow", "InternalRanges", "direction_of", "flow_record"]

TRANSPORT_NAMES = {
    1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp", 51: "ah",
    58: "ipv6-icmp", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp",
}  # fmt: skip
# network.protocol guessed from the responder's port when no analyzer identified the protocol
PORT_PROTOCOLS = {
    20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 67: "dhcp", 68: "dhcp",
    69: "tftp", 80: "http", 88: "kerberos", 110: "pop3", 123: "ntp", 137: "netbios-ns", 139: "netbios-ssn",
    143: "imap", 161: "snmp", 162: "snmp", 389: "ldap", 443: "tls", 445: "smb", 465: "smtps", 514: "syslog",
    587: "smtp", 636: "ldaps", 853: "dns", 993: "imaps", 995: "pop3s", 1433: "mssql", 1521: "oracle",
    3306: "mysql", 3389: "rdp", 5060: "sip", 5432: "postgresql", 5900: "vnc", 6379: "redis",
    8080: "http", 8443: "tls", 9200: "http",
}  # fmt: skip
_UDP_DESCRIPTIONS = {
    "SF": "both sides sent packets",
    "S0": "only the originator sent packets",
    "SHR": "only the responder sent packets",
    "OTH": "other traffic",
}
_DIRECTIONS = {
    (True, True): "internal",
    (True, False): "outbound",
    (False, True): "inbound",
    (False, False): "external",
}
_NAMES = {proto: (name, str(proto)) for proto, name in TRANSPORT_NAMES.items()}


@cython.no_gc  # references nothing that points back to it: the cyclic GC need not walk 200,000 flows
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class Flow:
    """State of one open flow. Plain slots: hundreds of thousands of these live at once."""

    __slots__ = (
        "cid",
        "closed_at",
        "conn_start",
        "ext",
        "first",
        "from_orig",
        "hist_mask",
        "history",
        "icmp_code",
        "icmp_type",
        "ip_version",
        "key",
        "last",
        "obytes",
        "ohw",
        "oisn",
        "opkts",
        "opl",
        "orig_ip",
        "orig_low",
        "orig_port",
        "ostate",
        "pos",
        "proto",
        "protocol",
        "rbytes",
        "resp_ip",
        "resp_port",
        "rhw",
        "risn",
        "rpkts",
        "rpl",
        "rstate",
        "segment",
        "vlan",
    )

    @cython.locals(p=Packet)
    def __init__(
        self,
        key: tuple[Any, ...],
        p: Packet,
        flipped: bool,
        sender_low: bool,
    ) -> None:
        self.key = key
        self.proto = p.proto
        self.ip_version = p.ip_version
        if flipped:
            self.orig_ip, self.orig_port, self.resp_ip, self.resp_port = (
                p.dst_ip,
                p.dst_port,
                p.src_ip,
                p.src_port,
            )
        else:
            self.orig_ip, self.orig_port, self.resp_ip, self.resp_port = (
                p.src_ip,
                p.src_port,
                p.dst_ip,
                p.dst_port,
            )
        self.orig_low = sender_low != flipped
        self.vlan = p.vlan
        self.conn_start = self.first = self.last = self.pos = p.ts
        self.opkts = self.obytes = self.rpkts = self.rbytes = 0
        self.opl = self.rpl = 0  # TCP/UDP payload bytes per direction
        self.ostate = self.rstate = INACTIVE
        self.history = "^" if flipped and p.proto == 6 else ""
        self.hist_mask = 0
        self.ohw = -1  # highest sequence number sent + 1, per direction; -1: none sent yet
        self.rhw = -1
        self.oisn: int | None = None  # initial sequence numbers, when the SYNs were seen
        self.risn: int | None = None
        self.icmp_type = p.icmp_type
        if flipped and p.icmp_type is not None:  # first seen: a reply; the originator sent the request type
            self.icmp_type = icmp_ports(p.proto, p.icmp_type, p.icmp_code or 0)[1]
        self.icmp_code = p.icmp_code
        self.segment = 0
        self.closed_at: float | None = None
        self.cid: str | None = None  # Community ID, computed once when first needed
        self.protocol: str | None = None  # set by the protocol analyzers when they recognise one
        self.ext: Any = None  # the analyzer's per-flow state (stream reassembly…)
        self.from_orig = True

    def conn_state(self) -> str:
        """Zeek's conn_state from the two endpoint states (base/protocols/conn/main.zeek)."""
        if self.proto == 6:
            return tcp_conn_state(self.ostate, self.rstate, self.history, self.opl + self.rpl)
        if self.proto == 17:
            if self.opkts:
                return "SF" if self.rpkts else "S0"
            return "SHR" if self.rpkts else "OTH"
        return "OTH"


class InternalRanges:
    """Is an address inside the city's ranges? Cached per address string (bounded)."""

    def __init__(self, networks: list[str]) -> None:
        self.nets = [ipaddress.ip_network(n, strict=False) for n in networks]
        # IPv4 ranges as (network, mask) integers: the first sight of each address is cheap too
        self._v4 = [(int(n.network_address), int(n.netmask)) for n in self.nets if n.version == 4]
        self.cache: dict[str, bool] = {}

    def __call__(self, ip: str) -> bool:
        hit = self.cache.get(ip)
        if hit is None:
            return self._lookup(ip)
        return hit

    def _lookup(self, ip: str) -> bool:
        """First sight of ``ip`` (or after the cache was cleared): decide and cache."""
        value = _dotted_quad(ip)
        if value >= 0:
            hit = False
            for net, mask in self._v4:
                if value & mask == net:
                    hit = True
                    break
        else:
            inside = _in_networks(self.nets, ip)
            if inside is None:  # not an address: not cached
                return False
            hit = inside
        if len(self.cache) >= 65_536:
            self.cache.clear()
        self.cache[ip] = hit
        return hit

    def direction(self, src: str, dst: str) -> str:
        """``network.direction`` of traffic from ``src`` to ``dst``."""
        cache = self.cache
        s = cache.get(src)
        if s is None:
            s = self._lookup(src)
        d = cache.get(dst)
        if d is None:
            d = self._lookup(dst)
        # _DIRECTIONS[s, d] without building and hashing the (s, d) tuple
        if s:
            return "internal" if d else "outbound"
        return "inbound" if d else "external"


def _in_networks(nets: list[Any], ip: str) -> bool | None:
    """Is ``ip`` (any form ``ipaddress`` reads) in one of ``nets``? None when it is no address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return any(addr in n for n in nets if n.version == addr.version)


def direction_of(internal: Callable[[str], bool], src: str, dst: str) -> str:
    return _DIRECTIONS[internal(src), internal(dst)]


def _duration_ns(first: float, last: float) -> int:
    """``round((last - first) * 1e6) * 1000``: whole microseconds, half-even like ``round``, in C
    arithmetic when compiled (``x - int(x)`` is exact below 2**52)."""
    x = (last - first) * 1e6
    if not 0.0 <= x < 4_503_599_627_370_496.0:
        return round(x) * 1000
    us = int(x)
    rest = x - us
    if rest > 0.5 or (rest == 0.5 and us & 1):
        us += 1
    return us * 1000


def flow_record(flow: Flow, reason: str, final: bool, cid: str, direction: str) -> dict[str, Any]:
    """The record of ``flow`` (the segment since ``flow.first``); ``reason`` is why it ends now."""
    proto = flow.proto
    orig_ip = flow.orig_ip
    resp_ip = flow.resp_ip
    names = _NAMES.get(proto)
    transport, number = names if names is not None else (str(proto), str(proto))
    opkts, rpkts, obytes, rbytes = flow.opkts, flow.rpkts, flow.obytes, flow.rbytes
    network: dict[str, Any] = {
        "transport": transport,
        "iana_number": number,
        "type": "ipv6" if flow.ip_version == 6 else "ipv4",
        "community_id": cid,
        "direction": direction,
        "bytes": obytes + rbytes,
        "packets": opkts + rpkts,
    }
    if proto == 6 or proto == 17 or proto == 132:
        source: dict[str, Any] = {"ip": orig_ip, "packets": opkts, "bytes": obytes, "port": flow.orig_port}
        destination: dict[str, Any] = {
            "ip": resp_ip,
            "packets": rpkts,
            "bytes": rbytes,
            "port": flow.resp_port,
        }
        port_protocols = PORT_PROTOCOLS  # a typed local when compiled: a C dict lookup
        protocol = flow.protocol or port_protocols.get(flow.resp_port)
    else:
        source = {"ip": orig_ip, "packets": opkts, "bytes": obytes}
        destination = {"ip": resp_ip, "packets": rpkts, "bytes": rbytes}
        protocol = flow.protocol
    if protocol:
        network["protocol"] = protocol
    if flow.vlan is not None:
        network["vlan"] = {"id": str(flow.vlan)}
    if proto == 6:
        state = tcp_conn_state(flow.ostate, flow.rstate, flow.history, flow.opl + flow.rpl)
        connection: dict[str, Any] = {"conn_state": state, "state": state, "history": flow.history}
        description = STATE_DESCRIPTIONS[state]
    else:
        if proto == 17:
            state = ("SF" if rpkts else "S0") if opkts else ("SHR" if rpkts else "OTH")
            description = _UDP_DESCRIPTIONS[state]
        else:
            state = "OTH"
            description = "connectionless traffic"
        connection = {"conn_state": state, "state": state}
        if proto == 1 or proto == 58:
            connection["icmp"] = {"type": flow.icmp_type, "code": flow.icmp_code}
    first = flow.first
    last = flow.last
    start = iso_us(first)
    return {
        "@timestamp": start,
        "event": {
            "dataset": "network.flow",
            "kind": "event",
            "category": ["network"],
            "type": ["connection", "end"] if final else ["connection"],
            "start": start,
            "end": iso_us(last),
            # timestamps are floats (~0.2 µs resolution today): whole microseconds are honest
            "duration": _duration_ns(first, last),
        },
        "source": source,
        "destination": destination,
        "network": network,
        "related": {"ip": [orig_ip] if orig_ip == resp_ip else [orig_ip, resp_ip]},
        "zeek": {"connection": connection},
        "hcm": {
            "flow": {
                "id_key": f"{cid}|{fixed6(flow.conn_start)}|{flow.segment}",
                "state_description": description,
                "segment": flow.segment,
                "end_reason": reason,
                "source_payload_bytes": flow.opl,
                "destination_payload_bytes": flow.rpl,
            }
        },
    }
