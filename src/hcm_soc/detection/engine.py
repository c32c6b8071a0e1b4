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

This module knows nothing about APScheduler (see scheduler.py): `DetectionEngine.run_rule`
is the isolation boundary the scheduler and `hcm-soc engine run --once` call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from hcm_soc.config import DetectionSettings
from hcm_soc.detection.alerts import build_alert
from hcm_soc.detection.model import LoadedRule, MatchResult, RuleProblem, Window
from hcm_soc.models.alert import Alert
from hcm_soc.store.alerts import AlertStore, CreateResult
from hcm_soc.store.detection_state import DetectionStateStore, RuleHealth, RuleState, StateConflict
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger("hcm_soc.detection.engine")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Evaluator(Protocol):
    """Runs one compiled rule (detection or correlation) over one window."""

    def __call__(self, es: Elasticsearch, compiled: Any, window: Window, *, limit: int) -> MatchResult: ...


class AlertSink(Protocol):
    def create_many(self, alerts: Sequence[Alert]) -> CreateResult: ...


class StateBackend(Protocol):
    def load(self, rule_id: str) -> RuleState: ...

    def save(self, state: RuleState, *, updated: datetime) -> RuleState: ...


def evaluate(es: Elasticsearch, compiled: Any, window: Window, *, limit: int) -> MatchResult:
    """The default evaluator: detection rules through the matcher, correlations through correlation.py."""
    from hcm_soc.detection.model import CompiledRule

    if isinstance(compiled, CompiledRule):
        from hcm_soc.detection.matcher import find_matches

        return find_matches(es, compiled, window, limit=limit)
    from hcm_soc.detection.correlation import find_correlation_matches

    return find_correlation_matches(es, compiled, window, limit=limit)


# --- planning (pure functions, unit-tested with a fake clock) ---------------------------------


