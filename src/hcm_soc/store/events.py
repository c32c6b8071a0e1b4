"""Reading events back: counts per dataset and simple top-N summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch


class EventsRepository:
    def __init__(self, client: Elasticsearch, names: IndexNames) -> None:
        self.client = client
        self.names = names

    def refresh(self) -> None:
        self.client.indices.refresh(index=self.names.events_pattern, allow_no_indices=True)

    def count_by_dataset(self) -> dict[str, int]:
        resp = self.client.search(
            index=self.names.events_pattern,
            size=0,
            aggs={"ds": {"terms": {"field": "event.dataset", "size": 500}}},
            allow_no_indices=True,
            ignore_unavailable=True,
        )
        buckets = resp.get("aggregations", {}).get("ds", {}).get("buckets", [])
        return {b["key"]: b["doc_count"] for b in buckets}

    def top_values(self, field: str, query: dict[str, Any], size: int = 5) -> list[tuple[str, int]]:
        resp = self.client.search(
            index=self.names.events_pattern,
            size=0,
            query=query,
            aggs={"top": {"terms": {"field": field, "size": size}}},
            allow_no_indices=True,
        )
        return [(b["key"], b["doc_count"]) for b in resp["aggregations"]["top"]["buckets"]]

    def latest_ingested(self) -> str | None:
        resp = self.client.search(
            index=self.names.events_pattern,
            size=1,
            sort=[{"event.ingested": "desc"}],
            source_includes=["event.ingested"],
            allow_no_indices=True,
        )
        hits = resp["hits"]["hits"]
        return hits[0]["_source"]["event"]["ingested"] if hits else None
