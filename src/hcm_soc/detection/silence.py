"""The built-in silent-source check: a source that used to send events and stopped raises an alert
naming the rules that are now blind.

A source is one `event.dataset` on one `host.name` (events without a host form the dataset's
own source). Over a baseline (default the last 7 days of `event.ingested`) one composite
aggregation gives, per source, its event count, first and last ingest time, the last event and
the hours it was active in. Its usual gap is judged against its own rate:

    threshold = max(floor, k x mean inter-arrival gap, longest quiet stretch seen in the baseline)

where the mean gap is (last - first) / (count - 1) and the longest quiet stretch is the widest
run of empty buckets (default 1 h) between two active ones — so a source that always sleeps at
night, or sends once every 6 hours, is not silent after an hour, while one that sent every
minute is after the floor (default 15 min). A source with fewer than `min_events` events in the
baseline, or whose events all came within `min_history` (a one-shot import has no rate), is not
judged.

A source whose last event is older than its threshold is silent. The rules it blinds are those
whose log-source scope selected any of its baseline events (one `_msearch`, one `filters`
aggregation per silent source over the distinct scopes). The alert's id is a hash of the source
and its last event time (the start of the silence), so a check repeated during the same silence
creates nothing new, and a source that resumes is simply not silent any more.

`SilentSourceCheck(es, names, rules, params).assess(now)` reports every judged source;
`run(now)` also stores one alert per silent source (`hcm_soc.store.alerts.AlertStore`);
`run_silence_check(es, names, settings, now)` is what the engine schedules.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hcm_soc.detection.alerts import alert_id
from hcm_soc.detection.model import CompiledRule
from hcm_soc.models.alert import (
    RISK_SCORE,
    SEVERITY,
    Alert,
    AlertEventFields,
    AlertEventRef,
    AlertHcmFields,
    AlertRuleFields,
    AlertWindow,
    HcmRuleFields,
    NamedEntity,
)
from hcm_soc.store.alerts import AlertStore

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.config import Settings
    from hcm_soc.store.names import IndexNames

log = logging.getLogger(__name__)

RULE_ID = "hcm-soc-silent-source"
RULE_TITLE = "Silent source"
RULESET = "built-in"
RULE_VERSION = "1"
#: an alert lists at most this many blind rule ids (`blind_rules_total` keeps the true number)
MAX_LISTED_RULES = 200
#: ceiling of aggregation buckets one composite page may produce (the cluster default is 65,536)
BUCKET_BUDGET = 30_000


@dataclass(frozen=True, slots=True)
class SilenceParams:
    """Thresholds of the check (see the module doc)."""

    baseline: timedelta = timedelta(days=7)
    bucket: timedelta = timedelta(hours=1)
    gap_factor: float = 3.0  # k: silent after k mean inter-arrival gaps ...
    floor: timedelta = timedelta(minutes=15)  # ... and never before this
    min_events: int = 5  # fewer events in the baseline: not judged
    min_history: timedelta = timedelta(hours=1)  # first-to-last shorter (a one-shot import): not judged
    level: str = "medium"  # alert level when no blind rule is high or critical

    @classmethod
    def from_settings(cls, settings: Settings) -> SilenceParams:
        """The thresholds from `detection.silence_*` settings where the configuration has them
        (seconds for durations), the defaults above otherwise."""
        d = settings.detection
        default = cls()

        def seconds(name: str, fallback: timedelta) -> timedelta:
            value = getattr(d, f"silence_{name}", None)
            return fallback if value is None else timedelta(seconds=float(value))

        return cls(
            baseline=seconds("baseline", default.baseline),
            bucket=seconds("bucket", default.bucket),
            gap_factor=float(getattr(d, "silence_gap_factor", None) or default.gap_factor),
            floor=seconds("floor", default.floor),
            min_events=int(getattr(d, "silence_min_events", None) or default.min_events),
            min_history=seconds("min_history", default.min_history),
        )

    def __post_init__(self) -> None:
        if self.bucket <= timedelta(0) or self.baseline < self.bucket:
            raise ValueError("silence check: bucket must be positive and no longer than the baseline")
        if self.gap_factor <= 0 or self.min_events < 2:
            raise ValueError("silence check: gap_factor must be positive and min_events at least 2")


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the check concluded about one source at `now`."""

    dataset: str
    host: str | None
    events: int
    first_seen: datetime
    last_seen: datetime
    mean_gap: timedelta
    longest_gap: timedelta
    threshold: timedelta
    silent_for: timedelta
    last_event: tuple[str, str] | None  # (index, id)
    blind_rules: tuple[str, ...] = field(default=())

    @property
    def silent(self) -> bool:
        return self.silent_for > self.threshold

    @property
    def label(self) -> str:
        return f"{self.dataset} on {self.host}" if self.host else f"{self.dataset} (no host)"

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "host": self.host,
            "status": "silent" if self.silent else "ok",
            "events": self.events,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "mean_gap_seconds": round(self.mean_gap.total_seconds(), 3),
            "longest_gap_seconds": self.longest_gap.total_seconds(),
            "threshold_seconds": round(self.threshold.total_seconds(), 3),
            "silent_seconds": round(self.silent_for.total_seconds(), 3),
            "blind_rules": list(self.blind_rules),
        }