def floor_ms(t: datetime) -> datetime:
    """Elasticsearch stores `event.ingested` in milliseconds: window bounds are cut to whole ms so that
    the `lt` of one window and the `gte` of the next round the same way."""
    return t.astimezone(UTC).replace(microsecond=t.microsecond // 1000 * 1000)


def plan_windows(
    checkpoint: datetime | None,
    now: datetime,
    *,
    safety_margin: timedelta,
    max_chunk: timedelta,
    initial_lookback: timedelta,
    max_chunks: int | None = None,
) -> list[Window]:
    """The chunks a run at `now` examines: [checkpoint, now - safety_margin) cut into pieces of at most
    `max_chunk`, the first run starting at now - initial_lookback. Empty when there is nothing new.
    `max_chunks` bounds one run's work (the next run continues where it stopped)."""
    end = floor_ms(now - safety_margin)
    start = floor_ms(checkpoint) if checkpoint is not None else floor_ms(now - initial_lookback)
    windows: list[Window] = []
    while start < end and (max_chunks is None or len(windows) < max_chunks):
        stop = min(end, start + max_chunk)
        windows.append(Window(start, stop))
        start = stop
    return windows


def detect_gap(
    checkpoint: datetime | None, now: datetime, *, safety_margin: timedelta, interval: timedelta
) -> str | None:
    """A schedule gap: the checkpoint is more than two intervals older than a run on schedule would
    find it (one interval behind now - safety_margin), i.e. the engine was down or the rule stuck."""
    if checkpoint is None:
        return None
    expected = now - safety_margin - interval
    behind = expected - checkpoint
    if behind <= 2 * interval:
        return None
    return (
        f"checkpoint {checkpoint.isoformat()} is {_human(behind)} older than expected "
        f"(interval {_human(interval)}): no run covered it in time; catching up in chunks"
    )


def backoff(consecutive_failures: int, interval: timedelta, cap: timedelta) -> timedelta:
    """Wait before retrying a rule after its n-th consecutive failure: interval, 2x, 4x, ... capped."""
    n = max(consecutive_failures, 1)
    return min(cap, interval * (2 ** min(n - 1, 30)))


def is_due(health: RuleHealth, now: datetime, interval: timedelta) -> bool:
    """False while a failing rule backs off. Runs come on the scheduler's ticks (one interval apart,
    with jitter), so a tick within half an interval of `next_retry` counts as on time."""
    return health.next_retry is None or now >= health.next_retry - interval / 2


def _human(d: timedelta) -> str:
    s = int(d.total_seconds())
    if s < 120:
        return f"{d.total_seconds():g}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


# --- rules ready to run ----------------------------------------------------------------------


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
    ) -> None:
        self.es = es
        self.names = names
        self.settings = settings
        self.now = now
        self.evaluator = evaluator
        self.alerts: AlertSink = alerts if alerts is not None else AlertStore(es, names)
        self.state: StateBackend = state if state is not None else DetectionStateStore(es, names)
        self.max_chunks_per_run = max_chunks_per_run
        # set when the engine stops: a long catch-up ends after its current chunk (committed)
        self.stop_event = stop_event or threading.Event()
        self._invalid_recorded: set[tuple[str, str]] = set()  # (rule id, version) stored as invalid
        self.counters = EngineCounters()
        self._locks: dict[str, threading.Lock] = {}
        # backoff kept in memory too: when Elasticsearch is down the failure cannot be stored, and
        # without this every tick would hammer it again for every rule
        self._retry: dict[str, tuple[datetime, int]] = {}
        self._guard = threading.Lock()

    @property
    def safety_margin(self) -> timedelta:
        return timedelta(seconds=self.settings.safety_margin)

    def _lock(self, rule_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(rule_id, threading.Lock())

    def stats(self) -> dict[str, int]:
        with self._guard:
            return dict(vars(self.counters))

    def _count(self, run: RuleRun, *, conflict: bool = False) -> None:
        with self._guard:
            c = self.counters
            if run.skipped:
                c.skipped += 1
                c.conflicts += conflict
                return
            c.runs += 1
            c.failures += run.error is not None
            c.chunks += run.chunks
            c.alerts_created += run.alerts_created
            c.duplicates += run.duplicates
            c.gaps += len(run.gaps)

    def run_all(self, rules: Iterable[EngineRule], *, force: bool = False) -> RunSummary:
        """Run every rule once (catching up everything since its checkpoint); one failure never
        stops the others."""
        return RunSummary(tuple(self.run_rule(r, force=force) for r in rules))

    def run_rule(self, rule: EngineRule, *, force: bool = False) -> RuleRun:
        """Run `rule` over everything since its checkpoint. Never raises for a rule's own failure:
        the error is logged, recorded in the rule's health and returned. `force` ignores the
        retry backoff of a failing rule."""
        lock = self._lock(rule.id)
        if not lock.acquire(blocking=False):
            run = RuleRun(rule.id, skipped="a run of this rule is still in progress")
            self._count(run)
            return run
        try:
            return self._run_locked(rule, force=force)
        finally:
            lock.release()

    def _run_locked(self, rule: EngineRule, *, force: bool) -> RuleRun:
        started = self.now()
        t0 = time.monotonic()
        if not force and rule.compiled is None and (rule.id, rule.version) in self._invalid_recorded:
            run = RuleRun(rule.id, skipped=f"invalid rule (recorded): {rule.error}")
            self._count(run)
            return run
        remembered = self._retry.get(rule.id)
        if not force and remembered and started < remembered[0] - rule.interval / 2:
            run = RuleRun(rule.id, skipped=f"backing off after a failure until {remembered[0].isoformat()}")
            self._count(run)
            return run
        try:
            state = self.state.load(rule.id)
        except Exception as e:  # the isolation boundary: state unreadable -> this run fails, others go on
            return self._failed(rule, None, started, t0, e, chunks=0, window=None)
        health = state.health
        if not force and not is_due(health, started, rule.interval):
            run = RuleRun(rule.id, skipped=f"backing off after a failure until {health.next_retry}")
            self._count(run)
            return run
        if rule.compiled is None:
            if not force and health.status == "invalid" and health.version == rule.version:
                run = RuleRun(rule.id, skipped=f"invalid rule (recorded): {health.last_error}")
                self._count(run)
                return run
            return self._failed(rule, state, started, t0, rule.error or "not compiled", chunks=0, window=None)

        interval = rule.interval
        windows = plan_windows(
            health.checkpoint,
            started,
            safety_margin=self.safety_margin,
            max_chunk=timedelta(seconds=self.settings.max_chunk),
            initial_lookback=timedelta(seconds=self.settings.initial_lookback),
            max_chunks=self.max_chunks_per_run,
        )
        gaps: list[str] = []
        if gap := detect_gap(health.checkpoint, started, safety_margin=self.safety_margin, interval=interval):
            gaps.append(gap)
        base = self._started_health(rule, health, started, windows)
        if not windows and health.checkpoint is None:
            # a first run with initial_lookback <= safety_margin examines nothing, but must still
            # start the rule's timeline, or every later run would start "now" again and see nothing
            base = base.model_copy(update={"checkpoint": floor_ms(started - self.safety_margin)})
        done = RuleRun(rule.id, window=_span(windows))
        chunks = examined = matches = created = duplicates = 0
        try:
            if not windows:
                state = self._commit(state, base, rule, t0, done, gaps, first=True)
            for w in windows:
                if self.stop_event.is_set() and chunks:
                    break
                result = self.evaluator(self.es, rule.compiled, w, limit=self.settings.max_alerts_per_run)
                raised = self.now()
                alerts = [
                    build_alert(rule.rule, m, w, raised=raised, version=rule.version) for m in result.matches
                ]
                written = self.alerts.create_many(alerts)
                chunks += 1
                examined += result.examined
                matches += len(result.matches)
                created += written.created
                duplicates += written.duplicates
                if result.truncated:
                    gaps.append(
                        f"window {w.start.isoformat()}..{w.end.isoformat()}: more than "
                        f"{self.settings.max_alerts_per_run} matches (max_alerts_per_run); the rest raised no alert"
                    )
                done = RuleRun(
                    rule.id,
                    chunks=chunks,
                    window=_span(windows[:chunks]),
                    examined=examined,
                    matches=matches,
                    alerts_created=created,
                    duplicates=duplicates,
                )
                base = base.model_copy(update={"checkpoint": w.end})
                state = self._commit(state, base, rule, t0, done, gaps, first=chunks == 1)
        except StateConflict as e:
            log.warning(
                "rule run stopped: state changed by another engine",
                extra={"rule_id": rule.id, "error": str(e)},
            )
            run = RuleRun(
                rule.id, chunks=chunks, skipped=f"stopped: another engine instance changed its state ({e})"
            )
            self._count(run, conflict=True)
            return run
        except Exception as e:  # the isolation boundary of one scheduled rule run
            return self._failed(rule, state, started, t0, e, chunks=chunks, window=done.window, partial=done)
        with self._guard:
            self._retry.pop(rule.id, None)
        run = RuleRun(
            rule.id,
            chunks=chunks,
            window=_span(windows[:chunks]),
            examined=examined,
            matches=matches,
            alerts_created=created,
            duplicates=duplicates,
            duration_ms=_ms(t0),
            gaps=tuple(gaps),
        )
        self._count(run)
        log.info(
            "rule run",
            extra={
                "rule_id": rule.id,
                "window_start": run.window.start.isoformat() if run.window else None,
                "window_end": run.window.end.isoformat() if run.window else None,
                "chunks": chunks,
                "examined": examined,
                "matches": matches,
                "alerts": created,
                "duplicates": duplicates,
                "duration_ms": run.duration_ms,
            },
        )
        for gap in gaps:
            log.warning("gap detected", extra={"rule_id": rule.id, "gap": gap})
        return run

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
        later chunk fails, the failure overwrites the status; the checkpoint stays."""
        end = self.now()
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
        return self.state.save(
            state.model_copy(update={"health": h, "path": str(rule.rule.path)}), updated=end
        )

    def _failed(
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
        self._count(run)
        with self._guard:
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
                with self._guard:
                    self._invalid_recorded.add((rule.id, rule.version))
        except Exception as e:  # recording the failure failed too (Elasticsearch down): log, carry on
            log.error("could not record the failure", extra={"rule_id": rule.id, "error": str(e)})
        return run


def _span(windows: Sequence[Window]) -> Window | None:
    return Window(windows[0].start, windows[-1].end) if windows else None


def _ms(t0: float) -> int:
    return int((time.monotonic() - t0) * 1000)
