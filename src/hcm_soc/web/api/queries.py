"""Read-only views the console and the API need beyond the repositories' own methods: a page of
alerts with its total, the stored events behind an alert, and counts for health and metrics.

Index names come from `IndexNames` (store); nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from elastic_transport import TransportError

from hcm_soc.errors import DependencyUnavailable
from hcm_soc.models.alert import Alert
from hcm_soc.notify.model import Notice

if TYPE_CHECKING:
    from hcm_soc.web.services import WebServices

#: Elasticsearch's default index.max_result_window: from + size may not go beyond it
MAX_WINDOW = 10_000


def alert_out(alert: Alert) -> dict[str, Any]:
    return {"id": alert.id, **alert.to_document()}


def search_alerts(
    services: WebServices,
    *,
    rule_id: str | None = None,
    status: str | None = None,
    incident: str | None = None,
    incidents: Sequence[str] | None = None,
    since: datetime | None = None,
    page: int = 1,
    size: int = 50,
) -> tuple[list[Alert], int]:
    """A page of alerts, newest first, and how many match. `incidents` limits them to alerts linked
    to those incidents (an owner's view)."""
    filters: list[dict[str, Any]] = []
    if rule_id:
        filters.append({"term": {"rule.id": rule_id}})
    if status:
        filters.append({"term": {"hcm.status": status}})
    if incident:
        filters.append({"term": {"hcm.incident": incident}})
    if incidents is not None:
        filters.append({"terms": {"hcm.incident": list(incidents)}})
    if since is not None:
        filters.append({"range": {"@timestamp": {"gte": since.isoformat()}}})
    try:
        resp = services.client.search(
            index=services.names.alerts,
            query={"bool": {"filter": filters}},
            sort=[{"@timestamp": "desc"}, {"hcm.match_key": "asc"}],
            from_=(page - 1) * size,
            size=size,
            track_total_hits=True,
            ignore_unavailable=True,
        )
    except (TransportError, OSError) as e:
        raise DependencyUnavailable(f"could not search alerts in {services.names.alerts}: {e}") from e
    hits = resp["hits"]["hits"]
    return [Alert.from_document(h["_id"], h["_source"]) for h in hits], int(resp["hits"]["total"]["value"])


def alert_events(services: WebServices, alert: Alert) -> list[dict[str, Any]]:
    """The stored events an alert refers to, in the alert's order, each with `found` (an event may
    have been deleted by retention since)."""
    refs = alert.hcm.events
    if not refs:
        return []
    try:
        resp = services.client.mget(docs=[{"_index": r.index, "_id": r.id} for r in refs])
    except (TransportError, OSError) as e:
        raise DependencyUnavailable(f"could not read the events of alert {alert.id}: {e}") from e
    out: list[dict[str, Any]] = []
    for ref, doc in zip(refs, resp["docs"], strict=True):
        found = bool(doc.get("found"))
        out.append(
            {
                "_index": ref.index,
                "_id": ref.id,
                "found": found,
                "_source": doc.get("_source") if found else None,
            }
        )
    return out


def notices_for_incident(services: WebServices, incident_id: str, *, limit: int = 1000) -> list[Notice]:
    """Every notice of an incident, oldest first.

    Not `NoticeStore.list_for_incident`: its tie-break sort on `id` fails (400) while the notices
    index has no document yet, since the template does not map `id` (reported to the lead); the
    `unmapped_type` here keeps an empty outbox an empty list."""
    try:
        resp = services.client.search(
            index=services.names.notices,
            query={"term": {"incident_id": incident_id}},
            sort=[{"created": "asc"}, {"id": {"order": "asc", "unmapped_type": "keyword"}}],
            size=limit,
            ignore_unavailable=True,
        )
    except (TransportError, OSError) as e:
        raise DependencyUnavailable(f"could not read the notices of {incident_id}: {e}") from e
    out: list[Notice] = []
    for hit in resp["hits"]["hits"]:
        out.append(Notice.model_validate({k: v for k, v in hit["_source"].items() if k != "@timestamp"}))
    return out


def _terms(services: WebServices, index: str, field: str, query: dict[str, Any]) -> dict[str, int]:
    try:
        resp = services.client.search(
            index=index,
            size=0,
            query=query,
            aggs={"by": {"terms": {"field": field, "size": 100, "missing": "none"}}},
            ignore_unavailable=True,
            allow_no_indices=True,
        )
    except (TransportError, OSError) as e:
        raise DependencyUnavailable(f"could not count documents in {index}: {e}") from e
    buckets = resp.get("aggregations", {}).get("by", {}).get("buckets", [])
    return {str(b["key"]): int(b["doc_count"]) for b in buckets}


def open_incidents_by_priority(services: WebServices) -> dict[str, int]:
    from hcm_soc.incidents.lifecycle import OPEN

    return _terms(services, services.names.incidents, "priority", {"terms": {"status": list(OPEN)}})


def alerts_by_level(services: WebServices, since: datetime) -> dict[str, int]:
    query = {"range": {"@timestamp": {"gte": since.isoformat()}}}
    return _terms(services, services.names.alerts, "hcm.rule.level", query)


def notices_by_status(services: WebServices) -> dict[str, int]:
    return _terms(services, services.names.notices, "status", {"match_all": {}})


def events_by_dataset(services: WebServices) -> dict[str, int]:
    from hcm_soc.store.events import EventsRepository

    try:
        return EventsRepository(services.client, services.names).count_by_dataset()
    except (TransportError, OSError) as e:
        raise DependencyUnavailable(f"could not count events: {e}") from e