class SilentSourceCheck:
    """The check over the events under `names`, naming the blind ones among `rules`."""

    def __init__(
        self,
        es: Elasticsearch,
        names: IndexNames,
        rules: Iterable[CompiledRule] = (),
        params: SilenceParams | None = None,
    ) -> None:
        self.es = es
        self.names = names
        self.params = params or SilenceParams()
        self._rules: dict[str, CompiledRule] = {}
        for compiled in rules:
            self._rules.setdefault(compiled.rule.id, compiled)
        self.last_created = 0  # alerts the last `run` created (the others existed already)

    # -- assessing -------------------------------------------------------------------------------
    def assess(self, now: datetime) -> list[SourceState]:
        """Every source with enough events in the baseline; silent ones carry their blind rules."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        states = [s for s in self._sources(now) if s is not None]
        silent = [s for s in states if s.silent]
        blind = self._blind_rules(silent, now)
        out = [
            dataclasses.replace(s, blind_rules=blind.get((s.dataset, s.host), ())) if s.silent else s
            for s in states
        ]
        return sorted(out, key=lambda s: (not s.silent, s.dataset, s.host or ""))

    def run(self, now: datetime) -> list[Alert]:
        """Alerts for every source silent at `now`, stored (existing ones count as duplicates)."""
        alerts = [self.alert(s, now) for s in self.assess(now) if s.silent]
        result = AlertStore(self.es, self.names).create_many(alerts)
        self.last_created = result.created
        if alerts:
            log.info("silent-source check: %d silent source(s), %d new alert(s)", len(alerts), result.created)
        return alerts

    def _range(self, now: datetime) -> dict[str, Any]:
        return {
            "range": {
                "event.ingested": {
                    "gte": _iso(now - self.params.baseline),
                    "lt": _iso(now),
                    "format": "strict_date_optional_time",
                }
            }
        }

    def _sources(self, now: datetime) -> Iterable[SourceState | None]:
        p = self.params
        buckets_per_source = int(p.baseline / p.bucket) + 2
        page = max(1, min(1000, BUCKET_BUDGET // buckets_per_source))
        composite: dict[str, Any] = {
            "size": page,
            "sources": [
                {"dataset": {"terms": {"field": "event.dataset"}}},
                {"host": {"terms": {"field": "host.name", "missing_bucket": True}}},
            ],
        }
        aggs = {
            "first": {"min": {"field": "event.ingested"}},
            "last": {"max": {"field": "event.ingested"}},
            "active": {
                "date_histogram": {
                    "field": "event.ingested",
                    "fixed_interval": f"{int(p.bucket.total_seconds())}s",
                    "min_doc_count": 1,
                }
            },
            "latest": {"top_hits": {"size": 1, "sort": [{"event.ingested": "desc"}], "_source": False}},
        }
        after: dict[str, Any] | None = None
        while True:
            if after is not None:
                composite["after"] = after
            resp = self.es.search(
                index=self.names.events_pattern,
                size=0,
                query={"bool": {"filter": [self._range(now)]}},
                aggs={"sources": {"composite": composite, "aggs": aggs}},
                ignore_unavailable=True,
                allow_no_indices=True,
                track_total_hits=False,
            )
            agg = (resp.get("aggregations") or {}).get("sources")
            if not agg or not agg["buckets"]:
                return
            for b in agg["buckets"]:
                yield source_state(b, now, self.params)
            after = agg.get("after_key")
            if after is None or len(agg["buckets"]) < page:
                return

    def _blind_rules(
        self, silent: Sequence[SourceState], now: datetime
    ) -> dict[tuple[str, str | None], tuple[str, ...]]:
        """Per silent source, the rules whose scope selected its baseline events (one _msearch)."""
        if not silent or not self._rules:
            return {}
        scopes: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for compiled in self._rules.values():
            key = json.dumps(compiled.scope, sort_keys=True)
            scopes.setdefault(key, (compiled.scope or {"match_all": {}}, []))[1].append(compiled.rule.id)
        keys = {key: f"s{i}" for i, key in enumerate(scopes)}
        filters = {keys[key]: query for key, (query, _) in scopes.items()}
        searches: list[dict[str, Any]] = []
        for s in silent:
            host = (
                {"term": {"host.name": s.host}}
                if s.host is not None
                else {"bool": {"must_not": [{"exists": {"field": "host.name"}}]}}
            )
            query = {"bool": {"filter": [self._range(now), {"term": {"event.dataset": s.dataset}}, host]}}
            searches.append({"index": self.names.events_pattern, "ignore_unavailable": True})
            searches.append(
                {"size": 0, "query": query, "aggs": {"scopes": {"filters": {"filters": filters}}}}
            )
        resp = self.es.msearch(searches=searches)
        out: dict[tuple[str, str | None], tuple[str, ...]] = {}
        for s, answer in zip(silent, resp["responses"], strict=True):
            if "error" in answer:
                log.warning("silent-source check: blind rules of %s unknown: %s", s.label, answer["error"])
                continue
            buckets = answer["aggregations"]["scopes"]["buckets"]
            ids = sorted(
                rule_id
                for key, (_, rule_ids) in scopes.items()
                if buckets[keys[key]]["doc_count"] > 0
                for rule_id in rule_ids
            )
            out[(s.dataset, s.host)] = tuple(ids)
        return out

    # -- alerts ----------------------------------------------------------------------------------
    def alert(self, state: SourceState, now: datetime) -> Alert:
        """The alert for a silent source; its id depends on the source and the silence start only."""
        key = f"{len(state.dataset)}:{state.dataset}|{state.host or ''}|{_iso(state.last_seen)}"
        levels = [self._rules[r].rule.level for r in state.blind_rules if r in self._rules]
        level = "high" if any(lv in ("high", "critical") for lv in levels) else self.params.level
        listed = list(state.blind_rules[:MAX_LISTED_RULES])
        names = ", ".join(f"{r} '{self._rules[r].rule.title}'" if r in self._rules else r for r in listed[:5])
        more = len(state.blind_rules) - min(5, len(state.blind_rules))
        blind = (
            f"{len(state.blind_rules)} rule(s) now blind: {names}" + (f" and {more} more" if more else "")
            if state.blind_rules
            else "no enabled rule reads it"
        )
        message = (
            f"{RULE_TITLE}: {state.label} has sent no event since {state.last_seen:%Y-%m-%d %H:%M:%S}Z "
            f"({human_duration(state.silent_for)}; it usually sends every {human_duration(state.mean_gap)}, "
            f"silent after {human_duration(state.threshold)}); {blind}"
        )
        return Alert(
            id=alert_id(RULE_ID, key),
            timestamp=now,
            message=message,
            event=AlertEventFields(
                severity=SEVERITY[level], risk_score=RISK_SCORE[level], dataset=state.dataset
            ),
            rule=AlertRuleFields(
                id=RULE_ID,
                name=RULE_TITLE,
                ruleset=RULESET,
                description="A source that used to send events stopped, relative to its own recent rate; "
                "the rules that read its events are blind until it resumes.",
                version=RULE_VERSION,
            ),
            tags=["hcm-soc.silent-source"],
            host=NamedEntity(name=state.host) if state.host else None,
            hcm=AlertHcmFields(
                created=now,
                rule=HcmRuleFields(
                    id=RULE_ID,
                    title=RULE_TITLE,
                    level=level,  # type: ignore[arg-type]  # one of SEVERITY's keys
                    status="stable",
                    version=RULE_VERSION,
                ),
                window=AlertWindow(start=state.last_seen, end=now),
                match_key=key,
                events=[AlertEventRef(index=state.last_event[0], id=state.last_event[1])]
                if state.last_event
                else [],
                events_total=state.events,
                count=state.events,
                group={
                    "event.dataset": state.dataset,
                    "host.name": state.host,
                    "silent_since": _iso(state.last_seen),
                    "mean_gap_seconds": round(state.mean_gap.total_seconds(), 3),
                    "threshold_seconds": round(state.threshold.total_seconds(), 3),
                    "blind_rules": listed,
                    "blind_rules_total": len(state.blind_rules),
                },
                first_seen=state.first_seen,
                last_seen=state.last_seen,
            ),
        )


def source_state(bucket: dict[str, Any], now: datetime, p: SilenceParams) -> SourceState | None:
    """One composite bucket of the sources aggregation -> the source's state (None: too few events)."""
    count = int(bucket["doc_count"])
    if count < p.min_events:
        return None
    first = _from_ms(bucket["first"]["value"])
    last = _from_ms(bucket["last"]["value"])
    if last - first < p.min_history:
        return None
    mean_gap = (last - first) / (count - 1)
    keys = [int(b["key"]) for b in bucket["active"]["buckets"]]
    step = int(p.bucket.total_seconds() * 1000)
    longest_ms = max((b - a - step for a, b in itertools.pairwise(keys)), default=0)
    longest = timedelta(milliseconds=max(longest_ms, 0))
    hits = bucket["latest"]["hits"]["hits"]
    return SourceState(
        dataset=str(bucket["key"]["dataset"]),
        host=bucket["key"]["host"],
        events=count,
        first_seen=first,
        last_seen=last,
        mean_gap=mean_gap,
        longest_gap=longest,
        threshold=max(p.floor, mean_gap * p.gap_factor, longest),
        silent_for=now - last,
        last_event=(hits[0]["_index"], hits[0]["_id"]) if hits else None,
    )


