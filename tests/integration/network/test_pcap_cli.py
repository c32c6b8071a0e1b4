"""`hcm-soc pcap` against real Elasticsearch: captures built with scapy -> flow, DNS, HTTP and
TLS records with the expected fields; re-reads write nothing new; damaged files keep what was read."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from click.testing import Result
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from hcm_soc.cli import pcap as pcap_cmd
from hcm_soc.cli.context import AppContext
from hcm_soc.store.names import IndexNames
from tests.integration.network import captures as cap

pytestmark = pytest.mark.integration

RunPcap = Callable[..., Result]


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = AppContext()

    app.command("pcap")(pcap_cmd.pcap)
    return app


@pytest.fixture
def run_pcap(es_url: str, installed: IndexNames, tmp_path: Path) -> RunPcap:
    env = {
        "HCM_SOC_ES_URL": es_url,
        "HCM_SOC_INDEX_PREFIX": installed.prefix,
        "HCM_SOC_INDEX_NAMESPACE": installed.namespace,
        "HCM_SOC_LOCAL_ES_STATE_DIR": str(tmp_path / "state"),
        "HCM_SOC_BULK_FLUSH_INTERVAL": "0.2",
        "HCM_SOC_CONFIG": "",
    }
    app = _app()

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, ["pcap", *args], env=env)

    return run


def _docs(es: Elasticsearch, names: IndexNames, dataset: str) -> list[dict[str, Any]]:
    index = names.events(dataset)
    if not es.indices.exists(index=index):
        return []
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000, sort=["@timestamp"])["hits"]["hits"]
    return [h["_source"] for h in hits]


def _one(docs: list[dict[str, Any]], **where: Any) -> dict[str, Any]:
    def get(doc: dict[str, Any], dotted: str) -> Any:
        for part in dotted.split("__"):
            doc = doc.get(part, {}) if isinstance(doc, dict) else {}
        return doc

    found = [d for d in docs if all(get(d, k) == v for k, v in where.items())]
    assert len(found) == 1, f"expected one record with {where}, found {len(found)} in {docs}"
    return found[0]


def test_mixed_capture_gives_flow_dns_http_and_tls_records(
    run_pcap: RunPcap, es: Elasticsearch, installed: IndexNames, tmp_path: Path
) -> None:
    path = cap.write_mixed(tmp_path / "mixed.pcap")
    r = run_pcap(str(path), "--json")
    assert r.exit_code == 0, r.output + str(r.exception)
    summary = json.loads(r.stdout)
    assert summary["file_errors"] == 0 and summary["dead_lettered"] == 0
    total = sum(summary["records"].values())
    assert summary["written"] == total and summary["duplicates"] == 0

    flows = _docs(es, installed, "network.flow")
    assert len(flows) == summary["records"]["network.flow"] == 7
    for doc in flows:  # the envelope every record gets
        assert doc["event"]["module"] == "network" and doc["event"]["dataset"] == "network.flow"
        assert "network" in doc["event"]["category"]
        assert doc["ecs"]["version"] and doc["hcm"]["source"] == "pcap"
        assert doc["log"]["file"]["path"] == str(path.resolve())
        assert doc["observer"]["hostname"]
        assert doc["network"]["community_id"].startswith("1:")
    http = _one(flows, source__port=51000)
    assert (http["source"]["ip"], http["destination"]["ip"], http["destination"]["port"]) == (
        cap.CLIENT,
        cap.WEB,
        80,
    )
    assert http["network"]["transport"] == "tcp" and http["network"]["protocol"] == "http"
    assert http["network"]["direction"] == "outbound"  # 10.1.2.3 is internal, 93.184.216.34 is not
    assert http["zeek"]["connection"]["conn_state"] == "SF"
    # 7 packets from the client (handshake 2, request, its retransmission, second request, FIN, ACK), 5 back
    assert (http["source"]["packets"], http["destination"]["packets"]) == (7, 5)
    assert http["network"]["packets"] == 12
    assert http["network"]["bytes"] == http["source"]["bytes"] + http["destination"]["bytes"]
    assert http["event"]["duration"] > 0 and http["event"]["start"] < http["event"]["end"]
    rejected = _one(flows, destination__port=23)
    assert rejected["zeek"]["connection"]["conn_state"] == "REJ"
    icmp = _one(flows, network__transport="icmp")
    assert (icmp["source"]["ip"], icmp["destination"]["ip"]) == (cap.CLIENT, "8.8.8.8")
    assert icmp["network"]["packets"] == 2
    fragmented = _one(flows, destination__port=9999)
    assert fragmented["network"]["transport"] == "udp" and fragmented["source"]["ip"] == cap.CLIENT
    assert _one(flows, source__port=53001)["network"]["protocol"] == "dns"
    assert _one(flows, source__port=51001)["network"]["protocol"] == "tls"

    dns = _docs(es, installed, "network.dns")
    assert len(dns) == 2
    udp = _one(dns, dns__question__name=cap.DNS_NAME)
    assert udp["dns"]["question"]["type"] == "A" and udp["dns"]["response_code"] == "NOERROR"
    assert sorted(a["data"] for a in udp["dns"]["answers"]) == cap.DNS_ADDRS
    assert {a["ttl"] for a in udp["dns"]["answers"]} == {300}
    assert udp["network"]["transport"] == "udp"
    assert udp["network"]["vlan"]["id"] == "20"  # the 802.1Q tag of the capture
    assert _one(flows, source__port=53001)["network"]["vlan"]["id"] == "20"
    assert (udp["source"]["ip"], udp["destination"]["port"]) == (cap.CLIENT, 53)
    tcp = _one(dns, dns__question__name=cap.DNS_TCP_NAME)
    assert tcp["dns"]["question"]["type"] == "TXT" and tcp["dns"]["response_code"] == "NXDOMAIN"
    assert tcp["network"]["transport"] == "tcp"

    web = _docs(es, installed, "network.http")
    assert len(web) == 2
    get = _one(web, http__request__method="GET")
    assert get["url"]["original"] == "/thu-tuc?id=1" and get["url"]["domain"] == cap.HTTP_HOST
    assert get["user_agent"]["original"] == cap.HTTP_UA
    assert get["http"]["response"]["status_code"] == 200
    assert get["http"]["response"]["mime_type"] == "text/html"
    assert get["http"]["response"]["body"]["bytes"] == 5
    post = _one(web, http__request__method="POST")
    assert post["url"]["path"] == "/api/ho-so" and post["http"]["response"]["status_code"] == 404
    assert post["http"]["request"]["body"]["bytes"] == 4

    tls = _docs(es, installed, "network.tls")
    assert len(tls) == 1
    t = tls[0]["tls"]
    assert t["client"]["server_name"] == cap.SNI
    assert t["client"]["ja3"] == cap.expected_ja3()
    assert t["client"]["supported_protocols"] == ["h2", "http/1.1"]
    assert t["version"] == "1.2" and t["cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert t["next_protocol"] == "h2"
    assert tls[0]["destination"]["port"] == 443


def test_rereading_the_same_capture_writes_nothing_new(
    run_pcap: RunPcap, es: Elasticsearch, installed: IndexNames, tmp_path: Path
) -> None:
    path = cap.write_mixed(tmp_path / "mixed.pcap")
    first = run_pcap(str(path), "--json")
    assert first.exit_code == 0, first.output
    total = sum(json.loads(first.stdout)["records"].values())
    assert total > 0
    second = run_pcap(str(path))
    assert second.exit_code == 0, second.output
    assert f"written 0, already stored {total}," in second.stdout
    # the same traffic saved as pcapng elsewhere is the same records: still nothing new
    (tmp_path / "copy").mkdir()
    ng = cap.write_mixed(tmp_path / "copy" / "mixed.pcapng", pcapng=True)
    third = run_pcap(str(ng), "--json")
    assert third.exit_code == 0, third.output
    s = json.loads(third.stdout)
    assert (s["written"], s["duplicates"]) == (0, total)
    stored = 0
    for dataset in ("network.flow", "network.dns", "network.http", "network.tls"):
        stored += len(_docs(es, installed, dataset))
    assert stored == total


def test_truncated_and_corrupt_files_keep_what_was_read(
    run_pcap: RunPcap, es: Elasticsearch, installed: IndexNames, tmp_path: Path
) -> None:
    truncated = cap.write_dns_only(tmp_path / "cut.pcap", 50)
    data = truncated.read_bytes()
    truncated.write_bytes(data[:-30])  # the last answer loses its end
    garbage = tmp_path / "notes.pcap"
    garbage.write_bytes(b"this is not a capture at all\n" * 10)
    good = cap.write_mixed(tmp_path / "good.pcap")
    r = run_pcap(str(truncated), str(garbage), str(good), "--no-progress")
    assert r.exit_code == 1, r.output
    assert f"{truncated}: packet 100 at byte offset" in r.stderr and "truncated packet data" in r.stderr
    assert f"{garbage}:" in r.stderr and "not a pcap or pcapng file" in r.stderr
    assert "records read before it are kept" in r.stderr
    assert "2 file error(s)" in r.stdout
    names = [d["dns"]["question"]["name"] for d in _docs(es, installed, "network.dns")]
    # 49 answered queries and the 50th, whose answer was cut off, as an unanswered query
    assert len([n for n in names if n.endswith(".example.com.vn") and n.startswith("host")]) == 50
    last = [
        d
        for d in _docs(es, installed, "network.dns")
        if d["dns"]["question"]["name"] == "host49.example.com.vn"
    ]
    assert last[0]["dns"]["type"] == "query" and "response_code" not in last[0]["dns"]
    # the good file after the broken ones is read completely
    assert cap.DNS_NAME in names
    assert len(_docs(es, installed, "network.tls")) == 1


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    # refused while parsing the arguments: before settings or Elasticsearch are touched
    r = CliRunner().invoke(_app(), ["pcap", str(tmp_path / "nope.pcap")], env={"HCM_SOC_ES_URL": "bad"})
    assert r.exit_code == 2
    assert "does not exist" in r.output
