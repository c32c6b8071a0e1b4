"""Per-rule runtime state in `<prefix>-state`: the checkpoint and the health of each detection rule.

One document per rule (`_id` = `rule-state:<rule id>`, `type: rule_state`) holds the
checkpoint (the end of the last committed window of `event.ingested`) and the rule's
health (last run, duration, window, events examined, matches, alerts, errors, gaps,
version). The rule's definition stays in its YAML; only runtime state lives here.

Every write after the first is conditional on the `_seq_no`/`_primary_term` the engine read
(optimistic concurrency): if another engine advanced the checkpoint in between, the write
fails with `StateConflict` and this run stops without moving anything backwards.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, NotFoundError
from pydantic import BaseModel, ConfigDict

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

HealthStatus = Literal["never_run", "ok", "failing", "disabled", "invalid"]
DOC_TYPE = "rule_state"


class StateConflict(HcmSocError):
    """The rule's state changed since it was read: another engine instance ran the rule."""


class StateStoreError(HcmSocError):
    """Rule state could not be read or written."""


class RuleHealth(BaseModel):
    """How a rule's runs have gone. Shown by `hcm-soc rules status`, read by the web console."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    rule_name: str | None = None
    ruleset: str | None = None
    kind: str | None = None
    status: HealthStatus = "never_run"
    checkpoint: datetime | None = None  # events with event.ingested before this were examined
    last_run_start: datetime | None = None
    last_run_end: datetime | None = None
    last_success: datetime | None = None
    duration_ms: int = 0  # of the last run (all its chunks)
    window_start: datetime | None = None  # the last run's overall window
    window_end: datetime | None = None
    events_examined: int = 0  # last run
    matches: int = 0  # last run
    alerts_created: int = 0  # last run
    duplicates_skipped: int = 0  # last run
    runs: int = 0  # totals since the state was created
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    next_retry: datetime | None = None  # a failing rule is not run again before this
    gaps_detected: int = 0  # total
    last_gap: str | None = None
    last_gap_at: datetime | None = None
    version: str | None = None  # hash of the rule's definition at its last run
    previous_version: str | None = None  # set when the definition changed (checkpoint kept)


class RuleState(BaseModel):
    """A rule's health plus the concurrency token of the document it was read from."""

    model_config = ConfigDict(extra="forbid")

    health: RuleHealth
    seq_no: int | None = None  # None: never stored
    primary_term: int | None = None
    path: str | None = None

    @property
    def checkpoint(self) -> datetime | None:
        return self.health.checkpoint


_HEALTH_TOP = ("rule_id", "rule_name", "ruleset", "kind", "checkpoint")


def _to_doc(state: RuleState, updated: datetime) -> dict[str, Any]:
    h = state.health.model_dump(mode="json")
    return {
        "@timestamp": updated.isoformat(),
        "type": DOC_TYPE,
        "updated": updated.isoformat(),
        "rule": {
            "id": h["rule_id"],
            "name": h["rule_name"],
            "ruleset": h["ruleset"],
            "kind": h["kind"],
            "version": h["version"],
            "path": state.path,
        },
        "checkpoint": h["checkpoint"],
        "health": {k: v for k, v in h.items() if k not in _HEALTH_TOP},
    }


def _from_doc(source: dict[str, Any], seq_no: int | None, primary_term: int | None) -> RuleState:
    rule = source.get("rule") or {}
    health = RuleHealth.model_validate(
        {
            **(source.get("health") or {}),
            "rule_id": rule.get("id"),
            "rule_name": rule.get("name"),
            "ruleset": rule.get("ruleset"),
            "kind": rule.get("kind"),
            "checkpoint": source.get("checkpoint"),
        }
    )
    return RuleState(health=health, seq_no=seq_no, primary_term=primary_term, path=rule.get("path"))


class DetectionStateStore:
    def __init__(self, client: Elasticsearch, names: IndexNames) -> None:
        self.client = client
        self.names = names

    @staticmethod
    def doc_id(rule_id: str) -> str:
        return f"rule-state:{rule_id}"

    def load(self, rule_id: str) -> RuleState:
        """The stored state, or a fresh one (never run, no checkpoint) when there is none."""
        try:
            resp = self.client.get(index=self.names.state, id=self.doc_id(rule_id))
        except NotFoundError:
            return RuleState(health=RuleHealth(rule_id=rule_id))
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(
                f"could not read the state of rule {rule_id} from {self.names.state}: {e}"
            ) from e
        except ApiError as e:
            raise StateStoreError(f"could not read the state of rule {rule_id}: {e.message}") from e
        return _from_doc(resp["_source"], resp.get("_seq_no"), resp.get("_primary_term"))

    def save(self, state: RuleState, *, updated: datetime) -> RuleState:
        """Write `state` if nobody changed it since it was read; returns it with the new token.

        Raises StateConflict when the document changed (or appeared) in between."""
        rule_id = state.health.rule_id
        kwargs: dict[str, Any] = {}
        if state.seq_no is None:
            kwargs["op_type"] = "create"
        else:
            kwargs["if_seq_no"] = state.seq_no
            kwargs["if_primary_term"] = state.primary_term
        try:
            resp = self.client.index(
                index=self.names.state,
                id=self.doc_id(rule_id),
                document=_to_doc(state, updated),
                refresh="false",
                **kwargs,
            )
        except ConflictError as e:
            raise StateConflict(
                f"the state of rule {rule_id} changed while this run was in progress "
                "(another engine instance ran it); this run stops and leaves the newer state"
            ) from e
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not write the state of rule {rule_id}: {e}") from e
        except ApiError as e:
            raise StateStoreError(
                f"could not write the state of rule {rule_id} to {self.names.state}: {e.message}; "
                "run `hcm-soc init` if the state mapping is outdated"
            ) from e
        return state.model_copy(update={"seq_no": resp["_seq_no"], "primary_term": resp["_primary_term"]})

    def health(self, rule_id: str) -> RuleHealth | None:
        """The stored health of one rule, None if it never ran."""
        state = self.load(rule_id)
        return state.health if state.seq_no is not None else None

    def health_all(self) -> list[RuleHealth]:
        """Health of every rule that has state, sorted by rule id."""
        out: list[RuleHealth] = []
        search_after: list[Any] | None = None
        while True:
            try:
                resp = self.client.search(
                    index=self.names.state,
                    query={"term": {"type": DOC_TYPE}},
                    sort=[{"rule.id": "asc"}],
                    size=500,
                    search_after=search_after,
                    ignore_unavailable=True,
                )
            except (TransportError, OSError) as e:
                raise DependencyUnavailable(f"could not read rule health from {self.names.state}: {e}") from e
            hits = resp["hits"]["hits"]
            out += [_from_doc(h["_source"], None, None).health for h in hits]
            if len(hits) < 500:
                return out
            search_after = hits[-1]["sort"]

    def refresh(self) -> None:
        self.client.indices.refresh(index=self.names.state, ignore_unavailable=True)
