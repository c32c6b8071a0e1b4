"""The audit trail in the `<prefix>-audit-<namespace>` data stream: logins and admin actions.

Append-only by construction (a data stream takes only `create`), one document per action:
`@timestamp`, `event.action` (e.g. `login`, `user.disabled`), `event.outcome`
(success/failure), `user.name` (the actor: `user:<name>`, `cli:<os user>`, `system`), a
human `message`, and `details` (a flattened object: client address, target user, token
name, …). Secrets never go in: callers pass names, never passwords or tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from elastic_transport import TransportError
from elasticsearch import ApiError
from pydantic import BaseModel, ConfigDict, Field

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

Outcome = Literal["success", "failure"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class AuditError(HcmSocError):
    """Elasticsearch refused to write or read audit records."""


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timestamp: datetime
    action: str
    outcome: Outcome
    actor: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


def _flat(details: dict[str, Any]) -> dict[str, Any]:
    """`flattened` fields hold leaf values as keywords: keep values as strings or lists of strings."""
    out: dict[str, Any] = {}
    for k, v in details.items():
        if v is None:
            continue
        if isinstance(v, dict):
            out[k] = _flat(v)
        elif isinstance(v, list | tuple | set):
            out[k] = [str(x) for x in v]
        else:
            out[k] = str(v)
    return out


class AuditLog:
    def __init__(
        self, client: Elasticsearch, names: IndexNames, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.client = client
        self.names = names
        self.clock = clock

    @property
    def index(self) -> str:
        return self.names.audit

    def write(
        self,
        action: str,
        *,
        actor: str,
        outcome: Outcome,
        message: str,
        details: dict[str, Any] | None = None,
        refresh: bool = False,
    ) -> None:
        doc = {
            "@timestamp": self.clock().isoformat(),
            "event": {"action": action, "outcome": outcome, "kind": "event"},
            "user": {"name": actor},
            "message": message,
            "details": _flat(details or {}),
        }
        try:
            self.client.index(
                index=self.index, document=doc, op_type="create", refresh="wait_for" if refresh else "false"
            )
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(
                f"could not write audit record {action!r} to {self.index}: Elasticsearch did not answer ({e})"
            ) from e
        except ApiError as e:
            raise AuditError(
                f"could not write audit record {action!r} to {self.index}: {e.message}; "
                "run `hcm-soc init` if the audit template is missing"
            ) from e

    def list(
        self, *, limit: int = 100, action: str | None = None, actor: str | None = None
    ) -> list[AuditEntry]:
        """The newest records first (optionally of one action or one actor)."""
        filters: list[dict[str, Any]] = []
        if action:
            filters.append({"term": {"event.action": action}})
        if actor:
            filters.append({"term": {"user.name": actor}})
        try:
            resp = self.client.search(
                index=self.index,
                query={"bool": {"filter": filters}},
                sort=[{"@timestamp": "desc"}],
                size=max(1, min(limit, 10_000)),
                ignore_unavailable=True,
            )
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not read the audit trail {self.index}: {e}") from e
        except ApiError as e:
            raise AuditError(f"could not read the audit trail {self.index}: {e.message}") from e
        out = []
        for hit in resp["hits"]["hits"]:
            s = hit["_source"]
            out.append(
                AuditEntry(
                    timestamp=s["@timestamp"],
                    action=s["event"]["action"],
                    outcome=s["event"]["outcome"],
                    actor=s["user"]["name"],
                    message=s.get("message", ""),
                    details=s.get("details") or {},
                )
            )
        return out
