"""The values that cross the lines inside the detection package.

loader    -> LoadedRule / RuleProblem   (Sigma YAML read, validated, one bad rule never stops the others)
compiler  -> CompiledRule               (one detection rule as an Elasticsearch query + the Lucene text)
correlation -> CompiledCorrelation      (a Sigma v2 correlation over compiled base rules)
matcher / correlation -> Match          (what one run found in one Window)
engine    -> alerts, checkpoints, health (stored through hcm_soc.store)

A rule's definition (these types) and its runtime state (checkpoints, health,
stored in Elasticsearch) are separate on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

RuleKind = Literal["detection", "correlation"]


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One thing wrong with one rule file; `line` when the YAML position is known."""

    path: Path
    message: str
    rule_id: str | None = None
    title: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        who = " ".join(x for x in (self.rule_id, f"'{self.title}'" if self.title else None) if x)
        return f"{where}: {who + ': ' if who else ''}{self.message}"


@dataclass(frozen=True, slots=True, eq=False)
class LoadedRule:
    """A Sigma rule (or correlation rule) as read from disk, with what the engine needs to schedule it.

    `sigma` is the pySigma object (SigmaRule or SigmaCorrelationRule); `ruleset` names where the
    rule came from ("city" for `rules/`, else the configured directory's name).
    """

    id: str
    title: str
    kind: RuleKind
    path: Path
    ruleset: str
    level: str | None
    status: str | None
    product: str | None
    category: str | None
    service: str | None
    tags: tuple[str, ...]
    references: tuple[str, ...]
    description: str | None
    interval: timedelta | None  # per-rule override (custom attribute), None = settings default
    enabled: bool
    sigma: Any
    name: str | None = None  # Sigma `name:` (referenced by correlation rules), if any


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A detection rule ready to run: `query` is the Elasticsearch query clause for its selection
    (log-source conditions included, no time range); `lucene` is the text `hcm-soc rules convert`
    prints (identical to `sigma convert -t lucene -p hcm_soc`)."""

    rule: LoadedRule
    lucene: str
    query: dict[str, Any]
    indices: tuple[str, ...]
    scope: dict[str, Any] = field(default_factory=dict)  # the log-source conditions alone ("examined")
    # a cheaper query every event of the rule matches (detection.screen), None = none; exact: the same events
    screen: dict[str, Any] | None = None
    screen_exact: bool = False
    # the trigram screen (also on the costly leaves of fields with `.grams`; never exact), for indices
    # that have those sub-fields; None = the same as `screen`
    screen_grams: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open range [start, end) of `event.ingested` that one run examines."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("Window bounds must be timezone-aware (UTC)")
        if self.end < self.start:
            raise ValueError(f"Window end {self.end} is before its start {self.start}")


@dataclass(frozen=True, slots=True)
class EventRef:
    index: str
    id: str
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Match:
    """One finding of one rule in one run: the events behind it and, for correlations, the group.

    `key` is the stable part of the alert id: for a detection rule the matched event's id, for a
    correlation the group values plus the correlation window, so that a retried run produces the
    same key and the alert is created at most once.
    """

    rule_id: str
    key: str
    events: tuple[EventRef, ...]
    group: tuple[tuple[str, Any], ...] = ()
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class MatchResult:
    """What one run of one rule over one Window found; `examined` = events of the rule's log source
    in the window, `truncated` = more matches existed than the run's limit allowed."""

    matches: tuple[Match, ...]
    examined: int
    truncated: bool = False
