"""Netfilter (iptables/nftables LOG target, UFW) kernel lines -> ECS network events.

Responsible for the text after the syslog header of a kernel packet log line:

    [ 1234.567890] [UFW BLOCK] IN=eth0 OUT= MAC=<dst>:<src>:<type> SRC=… DST=… LEN=60 … PROTO=TCP SPT=… DPT=…

The text before `IN=` is the rule's log prefix and becomes `event.action`
("[UFW BLOCK]" -> "ufw-block", "IPTABLES-DROP: " -> "iptables-drop"); words in it
(BLOCK/DROP/REJECT/DENY, ALLOW/ACCEPT) say whether the packet was denied or
allowed. Details with no ECS home go under `iptables.*` as Filebeat's iptables
module keeps them. Also home of `valid_ip`, shared with the auth parser: a value
that is not an IP address must never reach an `ip` field, or Elasticsearch
refuses the whole event.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any

from hcm_soc.parsers.base import Event

_UPTIME = re.compile(r"\[ *\d+\.\d+\] ?")
_WORD = re.compile(r"\w+")
_PACKET = re.compile(r"IN=(\S*) OUT=(\S*) (.*?)SRC=(\S+) DST=(\S+)(.*)$")
_MAC = re.compile(
    r"([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}):([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})(?::([0-9a-fA-F]{2}):([0-9a-fA-F]{2}))?"
)
_DENIED = re.compile(r"BLOCK|DROP|REJECT|DENY|DENIED", re.IGNORECASE)
_ALLOWED = re.compile(r"ALLOW|ACCEPT|PASS|PERMIT", re.IGNORECASE)
_TCP_FLAGS = frozenset({"CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN"})
_FRAGMENT_FLAGS = frozenset({"CE", "DF", "MF"})
_IANA = {"tcp": "6", "udp": "17", "icmp": "1", "icmpv6": "58", "udplite": "136", "sctp": "132",
         "gre": "47", "esp": "50", "ah": "51"}  # fmt: skip
_BY_NUMBER = {v: k for k, v in _IANA.items()}
_INT_FIELDS = (("TTL", "ttl"), ("ID", "id"), ("HOPLIMIT", "hop_limit"), ("FLOWLBL", "flow_label"),
               ("FRAG", "fragment_offset"))  # fmt: skip


@lru_cache(maxsize=8192)
def valid_ip(text: str) -> str | None:
    """`text` as a normalised IP address, or None when it is not one (host names, garbage)."""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def _rule(prefix: str) -> tuple[str, tuple[str, ...]]:
    """event.action and event.type of a log prefix; a firewall has only a few prefixes."""
    words = _WORD.findall(prefix.lower())
    action = "-".join(words) if words else "netfilter-log"
    if _DENIED.search(prefix):
        return action, ("connection", "denied")
    if _ALLOWED.search(prefix):
        return action, ("connection", "allowed")
    return action, ("connection",)


def enrich_netfilter(event: Event, message: str) -> bool:
    """Add the ECS fields of a kernel packet-log `message` to `event`; True when it is one.

    `message` itself is never changed."""
    start = message.find("IN=")
    if start < 0 or (start > 0 and message[start - 1] != " "):
        return False
    m = _PACKET.match(message, start)
    if m is None:
        return False
    in_dev, out_dev, link, src_text, dst_text, rest = m.groups()
    src, dst = valid_ip(src_text), valid_ip(dst_text)
    if src is None and dst is None:
        return False
    prefix = message[:start]
    if prefix.startswith("["):
        uptime = _UPTIME.match(prefix)
        if uptime:
            prefix = prefix[uptime.end() :]
    prefix = prefix.strip()
    quoted = rest.find(" [")
    if quoted >= 0:  # ICMP errors quote the offending packet: not this packet's fields
        rest = rest[:quoted]
    # the IP header's fields come before PROTO=, the transport's after it (both have LEN and ID);
    # words without '=' are flags: DF/MF/CE of IP before, SYN/ACK/… of TCP after
    ip_part, has_proto, l4_part = rest.partition(" PROTO=")
    proto, _, l4_part = l4_part.partition(" ")
    fields: dict[str, str] = {}
    ip_flags: list[str] = []
    for token in (link + ip_part).split() if link else ip_part.split():
        key, sep, value = token.partition("=")
        if sep:
            fields.setdefault(key, value)
        else:
            ip_flags.append(token)
    l4: dict[str, str] = {}
    l4_flags: list[str] = []
    for token in l4_part.split():
        key, sep, value = token.partition("=")
        if sep:
            l4.setdefault(key, value)
        else:
            l4_flags.append(token)

    action, types = _rule(prefix)
    ev = event.get("event")
    if ev is None:
        event["event"] = ev = {}
    ev["kind"] = "event"
    ev["category"] = ["network"]
    ev["type"] = list(types)
    ev["action"] = action
    if prefix:
        event["rule"] = {"name": prefix}

    iptables: dict[str, Any] = {}
    source: dict[str, Any] = {}
    destination: dict[str, Any] = {}
    network: dict[str, Any] = {"packets": 1}  # one log line is one packet
    related: list[str] = []
    if src:
        source["ip"] = src
        related.append(src)
    if dst:
        destination["ip"] = dst
        if dst != src:
            related.append(dst)
    network["type"] = "ipv6" if ":" in (src or dst or "") else "ipv4"
    if has_proto:
        proto = proto.lower()
        proto = _BY_NUMBER.get(proto, proto)
        network["transport"] = proto
        if proto in _IANA:
            network["iana_number"] = _IANA[proto]
    length = fields.get("LEN", "")
    if length.isdigit():
        network["bytes"] = iptables["length"] = int(length)
    port = l4.get("SPT", "")
    if port.isdigit():
        source["port"] = int(port)
    port = l4.get("DPT", "")
    if port.isdigit():
        destination["port"] = int(port)

    observer: dict[str, Any] = {}
    if in_dev:
        observer["ingress"] = {"interface": {"name": in_dev}}
        iptables["input_device"] = in_dev
    if out_dev:
        observer["egress"] = {"interface": {"name": out_dev}}
        iptables["output_device"] = out_dev
    network["direction"] = (
        "ingress" if in_dev and not out_dev else "egress" if out_dev and not in_dev else "unknown"
    )

    mac = _MAC.fullmatch(fields.get("MAC", ""))
    if mac:  # destination MAC, source MAC, EtherType; ECS writes MACs upper case, dash separated
        destination["mac"] = mac.group(1).upper().replace(":", "-")
        source["mac"] = mac.group(2).upper().replace(":", "-")
        if mac.group(3):
            iptables["ether_type"] = int(mac.group(3) + mac.group(4), 16)

    for key, name in _INT_FIELDS:
        value = fields.get(key)
        if value is not None and value.isdigit():
            iptables[name] = int(value)
    if "TOS" in fields:
        iptables["tos"] = fields["TOS"]
    if "PREC" in fields:
        iptables["precedence_bits"] = fields["PREC"]
    mark = l4.get("MARK") or fields.get("MARK")
    if mark:
        iptables["mark"] = mark
    if ip_flags:
        fragment = [f for f in ip_flags if f in _FRAGMENT_FLAGS]
        if fragment:
            iptables["fragment_flags"] = fragment
    if proto == "tcp":
        tcp: dict[str, Any] = {"flags": [f for f in l4_flags if f in _TCP_FLAGS]}
        window = l4.get("WINDOW")
        if window is not None and window.isdigit():
            tcp["window"] = int(window)
        if "RES" in l4:
            tcp["reserved_bits"] = l4["RES"]
        iptables["tcp"] = tcp
    elif proto == "udp" or proto == "udplite":
        udp_length = l4.get("LEN")
        if udp_length is not None and udp_length.isdigit():
            iptables["udp"] = {"length": int(udp_length)}
    elif proto.startswith("icmp"):
        icmp = {k.lower(): int(l4[k]) for k in ("TYPE", "CODE", "ID", "SEQ") if l4.get(k, "").isdigit()}
        if icmp:
            iptables["icmp"] = icmp
    uid = l4.get("UID", "")
    if uid.isdigit():  # --log-uid: the local user whose socket sent the packet
        event.setdefault("user", {})["id"] = uid

    if source:
        event["source"] = source
    if destination:
        event["destination"] = destination
    event["network"] = network
    if observer:
        event["observer"] = observer
    event["iptables"] = iptables
    event.setdefault("related", {})["ip"] = related
    return True
