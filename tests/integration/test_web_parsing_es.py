"""nginx access lines -> IngestPipeline -> real Elasticsearch, then the queries Sigma web rules need.

Expected hits are computed from the raw lines with plain string tests (the oracle), never
from the parser's own output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from elasticsearch import Elasticsearch, helpers

from hcm_soc.collectors.base import RawRecord
from hcm_soc.collectors.pipeline import IngestPipeline
from hcm_soc.parsers.base import PARSE_FAILURE_TAG, ParseContext, SourceInfo
from hcm_soc.parsers.registry import get_parser
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.names import IndexNames
from tests.unit.parsers_web import DATA, sample_lines

pytestmark = pytest.mark.integration

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
SQLMAP = "sqlmap/1.8.3#stable (https://sqlmap.org)"
_STATUS = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "(?:[^"\\]|\\.)*" (\d{3}) ')


def generated(n: int) -> list[str]:
    """A busy minute of the portal: ordinary visits, sqlmap probes (encoded and '+'), IPv6 clients."""
    lines = []
    for i in range(n):
        status = (200, 301, 404, 403, 500, 200, 200, 304, 400, 200)[i % 10]
        client = f"2001:db8:4f1a::{i:x}" if i % 11 == 0 else f"10.{i % 7}.{i % 13}.{i % 250 + 1}"
        if i % 10 == 3:
            target, agent = f"/api/ho-so?id={i}%20UnIoN%20SeLeCt%20{i},user()--", SQLMAP
        elif i % 10 == 7:
            target, agent = f"/tim-kiem?q={i}+union+select+password+from+can_bo", SQLMAP
        else:
            target, agent = f"/thu-tuc/c%E1%BA%A5p-ph%C3%A9p/{i}", CHROME
        lines.append(
            f'{client} - - [25/Nov/2026:09:{i // 60 % 60:02d}:{i % 60:02d} +0700] "GET {target} HTTP/1.1" '
            f'{status} {i * 7} "https://dichvucong.hochiminhcity.gov.vn/" "{agent}"'
        )
    return lines


def request_of(line: str) -> str:
    m = re.search(r'\] "((?:[^"\\]|\\.)*)"', line)
    return m.group(1) if m else ""


def agent_of(line: str) -> str:
    quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', line)
    return quoted[2] if len(quoted) >= 3 else ""


@pytest.fixture
def stored(es: Elasticsearch, installed: IndexNames, tmp_path: Path) -> tuple[str, dict[int, str]]:
    """Write the sample and generated lines to a file, read it through the pipeline; index and {offset: line}."""
    path = tmp_path / "access.log"
    lines = sample_lines(DATA / "nginx_access.log") + generated(300)
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    spec = get_parser("nginx")
    source = SourceInfo(
        name="cong-dich-vu-cong-nginx",
        dataset="nginx.access",
        module=spec.module,
        tags=("internet-facing", "portal"),
        labels={"system": "cong-dich-vu-cong"},
    )
    index = installed.events("nginx.access")
    by_offset: dict[int, str] = {}
    with BulkWriter(es, installed, flush_interval=None) as writer:
        pipeline = IngestPipeline(writer, index, source, spec, ParseContext(dataset="nginx.access"))
        offset = 0
        with path.open("rb") as f:
            for raw in f:
                text = raw.rstrip(b"\n").decode("utf-8", errors="replace")
                by_offset[offset] = text
                pipeline.handle(
                    RawRecord(
                        data=text,
                        id_key=f"file:{path}:{offset}",
                        fields={"log": {"file": {"path": str(path)}, "offset": offset}},
                    )
                )
                offset += len(raw)
        pipeline.flush()
        assert pipeline.stats()["sent"] == len(lines)
    es.indices.refresh(index=index)
    return index, by_offset


def offsets(es: Elasticsearch, index: str, query: dict[str, Any]) -> set[int]:
    return {
        hit["_source"]["log"]["offset"]
        for hit in helpers.scan(es, index=index, query={"query": query, "_source": ["log.offset"]}, size=1000)
    }


def test_every_line_is_stored_and_bad_ones_are_tagged(
    es: Elasticsearch, stored: tuple[str, dict[int, str]]
) -> None:
    index, lines = stored
    assert es.count(index=index)["count"] == len(lines)
    failed = offsets(es, index, {"term": {"tags": PARSE_FAILURE_TAG}})
    assert failed == {o for o, line in lines.items() if _STATUS.match(line) is None or "/Foo/" in line}


def test_status_code_range(es: Elasticsearch, stored: tuple[str, dict[int, str]]) -> None:
    index, lines = stored
    got = offsets(es, index, {"range": {"http.response.status_code": {"gte": 400, "lt": 500}}})
    expected = {
        o
        for o, line in lines.items()
        if (m := _STATUS.match(line)) and 400 <= int(m.group(1)) < 500 and "/Foo/" not in line
    }
    assert got == expected
    assert len(expected) > 50


def test_union_select_in_the_url_as_logged(es: Elasticsearch, stored: tuple[str, dict[int, str]]) -> None:
    index, lines = stored
    got = offsets(es, index, {"wildcard": {"url.original.caseless": {"value": "*union*select*"}}})
    expected = {o for o, line in lines.items() if re.search("union.*select", request_of(line).lower())}
    assert got == expected
    assert len(expected) >= 62  # 60 generated + the sample's sqlmap probes


def test_decoded_query_finds_what_the_encoded_form_hides(
    es: Elasticsearch, stored: tuple[str, dict[int, str]]
) -> None:
    index, lines = stored
    decoded = offsets(
        es, index, {"wildcard": {"hcm.url.decoded.query.caseless": {"value": "*union select*"}}}
    )
    raw = offsets(es, index, {"wildcard": {"url.query.caseless": {"value": "*union select*"}}})
    expected = {
        o
        for o, line in lines.items()
        if "union select" in unquote_plus(request_of(line).partition("?")[2].rpartition(" HTTP/")[0]).lower()
    }
    assert decoded == expected
    assert raw == set()  # nobody sends a literal space: only the decoded field matches
    assert len(expected) >= 61


def test_scanner_user_agent(es: Elasticsearch, stored: tuple[str, dict[int, str]]) -> None:
    index, lines = stored
    got = offsets(es, index, {"wildcard": {"user_agent.original.caseless": {"value": "*sqlmap*"}}})
    expected = {o for o, line in lines.items() if "sqlmap" in agent_of(line).lower() and "/Foo/" not in line}
    assert got == expected
    nikto = offsets(es, index, {"wildcard": {"user_agent.original.caseless": {"value": "*nikto*"}}})
    assert nikto == {o for o, line in lines.items() if "Nikto" in agent_of(line)}


def test_vietnamese_path_timestamps_and_ipv6(es: Elasticsearch, stored: tuple[str, dict[int, str]]) -> None:
    index, lines = stored
    got = offsets(es, index, {"term": {"url.path": "/thu-tuc/đăng-ký-hộ-kinh-doanh"}})
    assert got == {o for o, line in lines.items() if r"\xC4\x91\xC4\x83ng-k\xC3\xBD" in line}
    got = offsets(es, index, {"term": {"url.path": "/tra-cứu-hồ-sơ"}})
    assert got == {o for o, line in lines.items() if "/tra-cứu-hồ-sơ" in line}
    # 08:15:xx in Ho Chi Minh City (+0700) is 01:15:xx UTC
    got = offsets(
        es, index, {"range": {"@timestamp": {"gte": "2026-11-25T01:15:00Z", "lt": "2026-11-25T01:16:00Z"}}}
    )
    assert got == {o for o, line in lines.items() if "[25/Nov/2026:08:15:" in line and line.endswith('"')}
    got = offsets(es, index, {"term": {"source.ip": "2001:db8:4f1a::/48"}})
    assert got == {o for o, line in lines.items() if line.startswith("2001:db8:4f1a:")}
    assert len(got) > 20
