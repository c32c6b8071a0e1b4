"""The HTTP ingest endpoint over real loopback HTTP, writing into the real Elasticsearch node."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.collectors.definition import HttpInput, SourceDefinition
from hcm_soc.collectors.http_ingest import HttpIngestServer
from hcm_soc.collectors.pipeline import IngestPipeline
from hcm_soc.config import load_settings
from hcm_soc.parsers.base import PARSE_FAILURE_TAG
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.client import make_client
from hcm_soc.store.names import IndexNames
from tests.conftest import free_port

pytestmark = pytest.mark.integration

DVC_TOKEN = "dvc-backend-3f9a1c7e2b5d4a60b8e1f0c2d4a6b8e0"
QA_TOKEN = "qa-portal-9b8e7d6c5b4a39281706f5e4d3c2b1a0"
MAX_BODY = 4096

DVC = SourceDefinition(
    name="dvc-backend",
    type="http",
    format="jsonl",
    dataset="dvc.app",
    labels={"department": "Sở Thông tin và Truyền thông", "system": "cong-dich-vu-cong"},
    options={
        "field_map": {"ts": "@timestamp", "client_ip": "source.ip", "user": "user.name", "msg": "message"}
    },
    http=HttpInput(listen="127.0.0.1:0", token_env="HCM_SOC_TEST_TOKEN_DVC", max_body_bytes=MAX_BODY),
)
# no dataset: may write to qa_portal and qa_portal.*
QA = SourceDefinition(
    name="qa-portal",
    type="http",
    format="jsonl",
    http=HttpInput(listen="127.0.0.1:0", token_env="HCM_SOC_TEST_TOKEN_QA"),
)


@dataclass
class Harness:
    server: HttpIngestServer
    writer: BulkWriter
    names: IndexNames
    es: Elasticsearch

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        host, port = self.server.address
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {}, **kw)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, json.loads(data), {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def post(
        self, dataset: str, body: bytes, token: str | None = DVC_TOKEN, **headers: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        h = {"Content-Type": "application/x-ndjson", **{k.replace("_", "-"): v for k, v in headers.items()}}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return self.request("POST", f"/api/ingest/{dataset}", body, h)

    def docs(self, dataset: str) -> list[dict[str, Any]]:
        index = self.names.events(dataset)
        if not self.es.indices.exists(index=index):
            return []
        self.es.indices.refresh(index=index)
        hits = self.es.search(index=index, size=1000, sort=[{"@timestamp": "asc"}])["hits"]["hits"]
        return [h["_source"] for h in hits]


@pytest.fixture
def harness(es: Elasticsearch, installed: IndexNames) -> Iterator[Harness]:
    writer = BulkWriter(es, installed, flush_interval=None)
    pipelines: dict[tuple[str, str], IngestPipeline] = {}

    def sink_for(d: SourceDefinition, dataset: str) -> IngestPipeline:
        key = (d.name, dataset)
        if key not in pipelines:
            pipelines[key] = IngestPipeline.for_definition(
                writer, installed, d.model_copy(update={"dataset": dataset})
            )
        return pipelines[key]

    server = HttpIngestServer([DVC, QA], sink_for, tokens={"dvc-backend": DVC_TOKEN, "qa-portal": QA_TOKEN})
    server.start()
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield Harness(server, writer, installed, es)
    finally:
        stop.set()
        thread.join(timeout=10)
        writer.close()
    assert not thread.is_alive()


def batch(n: int = 10, bad: dict[int, str] | None = None, tag: str = "") -> tuple[list[str], bytes]:
    """`n` NDJSON lines from the public-service back end; `bad` replaces lines (1-based) with broken ones."""
    lines = [
        json.dumps(
            {
                "ts": f"2026-11-25T08:{i:02d}:00+07:00",
                "client_ip": f"113.161.72.{i}",
                "user": "nguyễn.văn.an" if i % 2 else "trần.thị.bình",
                "msg": f"Nộp hồ sơ số {i}{tag}: cấp giấy phép xây dựng — đã tiếp nhận",
                "ho_so": {"so_trang": i, "khan": i % 3 == 0},
            },
            ensure_ascii=False,
        )
        for i in range(1, n + 1)
    ]
    for line_no, text in (bad or {}).items():
        lines[line_no - 1] = text
    return lines, ("\n".join(lines) + "\n").encode("utf-8")


BROKEN = {
    4: '{"ts": "2026-11-25T08:04:00+07:00", "msg": "thiếu ngoặc"',
    7: '["mảng", "không phải đối tượng"]',
}


def test_missing_or_wrong_token_is_401_and_stores_nothing(harness: Harness) -> None:
    _, body = batch(3)
    status, answer, headers = harness.post("dvc.app", body, token=None)
    assert status == 401
    assert "missing token" in answer["error"]
    assert headers["www-authenticate"].startswith("Bearer")
    status, answer, _ = harness.post("dvc.app", body, token="not-the-token")
    assert status == 401
    assert answer["error"] == "invalid token"
    status, answer, _ = harness.request(
        "POST", "/api/ingest/dvc.app", body, {"Authorization": f"Basic {DVC_TOKEN}"}
    )
    assert status == 401
    assert harness.writer.stats()["added"] == 0
    assert harness.docs("dvc.app") == []
    assert harness.server.stats()["unauthorized"] == 3


def test_x_api_key_is_accepted(harness: Harness) -> None:
    _, body = batch(2)
    status, answer, _ = harness.request("POST", "/api/ingest/dvc.app", body, {"X-Api-Key": DVC_TOKEN})
    assert status == 200
    assert answer["stored"] == 2
    assert len(harness.docs("dvc.app")) == 2


def test_oversized_body_is_413_before_it_is_read(harness: Harness) -> None:
    _, body = batch(60)
    assert len(body) > MAX_BODY
    status, answer, headers = harness.post("dvc.app", body)
    assert status == 413
    assert str(MAX_BODY) in answer["error"]
    assert headers.get("connection") == "close"
    # announce 100 MB and send nothing: the answer must come from the header alone
    host, port = harness.server.address
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(
            b"POST /api/ingest/dvc.app HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + DVC_TOKEN.encode()
            + b"\r\nContent-Length: 104857600\r\n\r\n"
        )
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 ")
    assert harness.writer.stats()["added"] == 0


def test_oversized_chunked_body_is_413(harness: Harness) -> None:
    _, body = batch(60)
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    status, answer, _ = harness.request(
        "POST",
        "/api/ingest/dvc.app",
        iter(chunks),
        {"Authorization": f"Bearer {DVC_TOKEN}"},
        encode_chunked=True,
    )
    assert status == 413
    assert "chunked body is larger" in answer["error"]
    assert harness.writer.stats()["added"] == 0
    # within the limit, chunked works
    lines, small = batch(5)
    status, answer, _ = harness.request(
        "POST",
        "/api/ingest/dvc.app",
        iter([small[:100], small[100:]]),
        {"Authorization": f"Bearer {DVC_TOKEN}"},
        encode_chunked=True,
    )
    assert status == 200
    assert answer["accepted"] == 5
    assert sorted(d["event"]["original"] for d in harness.docs("dvc.app")) == sorted(lines)


def test_dataset_outside_the_source_policy_is_403(harness: Harness) -> None:
    _, body = batch(2)
    status, answer, _ = harness.post("nginx.access", body)
    assert status == 403
    assert "'dvc-backend' may not write to dataset 'nginx.access'" in answer["error"]
    assert "'dvc.app' only" in answer["error"]
    # a source without `dataset:` writes under its own name
    status, answer, _ = harness.post("qa_portal.audit", body, token=QA_TOKEN)
    assert status == 200, answer
    status, answer, _ = harness.post("dvc.app", body, token=QA_TOKEN)
    assert status == 403
    assert "'qa_portal' and 'qa_portal.*'" in answer["error"]
    assert len(harness.docs("qa_portal.audit")) == 2
    assert harness.docs("nginx.access") == []
    status, answer, _ = harness.post("Bad-Name", body)
    assert status == 400
    assert harness.server.stats()["forbidden"] == 2


def test_batch_with_malformed_lines_stores_all_and_reports_them(harness: Harness) -> None:
    lines, body = batch(10, BROKEN)
    status, answer, _ = harness.post("dvc.app", body)
    assert status == 200
    assert answer["accepted"] == 8
    assert answer["stored"] == 10
    assert [r["line"] for r in answer["rejected"]] == [4, 7]
    assert "not valid JSON at line 1 column" in answer["rejected"][0]["error"]
    assert "expected a JSON object, got a JSON array" in answer["rejected"][1]["error"]

    docs = harness.docs("dvc.app")
    assert len(docs) == 10
    failed = [d for d in docs if PARSE_FAILURE_TAG in d.get("tags", [])]
    assert sorted(d["event"]["original"] for d in failed) == sorted([lines[3], lines[6]])
    assert all(d["error"]["message"].startswith("jsonl: ") for d in failed)
    good = {d["event"]["original"]: d for d in docs if d not in failed}
    assert set(good) == {line for i, line in enumerate(lines, 1) if i not in BROKEN}
    for original, d in good.items():
        sent = json.loads(original)
        # Vietnamese text intact, end to end
        assert d["message"] == sent["msg"]
        assert d["user"]["name"] == sent["user"]
        assert d["source"]["ip"] == sent["client_ip"]
        assert d["json"]["ho_so"] == sent["ho_so"]
        assert d["hcm"]["source"] == "dvc-backend"
        assert d["hcm"]["department"] == "Sở Thông tin và Truyền thông"
        assert d["event"]["dataset"] == "dvc.app"
        assert d["log"]["source"]["address"].startswith("127.0.0.1:")
    assert any(d["message"].startswith("Nộp hồ sơ số 1: cấp giấy phép xây dựng — đã tiếp nhận") for d in docs)
    stats = harness.server.stats()
    assert stats["lines_rejected"] == 2
    assert stats["sources"]["dvc-backend"]["lines_stored"] == 10


def test_retried_batch_is_not_duplicated(harness: Harness) -> None:
    _, body = batch(10, BROKEN)
    first = harness.post("dvc.app", body)
    again = harness.post("dvc.app", body)
    assert first[0] == again[0] == 200
    assert first[1] == again[1]
    assert len(harness.docs("dvc.app")) == 10
    assert harness.writer.stats()["duplicates"] == 10

    # with X-Batch-Id the client names the batch: its retry is a no-op, another id is another batch
    _, body2 = batch(3, tag=" (lô 2)")
    assert harness.post("dvc.app", body2, X_Batch_Id="lo-2026-11-25-0002")[0] == 200
    assert harness.post("dvc.app", body2, X_Batch_Id="lo-2026-11-25-0002")[0] == 200
    assert len(harness.docs("dvc.app")) == 13
    assert harness.post("dvc.app", body2, X_Batch_Id="lo-2026-11-25-0003")[0] == 200
    assert len(harness.docs("dvc.app")) == 16
    status, answer, _ = harness.post("dvc.app", body2, X_Batch_Id="has a space")
    assert status == 400
    assert "X-Batch-Id" in answer["error"]


def test_gzip_body_and_crlf_lines(harness: Harness) -> None:
    lines, _ = batch(4)
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")  # CRLF and a trailing blank line
    status, answer, _ = harness.post("dvc.app", gzip.compress(raw), Content_Encoding="gzip")
    assert status == 200, answer
    assert answer == {
        "source": "dvc-backend",
        "dataset": "dvc.app",
        "accepted": 4,
        "stored": 4,
        "rejected": [],
        "rejected_count": 0,
    }
    assert sorted(d["event"]["original"] for d in harness.docs("dvc.app")) == sorted(lines)
    # a small gzip body that inflates beyond the limit
    status, answer, _ = harness.post("dvc.app", gzip.compress(b"{}\n" * 5000), Content_Encoding="gzip")
    assert status == 413


def test_health_counts_and_unknown_paths(harness: Harness) -> None:
    _, body = batch(10, BROKEN)
    harness.post("dvc.app", body)
    harness.post("dvc.app", body, token="wrong")
    status, health, _ = harness.request("GET", "/api/ingest/health")
    assert status == 200
    assert health["status"] == "ok"
    assert health["batches"] == 1
    assert health["lines_stored"] == 10
    assert health["lines_accepted"] == 8
    assert health["lines_rejected"] == 2
    assert health["unauthorized"] == 1
    assert health["sources"]["dvc-backend"]["datasets"] == ["dvc.app"]
    assert harness.request("GET", "/api/ingest/other")[0] == 404
    assert harness.request("POST", "/elsewhere", b"{}", {"Authorization": f"Bearer {DVC_TOKEN}"})[0] == 404


def test_tokens_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, es: Elasticsearch, installed: IndexNames
) -> None:
    monkeypatch.setenv("HCM_SOC_TEST_TOKEN_DVC", "from-the-environment-0123456789abcdef")
    monkeypatch.delenv("HCM_SOC_TEST_TOKEN_QA", raising=False)
    writer = BulkWriter(es, installed, flush_interval=None)
    server = HttpIngestServer(
        [DVC, QA],
        lambda d, ds: IngestPipeline.for_definition(writer, installed, d.model_copy(update={"dataset": ds})),
    )
    server.start()
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    try:
        h = Harness(server, writer, installed, es)
        _, body = batch(1)
        assert h.post("dvc.app", body, token="from-the-environment-0123456789abcdef")[0] == 200
        assert h.post("dvc.app", body, token=DVC_TOKEN)[0] == 401
        # a source whose variable is unset refuses everything, even an empty token
        assert h.post("qa_portal", body, token="")[0] == 401
    finally:
        stop.set()
        thread.join(timeout=10)
        writer.close()
    assert not thread.is_alive()


def test_storage_unavailable_is_503_and_safe_to_retry(installed: IndexNames) -> None:
    # a node that is not there (nothing listens on the port) and no spool: the batch cannot be
    # made durable, so the client must be told to retry rather than get a 200
    dead = make_client(load_settings(env={}), urls=[f"http://127.0.0.1:{free_port()}"])
    writer = BulkWriter(dead, installed, flush_interval=None, max_retries=0, sleep=lambda _: None)
    server = HttpIngestServer(
        [DVC],
        lambda d, ds: IngestPipeline.for_definition(writer, installed, DVC),
        tokens={"dvc-backend": DVC_TOKEN},
    )
    server.start()
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    try:
        h = Harness(server, writer, installed, dead)
        _, body = batch(3)
        status, answer, headers = h.post("dvc.app", body)
        assert status == 503
        assert "retry later" in answer["error"]
        assert headers["retry-after"] == "30"
        assert writer.stats()["buffered"] == 3  # kept in memory, same ids on the retry
        assert server.stats()["unavailable"] == 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