def compile_detection_rules(settings: Settings, names: IndexNames) -> list[CompiledRule]:
    """The enabled detection rules of the configured rule folders, compiled (broken ones skipped:
    `hcm-soc rules validate` reports them)."""
    from hcm_soc.detection.compiler import RuleCompiler
    from hcm_soc.detection.loader import load_rules

    paths = [p for p in settings.paths.rules if p.exists()]
    if not paths:
        return []
    load = load_rules(paths)
    detections = [r for r in load.rules if r.kind == "detection" and r.enabled]
    compiled, _ = RuleCompiler(names).compile_all(detections)
    return compiled


def run_silence_check(
    es: Elasticsearch,
    names: IndexNames,
    settings: Settings,
    now: datetime,
    *,
    rules: Iterable[CompiledRule] | None = None,
    params: SilenceParams | None = None,
) -> int:
    """One scheduled run of the check: the number of alerts created (0 while nothing new is silent).

    Pass the engine's compiled `rules` to avoid compiling the rule folders again on every run."""
    compiled = list(rules) if rules is not None else compile_detection_rules(settings, names)
    check = SilentSourceCheck(es, names, compiled, params or SilenceParams.from_settings(settings))
    check.run(now)
    return check.last_created


def _from_ms(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value) / 1000, UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def human_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
