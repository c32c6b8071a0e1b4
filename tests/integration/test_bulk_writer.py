"""The bulk writer against a real node: volume, exact ids, dead letters, idempotence, ingest time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from elasticsearch import Elasticsearch, helpers

from hcm_soc.store.bulk import BulkWriter, make_id
from hcm_soc.store.names import IndexNames
from hcm_soc.store.spool import Spool


def _event(i: int, dataset: str = "syslog.test") -> dict[str, object]:
    return {
        "@timestamp": (datetime(2026, 11, 25, tzinfo=UTC) + timedelta(milliseconds=i)).isoformat(),
        "message": f"sshd[{1000 + i % 50}]: Failed password for user{i % 97} from 10.1.{i % 250}.{i % 200} port 22",
        "event": {"dataset": dataset, "sequence": i},
        "host": {"name": f"host-{i % 20}"},
        "source": {"ip": f"10.1.{i % 250}.{i % 200}"},
    }


def _count(es: Elasticsearch, index: str) -> int:
    es.indices.refresh(index=index)
    return int(es.count(index=index)["count"])


def test_hundred_thousand_events_land_with_exact_ids(es: Elasticsearch, installed: IndexNames) -> None:
    index = installed.events("syslog.test")
    n = 100_000
    with BulkWriter(es, installed, flush_interval=None) as writer:
        expected = {writer.add(index, _event(i), id_key=f"file:/var/log/auth.log:{i}") for i in range(n)}
    stats = writer.stats()
    assert stats["sent"] == n
    assert stats["duplicates"] == stats["dead_lettered"] == stats["spooled"] == 0
    assert len(expected) == n
    assert _count(es, index) == n
    stored = {hit["_id"] for hit in helpers.scan(es, index=index, query={"_source": False}, size=5000)}
    assert stored == expected
    assert make_id("file:/var/log/auth.log:41") in stored


def test_replay_of_the_same_events_writes_nothing_new(es: Elasticsearch, installed: IndexNames) -> None:
    index = installed.events("syslog.test")
    events = [_event(i) for i in range(300)]
    with BulkWriter(es, installed, flush_interval=None, max_docs=100) as first:
        for i, e in enumerate(events):
            first.add(index, e, id_key=f"src:{i}")
    with BulkWriter(es, installed, flush_interval=None, max_docs=100) as again:
        for i, e in enumerate(events):
            again.add(index, e, id_key=f"src:{i}")
        # without an id key the id is the content hash: also stable
        again.add(index, {"@timestamp": "2026-11-25T00:00:00Z", "message": "same"})
        again.add(index, {"@timestamp": "2026-11-25T00:00:00Z", "message": "same"})
    assert first.stats()["sent"] == 300
    assert again.stats()["sent"] == 1
    assert again.stats()["duplicates"] == 301
    assert _count(es, index) == 301


def test_documents_violating_the_mapping_go_to_the_dead_letter_stream(
    es: Elasticsearch, installed: IndexNames
) -> None:
    index = installed.events("web.test")
    good = [_event(i, "web.test") for i in range(10)]
    bad = [
        {**_event(100, "web.test"), "source": {"ip": "not-an-ip"}},
        {**_event(101, "web.test"), "event": {"dataset": "web.test", "severity": "very high"}},
        {**_event(102, "web.test"), "@timestamp": "yesterday-ish"},
    ]
    batch = good[:5] + bad + good[5:]
    with BulkWriter(es, installed, flush_interval=None) as writer:
        ids = [writer.add(index, doc) for doc in batch]
    stats = writer.stats()
    assert stats["sent"] == 10
    assert stats["dead_lettered"] == 3
    assert _count(es, index) == 10

    dl = installed.deadletter
    es.indices.refresh(index=dl)
    letters = {h["_id"]: h["_source"] for h in helpers.scan(es, index=dl)}
    bad_ids = ids[5:8]
    assert set(letters) == set(bad_ids)
    for doc, doc_id in zip(bad, bad_ids, strict=True):
        letter = letters[doc_id]
        assert orjson.loads(letter["event"]["original"]) == doc
        assert letter["hcm"]["target_index"] == index
        assert letter["error"]["status"] == 400
        assert letter["error"]["type"] in ("document_parsing_exception", "mapper_parsing_exception")
        assert letter["error"]["message"]
    assert "not-an-ip" in letters[bad_ids[0]]["error"]["message"]

    # the same batch again: nothing new anywhere
    with BulkWriter(es, installed, flush_interval=None) as again:
        for doc in batch:
            again.add(index, doc)
    assert _count(es, index) == 10
    assert _count(es, dl) == 3


def test_event_ingested_is_set_by_elasticsearch(es: Elasticsearch, installed: IndexNames) -> None:
    index = installed.events("syslog.test")
    before = datetime.now(UTC) - timedelta(seconds=5)
    forged = {**_event(1), "event": {"dataset": "syslog.test", "ingested": "1999-01-01T00:00:00Z"}}
    with BulkWriter(es, installed, flush_interval=None) as writer:
        doc_id = writer.add(index, forged)
    es.indices.refresh(index=index)
    src = es.search(index=index, query={"ids": {"values": [doc_id]}})["hits"]["hits"][0]["_source"]
    ingested = datetime.fromisoformat(src["event"]["ingested"].replace("Z", "+00:00"))
    assert before <= ingested <= datetime.now(UTC) + timedelta(seconds=5)


def test_strings_match_case_insensitively_on_caseless(es: Elasticsearch, installed: IndexNames) -> None:
    index = installed.events("win.test")
    doc = {
        "@timestamp": "2026-11-25T01:02:03Z",
        "process": {
            "command_line": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\PowerShell.EXE -EncodedCommand SQBFAFgA"
        },
        "winlog": {"event_data": {"TargetUserName": "Administrator"}},
        "event": {"dataset": "win.test"},
    }
    with BulkWriter(es, installed, flush_interval=None) as writer:
        writer.add(index, doc)
    es.indices.refresh(index=index)
    hits = es.count(
        index=index,
        query={
            "bool": {
                "filter": [
                    {"wildcard": {"process.command_line.caseless": "*powershell.exe -encodedcommand*"}},
                    {"term": {"winlog.event_data.TargetUserName.caseless": "administrator"}},
                ]
            }
        },
    )["count"]
    assert hits == 1


def test_unreachable_cluster_spools_then_replays_in_order(
    es: Elasticsearch, installed: IndexNames, tmp_path: Path
) -> None:
    """A writer pointed at a closed loopback port spools; a writer on the real node replays."""
    from hcm_soc.config import load_settings
    from hcm_soc.store.client import make_client
    from tests.conftest import free_port

    dead = make_client(load_settings(env={}), urls=[f"http://127.0.0.1:{free_port()}"])
    index = installed.events("syslog.test")
    spool = Spool(tmp_path / "spool", 50 * 1024 * 1024)
    with BulkWriter(
        dead, installed, spool=spool, flush_interval=None, max_docs=50, max_retries=1, backoff_base=0.01
    ) as down:
        for i in range(200):
            down.add(index, _event(i), id_key=f"s:{i}")
    assert down.stats()["spooled"] == 200
    assert down.stats()["sent"] == 0
    assert len(spool) == 4

    reopened = Spool(tmp_path / "spool", 50 * 1024 * 1024)  # as after a restart of the process
    assert reopened.pending_docs == 200
    with BulkWriter(es, installed, spool=reopened, flush_interval=None) as up:
        assert up.replay()
    assert up.stats()["replayed"] == 200
    assert reopened.empty
    assert _count(es, index) == 200


def test_full_spool_pushes_back_and_keeps_the_batch(installed: IndexNames, tmp_path: Path) -> None:
    """With Elasticsearch down and the spool full, the caller gets SpoolFullError and no event is lost."""
    import pytest

    from hcm_soc.config import load_settings
    from hcm_soc.errors import SpoolFullError
    from hcm_soc.store.client import make_client
    from tests.conftest import free_port

    dead = make_client(load_settings(env={}), urls=[f"http://127.0.0.1:{free_port()}"])
    spool = Spool(tmp_path / "spool", 30_000)
    writer = BulkWriter(dead, installed, spool=spool, flush_interval=None, max_docs=50, max_retries=0)
    index = installed.events("syslog.test")
    with pytest.raises(SpoolFullError, match="spool_max_bytes=30000"):
        for i in range(1000):
            writer.add(index, _event(i), id_key=f"s:{i}")
        writer.flush()
    assert not writer.replay()  # waits for the sender; Elasticsearch is still down
    stats = writer.stats()
    assert stats["spooled"] == spool.pending_docs > 0
    assert stats["spooled"] + stats["buffered"] == stats["added"]
