"""Pure evaluation of one correlation group: sliding windows over its events and which bursts to report.

No Elasticsearch here: `correlation.py` fetches the events of one group (their @timestamp,
event.ingested, which base rules they matched and, for value_count, the field's values) and
`new_bursts` decides which correlation windows became true in the run's ingest window.

The semantics (also in docs/detection-correlation.md):

- A correlation window is anchored at an event e of the group: W(e) holds the group's events
  with @timestamp in [t_e, t_e + timespan] (inclusive: "all within `timespan`"). Windows start at
  every event, so they slide: a burst that straddles any fixed bucket boundary is still found.
- "At least" conditions (gt, gte, temporal without `not`) can only become true as events are
  added. W(e) is reported when it satisfies the condition and no window that starts in
  [t_e - timespan, t_e) does: one alert at the start of a burst, none for the rest of it while
  it continues without the condition ever being false for a whole timespan.
- Other conditions (lt, lte, eq, neq, extended conditions with `not`) are only decided on
  closed windows that start a session: e follows at least `timespan` without any event of the
  group, and t_e + timespan is before the run's ingest horizon. A group with no events at all
  is never reported (the set of groups is only known from their events).
- A run over ingest window [S, E) reports the anchors decided true with the events ingested
  before E and not with those ingested before S, so contiguous runs report each burst once and a
  re-run of the same window reports the same bursts again (same key: the engine's
  `op_type=create` keeps one alert).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

CorrelationType = Literal["event_count", "value_count", "temporal", "temporal_ordered"]
ConditionOp = Literal["gt", "gte", "lt", "lte", "eq", "neq"]
#: An extended temporal condition (`condition: a and (b or not c)`) as a predicate on the bitmask
#: of base rules seen in a window (bit i = the i-th referenced rule).
Expression = Callable[[int], bool]

_OPS: dict[str, Callable[[int, int], bool]] = {
    "gt": lambda n, c: n > c,
    "gte": lambda n, c: n >= c,
    "lt": lambda n, c: n < c,
    "lte": lambda n, c: n <= c,
    "eq": lambda n, c: n == c,
    "neq": lambda n, c: n != c,
}


@dataclass(frozen=True, slots=True)
class CorrelationCondition:
    """`op count`, e.g. gte 5. `monotone` = can only become true as events are added."""

    op: ConditionOp
    count: int

    def holds(self, measure: int) -> bool:
        return _OPS[self.op](measure, self.count)

    @property
    def monotone(self) -> bool:
        return self.op in ("gt", "gte")

    def __str__(self) -> str:
        return f"{self.op} {self.count}"


class Measure(Enum):
    """What a window's number is: events, distinct values, distinct rules, or in-order rule prefix."""

    EVENTS = "event_count"
    VALUES = "value_count"
    RULES = "temporal"
    ORDERED = "temporal_ordered"


@dataclass(frozen=True, slots=True)
class EvalSpec:
    """What the evaluator needs of a compiled correlation."""

    measure: Measure
    timespan_ms: int
    n_rules: int
    condition: CorrelationCondition | None = None  # None only with an expression
    expression: Expression | None = None
    expression_monotone: bool = True

    def __post_init__(self) -> None:
        if (self.condition is None) == (self.expression is None):
            raise ValueError("EvalSpec needs exactly one of condition and expression")
        if self.timespan_ms <= 0:
            raise ValueError("timespan must be positive")

    @property
    def monotone(self) -> bool:
        if self.condition is not None:
            return self.condition.monotone
        return self.expression_monotone

    def satisfied(self, measure: int, mask: int) -> bool:
        if self.expression is not None:
            return self.expression(mask)
        assert self.condition is not None
        return self.condition.holds(measure)

    def upper_bound_possible(self, events: int, mask: int) -> bool:
        """Can any window of a group whose range holds `events` events matching rules `mask` satisfy
        a monotone condition? (Used to skip groups without fetching their events.)"""
        if self.expression is not None:
            return self.expression(mask)
        assert self.condition is not None
        if self.measure in (Measure.EVENTS, Measure.VALUES):
            return self.condition.holds(events)
        return self.condition.holds(mask.bit_count())


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """One event of the group: times in epoch milliseconds, `rules` = bitmask of matched base rules."""

    ts: int
    id: str
    index: str
    ingested: int
    rules: int
    values: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Burst:
    """A correlation window that satisfied the condition: anchored at `start` (ms), its last event at
    `end`, `measure` its number (events, distinct values or rules), `events` in @timestamp order."""

    start: int
    end: int
    measure: int
    events: tuple[GroupEvent, ...]


def merge_events(events: Sequence[GroupEvent]) -> list[GroupEvent]:
    """One GroupEvent per _id (an event can match several base rules or sit in two backing indices),
    sorted by (@timestamp, _id)."""
    by_id: dict[str, GroupEvent] = {}
    for ev in events:
        old = by_id.get(ev.id)
        if old is None:
            by_id[ev.id] = ev
        else:
            by_id[ev.id] = GroupEvent(
                min(old.ts, ev.ts),
                ev.id,
                old.index,
                min(old.ingested, ev.ingested),
                old.rules | ev.rules,
                old.values | ev.values,
            )
    return sorted(by_id.values(), key=lambda e: (e.ts, e.id))


