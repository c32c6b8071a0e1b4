"""Alerts in `<prefix>-alerts`: created once (op_type=create on a deterministic id), fetched, searched.

A create that answers 409 means the alert already exists — a retried run or a second
engine raised it before. That is counted as a duplicate, never treated as an error. Any
other refusal raises `AlertWriteError`, so the engine keeps its checkpoint and retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from elastic_transport import TransportError
from elasticsearch import ApiError, NotFoundError

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.models.alert import Alert, AlertTriage
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

Refresh = Literal["true", "false", "wait_for"]


class AlertWriteError(HcmSocError):
    """Elasticsearch refused one or more alerts for a reason other than 'already exists'."""


@dataclass(frozen=True, slots=True)
class CreateResult:
    created: int
    duplicates: int
    created_ids: tuple[str, ...] = field(default=())


class AlertStore:
    def __init__(self, client: Elasticsearch, names: IndexNames) -> None:
        self.client = client
        self.names = names

    def create_many(self, alerts: Sequence[Alert], *, refresh: Refresh = "false") -> CreateResult:
        """Create every alert that does not exist yet; existing ones are counted as duplicates."""
        if not alerts:
            return CreateResult(0, 0)
        operations: list[dict[str, Any]] = []
        for alert in alerts:
            operations.append({"create": {"_index": self.names.alerts, "_id": alert.id}})
            operations.append(alert.to_document())
        try:
            resp = self.client.bulk(operations=operations, refresh=refresh)
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(
                f"could not write {len(alerts)} alert(s) to {self.names.alerts}: Elasticsearch did not answer ({e})"
            ) from e
        except ApiError as e:
            raise AlertWriteError(
                f"could not write {len(alerts)} alert(s) to {self.names.alerts}: {e.message}"
            ) from e
        created: list[str] = []
        duplicates = 0
        refused: list[str] = []
        for item in resp["items"]:
            res = item["create"]
            status = res.get("status", 0)
            if status in (200, 201):
                created.append(res["_id"])
            elif status == 409:
                duplicates += 1
            else:
                err = res.get("error") or {}
                refused.append(f"{res.get('_id')}: {err.get('type')}: {err.get('reason')}")
        if refused:
            raise AlertWriteError(
                f"{len(refused)} of {len(alerts)} alert(s) refused by {self.names.alerts} "
                f"(first: {refused[0]}); run `hcm-soc init` if the alerts mapping is outdated"
            )
        return CreateResult(len(created), duplicates, tuple(created))

    def get(self, alert_id: str) -> Alert | None:
        try:
            resp = self.client.get(index=self.names.alerts, id=alert_id)
        except NotFoundError:
            return None
        return Alert.from_document(resp["_id"], resp["_source"])

    def search(
        self,
        *,
        rule_id: str | None = None,
        status: str | None = None,
        query: dict[str, Any] | None = None,
        size: int = 100,
        newest_first: bool = True,
    ) -> list[Alert]:
        """Alerts matching the filters (all given filters must hold), newest first by default."""
        filters: list[dict[str, Any]] = []
        if rule_id is not None:
            filters.append({"term": {"rule.id": rule_id}})
        if status is not None:
            filters.append({"term": {"hcm.status": status}})
        if query is not None:
            filters.append(query)
        resp = self.client.search(
            index=self.names.alerts,
            query={"bool": {"filter": filters}} if filters else {"match_all": {}},
            size=size,
            sort=[{"@timestamp": "desc" if newest_first else "asc"}, {"hcm.match_key": "asc"}],
            ignore_unavailable=True,
        )
        return [Alert.from_document(h["_id"], h["_source"]) for h in resp["hits"]["hits"]]

    def untriaged(self, *, size: int = 500) -> list[Alert]:
        """Alerts the playbook runner has not handled yet (no `hcm.triage`), oldest first."""
        resp = self.client.search(
            index=self.names.alerts,
            query={"bool": {"must_not": [{"exists": {"field": "hcm.triage.outcome"}}]}},
            size=size,
            sort=[{"@timestamp": "asc"}, {"hcm.match_key": "asc"}],
            ignore_unavailable=True,
        )
        return [Alert.from_document(h["_id"], h["_source"]) for h in resp["hits"]["hits"]]

    def mark_triaged(self, alert_id: str, triage: AlertTriage, *, playbook: str | None) -> None:
        """Record what the playbook runner did with the alert (`hcm.triage`, `hcm.playbook`)."""
        hcm: dict[str, Any] = {"triage": triage.model_dump(mode="json", exclude_none=True)}
        if playbook is not None:
            hcm["playbook"] = playbook
        try:
            self.client.update(index=self.names.alerts, id=alert_id, doc={"hcm": hcm}, retry_on_conflict=5)
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(
                f"could not mark alert {alert_id} as triaged: Elasticsearch did not answer ({e})"
            ) from e

    def count(self, *, rule_id: str | None = None) -> int:
        query = {"term": {"rule.id": rule_id}} if rule_id is not None else {"match_all": {}}
        resp = self.client.count(index=self.names.alerts, query=query, ignore_unavailable=True)
        return int(resp["count"])

    def refresh(self) -> None:
        self.client.indices.refresh(index=self.names.alerts, ignore_unavailable=True)
