"""The coverage ledger (holes, overlaps, per-version ranges, back-fill) and lease fencing, with a fake
clock and in-memory stand-ins for the ledger and the lease store (our own seams)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from hcm_soc.detection.coverage import backfill_windows, holes, merge, overlaps, parse_since, report
from hcm_soc.detection.lease import EngineLease
from hcm_soc.detection.model import Window
from hcm_soc.store.detection_state import LedgerEntry, LedgerSummary
from hcm_soc.store.lease import LeaseLost, LeaseRecord
from tests.unit.detection.test_engine_windows import MIN, T0, EventLog, FakeClock, engine_rule, make_engine

S = timedelta(seconds=1)


def w(a: int, b: int) -> Window:
    """Minutes after T0."""
    return Window(T0 + a * MIN, T0 + b * MIN)


def entry(a: int, b: int, version: str = "v1", outcome: str = "evaluated") -> LedgerEntry:
    return LedgerEntry("r", version, T0 + a * MIN, T0 + b * MIN, "run", "eng", outcome)  # type: ignore[arg-type]


class MemoryLedger:
    """The ledger contract of CoverageLedger: create-once by (rule, start, end), read back."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, datetime, datetime], LedgerEntry] = {}

    def record(self, entries: Sequence[LedgerEntry]) -> int:
        dup = 0
        for e in entries:
            key = (e.rule_id, e.start, e.end)
            dup += key in self.docs
            self.docs.setdefault(key, e)
        return dup

    def entries(self, rule_id: str, *, since: datetime | None = None) -> list[LedgerEntry]:
        out = [e for e in self.docs.values() if e.rule_id == rule_id and (since is None or e.end > since)]
        return sorted(out, key=lambda e: (e.start, e.end))

    def summaries(self, rule_ids: Sequence[str], *, since: datetime | None) -> dict[str, LedgerSummary]:
        out: dict[str, LedgerSummary] = {}
        for r in rule_ids:
            es = self.entries(r, since=since)
            if es:
                covered = sum(int((e.end - e.start).total_seconds() * 1000) for e in es)
                out[r] = LedgerSummary(r, len(es), covered, es[0].start, max(e.end for e in es))
        return out


# --- pure functions ----------------------------------------------------------------------------


def test_holes_overlaps_and_merge() -> None:
    covered = [w(0, 5), w(5, 10), w(12, 20), w(18, 25)]
    assert merge(covered) == [w(0, 10), w(12, 25)]
    assert holes(covered, T0, T0 + 30 * MIN) == [w(10, 12), w(25, 30)]
    assert holes(covered, T0 + 3 * MIN, T0 + 9 * MIN) == []
    assert overlaps(covered) == [w(18, 20)]
    assert overlaps([w(0, 5), w(5, 10)]) == []


def test_report_counts_from_the_first_entry_to_the_checkpoint_per_version() -> None:
    entries = [entry(0, 5), entry(5, 10), entry(15, 20, "v2"), entry(10, 12, "v2", "backfill")]
    r = report("r", entries, since=T0 - 60 * MIN, until=T0 + 25 * MIN)
    # before the first entry nothing was due; after the last one the checkpoint is still owed
    assert r.holes == [w(12, 15), w(20, 25)] and not r.complete
    assert r.evaluated == [w(0, 12), w(15, 20)]
    assert r.by_version == {"v1": [w(0, 10)], "v2": [w(10, 12), w(15, 20)]}
    assert (r.entries, r.backfilled, r.overlaps) == (4, 1, [])
    clipped = report("r", entries, since=T0 + 7 * MIN, until=T0 + 12 * MIN)
    assert clipped.evaluated[0] == w(7, 12) and clipped.complete  # clipped at `since`


def test_backfill_windows_are_bounded_chunks_oldest_first() -> None:
    found = [w(30, 40), w(0, 25)]
    assert backfill_windows(found, max_chunk=10 * MIN, limit=4) == [w(0, 10), w(10, 20), w(20, 25), w(30, 40)]
    assert backfill_windows(found, max_chunk=10 * MIN, limit=2) == [w(0, 10), w(10, 20)]


def test_parse_since() -> None:
    assert parse_since("7d") == timedelta(days=7) and parse_since("90") == timedelta(seconds=90)
    with pytest.raises(ValueError, match="like 7d"):
        parse_since("soon")


# --- the engine's ledger and back-fill -------------------------------------------------------------


def test_every_committed_chunk_is_in_the_ledger_and_a_deleted_span_is_backfilled_once() -> None:
    clock, events = FakeClock(), EventLog()
    events.add(T0 - 95 * MIN, "old")
    events.add(T0 - 20 * MIN, "recent")
    engine, state, alerts = make_engine(events, clock, initial_lookback=7200, max_chunk=1800)
    ledger = MemoryLedger()
    engine.ledger = ledger
    rule = engine_rule("r")
    assert engine.run_rule(rule).chunks == 4
    r = report("r", ledger.entries("r"), since=T0 - 3 * 60 * MIN, until=state.health("r").checkpoint)
    assert r.complete and r.overlaps == [] and r.evaluated == [Window(T0 - 120 * MIN, T0 - 30 * S)]
    assert {e.outcome for e in ledger.entries("r")} == {"evaluated"}

    # lose the span that holds the "old" event: coverage shows the hole, back-fill evaluates it once
    lost = next(k for k in ledger.docs if k[1] <= T0 - 95 * MIN < k[2])
    del ledger.docs[lost]
    h = state.health("r")
    hole = report(
        "r", ledger.entries("r"), since=T0 - 3 * 60 * MIN, until=h.checkpoint, start=h.coverage_start
    )
    assert h.coverage_start == T0 - 120 * MIN
    assert hole.holes == [Window(lost[1], lost[2])]
    events.windows.clear()
    runs = engine.backfill([rule])
    assert [(x.backfilled, x.alerts_created, x.duplicates) for x in runs] == [(1, 0, 1)]  # alert existed
    assert events.windows == [Window(lost[1], lost[2])]
    assert ledger.docs[lost].outcome == "backfill"
    assert engine.backfill([rule]) == [] and len(alerts.docs) == 2
    assert state.health("r").checkpoint == T0 - 30 * S  # back-fill never moves a checkpoint


