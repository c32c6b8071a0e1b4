"""The notice outbox in `<prefix>-notices`: one document per notice (`_id` = the notice id).

A notice is created once (op_type=create: a playbook re-run finds it and adds nothing) and then
changed only by conditional writes on the `_seq_no`/`_primary_term` last read. That is what lets
several outbox workers share the index: to send a notice a worker first claims it (status
`sending`, attempts + 1, `next_attempt` = the end of its claim); of two workers that read the
same due notice exactly one claim succeeds. A claim that lapses (the worker died mid-send) makes
the notice due again.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, NotFoundError

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.notify.model import Notice
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

_DUE_STATUSES = ["pending", "sending"]


class NoticeConflict(HcmSocError):
    """The notice changed since it was read (another outbox worker took it); nothing was written."""


class NoticeStoreError(HcmSocError):
    """Elasticsearch refused to read or write a notice."""


def _reason(e: ApiError) -> str:
    """Elasticsearch's own explanation (the root cause), not only the error type."""
    body = e.body if isinstance(e.body, dict) else {}
    causes = (body.get("error") or {}).get("root_cause") or []
    if causes and isinstance(causes[0], dict):
        return f"{causes[0].get('type')}: {causes[0].get('reason')}"
    return str(e.message)


def _to_doc(notice: Notice) -> dict[str, Any]:
    doc = notice.model_dump(mode="json")
    doc["@timestamp"] = doc["created"]
    return doc


def _from_hit(hit: dict[str, Any]) -> Notice:
    src = {k: v for k, v in hit["_source"].items() if k != "@timestamp"}
    return Notice.model_validate(
        {**src, "seq_no": hit.get("_seq_no"), "primary_term": hit.get("_primary_term")}
    )


class NoticeStore:
    def __init__(self, client: Elasticsearch, names: IndexNames) -> None:
        self.client = client
        self.names = names

    @property
    def index(self) -> str:
        return self.names.notices

    def create(self, notice: Notice, *, refresh: bool = False) -> bool:
        """Store a new notice; False (and nothing changed) when one with its id exists already."""
        try:
            self.client.index(
                index=self.index,
                id=notice.id,
                document=_to_doc(notice),
                op_type="create",
                refresh="wait_for" if refresh else "false",
            )
        except ConflictError:
            return False
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not queue notice {notice.id} in {self.index}: {e}") from e
        except ApiError as e:
            raise NoticeStoreError(
                f"could not queue notice {notice.id} in {self.index}: {_reason(e)}; "
                "run `hcm-soc init` if the notices mapping is outdated"
            ) from e
        return True

    def get(self, notice_id: str) -> Notice | None:
        try:
            resp = self.client.get(index=self.index, id=notice_id)
        except NotFoundError:
            return None
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not read notice {notice_id} from {self.index}: {e}") from e
        return _from_hit(dict(resp))

    def _search(self, query: dict[str, Any], sort: list[Any], size: int) -> list[Notice]:
        try:
            resp = self.client.search(
                index=self.index,
                query=query,
                sort=sort,
                size=size,
                seq_no_primary_term=True,
                ignore_unavailable=True,
            )
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not search notices in {self.index}: {e}") from e
        except ApiError as e:
            raise NoticeStoreError(f"could not search notices in {self.index}: {_reason(e)}") from e
        return [_from_hit(h) for h in resp["hits"]["hits"]]

    def due(self, now: datetime, limit: int = 100) -> list[Notice]:
        """Notices to attempt at `now`, oldest due first: pending ones whose time has come and
        `sending` ones whose claim lapsed."""
        return self._search(
            {
                "bool": {
                    "filter": [
                        {"terms": {"status": _DUE_STATUSES}},
                        {"range": {"next_attempt": {"lte": now.isoformat()}}},
                    ]
                }
            },
            [{"next_attempt": "asc"}, {"created": "asc"}],
            limit,
        )

    def list_for_incident(self, incident_id: str, *, limit: int = 1000) -> list[Notice]:
        """Every notice of an incident, oldest first (for the console and `incidents show`)."""
        return self._search(
            {"term": {"incident_id": incident_id}}, [{"created": "asc"}, {"id": "asc"}], limit
        )

    def list(
        self, *, incident_id: str | None = None, status: str | None = None, size: int = 200
    ) -> list[Notice]:
        """Notices, newest first, optionally of one incident and/or in one status."""
        filters: list[dict[str, Any]] = []
        if incident_id:
            filters.append({"term": {"incident_id": incident_id}})
        if status:
            filters.append({"term": {"status": status}})
        return self._search({"bool": {"filter": filters}}, [{"created": "desc"}, {"id": "asc"}], size)

    def _replace(self, notice: Notice, *, refresh: bool = False) -> Notice:
        if notice.seq_no is None or notice.primary_term is None:
            raise ValueError(f"notice {notice.id} was not read from the store (no concurrency token)")
        try:
            resp = self.client.index(
                index=self.index,
                id=notice.id,
                document=_to_doc(notice),
                if_seq_no=notice.seq_no,
                if_primary_term=notice.primary_term,
                refresh="wait_for" if refresh else "false",
            )
        except ConflictError as e:
            raise NoticeConflict(
                f"notice {notice.id} changed since it was read (another outbox worker took it)"
            ) from e
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not update notice {notice.id} in {self.index}: {e}") from e
        except ApiError as e:
            raise NoticeStoreError(
                f"could not update notice {notice.id} in {self.index}: {_reason(e)}"
            ) from e
        return notice.model_copy(update={"seq_no": resp["_seq_no"], "primary_term": resp["_primary_term"]})

    def claim(self, notice: Notice, *, now: datetime, until: datetime, worker: str) -> Notice | None:
        """Take `notice` (as read) for one delivery attempt until `until`; None when another
        worker changed it first."""
        claimed = notice.model_copy(
            update={
                "status": "sending",
                "attempts": notice.attempts + 1,
                "next_attempt": until,
                "updated": now,
                "claimed_by": worker,
            }
        )
        try:
            return self._replace(claimed)
        except NoticeConflict:
            return None

    def mark_sent(self, notice: Notice, *, at: datetime, subject: str | None = None) -> Notice:
        return self._replace(
            notice.model_copy(
                update={
                    "status": "sent",
                    "sent_at": at,
                    "updated": at,
                    "last_error": None,
                    "subject": subject or notice.subject,
                }
            )
        )

    def mark_retry(
        self, notice: Notice, *, at: datetime, error: str, next_attempt: datetime, subject: str | None = None
    ) -> Notice:
        return self._replace(
            notice.model_copy(
                update={
                    "status": "pending",
                    "updated": at,
                    "last_error": error,
                    "next_attempt": next_attempt,
                    "subject": subject or notice.subject,
                }
            )
        )

    def mark_failed(self, notice: Notice, *, at: datetime, error: str, subject: str | None = None) -> Notice:
        return self._replace(
            notice.model_copy(
                update={
                    "status": "failed",
                    "updated": at,
                    "last_error": error,
                    "subject": subject or notice.subject,
                }
            )
        )

    def refresh(self) -> None:
        try:
            self.client.indices.refresh(index=self.index, ignore_unavailable=True)
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not refresh {self.index}: {e}") from e
