"""Live capture on the loopback interface of traffic the test sends itself -> records in Elasticsearch.

Needs root (or CAP_NET_RAW): skipped otherwise, with the reason. Bounded: every wait
has a deadline, and the BPF filter keeps other loopback traffic (Elasticsearch's own)
out of the capture.
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from scapy.layers.dns import DNS, DNSQR, DNSRR

from hcm_soc.collectors.definition import load_definition
from hcm_soc.collectors.network.live import LiveParams, run_live
from hcm_soc.config import NetworkSettings
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.names import IndexNames
from tests.conftest import free_port

pytestmark = pytest.mark.integration

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="live capture needs root or CAP_NET_RAW: run the tests as root to cover it"
)
needs_libpcap = pytest.mark.skipif(
    ctypes.util.find_library("pcap") is None,
    reason="the BPF filter that keeps Elasticsearch's own loopback traffic out needs libpcap (apt-get install -y libpcap0.8)",
)
RESOLVER = "127.0.0.77"  # any 127/8 address is loopback; this one is unlikely to have a DNS server
NAME = "live.hochiminhcity.gov.vn"


def _wait_for(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _docs(es: Elasticsearch, names: IndexNames, dataset: str) -> list[dict[str, Any]]:
    index = names.events(dataset)
    if not es.indices.exists(index=index):
        return []
    es.indices.refresh(index=index)
    return [h["_source"] for h in es.search(index=index, size=100)["hits"]["hits"]]


def _dns_server(sock: socket.socket) -> None:
    data, peer = sock.recvfrom(4096)
    query = DNS(data)
    answer = DNS(
        id=query.id,
        qr=1,
        rd=1,
        ra=1,
        qd=query.qd,
        an=[DNSRR(rrname=NAME, type="A", rdata="10.20.30.40", ttl=60)],
    )
    sock.sendto(bytes(answer), peer)


def _tcp_server(sock: socket.socket) -> None:
    conn, _ = sock.accept()
    with conn:
        conn.recv(1024)
        conn.sendall(b"xin chao\n")
        conn.recv(1024)  # wait for the client's FIN, then close our side


@needs_root
@needs_libpcap
def test_live_capture_on_loopback_writes_flows_and_dns(
    es: Elasticsearch, installed: IndexNames, tmp_path: Path
) -> None:
    tcp_port = free_port()
    definition = tmp_path / "lo.yml"
    definition.write_text(
        "name: lo-test\ntype: network\nlabels: {sector: administration}\nnetwork:\n  interface: lo\n"
        f"  bpf_filter: 'host {RESOLVER} or tcp port {tcp_port}'\n  promiscuous: false\n"
        "  internal_networks: [127.0.0.0/8]\n",
        encoding="utf-8",
    )
    # idle timeout 1 s: the DNS flow must be emitted by the clock while the link is quiet
    params = LiveParams.from_definition(load_definition(definition), NetworkSettings(idle_timeout=1.0))
    params = dataclasses.replace(params, tick=0.2)

    dns_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns_sock.bind((RESOLVER, 53))
    dns_sock.settimeout(10)
    tcp_sock = socket.create_server(("127.0.0.1", tcp_port))
    tcp_sock.settimeout(10)
    servers = [
        threading.Thread(target=_dns_server, args=(dns_sock,)),
        threading.Thread(target=_tcp_server, args=(tcp_sock,)),
    ]

    writer = BulkWriter(es, installed, flush_interval=0.2)
    stop, ready = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def capture() -> None:
        try:
            outcome["stats"] = run_live(params, writer, installed, stop, on_ready=ready.set)
        except BaseException as e:  # handed to the test thread
            outcome["error"] = e
            ready.set()

    capturer = threading.Thread(target=capture)
    capturer.start()
    try:
        assert ready.wait(20), "the capture did not start"
        assert "error" not in outcome, outcome.get("error")
        for t in servers:
            t.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            client.sendto(bytes(DNS(id=0x4242, rd=1, qd=DNSQR(qname=NAME))), (RESOLVER, 53))
            assert DNS(client.recv(4096)).an[0].rdata == "10.20.30.40"
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as conn:
            conn.sendall(b"hello\n")
            assert conn.recv(1024) == b"xin chao\n"
        for t in servers:
            t.join(10)
        # before stop: the DNS transaction, and the UDP flow once idle for 1 s (no packet needed)
        dns = _wait_for("the DNS record", lambda: _docs(es, installed, "network.dns"))
        udp_flow = _wait_for(
            "the idle UDP flow",
            lambda: [d for d in _docs(es, installed, "network.flow") if d["network"]["transport"] == "udp"],
        )
    finally:
        stop.set()
        capturer.join(20)
        writer.close()
        dns_sock.close()
        tcp_sock.close()
    assert not capturer.is_alive(), "the capture did not stop within 20 s of stop being set"
    assert "error" not in outcome, outcome.get("error")

    d = dns[0]
    assert d["dns"]["question"]["name"] == NAME and d["dns"]["answers"][0]["data"] == "10.20.30.40"
    assert (d["destination"]["ip"], d["destination"]["port"]) == (RESOLVER, 53)
    assert d["hcm"]["source"] == "lo-test" and d["hcm"]["sector"] == "administration"
    assert d["observer"]["ingress"]["interface"]["name"] == "lo"
    assert udp_flow[0]["network"]["packets"] == 2  # query and answer, each seen once on lo
    assert udp_flow[0]["network"]["direction"] == "internal"
    tcp = [
        f
        for f in _docs(es, installed, "network.flow")
        if f["network"]["transport"] == "tcp" and f["destination"]["port"] == tcp_port
    ]
    assert len(tcp) == 1
    assert tcp[0]["zeek"]["connection"]["conn_state"] == "SF"
    assert tcp[0]["source"]["ip"] == "127.0.0.1"
    stats = outcome["stats"]
    assert stats["packets"] >= 4 + 2 and stats["kernel_drops"] == 0


@needs_root
@pytest.mark.skipif(
    shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed to drop privileges"
)
def test_live_capture_without_privileges_says_what_to_do(tmp_path: Path) -> None:
    code = "from hcm_soc.collectors.network.live import CaptureSocket\nCaptureSocket('lo')\n"
    r = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        check=False,
    )
    assert r.returncode != 0
    assert "live capture on lo needs root or CAP_NET_RAW" in r.stderr
    assert "setcap cap_net_raw+ep" in r.stderr


@needs_root
@needs_libpcap
def test_unknown_interface_and_bad_filter_are_named() -> None:
    from hcm_soc.collectors.network.live import CaptureError, CaptureSocket

    with pytest.raises(CaptureError, match=r"no interface named 'hcm-nope0'.*interfaces: .*lo"):
        CaptureSocket("hcm-nope0")
    with pytest.raises(CaptureError, match="BPF filter 'tcp prot 80' is not valid"):
        CaptureSocket("lo", bpf_filter="tcp prot 80")
