"""Per-rule runtime state in `<prefix>-state`: checkpoint, health and coverage ledger of each rule.

One document per rule (`_id` = `rule-state:<rule id>`, `type: rule_state`) holds the
checkpoint (the end of the last committed window of `event.ingested`) and the rule's
health (last run, duration, window, events examined, matches, alerts, errors, gaps,
version). The rule's definition stays in its YAML; only runtime state lives here.

Every write after the first is conditional on the `_seq_no`/`_primary_term` the engine read
(optimistic concurrency): if another engine advanced the checkpoint in between, the write
fails with `StateConflict` and this run stops without moving anything backwards.

The coverage ledger (`type: coverage`, `_id` = `coverage:<rule id>:<start ms>-<end ms>`) has
one document per evaluated window: rule id and version, [start, end), run id, engine id,
outcome and counts. It is written with op_type=create after the window's checkpoint, so a
window recorded twice is refused (and counted) rather than stored twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, NotFoundError
from pydantic import BaseModel, ConfigDict

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

HealthStatus = Literal["never_run", "ok", "failing", "disabled", "invalid"]
LedgerOutcome = Literal["evaluated", "backfill"]
DOC_TYPE = "rule_state"
LEDGER_TYPE = "coverage"


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
    coverage_start: datetime | None = None  # start of the rule's first window: the ledger is owed from here
    suppressed: int = 0  # last run: matches over the alert caps (counted in a summary alert)
    suppressed_total: int = 0


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

    def save_many(self, states: Sequence[RuleState], *, updated: datetime) -> list[RuleState | HcmSocError]:
        """`save` for many rules in one `_bulk`, each write conditional on its own token; per rule the
        saved state, or StateConflict / StateStoreError. Raises DependencyUnavailable when
        Elasticsearch does not answer (nothing is known to be written)."""
        if not states:
            return []
        ops: list[dict[str, Any]] = []
        for st in states:
            meta: dict[str, Any] = {"_index": self.names.state, "_id": self.doc_id(st.health.rule_id)}
            if st.seq_no is None:
                ops.append({"create": meta})
            else:
                ops.append({"index": {**meta, "if_seq_no": st.seq_no, "if_primary_term": st.primary_term}})
            ops.append(_to_doc(st, updated))
        try:
            resp = self.client.bulk(operations=ops, refresh="false")
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not write the state of {len(states)} rule(s): {e}") from e
        except ApiError as e:
            raise StateStoreError(f"could not write rule states to {self.names.state}: {e.message}") from e
        out: list[RuleState | HcmSocError] = []
        for st, item in zip(states, resp["items"], strict=True):
            res = next(iter(item.values()))
            rule_id = st.health.rule_id
            if res.get("status") in (200, 201):
                out.append(
                    st.model_copy(update={"seq_no": res["_seq_no"], "primary_term": res["_primary_term"]})
                )
            elif res.get("status") == 409:
                out.append(
                    StateConflict(
                        f"the state of rule {rule_id} changed while this run was in progress "
                        "(another engine instance ran it); this run stops and leaves the newer state"
                    )
                )
            else:
                err = res.get("error") or {}
                out.append(
                    StateStoreError(
                        f"could not write the state of rule {rule_id} to {self.names.state}: "
                        f"{err.get('type')}: {err.get('reason')}; run `hcm-soc init` if the state mapping is outdated"
                    )
                )
        return out

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

    def load_many(self, rule_ids: Sequence[str]) -> dict[str, RuleState]:
        """The states of several rules in one `_mget` (fresh states for rules that never ran)."""
        if not rule_ids:
            return {}
        try:
            resp = self.client.mget(index=self.names.state, ids=[self.doc_id(r) for r in rule_ids])
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not read rule states from {self.names.state}: {e}") from e
        except NotFoundError:  # the state index does not exist yet: nothing ever ran
            return {r: RuleState(health=RuleHealth(rule_id=r)) for r in rule_ids}
        out: dict[str, RuleState] = {}
        for rule_id, doc in zip(rule_ids, resp["docs"], strict=True):
            if doc.get("found"):
                out[rule_id] = _from_doc(doc["_source"], doc.get("_seq_no"), doc.get("_primary_term"))
            elif "error" in doc:
                raise StateStoreError(f"could not read the state of rule {rule_id}: {doc['error']}")
            else:
                out[rule_id] = RuleState(health=RuleHealth(rule_id=rule_id))
        return out


# --- the coverage ledger --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One evaluated window of one rule."""

    rule_id: str
    version: str | None
    start: datetime
    end: datetime
    run_id: str
    engine_id: str
    outcome: LedgerOutcome = "evaluated"
    matches: int = 0
    alerts: int = 0
    suppressed: int = 0
    recorded: datetime | None = None


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """What one aggregation says about a rule's ledger since some time: enough to see whether it is
    contiguous (covered_ms == end - start and no overlap) without fetching every entry."""

    rule_id: str
    entries: int
    covered_ms: int
    start: datetime
    end: datetime

    @property
    def contiguous(self) -> bool:
        return self.covered_ms == int((self.end - self.start).total_seconds() * 1000)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _from_ms(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class CoverageLedger:
    """The ledger documents in `<prefix>-state`."""

    def __init__(self, client: Elasticsearch, names: IndexNames) -> None:
        self.client = client
        self.names = names

    @staticmethod
    def doc_id(rule_id: str, start: datetime, end: datetime) -> str:
        return f"coverage:{rule_id}:{_ms(start)}-{_ms(end)}"

    def record(
        self, entries: Sequence[LedgerEntry], *, refresh: Literal["true", "false", "wait_for"] = "false"
    ) -> int:
        """Create the entries; returns how many were already recorded (same rule and window)."""
        if not entries:
            return 0
        ops: list[dict[str, Any]] = []
        for e in entries:
            recorded = (e.recorded or datetime.now(UTC)).isoformat()
            ops.append(
                {"create": {"_index": self.names.state, "_id": self.doc_id(e.rule_id, e.start, e.end)}}
            )
            ops.append(
                {
                    "@timestamp": recorded,
                    "type": LEDGER_TYPE,
                    "updated": recorded,
                    "rule": {"id": e.rule_id, "version": e.version},
                    "coverage": {
                        "start": e.start.isoformat(),
                        "end": e.end.isoformat(),
                        "duration_ms": _ms(e.end) - _ms(e.start),
                        "run_id": e.run_id,
                        "engine_id": e.engine_id,
                        "outcome": e.outcome,
                        "matches": e.matches,
                        "alerts": e.alerts,
                        "suppressed": e.suppressed,
                    },
                }
            )
        try:
            resp = self.client.bulk(operations=ops, refresh=refresh)
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(
                f"could not write the coverage ledger to {self.names.state}: {e}"
            ) from e
        duplicates = 0
        refused: list[str] = []
        for item in resp["items"]:
            res = item["create"]
            if res.get("status") == 409:
                duplicates += 1
            elif res.get("status") not in (200, 201):
                refused.append(f"{res.get('_id')}: {(res.get('error') or {}).get('reason')}")
        if refused:
            raise StateStoreError(
                f"{len(refused)} coverage ledger entr(ies) refused by {self.names.state} (first: {refused[0]}); "
                "run `hcm-soc init` if the state mapping is outdated"
            )
        return duplicates

    def _filter(self, rule_ids: Sequence[str], since: datetime | None) -> dict[str, Any]:
        filters: list[dict[str, Any]] = [
            {"term": {"type": LEDGER_TYPE}},
            {"terms": {"rule.id": list(rule_ids)}},
        ]
        if since is not None:
            filters.append({"range": {"coverage.end": {"gt": since.isoformat()}}})
        return {"bool": {"filter": filters}}

    def entries(self, rule_id: str, *, since: datetime | None = None) -> list[LedgerEntry]:
        """The entries of `rule_id` that end after `since`, sorted by start."""
        out: list[LedgerEntry] = []
        search_after: list[Any] | None = None
        while True:
            try:
                resp = self.client.search(
                    index=self.names.state,
                    query=self._filter([rule_id], since),
                    sort=[{"coverage.start": "asc"}, {"coverage.end": "asc"}, {"coverage.run_id": "asc"}],
                    size=1000,
                    search_after=search_after,
                    ignore_unavailable=True,
                )
            except (TransportError, OSError) as e:
                raise DependencyUnavailable(f"could not read the coverage ledger of {rule_id}: {e}") from e
            hits = resp["hits"]["hits"]
            for h in hits:
                src, cov = h["_source"], h["_source"]["coverage"]
                out.append(
                    LedgerEntry(
                        rule_id=src["rule"]["id"],
                        version=src["rule"].get("version"),
                        start=datetime.fromisoformat(cov["start"]),
                        end=datetime.fromisoformat(cov["end"]),
                        run_id=cov["run_id"],
                        engine_id=cov["engine_id"],
                        outcome=cov["outcome"],
                        matches=cov.get("matches", 0),
                        alerts=cov.get("alerts", 0),
                        suppressed=cov.get("suppressed", 0),
                        recorded=datetime.fromisoformat(src["updated"]),
                    )
                )
            if len(hits) < 1000:
                return out
            search_after = hits[-1]["sort"]

    def summaries(self, rule_ids: Sequence[str], *, since: datetime | None) -> dict[str, LedgerSummary]:
        """Per rule: entry count, summed duration and overall span of the entries ending after `since`
        (one request for many rules)."""
        if not rule_ids:
            return {}
        try:
            resp = self.client.search(
                index=self.names.state,
                query=self._filter(rule_ids, since),
                size=0,
                aggs={
                    "rules": {
                        "terms": {"field": "rule.id", "size": len(rule_ids)},
                        "aggs": {
                            "covered": {"sum": {"field": "coverage.duration_ms"}},
                            "start": {"min": {"field": "coverage.start"}},
                            "end": {"max": {"field": "coverage.end"}},
                        },
                    }
                },
                ignore_unavailable=True,
            )
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(
                f"could not read the coverage ledger from {self.names.state}: {e}"
            ) from e
        out: dict[str, LedgerSummary] = {}
        for b in (resp.get("aggregations") or {}).get("rules", {}).get("buckets", []):
            out[b["key"]] = LedgerSummary(
                b["key"],
                b["doc_count"],
                int(b["covered"]["value"]),
                _from_ms(b["start"]["value"]),
                _from_ms(b["end"]["value"]),
            )
        return out

    def refresh(self) -> None:
        self.client.indices.refresh(index=self.names.state, ignore_unavailable=True)
