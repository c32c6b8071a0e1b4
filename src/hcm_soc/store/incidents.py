"""Incidents in Elasticsearch: the incident documents, their human ids, and the alert → incident link.

Everything here is optimistic concurrency on plain documents (no scripts, which a hardened
cluster may disable):

- `<prefix>-incidents`, `_id` = the incident id: created with op_type=create, replaced with
  if_seq_no/if_primary_term (`StaleIncident` when someone wrote in between).
- `<prefix>-state` `incident-seq:<year>`: the per-year counter behind `INC-<year>-<6 digits>`,
  read and rewritten conditionally, retried on conflict.
- `<prefix>-state` `incident-alloc:<alert id>`: create-only, the incident id allocated for a
  first alert, so that a crash between allocating and creating, or a re-run, reuses that id.
- `<prefix>-alerts` `hcm.incident`: set once, conditionally, so that an alert joins at most one
  incident.

Only `hcm_soc.incidents.service` should call this; it is the one writer of incident state.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, NotFoundError

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.models.incident import Incident, IncidentConflict, IncidentNotFound, IncidentPage
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

Refresh = Literal["true", "false", "wait_for"]
SortKey = Literal["priority", "created", "updated"]

#: attempts of a conditional read-rewrite (counter, alert claim) before giving up
MAX_ATTEMPTS = 100
_SCAN_PAGE = 500


class IncidentStoreError(HcmSocError):
    """Elasticsearch refused an incident read or write for a reason other than a conflict."""


class StaleIncident(IncidentConflict):
    """The conditional write lost: the document changed since it was read."""


@contextmanager
def _es(what: str) -> Iterator[None]:
    try:
        yield
    except (ConflictError, NotFoundError):
        raise
    except ApiError as e:
        raise IncidentStoreError(
            f"{what}: Elasticsearch refused it ({e.message}); run `hcm-soc init` if the mappings are outdated"
        ) from e
    except (TransportError, OSError) as e:
        raise DependencyUnavailable(f"{what}: Elasticsearch did not answer ({e})") from e


def backoff(attempt: int) -> None:
    """A short random pause before retrying a lost conditional write, so racers spread out."""
    time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))


class IncidentStore:
    def __init__(self, client: Elasticsearch, names: IndexNames, *, refresh: Refresh = "false") -> None:
        self.client = client
        self.names = names
        self.refresh_policy = refresh

    # -- incident documents ------------------------------------------------------------------------
    def find(self, incident_id: str) -> Incident | None:
        with _es(f"reading incident {incident_id} from {self.names.incidents}"):
            try:
                resp = self.client.get(index=self.names.incidents, id=incident_id)
            except NotFoundError:
                return None
        return Incident.from_hit(dict(resp))

    def get(self, incident_id: str) -> Incident:
        found = self.find(incident_id)
        if found is None:
            raise IncidentNotFound(
                f"{incident_id}: no such incident in {self.names.incidents} "
                "(list them with `hcm-soc incidents list --all`)"
            )
        return found

    def create(self, incident: Incident) -> bool:
        """Create the document; False when an incident with that id exists already. Refreshed at once
        so that the next alert of the same group finds it by search."""
        with _es(f"creating incident {incident.id} in {self.names.incidents}"):
            try:
                self.client.index(
                    index=self.names.incidents,
                    id=incident.id,
                    document=incident.to_document(),
                    op_type="create",
                    refresh="true",
                )
            except ConflictError:
                return False
        return True

    def replace(self, incident: Incident, *, seq_no: int, primary_term: int) -> Incident:
        """Write `incident` if the stored one is still at (seq_no, primary_term); StaleIncident if not."""
        with _es(f"updating incident {incident.id} in {self.names.incidents}"):
            try:
                resp = self.client.index(
                    index=self.names.incidents,
                    id=incident.id,
                    document=incident.to_document(),
                    if_seq_no=seq_no,
                    if_primary_term=primary_term,
                    refresh=self.refresh_policy,
                )
            except (ConflictError, NotFoundError) as e:
                raise StaleIncident(
                    f"{incident.id}: changed by someone else while it was being updated; reload and retry"
                ) from e
        return incident.model_copy(update={"seq_no": resp["_seq_no"], "primary_term": resp["_primary_term"]})

    def refresh(self) -> None:
        self.client.indices.refresh(index=self.names.incidents, ignore_unavailable=True)

    # -- search ------------------------------------------------------------------------------------
    @staticmethod
    def build_query(
        *,
        status: str | Sequence[str] | None = None,
        priority: str | Sequence[str] | None = None,
        assignee: str | None = None,
        department: str | Sequence[str] | None = None,
        sector: str | None = None,
        rule_id: str | None = None,
        query: str | None = None,
    ) -> dict[str, Any]:
        filters: list[dict[str, Any]] = []
        for field, value in (
            ("status", status),
            ("priority", priority),
            ("assignee", assignee),
            ("assets.department", department),
            ("assets.sector", sector),
            ("rule_ids", rule_id),
        ):
            if value is None:
                continue
            values = [value] if isinstance(value, str) else list(value)
            filters.append({"terms": {field: values}})
        must: list[dict[str, Any]] = []
        if query:
            must.append(
                {
                    "simple_query_string": {
                        "query": query,
                        "fields": [
                            "id",
                            "title",
                            "description",
                            "comments.text",
                            "tags",
                            "assets.name",
                            "entities.*",
                        ],
                        "default_operator": "and",
                        "lenient": True,
                    }
                }
            )
        return {"bool": {"filter": filters, "must": must}}

    @staticmethod
    def sort_clause(sort: SortKey) -> list[dict[str, Any]]:
        if sort == "priority":
            # P1 < P2 < … as keywords; the one whose acknowledgement is due first comes first
            return [
                {"priority": "asc"},
                {"sla.acknowledge_by": {"order": "asc", "missing": "_last"}},
                {"created": "desc"},
                {"id": "asc"},
            ]
        if sort in ("created", "updated"):
            return [{sort: "desc"}, {"id": "asc"}]
        raise IncidentStoreError(f"unknown sort {sort!r}; expected one of: priority, created, updated")

    def search(
        self, query: dict[str, Any], *, sort: SortKey = "priority", page: int = 1, size: int = 50
    ) -> IncidentPage:
        if page < 1 or size < 1:
            raise IncidentStoreError(f"page {page} / size {size}: both must be 1 or more")
        with _es(f"searching {self.names.incidents}"):
            resp = self.client.search(
                index=self.names.incidents,
                query=query,
                sort=self.sort_clause(sort),
                from_=(page - 1) * size,
                size=size,
                track_total_hits=True,
                seq_no_primary_term=True,
                ignore_unavailable=True,
            )
        items = [Incident.from_hit(h) for h in resp["hits"]["hits"]]
        return IncidentPage(items=items, total=int(resp["hits"]["total"]["value"]))

    def scan(self, query: dict[str, Any], *, sort: SortKey = "created") -> list[Incident]:
        """Every incident matching `query` (paged with search_after, not capped at 10,000)."""
        out: list[Incident] = []
        after: list[Any] | None = None
        while True:
            kwargs: dict[str, Any] = {"search_after": after} if after is not None else {}
            with _es(f"searching {self.names.incidents}"):
                resp = self.client.search(
                    index=self.names.incidents,
                    query=query,
                    sort=self.sort_clause(sort),
                    size=_SCAN_PAGE,
                    seq_no_primary_term=True,
                    ignore_unavailable=True,
                    **kwargs,
                )
            hits = resp["hits"]["hits"]
            out.extend(Incident.from_hit(h) for h in hits)
            if len(hits) < _SCAN_PAGE:
                return out
            after = hits[-1]["sort"]

    # -- ids -----------------------------------------------------------------------------------------
    def next_number(self, year: int, *, now: datetime) -> int:
        """The next number of `year`'s counter (1 for the first incident of the year)."""
        doc_id = f"incident-seq:{year}"
        what = f"allocating an incident number ({self.names.state} {doc_id})"
        for attempt in range(MAX_ATTEMPTS):
            with _es(what):
                try:
                    resp = self.client.get(index=self.names.state, id=doc_id)
                except NotFoundError:
                    resp = None
                value = 1 if resp is None else int(resp["_source"]["counter"]["value"]) + 1
                doc = {
                    "@timestamp": now.isoformat(),
                    "type": "incident-seq",
                    "updated": now.isoformat(),
                    "counter": {"name": doc_id, "value": value},
                }
                try:
                    if resp is None:
                        self.client.index(index=self.names.state, id=doc_id, document=doc, op_type="create")
                    else:
                        self.client.index(
                            index=self.names.state,
                            id=doc_id,
                            document=doc,
                            if_seq_no=resp["_seq_no"],
                            if_primary_term=resp["_primary_term"],
                        )
                except ConflictError:
                    backoff(attempt)
                    continue
            return value
        raise IncidentConflict(f"{what}: still contended after {MAX_ATTEMPTS} attempts; retry")

    def allocation(self, alert_id: str) -> str | None:
        """The incident id allocated for `alert_id` as a first alert, if any."""
        with _es(f"reading the incident allocation of alert {alert_id}"):
            try:
                resp = self.client.get(index=self.names.state, id=f"incident-alloc:{alert_id}")
            except NotFoundError:
                return None
        return str(resp["_source"]["allocation"]["incident"])

    def allocate(self, alert_id: str, incident_id: str, *, now: datetime) -> str:
        """Record `incident_id` for the first alert `alert_id` unless one is recorded; return the one
        that holds (ours, or the one a concurrent runner recorded first)."""
        doc_id = f"incident-alloc:{alert_id}"
        with _es(f"recording the incident allocation of alert {alert_id}"):
            try:
                self.client.index(
                    index=self.names.state,
                    id=doc_id,
                    document={
                        "@timestamp": now.isoformat(),
                        "type": "incident-alloc",
                        "updated": now.isoformat(),
                        "allocation": {"alert": alert_id, "incident": incident_id},
                    },
                    op_type="create",
                )
                return incident_id
            except ConflictError:
                pass
        holder = self.allocation(alert_id)
        assert holder is not None  # a create conflict means the document exists
        return holder

    # -- alert links -----------------------------------------------------------------------------------
    def alert_owner(self, alert_id: str) -> str | None:
        """The incident the alert is linked to (None: not linked). IncidentNotFound if no such alert."""
        return self._read_alert(alert_id)[0]

    def _read_alert(self, alert_id: str) -> tuple[str | None, int, int]:
        with _es(f"reading alert {alert_id} from {self.names.alerts}"):
            try:
                resp = self.client.get(index=self.names.alerts, id=alert_id, source_includes=["hcm.incident"])
            except NotFoundError as e:
                raise IncidentNotFound(
                    f"alert {alert_id} is not stored in {self.names.alerts}; an incident links stored alerts only"
                ) from e
        owner = (resp["_source"].get("hcm") or {}).get("incident")
        return (str(owner) if owner else None), resp["_seq_no"], resp["_primary_term"]

    def claim_alert(self, alert_id: str, incident_id: str) -> tuple[str, bool]:
        """Set the alert's `hcm.incident` to `incident_id` unless it is set. Returns the incident the
        alert belongs to afterwards and whether this call set it."""
        for attempt in range(MAX_ATTEMPTS):
            owner, seq_no, term = self._read_alert(alert_id)
            if owner is not None:
                return owner, False
            with _es(f"linking alert {alert_id} to {incident_id}"):
                try:
                    self.client.update(
                        index=self.names.alerts,
                        id=alert_id,
                        doc={"hcm": {"incident": incident_id}},
                        if_seq_no=seq_no,
                        if_primary_term=term,
                    )
                except ConflictError:
                    backoff(attempt)
                    continue
            return incident_id, True
        raise IncidentConflict(
            f"linking alert {alert_id} to {incident_id}: the alert kept changing ({MAX_ATTEMPTS} attempts); retry"
        )
