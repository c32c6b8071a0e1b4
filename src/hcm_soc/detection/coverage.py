"""Which ranges of `event.ingested` a rule evaluates and has evaluated: the windows a run plans
(from its checkpoint, in bounded chunks; gaps; backoff), the coverage ledger read back (holes,
overlaps, per version) and the windows a back-fill evaluates.

The ledger itself (one document per evaluated window) is written by the engine through
`hcm_soc.store.detection_state.CoverageLedger`. Coverage of a rule starts at its first
ledger entry (earlier time was never meant to be evaluated) and ends at its checkpoint;
inside that span every millisecond must be covered by exactly one entry. Pure functions
here, so they are unit-tested without Elasticsearch, and `backfill`, which the engine calls on
each job (every `backfill_every` seconds) and after `engine run --once`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hcm_soc.detection.alerts import AlertCaps
from hcm_soc.detection.model import Window
from hcm_soc.store.detection_state import LedgerEntry, RuleHealth

if TYPE_CHECKING:
    from hcm_soc.detection.engine import DetectionEngine, EngineRule, RuleRun

log = logging.getLogger("hcm_soc.detection.coverage")


# --- planning: the windows a run examines (pure functions, unit-tested with a fake clock) ---------------------------------


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


# --- the ledger read back ----------------------------------------------------------------------


def merge(windows: Iterable[Window]) -> list[Window]:
    """Touching or overlapping windows joined, sorted by start."""
    out: list[Window] = []
    for w in sorted(windows, key=lambda w: (w.start, w.end)):
        if out and w.start <= out[-1].end:
            if w.end > out[-1].end:
                out[-1] = Window(out[-1].start, w.end)
        else:
            out.append(w)
    return out


def holes(covered: Iterable[Window], start: datetime, end: datetime) -> list[Window]:
    """The parts of [start, end) that no window covers."""
    out: list[Window] = []
    cursor = start
    for w in merge(covered):
        if w.end <= cursor:
            continue
        if w.start >= end:
            break
        if w.start > cursor:
            out.append(Window(cursor, min(w.start, end)))
        cursor = max(cursor, w.end)
    if cursor < end:
        out.append(Window(cursor, end))
    return out


def overlaps(windows: Iterable[Window]) -> list[Window]:
    """The ranges evaluated more than once."""
    out: list[Window] = []
    reach: datetime | None = None
    for w in sorted(windows, key=lambda w: (w.start, w.end)):
        if reach is not None and w.start < reach:
            out.append(Window(w.start, min(w.end, reach)))
        reach = w.end if reach is None else max(reach, w.end)
    return merge(out)


@dataclass(frozen=True, slots=True)
class CoverageReport:
    """What `hcm-soc rules coverage RULE` shows."""

    rule_id: str
    since: datetime
    until: datetime | None  # the end coverage must reach (the checkpoint); None: never ran
    entries: int
    evaluated: list[Window]
    holes: list[Window]
    overlaps: list[Window]
    by_version: dict[str, list[Window]] = field(default_factory=dict)
    backfilled: int = 0  # entries that came from a back-fill

    @property
    def complete(self) -> bool:
        return not self.holes


def report(
    rule_id: str,
    entries: Sequence[LedgerEntry],
    *,
    since: datetime,
    until: datetime | None,
    start: datetime | None = None,
) -> CoverageReport:
    """Coverage of one rule since `since` (clipped there), up to `until` (default: the last entry's end).
    Holes are counted from `start` (the rule's first window, RuleHealth.coverage_start), else from the
    first entry on: before it the rule did not exist or never ran."""
    windows = [Window(max(e.start, since), e.end) for e in entries if e.end > since]
    end = until if until is not None else (max(w.end for w in windows) if windows else None)
    by_version: dict[str, list[Window]] = {}
    for e, w in zip([e for e in entries if e.end > since], windows, strict=True):
        by_version.setdefault(e.version or "unknown", []).append(w)
    first = max(start, since) if start is not None else (min(w.start for w in windows) if windows else None)
    found = holes(windows, first, end) if first is not None and end is not None and first < end else []
    return CoverageReport(
        rule_id=rule_id,
        since=since,
        until=end,
        entries=len(windows),
        evaluated=merge(windows),
        holes=found,
        overlaps=overlaps(windows),
        by_version={v: merge(ws) for v, ws in by_version.items()},
        backfilled=sum(1 for e in entries if e.end > since and e.outcome == "backfill"),
    )


def backfill_windows(found: Sequence[Window], *, max_chunk: timedelta, limit: int) -> list[Window]:
    """Holes cut into windows of at most `max_chunk`, oldest first, at most `limit` of them."""
    out: list[Window] = []
    for hole in sorted(found, key=lambda w: w.start):
        start = hole.start
        while start < hole.end and len(out) < limit:
            stop = min(hole.end, start + max_chunk)
            out.append(Window(start, stop))
            start = stop
    return out


def parse_since(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `90s` (or a bare number of seconds) -> a timedelta; ValueError otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise ValueError(f"expected a duration like 7d, 12h, 30m or 90s, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"expected a positive duration like 7d, got {text!r}")
    return timedelta(seconds=value)


# --- back-fill ---------------------------------------------------------------------------------------


def backfill(engine: DetectionEngine, rules: Sequence[EngineRule]) -> list[RuleRun]:
    """Evaluate the holes in the coverage ledger of `rules` since `backfill_horizon` ago, oldest
    first, at most `backfill_max_windows` windows per call (the rest at the next call). Checkpoints
    do not move; alerts are created once (deterministic ids) and each window is then recorded."""
    from hcm_soc.detection.engine import CoverageReader

    runnable = {r.id: r for r in rules if r.compiled is not None}
    ledger = engine.ledger
    if not runnable or ledger is None or not isinstance(ledger, CoverageReader):
        return []
    if engine.lease is not None and not engine.lease.held():
        return []
    now = engine.now()
    since = now - timedelta(seconds=engine.settings.backfill_horizon)
    try:
        # ledger entries are written without a refresh; the checkpoint is read in real time: without
        # this, the newest windows would look like holes and be evaluated twice
        refresh = getattr(ledger, "refresh", None)
        if refresh is not None:
            refresh()
        summaries = ledger.summaries(list(runnable), since=since)
        todo: list[tuple[EngineRule, list[Window]]] = []
        for rule_id, summary in sorted(summaries.items()):
            health = engine.state.load(rule_id).health
            end = max(health.checkpoint, summary.end) if health.checkpoint is not None else summary.end
            # owed from the rule's first window (or, for state written before it was kept, the ledger's)
            owed = max(health.coverage_start or summary.start, since)
            if summary.contiguous and summary.end >= end and summary.start <= owed:
                continue
            entries = ledger.entries(rule_id, since=since)
            covered = [Window(e.start, e.end) for e in entries]
            start = owed
            found = holes(covered, start, end)
            if found:
                todo.append((runnable[rule_id], found))
    except Exception as e:  # the ledger is unreadable: nothing to back-fill now, next time
        log.error("could not look for coverage holes", extra={"error": str(e)})
        return []
    budget = engine.settings.backfill_max_windows
    runs: list[RuleRun] = []
    for rule, found in todo:
        windows = backfill_windows(
            found, max_chunk=timedelta(seconds=engine.settings.max_chunk), limit=budget
        )
        if not windows:
            break
        budget -= len(windows)
        runs.append(_backfill_rule(engine, rule, windows))
    return runs


def _backfill_rule(engine: DetectionEngine, rule: EngineRule, windows: Sequence[Window]) -> RuleRun:
    from hcm_soc.detection.engine import RuleRun, add_runs

    lock = engine.lock_for(rule.id)
    if not lock.acquire(blocking=False):
        return RuleRun(rule.id, skipped="a run of this rule is in progress; back-fill next time")
    t0 = time.monotonic()
    done = RuleRun(rule.id)
    run_id = uuid.uuid4().hex
    try:
        caps = AlertCaps(engine.settings.max_alerts_per_run, engine.settings.max_alerts_per_group)
        for w in windows:
            chunk = engine.evaluate_window(rule, w, caps, None)
            if engine.lease is not None:
                engine.lease.check()
            engine.record_coverage(rule, w, run_id, chunk, "backfill")
            done = add_runs(done, replace(chunk, backfilled=1), window=Window(windows[0].start, w.end))
            log.warning(
                "coverage hole back-filled",
                extra={"rule_id": rule.id, "start": w.start.isoformat(), "end": w.end.isoformat()},
            )
    except Exception as e:  # the isolation boundary of one back-fill: the hole stays for next time
        log.error("back-fill failed", extra={"rule_id": rule.id, "error": str(e)})
        done = replace(done, error=f"back-fill: {type(e).__name__}: {e}")
    finally:
        lock.release()
    run = replace(done, duration_ms=int((time.monotonic() - t0) * 1000))
    if run.backfilled:
        engine.count_run(run)
    return run
