"""Bidirectional flows (connections) from packets, emitted as ECS ``network.flow`` records.

Responsible for the flow table: one entry per (protocol, endpoints, VLAN), the
originator decided the way Zeek does (the SYN sender; the receiver of a first-seen
SYN-ACK; otherwise the first sender, unless it talks from a service port to an
ephemeral one), per-direction packets/bytes, the history letters of Zeek's conn.log
and its ``conn_state`` (state machine in :mod:`tcpstream`), Community ID,
``network.direction`` from the internal ranges, and three ways a flow ends:

- idle timeout (settings), and a short delay after a FIN exchange or a reset;
- active timeout: a long flow is emitted and continues as a new segment
  (``hcm.flow.segment``; ``event.type`` gets ``end`` only on the last one);
- the memory cap: when ``max_flows`` flows are open, the least recently active
  one is emitted early (counter ``evicted``).

API: ``FlowTable(on_emit, max_flows, *, internal_networks, active_timeout,
idle_timeout, closed_timeout, on_end)`` with ``add(packet) -> Flow`` (the flow's
``from_orig`` tells the packet's direction), ``expire(now)``, ``flush()`` and
``stats()``. ``on_end(flow, final)`` runs just before a flow (segment) is
emitted, so protocol analyzers can finish what they hold for it.

Order of the table: an ``OrderedDict`` kept in *placement* order; a flow touched
since it was placed is moved to the end lazily when it reaches the front, so the
front is always (close to) the least recently active flow without moving
entries on every packet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import cython

from hcm_soc.collectors.network.community_id import community_id, icmp_ports, ports_community_id
from hcm_soc.collectors.network.flowrecord import (
    PORT_PROTOCOLS,
    Flow,
    InternalRanges,
    direction_of,
    flow_record,
)
from hcm_soc.collectors.network.packet import Packet
from hcm_soc.collectors.network.tcpstream import (
    ACK,
    CLOSED,
    FIN,
    INACTIVE,
    RESET,
    RST,
    STATE_DESCRIPTIONS,
    SYN,
    next_states,
)

# re-exported: STATE_DESCRIPTIONS, direction_of
__all__ = ["STATE_DESCRIPTIONS", "FlowTable", "direction_of", "flow_community_id"]

_M32 = 0xFFFFFFFF
_HALF32 = 0x80000000

# Ports above 1023 that are services, for deciding which side of a mid-stream flow is the server.
_SERVICE_PORTS = frozenset(PORT_PROTOCOLS) | {
    1080,
    1194,
    1883,
    2049,
    3128,
    5353,
    5601,
    8000,
    8088,
    8888,
    27017,
}
_ICMP_REPLIES = {1: frozenset({0, 14, 16, 18}), 58: frozenset({129})}

# History letters (uppercase: originator, lowercase: responder) and their bit in Flow.hist_mask.
_LETTERS = "SHADFRTQI^"
_BIT = {c: 1 << i for i, c in enumerate(_LETTERS)}
_CHAR_OF_BIT = {**{b: c for c, b in _BIT.items()}, **{b << 16: c.lower() for c, b in _BIT.items()}}
_A, _D, _T = _BIT["A"], _BIT["D"], _BIT["T"]


def _control_letter(flags: int) -> str | None:
    """The history letter of a segment's SYN/FIN/RST/ACK flags (a bare ACK: "A" when it has no payload)."""
    control = flags & (SYN | FIN | RST)
    if control:
        if control & (control - 1):  # more than one of SYN/FIN/RST
            return "I" if control == FIN | RST else "Q"
        if control == SYN:
            return "H" if flags & ACK else "S"
        return "F" if control == FIN else "R"
    return "A" if flags & ACK else None


# by flags & (SYN|FIN|RST|ACK); used for segments with a control flag or without payload
_CONTROL_LETTERS = [_control_letter(f) for f in range(0x18)]
# the same as history bits (0: no letter) and as the responder's lower-case letters
_CONTROL_BITS = [_BIT[c] if c is not None else 0 for c in _CONTROL_LETTERS]
_CONTROL_UPPER = [c or "" for c in _CONTROL_LETTERS]
_CONTROL_LOWER = [(c or "").lower() for c in _CONTROL_LETTERS]


