"""The values and seams of the engine: what a scheduled rule is (EngineRule), what one run did
(RuleRun, RunSummary, EngineCounters), and the protocols the engine is built on (evaluators, alert
sink, state and ledger back ends) so unit tests can put fakes at our own seams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hcm_soc.detection.model import CompiledRule, LoadedRule, MatchResult, RuleProblem, Window
from hcm_soc.models.alert import Alert
from hcm_soc.store.alerts import CreateResult
from hcm_soc.store.detection_state import LedgerEntry, LedgerSummary, RuleState

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch


class Evaluator(Protocol):
    """Runs one compiled rule (detection or correlation) over one window."""

    def __call__(self, es: Elasticsearch, compiled: Any, window: Window, *, limit: int) -> MatchResult: ...


class AlertSink(Protocol):
    def create_many(self, alerts: Sequence[Alert]) -> CreateResult: ...


class StateBackend(Protocol):
    def load(self, rule_id: str) -> RuleState: ...

    def save(self, state: RuleState, *, updated: datetime) -> RuleState: ...


class LedgerBackend(Protocol):
    def record(self, entries: Sequence[LedgerEntry]) -> int: ...


@runtime_checkable
class CoverageReader(Protocol):
    """A ledger that can also be read back (what `backfill` needs)."""

    def record(self, entries: Sequence[LedgerEntry]) -> int: ...

    def summaries(self, rule_ids: Sequence[str], *, since: datetime | None) -> dict[str, LedgerSummary]: ...

    def entries(self, rule_id: str, *, since: datetime | None = None) -> list[LedgerEntry]: ...


class BatchEvaluator(Protocol):
    """Many detection rules, each over its own window, in as few requests as Elasticsearch allows; an
    item Elasticsearch refused gets its exception in place of its result."""

    def __call__(
        self, es: Elasticsearch, items: Sequence[tuple[CompiledRule, Window]], *, limit: int
    ) -> Sequence[MatchResult | Exception]: ...


#: `RuleRun.skipped` of a run whose commit waits for the rest of its group (never returned by run_group)
DEFERRED = "deferred: committed with its group"


@dataclass(frozen=True, slots=True)
class Pending:
    """A single-window run evaluated and its alerts written, its commit left to `commit_pending`."""

    rule: EngineRule
    state: RuleState  # as read
    new: RuleState  # what the commit writes
    done: RuleRun
    gaps: tuple[str, ...]
    t0: float
    started: datetime
    run_id: str
    chunk: RuleRun


@dataclass(frozen=True, slots=True)
class Prefetched:
    """A rule's state and the result of its one window, read for a whole job at once: `run_rule`
    uses the result only if the window it plans from this state is the same one."""

    started: datetime
    state: RuleState
    window: Window | None = None
    result: MatchResult | None = None


@dataclass(frozen=True, slots=True)
class EngineRule:
    """A rule as the engine schedules it: the compiled form (None when it cannot run) and its version."""

    rule: LoadedRule
    compiled: Any  # CompiledRule | CompiledCorrelation | None
    version: str
    interval: timedelta
    error: str | None = None  # why `compiled` is None

    @property
    def id(self) -> str:
        return self.rule.id


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleRun:
    """What one run of one rule did (also logged and summed into the engine's counters)."""

    rule_id: str
    chunks: int = 0
    window: Window | None = None
    examined: int = 0
    matches: int = 0
    alerts_created: int = 0
    duplicates: int = 0
    duration_ms: int = 0
    error: str | None = None
    skipped: str | None = None
    gaps: tuple[str, ...] = ()
    suppressed: int = 0  # matches over the caps (counted in summary alerts)
    backfilled: int = 0  # ledger holes evaluated (by `backfill`)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class EngineCounters:
    runs: int = 0
    failures: int = 0
    skipped: int = 0
    conflicts: int = 0
    chunks: int = 0
    alerts_created: int = 0
    duplicates: int = 0
    gaps: int = 0
    suppressed: int = 0
    backfilled: int = 0
    batched: int = 0  # rule windows evaluated through the batch evaluator
    lease_lost: int = 0


@dataclass(frozen=True, slots=True)
class RunSummary:
    runs: tuple[RuleRun, ...]
    problems: tuple[RuleProblem, ...] = field(default=())

    @property
    def failed(self) -> list[RuleRun]:
        return [r for r in self.runs if r.error is not None]

    @property
    def alerts_created(self) -> int:
        return sum(r.alerts_created for r in self.runs)


def add_runs(total: RuleRun, chunk: RuleRun, *, window: Window | None) -> RuleRun:
    return replace(
        total,
        chunks=total.chunks + chunk.chunks,
        window=window,
        examined=total.examined + chunk.examined,
        matches=total.matches + chunk.matches,
        alerts_created=total.alerts_created + chunk.alerts_created,
        duplicates=total.duplicates + chunk.duplicates,
        suppressed=total.suppressed + chunk.suppressed,
        backfilled=total.backfilled + chunk.backfilled,
    )
