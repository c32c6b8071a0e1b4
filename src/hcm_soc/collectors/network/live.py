"""Live capture from a network interface (a SPAN/mirror port) into network records.

Responsible for the capture socket and the loop around it: a Linux `AF_PACKET`
socket bound to one interface (optional BPF filter compiled by libpcap through
scapy, promiscuous mode, snap length), raw frames handed to `decode_frame` (no
scapy dissection on the hot path), the analyzer fed, flows expired on a clock even
when no packet arrives, and a clean stop: when `stop` is set (SIGTERM/SIGINT in the
CLI) open flows and transactions are emitted and the writer is flushed.

Details that matter on real links, done the way libpcap does them:

- the socket is bound before it receives anything (protocol 0 until the filter is
  attached), so no frame of another interface slips in;
- on the loopback interface every packet is seen twice (outgoing and incoming):
  outgoing copies are skipped;
- the kernel strips 802.1Q tags into ancillary data: they are put back into the
  frame, so `network.vlan.id` survives;
- packet times are the kernel's receive times (`SO_TIMESTAMP`), not the time the
  loop got round to them; kernel drops (`PACKET_STATISTICS`) are counted.

Capturing needs root or CAP_NET_RAW; without it the error says so and how to grant it.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hcm_soc.collectors.network.writer import NetworkRecordWriter
from hcm_soc.errors import HcmSocError

if TYPE_CHECKING:
    from hcm_soc.collectors.definition import SourceDefinition
    from hcm_soc.collectors.network.analyzer import NetworkAnalyzer
    from hcm_soc.config import NetworkSettings
    from hcm_soc.store.bulk import BulkWriter
    from hcm_soc.store.names import IndexNames

__all__ = ["CaptureError", "CaptureSocket", "LiveCollector", "LiveParams", "run_live"]

log = logging.getLogger(__name__)

# Linux constants the socket module does not export
_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_MR_PROMISC = 1
_PACKET_STATISTICS = 6
_PACKET_AUXDATA = 8
_SO_TIMESTAMP = 29
_SO_RCVBUFFORCE = 33
_TP_STATUS_VLAN_VALID = 0x10
_TP_STATUS_VLAN_TPID_VALID = 0x40
_AUXDATA = struct.Struct("IIIHHHH")  # struct tpacket_auxdata
_TIMEVAL = struct.Struct("@ll")
_STATS = struct.Struct("II")  # struct tpacket_stats
# ARPHRD_* of the interface -> pcap link type of the frames a SOCK_RAW packet socket returns
_LINKTYPES = {1: 1, 772: 1, 512: 101, 65534: 101}  # ether, loopback (ether framing), ppp/none (raw IP)
_ARPHRD_LOOPBACK = 772
_ANC_SIZE = socket.CMSG_SPACE(_AUXDATA.size) + socket.CMSG_SPACE(_TIMEVAL.size)
_RCVBUF = 32 * 1024 * 1024


class CaptureError(HcmSocError):
    """A live capture could not be started (privileges, interface, filter)."""


@dataclass(frozen=True, slots=True)
class LiveParams:
    """What one live capture needs: a `type: network` definition plus the network settings."""

    name: str
    interface: str
    bpf_filter: str | None = None
    snaplen: int = 65535
    promiscuous: bool = True
    internal_networks: tuple[str, ...] = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
    max_flows: int = 200_000
    active_timeout: float = 1800.0
    idle_timeout: float = 60.0
    labels: Mapping[str, str] = field(default_factory=dict)
    tags: Sequence[str] = ()
    observer: Mapping[str, Any] = field(default_factory=dict)
    #: seconds between flow/transaction expiry runs while packets are scarce
    tick: float = 1.0

    @classmethod
    def from_definition(cls, d: SourceDefinition, network: NetworkSettings) -> LiveParams:
        n = d.network
        if n is None:
            raise CaptureError(f"source {d.name}: type {d.type} has no 'network:' section")
        return cls(
            name=d.name,
            interface=n.interface,
            bpf_filter=n.bpf_filter,
            snaplen=n.snaplen,
            promiscuous=n.promiscuous,
            internal_networks=tuple(n.internal_networks or network.internal_networks),
            max_flows=network.max_flows,
            active_timeout=network.active_timeout,
            idle_timeout=network.idle_timeout,
            labels=dict(d.labels),
            tags=tuple(d.tags),
            observer=dict(d.observer),
        )


def _privilege_hint(interface: str) -> str:
    python = os.path.realpath(sys.executable)
    return (
        f"live capture on {interface} needs root or CAP_NET_RAW "
        f"(run as root or `setcap cap_net_raw+ep {python}`)"
    )


class CaptureSocket:
    """A packet socket on one interface returning `(linktype, ts, frame)` tuples."""

    def __init__(
        self, interface: str, *, bpf_filter: str | None = None, snaplen: int = 65535, promiscuous: bool = True
    ) -> None:
        self.interface = interface
        self.snaplen = snaplen
        self.kernel_packets = 0
        self.kernel_drops = 0
        try:
            self.ifindex = socket.if_nametoindex(interface)
        except OSError:
            known = ", ".join(name for _, name in socket.if_nameindex())
            raise CaptureError(
                f"live capture: no interface named {interface!r} on this machine (interfaces: {known}); "
                "fix network.interface in the source definition"
            ) from None
        try:
            # protocol 0: nothing is received until bind(), after the filter is in place
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise CaptureError(_privilege_hint(interface)) from None
        try:
            if bpf_filter:
                self._attach_filter(bpf_filter)
            self.sock.bind((interface, _ETH_P_ALL))
            self.hatype = int(self.sock.getsockname()[3])
            linktype = _LINKTYPES.get(self.hatype)
            if linktype is None:
                raise CaptureError(
                    f"live capture on {interface}: link type ARPHRD {self.hatype} is not supported "
                    "(Ethernet, loopback and raw-IP interfaces are)"
                )
            self.linktype: int = linktype
            self.loopback = self.hatype == _ARPHRD_LOOPBACK
            self.sock.setsockopt(_SOL_PACKET, _PACKET_AUXDATA, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMP, 1)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RCVBUF)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            if promiscuous and not self.loopback:
                mreq = struct.pack("iHH8s", self.ifindex, _PACKET_MR_PROMISC, 0, b"")
                self.sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
        except PermissionError:
            self.sock.close()
            raise CaptureError(_privilege_hint(interface)) from None
        except BaseException:
            self.sock.close()
            raise

    def _attach_filter(self, expr: str) -> None:
        # scapy is imported only here: it is slow to import and only filters need it
        from scapy.arch.linux import attach_filter
        from scapy.error import Scapy_Exception

        try:
            attach_filter(self.sock, expr, self.interface)
        except ImportError:
            raise CaptureError(
                f"live capture on {self.interface}: compiling the BPF filter {expr!r} needs libpcap "
                "(Debian/Ubuntu: apt-get install -y libpcap0.8)"
            ) from None
        except (Scapy_Exception, OSError) as e:
            raise CaptureError(
                f"live capture on {self.interface}: BPF filter {expr!r} is not valid: {e}; "
                "fix network.bpf_filter (tcpdump syntax, e.g. 'not port 22')"
            ) from None

    def recv(self, timeout: float) -> tuple[int, float, bytes] | None:
        """The next frame, or None after `timeout` seconds without one (or a skipped copy)."""
        self.sock.settimeout(timeout)
        try:
            frame, ancdata, _flags, addr = self.sock.recvmsg(self.snaplen, _ANC_SIZE)
        except TimeoutError:
            return None
        if self.loopback and addr[2] == socket.PACKET_OUTGOING:
            return None
        ts = 0.0
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMP and len(data) >= _TIMEVAL.size:
                sec, usec = _TIMEVAL.unpack_from(data)
                ts = sec + usec / 1e6
            elif level == _SOL_PACKET and kind == _PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                status, _len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(data)
                if (tci or status & _TP_STATUS_VLAN_VALID) and self.linktype == 1 and len(frame) >= 12:
                    tpid = tpid if status & _TP_STATUS_VLAN_TPID_VALID else 0x8100
                    frame = frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]
        return self.linktype, ts or time.time(), frame

    def update_stats(self) -> None:
        """Add the kernel's counters since the last call (reading them resets them)."""
        try:
            packets, drops = _STATS.unpack(self.sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, _STATS.size))
        except OSError:
            return
        self.kernel_packets += packets
        self.kernel_drops += drops

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> CaptureSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LiveCollector:
    """One live capture; `run(stop)` until `stop` is set. Fits the runner's collector protocol."""

    def __init__(
        self,
        params: LiveParams,
        writer: BulkWriter,
        names: IndexNames,
        *,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.params = params
        self.writer = writer
        self.on_ready = on_ready
        self.sink = NetworkRecordWriter(
            writer,
            names,
            source=params.name,
            labels=params.labels,
            tags=params.tags,
            observer=params.observer,
            interface=params.interface,
        )
        self.frames = 0  # frames received; the analyzer's counters say what they were
        self._capture: CaptureSocket | None = None
        self._analyzer: NetworkAnalyzer | None = None

    def run(self, stop: threading.Event) -> None:
        # imported here: importing this module must stay cheap (the runner imports it at start)
        from hcm_soc.collectors.network.analyzer import NetworkAnalyzer

        p = self.params
        analyzer = NetworkAnalyzer(
            self.sink,
            internal_networks=list(p.internal_networks),
            max_flows=p.max_flows,
            active_timeout=p.active_timeout,
            idle_timeout=p.idle_timeout,
        )
        self._analyzer = analyzer
        with CaptureSocket(
            p.interface, bpf_filter=p.bpf_filter, snaplen=p.snaplen, promiscuous=p.promiscuous
        ) as capture:
            self._capture = capture
            log.info(
                "live capture started",
                extra={"source": p.name, "interface": p.interface, "filter": p.bpf_filter},
            )
            if self.on_ready is not None:
                self.on_ready()
            next_tick = time.monotonic() + p.tick
            try:
                while not stop.is_set():
                    got = capture.recv(min(p.tick, 0.25))
                    if got is not None:
                        self.frames += 1
                        analyzer.add_frame(*got)
                    if time.monotonic() >= next_tick:
                        # a quiet link must still end its idle flows and unanswered queries
                        analyzer.expire(time.time())
                        capture.update_stats()
                        next_tick = time.monotonic() + p.tick
            finally:
                capture.update_stats()
                analyzer.finish()
                self.writer.flush()
                log.info("live capture stopped", extra={"source": p.name, **self.stats()})

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "interface": self.params.interface,
            "frames": self.frames,
            "records": dict(self.sink.records),
        }
        if self._capture is not None:
            out["kernel_packets"] = self._capture.kernel_packets
            out["kernel_drops"] = self._capture.kernel_drops
        if self._analyzer is not None:
            out.update(self._analyzer.stats())
        return out


def run_live(
    params: LiveParams,
    writer: BulkWriter,
    names: IndexNames,
    stop: threading.Event,
    *,
    on_ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Capture on `params.interface` until `stop` is set; returns the counters."""
    collector = LiveCollector(params, writer, names, on_ready=on_ready)
    collector.run(stop)
    return collector.stats()
