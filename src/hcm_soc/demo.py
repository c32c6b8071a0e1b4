"""The demo of the pipeline so far: local Elasticsearch, templates, a bundled sample of
city events written through the bulk writer, and a read-back summary.

Later issues extend it (collectors, detection, playbooks) stage by stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson

from hcm_soc.config import Settings

Progress = Callable[[str], None]


@dataclass
class DemoReport:
    es_url: str = ""
    es_version: str = ""
    templates_written: int = 0
    templates_current: int = 0
    events_in_sample: int = 0
    writer: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    ssh_failures_by_source: list[tuple[str, int]] = field(default_factory=list)
    web_attack_sources: list[tuple[str, int]] = field(default_factory=list)
    latest_ingested: str | None = None


def load_sample(now: datetime | None = None) -> list[dict[str, Any]]:
    """The bundled sample, shifted so that its newest event happened `now`."""
    text = resources.files("hcm_soc.data").joinpath("demo-events.jsonl").read_text("utf-8")
    events = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    stamps = [datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00")) for e in events]
    shift = (now or datetime.now(UTC)) - max(stamps)
    for e, ts in zip(events, stamps, strict=True):
        e["@timestamp"] = (ts + shift).isoformat().replace("+00:00", "Z")
    return events


def run_demo(settings: Settings, progress: Progress) -> DemoReport:
    from hcm_soc.store.bulk import BulkWriter
    from hcm_soc.store.client import make_client, ping
    from hcm_soc.store.events import EventsRepository
    from hcm_soc.store.localnode import local_node_from_settings
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.templates import build_items, install

    report = DemoReport()
    if settings.uses_local_node:
        node = local_node_from_settings(settings)
        progress(f"[1/4] starting the local Elasticsearch node at {node.url} (data in {node.base_dir})")
        node.start(timeout=settings.local_es.start_timeout)
    else:
        progress(f"[1/4] using the cluster at {', '.join(settings.es.url)} (HCM_SOC_ES_URL)")
    client = make_client(settings)
    info = ping(client)
    report.es_url = ", ".join(settings.es.url) or local_node_from_settings(settings).url
    report.es_version = str(info.get("version", {}).get("number"))

    names = IndexNames.from_settings(settings)
    progress("[2/4] installing index templates, the ingest pipeline and indices")
    results = install(
        client, build_items(names, shards=settings.index.shards, replicas=settings.index.replicas)
    )
    report.templates_written = sum(r.action in ("created", "updated") for r in results)
    report.templates_current = len(results) - report.templates_written

    events = load_sample()
    report.events_in_sample = len(events)
    progress(f"[3/4] writing {len(events)} sample events of city systems through the bulk writer")
    with BulkWriter.from_settings(client, settings, flush_interval=None) as writer:
        for n, event in enumerate(events, 1):
            writer.add(names.events(event["event"]["dataset"]), event, id_key=f"demo-sample:{n}")
    report.writer = writer.stats()

    progress("[4/4] reading back what Elasticsearch stored")
    repo = EventsRepository(client, names)
    repo.refresh()
    report.counts = repo.count_by_dataset()
    report.ssh_failures_by_source = repo.top_values(
        "source.ip",
        {
            "bool": {
                "filter": [{"term": {"event.dataset": "system.auth"}}, {"term": {"event.outcome": "failure"}}]
            }
        },
    )
    report.web_attack_sources = repo.top_values(
        "source.ip",
        {
            "bool": {
                "filter": [
                    {"term": {"event.dataset": "nginx.access"}},
                    {"wildcard": {"user_agent.original.caseless": {"value": "*sqlmap*"}}},
                ]
            }
        },
    )
    report.latest_ingested = repo.latest_ingested()
    return report
