"""The engine lease in `<prefix>-state`: one document (`_id` = `lease:<name>`, `type: lease`).

Whoever holds an unexpired lease is the only engine that evaluates rules. Every change of the
document is conditional on the `_seq_no`/`_primary_term` read before it (optimistic
concurrency), so of two engines that try to take or renew the lease at once exactly one
succeeds. Expiry is a wall-clock instant written by the holder: engines of one cluster are
expected to keep their clocks in sync (NTP); the holder fences itself on its own monotonic
clock anyway (see detection/lease.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, NotFoundError

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

DOC_TYPE = "lease"


class LeaseLost(HcmSocError):
    """The lease was taken by another engine, or could not be renewed in time."""


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The stored lease with the concurrency token of the read."""

    name: str
    holder: str
    acquired: datetime
    renewed: datetime
    expires: datetime
    takeovers: int
    seq_no: int
    primary_term: int

    def expired(self, now: datetime) -> bool:
        return now >= self.expires


class LeaseStore:
    def __init__(self, client: Elasticsearch, names: IndexNames) -> None:
        self.client = client
        self.names = names

    @staticmethod
    def doc_id(name: str) -> str:
        return f"lease:{name}"

    def read(self, name: str) -> LeaseRecord | None:
        try:
            resp = self.client.get(index=self.names.state, id=self.doc_id(name))
        except NotFoundError:
            return None
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(
                f"could not read the lease {name} from {self.names.state}: {e}"
            ) from e
        src = resp["_source"]["lease"]
        return LeaseRecord(
            name=name,
            holder=src["holder"],
            acquired=datetime.fromisoformat(src["acquired"]),
            renewed=datetime.fromisoformat(src["renewed"]),
            expires=datetime.fromisoformat(src["expires"]),
            takeovers=int(src.get("takeovers", 0)),
            seq_no=resp["_seq_no"],
            primary_term=resp["_primary_term"],
        )

    def try_acquire(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> LeaseRecord | None:
        """Take the lease if nobody holds it, it has expired, or `holder` already holds it (then it is
        renewed). None when another engine holds a valid lease or won the race."""
        current = self.read(name)
        if current is not None and current.holder != holder and not current.expired(now):
            return None
        if current is not None and current.holder == holder:
            try:
                return self.renew(current, now=now, ttl=ttl)
            except LeaseLost:
                return None
        takeovers = current.takeovers + 1 if current is not None else 0
        return self._write(name, holder, now, now, ttl, takeovers, current)

    def renew(self, lease: LeaseRecord, *, now: datetime, ttl: timedelta) -> LeaseRecord:
        """Extend a lease this engine holds; LeaseLost if the document changed since `lease` was read."""
        record = self._write(lease.name, lease.holder, lease.acquired, now, ttl, lease.takeovers, lease)
        if record is None:
            raise LeaseLost(
                f"the lease {lease.name} held by {lease.holder} was taken over by another engine; "
                "this engine stops evaluating and waits as a standby"
            )
        return record

    def release(self, lease: LeaseRecord, *, now: datetime) -> None:
        """Let the lease expire now (a clean stop): a standby takes over at its next poll."""
        self._write(lease.name, lease.holder, lease.acquired, now, timedelta(0), lease.takeovers, lease)

    def _write(
        self,
        name: str,
        holder: str,
        acquired: datetime,
        now: datetime,
        ttl: timedelta,
        takeovers: int,
        previous: LeaseRecord | None,
    ) -> LeaseRecord | None:
        doc: dict[str, Any] = {
            "@timestamp": now.isoformat(),
            "type": DOC_TYPE,
            "updated": now.isoformat(),
            "lease": {
                "name": name,
                "holder": holder,
                "acquired": acquired.isoformat(),
                "renewed": now.isoformat(),
                "expires": (now + ttl).isoformat(),
                "takeovers": takeovers,
            },
        }
        kwargs: dict[str, Any] = (
            {"op_type": "create"}
            if previous is None
            else {"if_seq_no": previous.seq_no, "if_primary_term": previous.primary_term}
        )
        try:
            resp = self.client.index(
                index=self.names.state, id=self.doc_id(name), document=doc, refresh="false", **kwargs
            )
        except ConflictError:
            return None
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not write the lease {name} to {self.names.state}: {e}") from e
        except ApiError as e:
            raise HcmSocError(
                f"could not write the lease {name} to {self.names.state}: {e.message}; "
                "run `hcm-soc init` if the state mapping is outdated"
            ) from e
        return LeaseRecord(
            name, holder, acquired, now, now + ttl, takeovers, resp["_seq_no"], resp["_primary_term"]
        )