def test_backfill_is_bounded_per_call() -> None:
    clock, events = FakeClock(), EventLog()
    engine, _state, _ = make_engine(
        events, clock, max_chunk=600, initial_lookback=3600, backfill_max_windows=2
    )
    ledger = MemoryLedger()
    engine.ledger = ledger
    rule = engine_rule("r")
    engine.run_rule(rule)
    entries = ledger.entries("r")
    for e in entries[1:4]:
        del ledger.docs[("r", e.start, e.end)]
    assert sum(x.backfilled for x in engine.backfill([rule])) == 2
    assert sum(x.backfilled for x in engine.backfill([rule])) == 1
    assert engine.backfill([rule]) == []


# --- lease fencing ---------------------------------------------------------------------------------


class MemoryLeaseStore:
    """LeaseStore's contract: conditional writes on a sequence number."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None

    def _write(
        self, holder: str, acquired: datetime, now: datetime, ttl: timedelta, takeovers: int
    ) -> LeaseRecord:
        seq = self.record.seq_no + 1 if self.record else 0
        self.record = LeaseRecord("engine", holder, acquired, now, now + ttl, takeovers, seq, 1)
        return self.record

    def try_acquire(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> LeaseRecord | None:
        cur = self.record
        if cur is not None and cur.holder != holder and not cur.expired(now):
            return None
        return self._write(holder, now, now, ttl, (cur.takeovers + 1) if cur else 0)

    def renew(self, lease: LeaseRecord, *, now: datetime, ttl: timedelta) -> LeaseRecord:
        if self.record is None or self.record.seq_no != lease.seq_no:
            raise LeaseLost("taken over")
        return self._write(lease.holder, lease.acquired, now, ttl, lease.takeovers)

    def release(self, lease: LeaseRecord, *, now: datetime) -> None:
        self.renew(lease, now=now, ttl=timedelta(0))


def test_standby_takes_over_after_the_ttl_and_a_late_holder_is_fenced() -> None:
    clock, mono = FakeClock(), [0.0]
    store = MemoryLeaseStore()

    def lease(holder: str) -> EngineLease:
        return EngineLease(store, holder, ttl=10, renew=2, now=clock, monotonic=lambda: mono[0])  # type: ignore[arg-type]

    a, b = lease("a"), lease("b")
    assert a.tick() and not b.tick() and a.held() and not b.held()
    # a hangs: no renewal. It trusts its lease only ttl - renew = 8 s; b may take over after 10 s
    mono[0] += 8
    clock.advance(timedelta(seconds=8))
    assert not a.held() and not b.tick()
    with pytest.raises(LeaseLost):
        a.check()
    mono[0] += 2
    clock.advance(timedelta(seconds=2))
    assert b.tick() and b.held() and store.record is not None and store.record.takeovers == 1
    assert not a.tick()  # a wakes up: its renewal conflicts, it stays a standby


def test_an_engine_without_the_lease_neither_runs_nor_commits() -> None:
    clock, events = FakeClock(), EventLog()
    events.add(T0 - 5 * MIN, "e1")
    engine, state, alerts = make_engine(events, clock)
    mono = [0.0]
    store = MemoryLeaseStore()
    engine.lease = EngineLease(store, "me", ttl=10, renew=2, now=clock, monotonic=lambda: mono[0])  # type: ignore[arg-type]
    run = engine.run_rule(engine_rule())
    assert run.skipped is not None and "standby" in run.skipped and events.windows == []
    assert engine.lease.tick()

    def hang_past_the_lease(es: object, compiled: object, window: Window, *, limit: int) -> object:
        mono[0] += 9  # evaluation took longer than the lease can be trusted
        return events(es, compiled, window, limit=limit)

    engine.evaluator = hang_past_the_lease  # type: ignore[assignment]
    run = engine.run_rule(engine_rule())
    assert run.skipped is not None and run.skipped.startswith("lease lost")
    assert "r-ssh" not in state.docs  # nothing committed by a fenced engine
    assert len(alerts.docs) == 1  # its alert is stored (deterministic id: the new holder dedupes it)


def test_lease_settings_leave_room_for_two_renewals() -> None:
    from pydantic import ValidationError

    from hcm_soc.config import DetectionSettings

    assert DetectionSettings(lease_ttl=10, lease_renew=5).lease_renew == 5
    with pytest.raises(ValidationError, match="at most half of lease_ttl"):
        DetectionSettings(lease_ttl=10, lease_renew=6)
