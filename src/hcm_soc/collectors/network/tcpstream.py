"""TCP in two parts: Zeek's connection state machine, and stream reassembly for the analyzers.

State: ``next_states`` advances the two endpoint states of a connection the way
Zeek's TCP analyzer does (inactive, SYN sent, SYN-ACK sent, partial, established,
closed, reset) and ``tcp_conn_state`` turns them into Zeek's ``conn_state`` code
(S0, S1, SF, REJ, RSTO, …) as in base/protocols/conn/main.zeek.

Reassembly: one direction's bytes, in order, once. Responsible for turning segments
as captured (retransmitted, overlapping, out of order, with holes) into the in-order
byte stream the HTTP, TLS and DNS-over-TCP analyzers expect: bytes already delivered are dropped (retransmissions, counted),
segments ahead of the next expected byte wait in a bounded buffer, and when the
buffer is full or the stream ends with a hole the hole is skipped (a gap, counted
with its size) so analysis continues after it.

API: ``TcpStream(max_buffer)``; ``start(isn)`` when the SYN was seen before the stream
was created; ``segment(seq, flags, payload) -> list[bytes]`` gives the chunks that
became deliverable; ``finish() -> list[bytes]`` skips any hole at the
end and delivers what waited. Counters: ``retransmitted``, ``out_of_order``,
``gaps``, ``missed_bytes``.
"""

from __future__ import annotations

import cython

__all__ = ["STATE_DESCRIPTIONS", "TcpStream", "next_states", "tcp_conn_state"]

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
# Zeek's TCP endpoint states
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
# The same numbers as C constants for the compiled code below (tcpstream.pxd); the names above
# stay Python ints for the modules that import them.
_FIN, _SYN, _RST, _ACK = FIN, SYN, RST, ACK
_INACTIVE, _SYN_SENT, _SYN_ACK_SENT, _PARTIAL, _ESTABLISHED, _CLOSED, _RESET = range(7)

STATE_DESCRIPTIONS = {
    "S0": "connection attempt seen, no reply",
    "S1": "connection established, not terminated",
    "SF": "normal establishment and termination",
    "REJ": "connection attempt rejected",
    "S2": "established, originator sent FIN but no reply from the responder",
    "S3": "established, responder sent FIN but no reply from the originator",
    "RSTO": "established, originator aborted (sent a reset)",
    "RSTR": "responder sent a reset",
    "RSTOS0": "originator sent a SYN followed by a reset, no SYN-ACK from the responder",
    "RSTRH": "responder sent a SYN-ACK followed by a reset, no SYN from the originator",
    "SH": "originator sent a SYN followed by a FIN, no SYN-ACK from the responder (half open)",
    "SHR": "responder sent a SYN-ACK followed by a FIN, no SYN from the originator",
    "OTH": "no SYN seen, just midstream traffic",
}


def next_states(
    e: int, peer: int, flags: int, plen: int, from_orig: bool, orig_state: int
) -> tuple[int, int]:
    """(sender's state, peer's state) after one segment; Zeek's TCP_Analyzer::UpdateStateMachine, simplified."""
    if e == _INACTIVE:
        if flags & _SYN:
            if from_orig:
                e = _SYN_ACK_SENT if flags & _ACK else _SYN_SENT
            else:
                if not flags & _ACK and peer == _SYN_ACK_SENT:
                    peer = _ESTABLISHED
                if peer == _SYN_SENT:
                    peer = _ESTABLISHED
                e = _ESTABLISHED
        if flags & _FIN:
            e = _CLOSED
        if flags & _RST:
            e = _RESET
        if e == _INACTIVE:
            if not from_orig and plen == 0 and orig_state == _SYN_SENT:
                pass  # some stacks ACK a SYN before answering it: not a partial connection
            elif flags & _ACK and peer == _ESTABLISHED:
                e = _ESTABLISHED  # the SYN was missed, the SYN-ACK was seen
            else:
                e = _PARTIAL
    elif e in (_SYN_SENT, _SYN_ACK_SENT):
        if flags & _FIN:
            e = _CLOSED
        if flags & _RST:
            e = _RESET
    elif e in (_ESTABLISHED, _PARTIAL):
        if flags & _SYN and e == _PARTIAL and peer == _INACTIVE and not flags & _ACK:
            e = _SYN_SENT
        if flags & _FIN and not flags & _RST:
            e = _CLOSED
        if flags & _RST:
            e = _RESET
    elif e == _CLOSED and flags & _RST and peer != _CLOSED:
        e = _RESET
    return e, peer