def new_bursts(
    spec: EvalSpec,
    events: Sequence[GroupEvent],
    *,
    start: int,
    end: int,
    anchor_lo: int,
    anchor_hi: int,
) -> list[Burst]:
    """Bursts of this group that the run over ingest window [start, end) reports.

    `events` must be merged and sorted (see `merge_events`) and hold every event of the group with
    @timestamp in [anchor_lo - timespan, anchor_hi + timespan] ingested before `end`; only anchors
    in [anchor_lo, anchor_hi] are decided (their inputs are complete)."""
    after = _decide(spec, [e for e in events if e.ingested < end], end, anchor_lo, anchor_hi)
    before = _decide(spec, [e for e in events if e.ingested < start], start, anchor_lo, anchor_hi)
    return [b for ts, b in sorted(after.items()) if ts not in before]


def _decide(
    spec: EvalSpec, events: list[GroupEvent], horizon: int, anchor_lo: int, anchor_hi: int
) -> dict[int, Burst]:
    """The anchors (@timestamp ms -> Burst) reported given exactly these events."""
    if not events:
        return {}
    t = spec.timespan_ms
    ts = [e.ts for e in events]
    # one anchor per distinct @timestamp: events at the same instant share one window
    anchors = [i for i in range(len(events)) if i == 0 or ts[i] != ts[i - 1]]
    window_end = [bisect.bisect_right(ts, ts[i] + t) - 1 for i in anchors]
    measures, masks = _window_measures(spec, events, anchors, window_end)
    sat = [spec.satisfied(m, k) for m, k in zip(measures, masks, strict=True)]
    out: dict[int, Burst] = {}
    if spec.monotone:
        lo = 0  # first anchor with ts >= ts[a] - t
        sat_in_range = 0  # satisfied anchors in [lo, a)
        for a, i in enumerate(anchors):
            while ts[anchors[lo]] < ts[i] - t:
                sat_in_range -= sat[lo]
                lo += 1
            if sat[a] and sat_in_range == 0 and anchor_lo <= ts[i] <= anchor_hi:
                out[ts[i]] = _burst(events, i, window_end[a], measures[a])
            sat_in_range += sat[a]
    else:
        for a, i in enumerate(anchors):
            session_start = a == 0 or ts[anchors[a - 1]] < ts[i] - t
            closed = ts[i] + t < horizon
            if session_start and closed and sat[a] and anchor_lo <= ts[i] <= anchor_hi:
                out[ts[i]] = _burst(events, i, window_end[a], measures[a])
    return out


def _burst(events: list[GroupEvent], i: int, j: int, measure: int) -> Burst:
    return Burst(events[i].ts, events[j].ts, measure, tuple(events[i : j + 1]))


def _window_measures(
    spec: EvalSpec, events: list[GroupEvent], anchors: list[int], window_end: list[int]
) -> tuple[list[int], list[int]]:
    """For each anchor: the window's measure and the bitmask of rules seen, sliding in O(n) (ordered
    temporal: O(n * rules))."""
    measures: list[int] = []
    masks: list[int] = []
    values: Counter[str] = Counter()
    rule_counts = [0] * spec.n_rules
    left = 0
    right = -1
    nxt = _next_occurrence(events, spec.n_rules) if spec.measure is Measure.ORDERED else []
    first_at_ts = _first_index_of_ts(events) if spec.measure is Measure.ORDERED else []
    for i, j in zip(anchors, window_end, strict=True):
        while right < j:
            right += 1
            ev = events[right]
            values.update(ev.values)
            for r in _bits(ev.rules):
                rule_counts[r] += 1
        while left < i:
            ev = events[left]
            values.subtract(ev.values)
            for v in ev.values:
                if values[v] <= 0:
                    del values[v]
            for r in _bits(ev.rules):
                rule_counts[r] -= 1
            left += 1
        mask = sum(1 << r for r, c in enumerate(rule_counts) if c > 0)
        masks.append(mask)
        if spec.measure is Measure.EVENTS:
            measures.append(j - i + 1)
        elif spec.measure is Measure.VALUES:
            measures.append(len(values))
        elif spec.measure is Measure.RULES:
            measures.append(mask.bit_count())
        else:
            measures.append(_ordered_prefix(nxt, first_at_ts, i, j, spec.n_rules))
    return measures, masks


def _bits(mask: int) -> list[int]:
    return [r for r in range(mask.bit_length()) if mask >> r & 1]


def _next_occurrence(events: list[GroupEvent], n_rules: int) -> list[list[int]]:
    """nxt[r][k] = the first index >= k whose event matched rule r (len(events) if none)."""
    n = len(events)
    nxt = [[n] * (n + 1) for _ in range(n_rules)]
    for k in range(n - 1, -1, -1):
        for r in range(n_rules):
            nxt[r][k] = k if events[k].rules >> r & 1 else nxt[r][k + 1]
    return nxt


def _first_index_of_ts(events: list[GroupEvent]) -> list[int]:
    out: list[int] = []
    for k, ev in enumerate(events):
        out.append(out[k - 1] if k and events[k - 1].ts == ev.ts else k)
    return out


def _ordered_prefix(nxt: list[list[int]], first_at_ts: list[int], i: int, j: int, n_rules: int) -> int:
    """How many of the rules, in their listed order, occur one after another in events[i..j].

    Greedy earliest match is optimal for a fixed order. Events at the same @timestamp count as in
    order either way (logs often have second resolution), so the search for the next rule restarts
    at the first event of the previous match's instant."""
    pos = i
    matched = 0
    for r in range(n_rules):
        k = nxt[r][pos]
        if k > j:
            break
        matched += 1
        pos = first_at_ts[k]
    return matched
