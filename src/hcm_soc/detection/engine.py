"""One run of one rule: window from its checkpoint, bounded chunks, alerts written, checkpoint committed.

A run of rule R at time `now` examines the events whose `event.ingested` lies in
[checkpoint, now - safety_margin) — the first run starts at now - initial_lookback. A
window longer than `max_chunk` is cut into chunks; each chunk is evaluated, its alerts
are created (op_type=create on deterministic ids), and only then is the checkpoint moved
to the chunk's end. A run that fails keeps the checkpoint of its last committed chunk,
records the error in the rule's health and is not retried before an exponential backoff
(capped by `retry_backoff_max`). Late events (old `@timestamp`, ingested now) fall into
the window of the run after their arrival, exactly once, because windows are selected by
`event.ingested` and never overlap.

Every committed chunk is also recorded in the coverage ledger (after its checkpoint, see
store/detection_state.py); `backfill` evaluates the holes of the ledger (coverage.py) without
touching checkpoints. Alerts go through the caps of detection/alerts.py: over a cap, matches
are counted in one summary alert per window. With a lease (detection/lease.py) only the
holder runs rules, and it checks the lease before committing each chunk (fencing).
`run_group` evaluates the due detection rules of a job in one `_msearch` (detection/batch.py)
when `settings.batch` is on; correlations and Python-checked rules run one by one.

This module knows nothing about APScheduler (see scheduler.py): `DetectionEngine.run_rule`
is the isolation boundary the scheduler and `hcm-soc engine run --once` call.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hcm_soc.config import DetectionSettings
from hcm_soc.detection.alerts import AlertCaps, capped_alerts, count_flood
from hcm_soc.detection.coverage import backoff, detect_gap, floor_ms, is_due, plan_windows
from hcm_soc.detection.model import CompiledRule, MatchResult, Window
from hcm_soc.detection.runs import (
    DEFERRED,
    AlertSink,
    BatchEvaluator,
    CoverageReader,
    EngineCounters,
    EngineRule,
    Evaluator,
    LedgerBackend,
    Pending,
    Prefetched,
    RuleRun,
    RunSummary,
    StateBackend,
    add_runs,
)
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.detection_state import (
    CoverageLedger,
    DetectionStateStore,
    LedgerEntry,
    LedgerOutcome,
    RuleHealth,
    RuleState,
    StateConflict,
)
from hcm_soc.store.lease import LeaseLost
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.detection.lease import EngineLease

# window planning lives in coverage.py (what is evaluated when); re-exported for the engine's callers
# and the run values live in runs.py; both re-exported for the engine's callers
__all__ = [
    "DEFERRED",
    "AlertSink",
    "BatchEvaluator",
    "CoverageReader",
    "EngineCounters",
    "EngineRule",
    "Evaluator",
    "LedgerBackend",
    "Pending",
    "Prefetched",
    "RuleRun",
    "RunSummary",
    "StateBackend",
    "add_runs",
    "backoff",
    "detect_gap",
    "floor_ms",
    "is_due",
    "plan_windows",
]

log = logging.getLogger("hcm_soc.detection.engine")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def evaluate_batch(
    es: Elasticsearch, items: Sequence[tuple[CompiledRule, Window]], *, limit: int
) -> Sequence[MatchResult | Exception]:
    """The default batch evaluator: detection/batch.py (`_msearch` for many rules)."""
    from hcm_soc.detection.batch import evaluate_batch_outcomes

    return evaluate_batch_outcomes(es, items, limit=limit)


def batchable(rule: EngineRule) -> bool:
    """Plain detection rules go into a batch; correlations and Python-checked rules run alone."""
    return type(rule.compiled) is CompiledRule


def evaluate(es: Elasticsearch, compiled: Any, window: Window, *, limit: int) -> MatchResult:
    """The default evaluator: detection rules through the matcher, correlations through correlation.py."""
    from hcm_soc.detection.model import CompiledRule

    if isinstance(compiled, CompiledRule):
        from hcm_soc.detection.matcher import find_matches

        return find_matches(es, compiled, window, limit=limit)
    from hcm_soc.detection.correlation import find_correlation_matches

    return find_correlation_matches(es, compiled, window, limit=limit)


# --- rules ready to run ----------------------------------------------------------------------


class DetectionEngine:
    """Runs rules against Elasticsearch with checkpoints; safe to call from several threads."""

    def __init__(
        self,
        es: Elasticsearch,
        names: IndexNames,
        settings: DetectionSettings,
        *,
        now: Clock = utc_now,
        evaluator: Evaluator = evaluate,
        alerts: AlertSink | None = None,
        state: StateBackend | None = None,
        max_chunks_per_run: int | None = None,
        stop_event: threading.Event | None = None,
        ledger: LedgerBackend | None = None,
        lease: EngineLease | None = None,
        engine_id: str | None = None,
        batch_evaluator: BatchEvaluator = evaluate_batch,
    ) -> None:
        self.es = es
        self.names = names
        self.settings = settings
        self.now = now
        self.evaluator = evaluator
        self.alerts: AlertSink = alerts if alerts is not None else AlertStore(es, names)
        self.state: StateBackend = state if state is not None else DetectionStateStore(es, names)
        self.max_chunks_per_run = max_chunks_per_run
        # unit tests run without Elasticsearch (es=None) and without a ledger unless they give one
        self.ledger: LedgerBackend | None = (
            ledger if ledger is not None else (CoverageLedger(es, names) if es is not None else None)
        )
        self.lease = lease
        self.engine_id = engine_id or settings.engine_id or _default_engine_id()
        self.batch_evaluator = batch_evaluator
        # set when the engine stops: a long catch-up ends after its current chunk (committed)
        self.stop_event = stop_event or threading.Event()
        self._invalid_recorded: set[tuple[str, str]] = set()  # (rule id, version) stored as invalid
        self.counters = EngineCounters()
        self._locks: dict[str, threading.Lock] = {}
        # backoff kept in memory too: when Elasticsearch is down the failure cannot be stored, and
        # without this every tick would hammer it again for every rule
        self._retry: dict[str, tuple[datetime, int]] = {}
        self.guard = threading.Lock()

    @property
    def safety_margin(self) -> timedelta:
        return timedelta(seconds=self.settings.safety_margin)

    def lock_for(self, rule_id: str) -> threading.Lock:
        with self.guard:
            return self._locks.setdefault(rule_id, threading.Lock())

    def stats(self) -> dict[str, int]:
        with self.guard:
            return dict(vars(self.counters))

    def count_run(self, run: RuleRun, *, conflict: bool = False) -> None:
        with self.guard:
            c = self.counters
            if run.skipped:
                c.skipped += 1
                c.conflicts += conflict
                c.lease_lost += run.skipped.startswith("lease")
                return
            c.runs += 1
            c.failures += run.error is not None
            c.chunks += run.chunks
            c.alerts_created += run.alerts_created
            c.duplicates += run.duplicates
            c.gaps += len(run.gaps)
            c.suppressed += run.suppressed
            c.backfilled += run.backfilled

    def run_all(self, rules: Iterable[EngineRule], *, force: bool = False) -> RunSummary:
        """Run every rule once (catching up everything since its checkpoint), then fill the holes of
        their coverage ledger; one failure never stops the others."""
        todo = list(rules)
        runs: list[RuleRun] = []
        for i in range(0, len(todo), 200):  # bounded batches: one _msearch never carries thousands
            runs += self.run_group(todo[i : i + 200], force=force)
        at = {r.rule_id: n for n, r in enumerate(runs)}
        for b in self.backfill(todo):  # folded into the rule's run: one line per rule in the summary
            if b.rule_id in at and (b.backfilled or b.error):
                n = at[b.rule_id]
                runs[n] = add_runs(runs[n], b, window=runs[n].window)
                if b.error and runs[n].error is None:
                    runs[n] = replace(runs[n], error=b.error)
        return RunSummary(tuple(runs))

    def run_group(self, rules: Sequence[EngineRule], *, force: bool = False) -> list[RuleRun]:
        """Run `rules` as one scheduler job does: batched evaluation and commit (scheduler.run_group)."""
        from hcm_soc.detection.scheduler import run_group

        return run_group(self, rules, force=force)

    def prefetch(self, rules: Sequence[EngineRule]) -> dict[str, Prefetched]:
        from hcm_soc.detection.scheduler import prefetch

        return prefetch(self, rules)

    def plan(self, checkpoint: datetime | None, started: datetime) -> list[Window]:
        return plan_windows(
            checkpoint,
            started,
            safety_margin=self.safety_margin,
            max_chunk=timedelta(seconds=self.settings.max_chunk),
            initial_lookback=timedelta(seconds=self.settings.initial_lookback),
            max_chunks=self.max_chunks_per_run,
        )

    def run_rule(
        self,
        rule: EngineRule,
        *,
        force: bool = False,
        prefetched: Prefetched | None = None,
        defer: list[Pending] | None = None,
    ) -> RuleRun:
        """Run `rule` over everything since its checkpoint. Never raises for a rule's own failure:
        the error is logged, recorded in the rule's health and returned. `force` ignores the
        retry backoff of a failing rule."""
        if self.lease is not None and not self.lease.held():
            run = RuleRun(rule.id, skipped="lease held by another engine: this engine is a standby")
            self.count_run(run)
            return run
        lock = self.lock_for(rule.id)
        if not lock.acquire(blocking=False):
            run = RuleRun(rule.id, skipped="a run of this rule is still in progress")
            self.count_run(run)
            return run
        try:
            return self._run_locked(rule, force=force, prefetched=prefetched, defer=defer)
        finally:
            lock.release()

    def _run_locked(
        self,
        rule: EngineRule,
        *,
        force: bool,
        prefetched: Prefetched | None,
        defer: list[Pending] | None = None,
    ) -> RuleRun:
        started = prefetched.started if prefetched is not None else self.now()
        t0 = time.monotonic()
        if not force and rule.compiled is None and (rule.id, rule.version) in self._invalid_recorded:
            run = RuleRun(rule.id, skipped=f"invalid rule (recorded): {rule.error}")
            self.count_run(run)
            return run
        remembered = self._retry.get(rule.id)
        if not force and remembered and started < remembered[0] - rule.interval / 2:
            run = RuleRun(rule.id, skipped=f"backing off after a failure until {remembered[0].isoformat()}")
            self.count_run(run)
            return run
        try:
            state = prefetched.state if prefetched is not None else self.state.load(rule.id)
        except Exception as e:  # the isolation boundary: state unreadable -> this run fails, others go on
            return self.fail_run(rule, None, started, t0, e, chunks=0, window=None)
        health = state.health
        if not force and not is_due(health, started, rule.interval):
            run = RuleRun(rule.id, skipped=f"backing off after a failure until {health.next_retry}")
            self.count_run(run)
            return run
        if rule.compiled is None:
            if not force and health.status == "invalid" and health.version == rule.version:
                run = RuleRun(rule.id, skipped=f"invalid rule (recorded): {health.last_error}")
                self.count_run(run)
                return run
            return self.fail_run(
                rule, state, started, t0, rule.error or "not compiled", chunks=0, window=None
            )

        windows = self.plan(health.checkpoint, started)
        gaps: list[str] = []
        if gap := detect_gap(
            health.checkpoint, started, safety_margin=self.safety_margin, interval=rule.interval
        ):
            gaps.append(gap)
        base = self._started_health(rule, health, started, windows)
        if not windows and health.checkpoint is None:
            # a first run with initial_lookback <= safety_margin examines nothing, but must still
            # start the rule's timeline, or every later run would start "now" again and see nothing
            base = base.model_copy(update={"checkpoint": floor_ms(started - self.safety_margin)})
        done = RuleRun(rule.id, window=_span(windows))
        caps = AlertCaps(self.settings.max_alerts_per_run, self.settings.max_alerts_per_group)
        run_id = uuid.uuid4().hex
        try:
            if not windows:
                state = self._commit(state, base, rule, t0, done, gaps, first=True)
            for w in windows:
                if self.stop_event.is_set() and done.chunks:
                    break
                ready = prefetched.result if prefetched is not None and prefetched.window == w else None
                chunk = self.evaluate_window(rule, w, caps, ready)
                done = add_runs(done, chunk, window=_span(windows[: done.chunks + 1]))
                base = base.model_copy(
                    update={
                        "checkpoint": w.end,
                        "suppressed": done.suppressed,
                        "suppressed_total": health.suppressed_total + done.suppressed,
                    }
                )
                if defer is not None and len(windows) == 1:
                    # committed with the other rules of the job: one _bulk of states, one of ledger entries
                    new = self._committed(state, base, rule, t0, done, gaps, first=True, end=self.now())
                    defer.append(Pending(rule, state, new, done, tuple(gaps), t0, started, run_id, chunk))
                    return replace(done, skipped=DEFERRED)
                state = self._commit(state, base, rule, t0, done, gaps, first=done.chunks == 1)
                self.record_coverage(rule, w, run_id, chunk, "evaluated")
        except (StateConflict, LeaseLost) as e:
            lost = isinstance(e, LeaseLost)
            log.warning(
                "rule run stopped: " + ("lease lost" if lost else "state changed by another engine"),
                extra={"rule_id": rule.id, "error": str(e)},
            )
            why = "lease lost" if lost else "stopped: another engine instance changed its state"
            run = RuleRun(rule.id, chunks=done.chunks, skipped=f"{why} ({e})")
            self.count_run(run, conflict=not lost)
            return run
        except Exception as e:  # the isolation boundary of one scheduled rule run
            return self.fail_run(
                rule, state, started, t0, e, chunks=done.chunks, window=done.window, partial=done
            )
        return self.finish_run(rule, done, tuple(gaps), t0)

    def finish_run(self, rule: EngineRule, done: RuleRun, gaps: tuple[str, ...], t0: float) -> RuleRun:
        with self.guard:
            self._retry.pop(rule.id, None)
        run = replace(done, duration_ms=_ms(t0), gaps=gaps)
        self.count_run(run)
        log.info(
            "rule run",
            extra={
                "rule_id": rule.id,
                "window_start": run.window.start.isoformat() if run.window else None,
                "window_end": run.window.end.isoformat() if run.window else None,
                "chunks": run.chunks,
                "examined": run.examined,
                "matches": run.matches,
                "alerts": run.alerts_created,
                "duplicates": run.duplicates,
                "suppressed": run.suppressed,
                "duration_ms": run.duration_ms,
            },
        )
        for gap in gaps:
            log.warning("gap detected", extra={"rule_id": rule.id, "gap": gap})
        return run

    def evaluate_window(
        self, rule: EngineRule, w: Window, caps: AlertCaps, ready: MatchResult | None
    ) -> RuleRun:
        """Evaluate one window (or take the batch's result), apply the caps, write the alerts and the
        summary alert; returns the chunk's counts."""
        result = ready or self.evaluator(self.es, rule.compiled, w, limit=max(caps.remaining, 1))

        def count() -> tuple[int, Counter[str]] | None:
            return count_flood(self.es, rule.compiled, w) if batchable(rule) and self.es is not None else None

        alerts, suppressed, unfetched = capped_alerts(
            rule.rule, result, w, caps, raised=self.now(), version=rule.version, count=count
        )
        written = self.alerts.create_many(alerts)
        return RuleRun(
            rule.id,
            chunks=1,
            window=w,
            examined=result.examined,
            matches=len(result.matches) + unfetched,
            alerts_created=written.created,
            duplicates=written.duplicates,
            suppressed=suppressed,
        )

    def record_coverage(
        self, rule: EngineRule, w: Window, run_id: str, chunk: RuleRun, outcome: LedgerOutcome
    ) -> None:
        """The ledger entry of a committed window. A failed write leaves a hole that `backfill` fills
        (alerts are created once whatever happens), so it is logged, not raised."""
        if self.ledger is None:
            return
        entry = self.ledger_entry(rule, replace(chunk, window=w), run_id, outcome)
        try:
            if self.ledger.record([entry]):
                log.warning(
                    "window already in the ledger", extra={"rule_id": rule.id, "start": w.start.isoformat()}
                )
        except Exception as e:  # see the docstring: back-fill repairs it
            log.error("could not record coverage", extra={"rule_id": rule.id, "error": str(e)})

    def ledger_entry(
        self, rule: EngineRule, chunk: RuleRun, run_id: str, outcome: LedgerOutcome
    ) -> LedgerEntry:
        assert chunk.window is not None
        return LedgerEntry(
            rule_id=rule.id,
            version=rule.version,
            start=chunk.window.start,
            end=chunk.window.end,
            run_id=run_id,
            engine_id=self.engine_id,
            outcome=outcome,
            matches=chunk.matches,
            alerts=chunk.alerts_created,
            suppressed=chunk.suppressed,
            recorded=self.now(),
        )

    def backfill(self, rules: Sequence[EngineRule]) -> list[RuleRun]:
        """Evaluate the holes of the coverage ledger of `rules` (see coverage.backfill)."""
        from hcm_soc.detection.coverage import backfill

        return backfill(self, rules)

    def _started_health(
        self, rule: EngineRule, health: RuleHealth, started: datetime, windows: list[Window]
    ) -> RuleHealth:
        changed = health.version is not None and health.version != rule.version
        return health.model_copy(
            update={
                "rule_name": rule.rule.title,
                "ruleset": rule.rule.ruleset,
                "kind": rule.rule.kind,
                "last_run_start": started,
                "window_start": windows[0].start if windows else None,
                "window_end": windows[-1].end if windows else None,
                "version": rule.version,
                "coverage_start": health.coverage_start or (windows[0].start if windows else None),
                # a changed definition keeps its checkpoint (no re-alerting on old events); the
                # previous version stays visible in health
                "previous_version": health.version if changed else health.previous_version,
            }
        )

    def _commit(
        self,
        state: RuleState,
        health: RuleHealth,
        rule: EngineRule,
        t0: float,
        done: RuleRun,
        gaps: list[str],
        *,
        first: bool,
    ) -> RuleState:
        """Store the checkpoint and the health as if the run ended here (one write per chunk): if a
        later chunk fails, the failure overwrites the status; the checkpoint stays. With a lease, only
        while it is held (fencing: a hung or cut-off engine never moves a checkpoint)."""
        if self.lease is not None:
            self.lease.check()
        end = self.now()
        return self.state.save(
            self._committed(state, health, rule, t0, done, gaps, first=first, end=end), updated=end
        )

    def _committed(
        self,
        state: RuleState,
        health: RuleHealth,
        rule: EngineRule,
        t0: float,
        done: RuleRun,
        gaps: list[str],
        *,
        first: bool,
        end: datetime,
    ) -> RuleState:
        """The state a commit of `done` writes."""
        h = health.model_copy(
            update={
                "status": "ok",
                "last_run_end": end,
                "last_success": end,
                "duration_ms": _ms(t0),
                "events_examined": done.examined,
                "matches": done.matches,
                "alerts_created": done.alerts_created,
                "duplicates_skipped": done.duplicates,
                "runs": state.health.runs + (1 if first else 0),  # one run, however many chunks
                "consecutive_failures": 0,  # last_error stays: the last failure remains visible
                "next_retry": None,
                "gaps_detected": health.gaps_detected + len(gaps),
                "last_gap": gaps[-1] if gaps else health.last_gap,
                "last_gap_at": end if gaps else health.last_gap_at,
            }
        )
        return state.model_copy(update={"health": h, "path": str(rule.rule.path)})

    def fail_run(
        self,
        rule: EngineRule,
        state: RuleState | None,
        started: datetime,
        t0: float,
        error: BaseException | str,
        *,
        chunks: int,
        window: Window | None,
        partial: RuleRun | None = None,
    ) -> RuleRun:
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        invalid = rule.compiled is None
        log.error(
            "rule run failed",
            extra={
                "rule_id": rule.id,
                "error": message,
                "chunks_committed": chunks,
                "window_start": window.start.isoformat() if window else None,
            },
            exc_info=None if isinstance(error, str) else error,
        )
        run = RuleRun(
            rule.id,
            chunks=chunks,
            window=window,
            examined=partial.examined if partial else 0,
            matches=partial.matches if partial else 0,
            alerts_created=partial.alerts_created if partial else 0,
            duplicates=partial.duplicates if partial else 0,
            duration_ms=_ms(t0),
            error=message,
        )
        self.count_run(run)
        with self.guard:
            before = max(
                state.health.consecutive_failures if state else 0, self._retry.get(rule.id, (0, 0))[1]
            )
            consecutive = before + 1
            wait = backoff(consecutive, rule.interval, timedelta(seconds=self.settings.retry_backoff_max))
            if not invalid:
                self._retry[rule.id] = (started + wait, consecutive)
        if state is None:
            return run
        end = self.now()
        h = state.health
        h = h.model_copy(
            update={
                "rule_name": rule.rule.title,
                "ruleset": rule.rule.ruleset,
                "kind": rule.rule.kind,
                "status": "invalid" if invalid else "failing",
                "last_run_start": started,
                "last_run_end": end,
                "duration_ms": _ms(t0),
                "runs": h.runs + (0 if chunks else 1),  # a committed chunk already counted this run
                "failures": h.failures + 1,
                "consecutive_failures": consecutive,
                "last_error": message[:4000],
                "last_error_at": end,
                # an invalid rule only changes when its YAML does: no retries until then
                "next_retry": None if invalid else started + wait,
                "version": rule.version,
            }
        )
        try:
            self.state.save(state.model_copy(update={"health": h, "path": str(rule.rule.path)}), updated=end)
            if invalid:
                with self.guard:
                    self._invalid_recorded.add((rule.id, rule.version))
        except Exception as e:  # recording the failure failed too (Elasticsearch down): log, carry on
            log.error("could not record the failure", extra={"rule_id": rule.id, "error": str(e)})
        return run


def _default_engine_id() -> str:
    from hcm_soc.detection.lease import default_engine_id

    return default_engine_id()


def _span(windows: Sequence[Window]) -> Window | None:
    return Window(windows[0].start, windows[-1].end) if windows else None


def _ms(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)
