"""Test traffic: scapy-built packets with explicit timestamps, written as pcap/pcapng files.

A `Conversation` builds one TCP connection with correct sequence/ack numbers, so a
test can say "client sends these bytes, split here" and reorder or repeat segments.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scapy.all import IP, TCP, Ether, PcapNgWriter, wrpcap
from scapy.layers.inet6 import IPv6

from hcm_soc.collectors.network.analyzer import NetworkAnalyzer
from hcm_soc.collectors.network.packets import FrameDecoder, Packet, iter_pcap

T0 = 1_763_000_000.0  # 2025-11-13, a fixed capture time


def eth() -> Any:
    """An Ethernet header with fixed addresses (scapy would otherwise look up routes and MACs)."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


class Conversation:
    """One TCP connection between a client and a server; every method returns scapy packets."""

    def __init__(
        self, client: str, cport: int, server: str, sport: int, *, isn: int = 1000, rsn: int = 9000
    ) -> None:
        self.client, self.cport, self.server, self.sport = client, cport, server, sport
        self.cseq = isn
        self.sseq = rsn
        self.v6 = ":" in client

    def _ip(self, from_client: bool) -> Any:
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        return IPv6(src=src, dst=dst) if self.v6 else IP(src=src, dst=dst)

    def pkt(self, from_client: bool, flags: str, data: bytes = b"", *, seq: int | None = None) -> Any:
        tcp = TCP(
            sport=self.cport if from_client else self.sport,
            dport=self.sport if from_client else self.cport,
            flags=flags,
            seq=(self.cseq if from_client else self.sseq) if seq is None else seq,
            ack=(self.sseq if from_client else self.cseq) if "A" in flags else 0,
        )
        p = eth() / self._ip(from_client) / tcp
        if data:
            p = p / data
        return p

    def send(self, from_client: bool, flags: str, data: bytes = b"") -> Any:
        """A segment at the current sequence number; advances it (SYN/FIN count one)."""
        p = self.pkt(from_client, flags, data)
        step = len(data) + (1 if "S" in flags else 0) + (1 if "F" in flags else 0)
        if from_client:
            self.cseq = (self.cseq + step) & 0xFFFFFFFF
        else:
            self.sseq = (self.sseq + step) & 0xFFFFFFFF
        return p

    def handshake(self) -> list[Any]:
        return [self.send(True, "S"), self.send(False, "SA"), self.send(True, "A")]

    def close(self) -> list[Any]:
        return [self.send(True, "FA"), self.send(False, "FA"), self.send(True, "A")]

    def data(self, from_client: bool, payload: bytes, cuts: Iterable[int] = ()) -> list[Any]:
        """`payload` in segments split at the given offsets."""
        bounds = [0, *cuts, len(payload)]
        return [self.send(from_client, "PA", payload[a:b]) for a, b in itertools.pairwise(bounds)]


def timed(packets: Iterable[Any], start: float = T0, step: float = 0.001) -> list[Any]:
    out = []
    for i, p in enumerate(packets):
        p.time = start + i * step
        out.append(p)
    return out


def write_pcap(
    path: Path, packets: Iterable[Any], *, linktype: int | None = None, nano: bool = False
) -> Path:
    kwargs: dict[str, Any] = {"nano": nano}
    if linktype is not None:
        kwargs["linktype"] = linktype
    wrpcap(str(path), list(packets), **kwargs)
    return path


def write_pcapng(path: Path, packets: Iterable[Any]) -> Path:
    with PcapNgWriter(str(path)) as w:
        for p in packets:
            w.write(p)
    return path


def read(path: Path, decoder: FrameDecoder | None = None) -> list[Packet]:
    return list(iter_pcap(path, decoder=decoder))


Record = tuple[str, dict[str, Any], str | None]


def analyze(path: Path, **kwargs: Any) -> tuple[list[Record], NetworkAnalyzer]:
    records: list[Record] = []
    analyzer = NetworkAnalyzer(lambda ds, ev, key: records.append((ds, ev, key)), **kwargs)
    analyzer.read_pcap(path)
    analyzer.finish()
    return records, analyzer


def of(records: list[Record], dataset: str) -> list[dict[str, Any]]:
    return [ev for ds, ev, _ in records if ds == dataset]
