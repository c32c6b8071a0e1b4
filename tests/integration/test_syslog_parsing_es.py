"""Syslog lines -> IngestPipeline -> real Elasticsearch, then the queries detection relies on.

A file mixing every sample line (RFC 3164 and 5424 headers, sshd/sudo/su/PAM, account
management, iptables/UFW) with lines that are not syslog is read line by line as the file
collector would and written through the real pipeline. Expected numbers come from the
reviewed golden files and from plain string tests on the raw lines, never from the
parser's output.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.collectors.base import RawRecord
from hcm_soc.collectors.pipeline import IngestPipeline
from hcm_soc.parsers.base import PARSE_FAILURE_TAG, ParseContext, SourceInfo
from hcm_soc.parsers.registry import get_parser
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.names import IndexNames
from tests.unit.parsers import GoldenCase, load_golden

pytestmark = pytest.mark.integration

RECEIVED = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # the context the golden files were made in
NOT_SYSLOG = [
    "GET /thu-tuc-hanh-chinh?linh-vuc=dat-dai HTTP/1.1",
    '{"ts": "2026-11-25T03:15:01Z", "msg": "Nộp hồ sơ HS2026-0001"}',
    "<192>Nov 25 10:00:00 so-gtvt-db01 app: PRI out of range",
]


def mixed_file(tmp_path: Path) -> tuple[Path, list[GoldenCase]]:
    cases = [c for name in ("rfc3164", "rfc5424", "auth", "accounts", "netfilter")
             for c in load_golden("syslog", name)]  # fmt: skip
    lines = [c.raw for c in cases]
    for i, bad in enumerate(NOT_SYSLOG):  # spread through the file, as in real logs
        lines.insert(1 + i * 40, bad)
    path = tmp_path / "auth-and-firewall.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, cases


def ingest(path: Path, pipeline: IngestPipeline) -> int:
    """Read `path` as the file collector does: one record per line, id from the byte offset."""
    offset = n = 0
    with path.open("rb") as f:
        for raw in f:
            text = raw.rstrip(b"\n").decode("utf-8", "replace")
            pipeline.handle(RawRecord(text, f"file:{path}:{offset}", RECEIVED,
                                      {"log": {"file": {"path": str(path)}, "offset": offset}}))  # fmt: skip
            offset += len(raw)
            n += 1
    pipeline.flush()
    return n


def search(es: Elasticsearch, index: str, query: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return dict(es.search(index=index, query=query, track_total_hits=True, **kw))


def total(result: dict[str, Any]) -> int:
    return int(result["hits"]["total"]["value"])


def test_mixed_syslog_file_is_stored_searchable(
    es: Elasticsearch, installed: IndexNames, tmp_path: Path
) -> None:
    path, cases = mixed_file(tmp_path)
    spec = get_parser("syslog")
    index = installed.events(spec.default_dataset)
    source = SourceInfo(name="so-tttt-auth", dataset=spec.default_dataset, module=spec.module,
                        labels={"department": "Sở Thông tin và Truyền thông", "sector": "administration"})  # fmt: skip
    with BulkWriter(es, installed, flush_interval=None) as writer:
        pipeline = IngestPipeline(writer, index, source, spec, ParseContext(dataset=spec.default_dataset))
        n = ingest(path, pipeline)
    es.indices.refresh(index=index)

    # every line is stored exactly once: nothing refused by the mapping, nothing dropped
    assert n == len(cases) + len(NOT_SYSLOG)
    assert pipeline.stats()["parse_failures"] == len(NOT_SYSLOG)
    assert writer.stats()["dead_lettered"] == 0
    assert int(es.count(index=index)["count"]) == n

    # counts per event.action match the reviewed golden files
    expected = Counter(c.fields["event.action"] for c in cases if c.fields and "event.action" in c.fields)
    aggs = es.search(index=index, size=0, aggs={"a": {"terms": {"field": "event.action", "size": 200}}})
    stored = {b["key"]: b["doc_count"] for b in aggs["aggregations"]["a"]["buckets"]}
    assert stored == dict(expected)
    assert stored["ssh_login"] >= 10 and stored["ufw-block"] >= 4

    # Sigma keyword searches are case-insensitive: message.caseless finds any spelling
    lowered = [c.raw.lower() for c in cases]
    for pattern, needle in (("*FAILED Password*", "failed password"), ("*NGƯỜI DÙNG*", "người dùng"),
                            ("*not in SUDOERS*", "not in sudoers")):  # fmt: skip
        hits = search(es, index, {"wildcard": {"message.caseless": {"value": pattern}}}, size=0)
        assert total(hits) == sum(needle in line for line in lowered) > 0, pattern

    # structured fields are queryable with their ECS types
    failed_from = search(es, index, {"bool": {"filter": [
        {"term": {"event.outcome": "failure"}}, {"term": {"source.ip": "203.0.113.0/24"}},
    ]}}, size=0)  # fmt: skip
    assert total(failed_from) == sum(
        1 for c in cases if c.fields and c.fields.get("event.outcome") == "failure"
        and str(c.fields.get("source.ip", "")).startswith("203.0.113.")
    )  # fmt: skip
    denied_ssh = search(es, index, {"bool": {"filter": [
        {"term": {"event.type": "denied"}}, {"term": {"destination.port": 22}},
    ]}}, size=0)  # fmt: skip
    assert total(denied_ssh) == sum(1 for line in lowered if "block" in line and "dpt=22 " in line)

    # an RFC 3164 line (local time, no year) is stored in UTC; Vietnamese text survives the round trip
    vn = search(es, index, {"term": {"message.caseless": "started dịch vụ cổng thông tin điện tử."}})
    doc = vn["hits"]["hits"][0]["_source"]
    assert doc["@timestamp"] == "2026-11-25T03:21:00Z"
    assert doc["message"] == "Started Dịch vụ cổng thông tin điện tử."
    assert (
        doc["event"]["original"] == "<30>Nov 25 10:21:00 systemd[1]: Started Dịch vụ cổng thông tin điện tử."
    )
    assert doc["hcm"]["department"] == "Sở Thông tin và Truyền thông"

    # lines that are not syslog are kept with their text, the reason and the failure tag
    failures = search(es, index, {"term": {"tags": PARSE_FAILURE_TAG}}, size=10)
    assert total(failures) == len(NOT_SYSLOG)
    by_original = {h["_source"]["event"]["original"]: h["_source"] for h in failures["hits"]["hits"]}
    assert set(by_original) == set(NOT_SYSLOG)
    for doc in by_original.values():
        assert doc["error"]["message"].startswith("syslog: "), doc["error"]["message"]
        assert doc["event"]["kind"] == "pipeline_error"
        assert doc["log"]["file"]["path"] == str(path)
        assert doc["message"] == doc["event"]["original"]  # keyword rules still see the text
    assert "out of range" in by_original[NOT_SYSLOG[2]]["error"]["message"]
    reason = search(es, index, {"match": {"error.message": "PRI"}}, size=0)
    assert total(reason) >= 1
