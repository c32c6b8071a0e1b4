"""Elasticsearch goes away mid-stream and comes back: every event arrives exactly once, in order."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from elasticsearch import helpers

from hcm_soc.config import load_settings
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.client import make_client
from hcm_soc.store.localnode import LocalNode
from hcm_soc.store.names import IndexNames
from hcm_soc.store.spool import Spool
from hcm_soc.store.templates import build_items, install
from tests.conftest import free_port

pytestmark = pytest.mark.slow

SOURCES = ("fw-core", "web-portal", "auth-srv")


def _event(source: str, seq: int) -> dict[str, object]:
    return {
        "@timestamp": f"2026-11-25T02:{seq // 60 % 60:02d}:{seq % 60:02d}Z",
        "message": f"{source} message {seq}",
        "event": {"dataset": "syslog.outage", "sequence": seq},
        "hcm": {"source": source},
    }


def test_outage_spools_and_replays_exactly_once_in_order(tmp_path: Path) -> None:
    node = LocalNode(tmp_path / "node", port=free_port(), cluster_name="hcm-soc-outage", heap="512m")
    node.start(timeout=300)
    try:
        client = make_client(load_settings(env={}), urls=[node.url])
        names = IndexNames("outage", "test")
        install(client, build_items(names))
        index = names.events("syslog.outage")
        spool = Spool(tmp_path / "spool", 64 * 1024 * 1024)
        writer = BulkWriter(
            client, names, spool=spool, flush_interval=None, max_docs=100, max_retries=1, backoff_base=0.05
        )
        per_source = 400

        def write(lo: int, hi: int) -> None:
            for seq in range(lo, hi):
                for src in SOURCES:
                    writer.add(index, _event(src, seq), id_key=f"{src}:{seq}")

        write(0, 100)  # Elasticsearch up
        writer.flush()
        assert writer.stats()["sent"] == 300

        node.stop()
        assert node.health() is None
        write(100, 300)  # Elasticsearch down: everything goes to the spool
        writer.flush()
        down = writer.stats()
        assert down["spooled"] == 600
        assert down["sent"] == 300
        assert spool.pending_docs == 600

        node.start(timeout=300)
        write(300, per_source)  # back: the spool is replayed before these newer events
        writer.close()
        final = writer.stats()
        assert final["replayed"] == 600
        assert spool.empty
        assert final["dead_lettered"] == 0

        client.indices.refresh(index=index)
        hits = list(helpers.scan(client, index=index, size=5000))
        ids = [h["_id"] for h in hits]
        assert len(ids) == len(set(ids)) == per_source * len(SOURCES)
        by_source: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for h in hits:
            src = h["_source"]
            by_source[src["hcm"]["source"]].append((src["event"]["sequence"], src["event"]["ingested"]))
        for src in SOURCES:
            rows = sorted(by_source[src])
            assert [seq for seq, _ in rows] == list(range(per_source))
            ingested = [ts for _, ts in rows]
            assert ingested == sorted(ingested), f"{src}: events arrived out of order"
    finally:
        node.stop()