def tcp_conn_state(os_: int, rs: int, history: str, payload_bytes: int) -> str:
    """Zeek's conn_state from the originator's and responder's endpoint states."""
    o_inactive = os_ in (_INACTIVE, _PARTIAL)
    r_inactive = rs in (_INACTIVE, _PARTIAL)
    if rs == _RESET:
        if os_ in (_SYN_SENT, _SYN_ACK_SENT) or (os_ == _RESET and payload_bytes == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == _RESET:
        if r_inactive:
            h = history.lstrip("^")  # Zeek: /\^?S[^HAFGIQ]*R.*/
            # a list, not a generator: no closure, so the compiled form is a C function
            if h.startswith("S") and "R" in h and not any([c in h.split("R", 1)[0] for c in "HAFGIQ"]):
                return "RSTOS0"
            return "OTH"
        return "RSTO"
    if rs == _CLOSED and os_ == _CLOSED:
        return "SF"
    if os_ == _CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == _CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == _SYN_SENT and rs == _INACTIVE:
        return "S0"
    if os_ == _ESTABLISHED and rs == _ESTABLISHED:
        return "S1"
    return "OTH"


_M32 = 0xFFFFFFFF
_HALF = 0x80000000
_MAX_SEGMENTS = 256  # segments held ahead of a hole


def _delta(a: int, b: int) -> int:
    """a - b in 32-bit sequence space, as a signed number."""
    d = (a - b) & _M32
    return d - 0x100000000 if d & _HALF else d


@cython.no_gc  # holds bytes only
@cython.freelist(16)  # created and freed per connection or message: reuse the memory
@cython.cclass
class TcpStream:
    """Reassembly state of one direction of one connection."""

    __slots__ = ("_pending", "_pending_bytes", "gaps", "max_buffer", "missed_bytes", "next_seq", "out_of_order",
                 "retransmitted")  # fmt: skip

    def __init__(self, max_buffer: int = 256 * 1024) -> None:
        self.max_buffer = max_buffer
        self.next_seq: int | None = None
        self._pending: dict[int, bytes] | None = (
            None  # segments ahead of next_seq (most streams never need it)
        )
        self._pending_bytes = 0
        self.retransmitted = 0
        self.out_of_order = 0
        self.gaps = 0
        self.missed_bytes = 0

    def start(self, isn: int) -> None:
        """The SYN was seen earlier (by the flow table): data starts at isn + 1."""
        if self.next_seq is None:
            self.next_seq = (isn + 1) & _M32

    def segment(self, seq: int, flags: int, payload: bytes) -> list[bytes]:
        """Feed one segment of this direction; returns the bytes that are now in order."""
        if seq == self.next_seq and payload and not flags & (_SYN | _RST) and not self._pending:
            self.next_seq = (seq + len(payload)) & _M32  # the common case: the next bytes, in order
            return [payload]
        if flags & _SYN:
            seq = (seq + 1) & _M32  # the SYN takes one sequence number; any data follows it
            if self.next_seq is None:
                self.next_seq = seq
        if not payload or flags & _RST:  # data on a RST is not part of the stream
            return []
        if self.next_seq is None:  # first seen mid-stream: start where we are
            self.next_seq = seq
        ahead = _delta(seq, self.next_seq)
        if ahead > 0:
            self.out_of_order += 1
            if self._pending is None:
                self._pending = {}
            held = self._pending.get(seq)
            if held is None or len(held) < len(payload):
                self._pending_bytes += len(payload) - (len(held) if held else 0)
                self._pending[seq] = payload
            # Bounded in bytes and in segments: a flood of tiny segments must not make draining quadratic.
            if self._pending_bytes > self.max_buffer or len(self._pending) > _MAX_SEGMENTS:
                return self._skip_gap()
            return []
        if ahead < 0:
            if -ahead >= len(payload):
                self.retransmitted += 1
                return []
            payload = payload[-ahead:]  # overlaps what we delivered: keep only the new tail
        self.next_seq = (self.next_seq + len(payload)) & _M32
        out = [payload]
        if self._pending:
            out.extend(self._drain())
        return out

    def finish(self) -> list[bytes]:
        """End of the connection: deliver what waited behind holes (each hole counts as a gap)."""
        out: list[bytes] = []
        while self._pending:
            out.extend(self._skip_gap())
        self._pending = None
        return out

    def _skip_gap(self) -> list[bytes]:
        assert self.next_seq is not None and self._pending is not None
        first = min(self._pending, key=lambda s: _delta(s, self.next_seq))  # type: ignore[arg-type]
        self.gaps += 1
        self.missed_bytes += max(0, _delta(first, self.next_seq))
        self.next_seq = first
        return self._drain()

    def _drain(self) -> list[bytes]:
        out: list[bytes] = []
        pending = self._pending
        assert pending is not None
        while pending:
            assert self.next_seq is not None
            progressed = False
            for seq in list(pending):
                ahead = _delta(seq, self.next_seq)
                if ahead > 0:
                    continue
                data = pending.pop(seq)
                self._pending_bytes -= len(data)
                if -ahead >= len(data):
                    self.retransmitted += 1
                    continue
                data = data[-ahead:] if ahead else data
                out.append(data)
                self.next_seq = (self.next_seq + len(data)) & _M32
                progressed = True
            if not progressed:
                break
        return out