def _is_service(port: int) -> bool:
    return 0 < port < 1024 or port in _SERVICE_PORTS


def _add_letter(flow: Flow, bit: int) -> None:
    flow.hist_mask |= bit
    flow.history += _CHAR_OF_BIT[bit]


def _letter(flow: Flow, bit: int, from_orig: bool) -> None:
    """Add the history letter of ``bit`` (the originator's; the responder's is 16 bits up) once."""
    if not from_orig:
        bit <<= 16
    if not flow.hist_mask & bit:
        _add_letter(flow, bit)


class FlowTable:
    """The bounded table of open flows; see the module docstring."""

    def __init__(
        self,
        on_emit: Callable[[dict[str, Any]], None],
        max_flows: int = 200_000,
        *,
        internal_networks: list[str] | None = None,
        active_timeout: float = 1800.0,
        idle_timeout: float = 60.0,
        closed_timeout: float = 5.0,
        on_end: Callable[[Flow, bool], None] | None = None,
    ) -> None:
        self.on_emit = on_emit
        self.on_end = on_end
        self.max_flows = max_flows
        self.active_timeout = active_timeout
        self.idle_timeout = idle_timeout
        self.closed_timeout = min(closed_timeout, idle_timeout)
        self.internal = InternalRanges(
            internal_networks
            if internal_networks is not None
            else ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
        )
        self._flows: OrderedDict[tuple[Any, ...], Flow] = OrderedDict()
        self._closing: OrderedDict[tuple[Any, ...], Flow] = OrderedDict()
        self.now = 0.0
        self.emitted = 0
        self.evicted = 0
        self.segments = 0  # records emitted by the active timeout (flow continues)
        self.created = 0

    def __len__(self) -> int:
        return len(self._flows)

    def stats(self) -> dict[str, int]:
        return {
            "flows_created": self.created,
            "flows_emitted": self.emitted,
            "flows_evicted": self.evicted,
            "flows_split_active_timeout": self.segments,
            "flows_open": len(self._flows),
        }

    def lookup(
        self, proto: int, a_ip: str, a_port: int, b_ip: str, b_port: int, vlan: int | None
    ) -> Flow | None:
        """The open flow between two TCP/UDP endpoints, in either order."""
        if a_ip < b_ip or (a_ip == b_ip and a_port <= b_port):
            return self._flows.get((proto, a_ip, a_port, b_ip, b_port, vlan))
        return self._flows.get((proto, b_ip, b_port, a_ip, a_port, vlan))

    # ------------------------------------------------------------------ packets

    def add(self, p: Packet) -> Flow:
        ts = p.ts
        if ts > self.now:
            self.now = ts
        proto = p.proto
        s = p.src_ip
        d = p.dst_ip
        if proto == 6 or proto == 17:
            sp = p.src_port
            dp = p.dst_port
            if s < d or (s == d and sp <= dp):
                key: tuple[Any, ...] = (proto, s, sp, d, dp, p.vlan)
                low = True
            else:
                key = (proto, d, dp, s, sp, p.vlan)
                low = False
        else:
            key, low = self._key(p)
        # Read through the dict the OrderedDict is (a C lookup when compiled, not a method call);
        # writes go through the OrderedDict itself, which keeps the order.
        flow = cython.cast(dict, self._flows).get(key)
        if flow is None:
            flow = self._new(key, p, low)
        elif flow.closed_at is not None and p.tcp_flags & (SYN | ACK) == SYN and proto == 6:
            # A new SYN on a closed connection: the port pair is being reused.
            self._end(flow, "tcp_closed", True)
            flow = self._new(key, p, low)
        elif ts - flow.last >= self.idle_timeout:
            # Idle for longer than the timeout but not swept yet: that flow is over, this is a new one.
            self._end(flow, "idle_timeout", True)
            flow = self._new(key, p, low)
        elif ts - flow.first >= self.active_timeout:
            self._segment(flow, ts)
        flow.last = ts
        plen = len(p.payload)
        # The steady state of a TCP connection (no SYN/FIN/RST, both sides seen) stays inline.
        if low == flow.orig_low:
            flow.from_orig = True
            flow.opkts += 1
            flow.obytes += p.length
            flow.opl += plen
            if proto == 6:
                flags = p.tcp_flags
                if flags & 0x07 or flow.ostate == INACTIVE:
                    self._tcp(flow, p, True)
                elif plen:
                    end = (p.seq + plen) & _M32
                    hw = flow.ohw
                    if hw < 0 or 0 < ((end - hw) & _M32) < _HALF32:
                        flow.ohw = end
                        bit = _D
                    else:  # nothing beyond what this side already sent: a retransmission
                        bit = _T
                    if not flow.hist_mask & bit:
                        _add_letter(flow, bit)
                elif flags & ACK and not flow.hist_mask & _A:
                    _add_letter(flow, _A)
        else:
            flow.from_orig = False
            flow.rpkts += 1
            flow.rbytes += p.length
            flow.rpl += plen
            if proto == 6:
                flags = p.tcp_flags
                if flags & 0x07 or flow.rstate == INACTIVE:
                    self._tcp(flow, p, False)
                elif plen:
                    end = (p.seq + plen) & _M32
                    hw = flow.rhw
                    if hw < 0 or 0 < ((end - hw) & _M32) < _HALF32:
                        flow.rhw = end
                        bit = _D << 16
                    else:
                        bit = _T << 16
                    if not flow.hist_mask & bit:
                        _add_letter(flow, bit)
                elif flags & ACK and not flow.hist_mask & (_A << 16):
                    _add_letter(flow, _A << 16)
        return flow

    @staticmethod
    def _key(p: Packet) -> tuple[tuple[Any, ...], bool]:
        """Flow key of a packet other than TCP/UDP: ICMP types stand in for ports (echo pairs)."""
        proto = p.proto
        s = p.src_ip
        d = p.dst_ip
        sp = p.src_port
        dp = p.dst_port
        one_way = False
        if proto == 1 or proto == 58:
            sp, dp, one_way = icmp_ports(proto, p.icmp_type or 0, p.icmp_code or 0)
        if one_way or s < d or (s == d and sp <= dp):
            return (proto, s, sp, d, dp, p.vlan), True
        return (proto, d, dp, s, sp, p.vlan), False

    def _new(self, key: tuple[Any, ...], p: Packet, low: bool) -> Flow:
        flipped = False
        proto = p.proto
        if proto == 6:
            flags = p.tcp_flags
            if flags & SYN:
                flipped = bool(flags & ACK)
            else:
                flipped = _is_service(p.src_port) and not _is_service(p.dst_port)
        elif proto == 17 or proto == 132:
            flipped = _is_service(p.src_port) and not _is_service(p.dst_port)
        elif proto == 1 or proto == 58:
            flipped = p.icmp_type in _ICMP_REPLIES[proto]
        flow = Flow(key, p, flipped, low)
        flows = self._flows
        if len(flows) >= self.max_flows:
            self._evict()
        flows[key] = flow
        self.created += 1
        return flow

    def _tcp(self, flow: Flow, p: Packet, from_orig: bool) -> None:
        flags = p.tcp_flags
        plen = len(p.payload)
        # history letters, Zeek's update_history: one table lookup for the control letter
        if flags & 0x07 or not plen:
            index = flags & 0x17
            bit = _CONTROL_BITS[index]
            if bit:
                if not from_orig:
                    bit <<= 16
                if not flow.hist_mask & bit:
                    flow.hist_mask |= bit
                    flow.history += _CONTROL_UPPER[index] if from_orig else _CONTROL_LOWER[index]
        seq = p.seq
        hw = flow.ohw if from_orig else flow.rhw
        if flags & SYN:
            hw = (seq + 1 + plen) & _M32
            if from_orig:
                flow.oisn = seq
            else:
                flow.risn = seq
        elif plen:
            end = (seq + plen) & _M32
            if hw < 0:
                hw = end
                _letter(flow, _D, from_orig)
            else:
                ahead = (end - hw) & _M32
                if ahead == 0 or ahead & _HALF32:  # nothing beyond what this side already sent
                    _letter(flow, _T, from_orig)
                else:
                    hw = end
                    _letter(flow, _D, from_orig)
        if from_orig:
            flow.ohw = hw
        else:
            flow.rhw = hw
        self._state(flow, flags, plen, from_orig)

    def _state(self, flow: Flow, flags: int, plen: int, from_orig: bool) -> None:
        """Advance the endpoint states; a connection closed by FINs or a reset ends soon."""
        e = flow.ostate if from_orig else flow.rstate
        peer = flow.rstate if from_orig else flow.ostate
        e, peer = next_states(e, peer, flags, plen, from_orig, flow.ostate)
        if from_orig:
            flow.ostate, flow.rstate = e, peer
        else:
            flow.rstate, flow.ostate = e, peer
        if flow.closed_at is None and (
            e == RESET or peer == RESET or (flow.ostate == CLOSED and flow.rstate == CLOSED)
        ):
            flow.closed_at = flow.last
            self._closing[flow.key] = flow

    # ------------------------------------------------------------------ ending

    def expire(self, now: float) -> None:
        """Emit flows idle for longer than their timeout (call often; cheap when nothing is due)."""
        if now > self.now:
            self.now = now
        closing = self._closing
        while closing:
            key = next(iter(closing))
            flow = closing[key]
            if now - flow.closed_at < self.closed_timeout:  # type: ignore[operator]
                break
            del closing[key]
            if self._flows.get(key) is flow:
                self._end(flow, "tcp_closed", True)
        flows = self._flows
        idle = self.idle_timeout
        while flows:
            key = next(iter(flows))
            flow = flows[key]
            if now - flow.pos < idle:
                break
            if now - flow.last >= idle:
                self._end(flow, "idle_timeout", True)
            else:  # active since placed: give it a new place at the end
                flows.move_to_end(key)
                flow.pos = now

    def _evict(self) -> None:
        flows = self._flows
        now = self.now
        while flows:
            key = next(iter(flows))
            flow = flows[key]
            if flow.last > flow.pos and flow.pos < now:
                flows.move_to_end(key)
                flow.pos = now
                continue
            self.evicted += 1
            self._end(flow, "evicted", True)
            return

    def flush(self) -> None:
        """End of input: emit every open flow."""
        for flow in list(self._flows.values()):
            self._end(flow, "end_of_capture", True)
        self._closing.clear()

    def _segment(self, flow: Flow, ts: float) -> None:
        if self.on_end is not None:
            self.on_end(flow, False)
        self.on_emit(self.record(flow, "active_timeout", False))
        self.segments += 1
        flow.segment += 1
        flow.first = ts
        flow.opkts = flow.obytes = flow.rpkts = flow.rbytes = flow.opl = flow.rpl = 0

    def _end(self, flow: Flow, reason: str, final: bool) -> None:
        del self._flows[flow.key]
        if flow.closed_at is not None:  # only a closed flow is (or was) waiting in _closing
            self._closing.pop(flow.key, None)
        if self.on_end is not None:
            self.on_end(flow, final)
        self.emitted += 1
        self.on_emit(self.record(flow, reason, final))

    # ------------------------------------------------------------------ records

    @staticmethod
    def community_id(flow: Flow) -> str:
        return flow_community_id(flow)

    def record(self, flow: Flow, reason: str, final: bool) -> dict[str, Any]:
        return flow_record(
            flow, reason, final, flow_community_id(flow), self.internal.direction(flow.orig_ip, flow.resp_ip)
        )


def flow_community_id(flow: Flow) -> str:
    """The flow's Community ID, computed once and kept on the flow."""
    cid = flow.cid
    if cid is None:
        if flow.proto == 1 or flow.proto == 58:
            cid = community_id(
                flow.orig_ip, flow.resp_ip, flow.proto, icmp_type=flow.icmp_type, icmp_code=flow.icmp_code
            )
        else:
            cid = ports_community_id(flow.orig_ip, flow.resp_ip, flow.proto, flow.orig_port, flow.resp_port)
        flow.cid = cid
    return cid
