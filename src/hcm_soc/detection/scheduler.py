"""The rule set the engine runs, and APScheduler 3.x around the engine until it is stopped.

`prepare_rules` compiles loaded rules into `EngineRule`s (a rule that does not compile is
kept, with its reason, so its health says why it never runs). Rules are grouped by
interval, at most `GROUP_SIZE` per group, one interval job per group with
`max_instances=1` and `coalesce=True`: a slow run is never overlapped by the next one and
missed ticks collapse into one run. Inside one process the engine's per-rule lock also
keeps two runs of a rule apart; across processes (a second engine, `engine run --once`
beside a running engine) the optimistic concurrency of the state document does. A
failing rule stays in its group; `DetectionEngine.run_rule` skips it until its backoff
has passed. `start_engine` is what `hcm-soc engine run` and `hcm-soc run` call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

from hcm_soc.config import Settings
from hcm_soc.detection.engine import Clock, DetectionEngine, EngineRule, RuleRun, utc_now
from hcm_soc.detection.model import LoadedRule, RuleProblem
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger("hcm_soc.detection.scheduler")

#: Rules per job: small enough that the thread pool spreads a large rule set, large enough that
#: thousands of rules do not become thousands of jobs.
GROUP_SIZE = 20
COUNTERS_JOB = "engine-counters"


# --- the rule set the engine runs ------------------------------------------------------------


def rule_version(rule: LoadedRule) -> str:
    """A hash of the rule's definition: what it says, not where its file is."""
    sigma = rule.sigma
    try:
        text = json.dumps(sigma.to_dict(), sort_keys=True, default=str)
    except Exception:  # an odd rule pySigma cannot serialise back: fall back to the file's bytes
        try:
            text = rule.path.read_text("utf-8")
        except OSError:
            text = f"{rule.id}\x1f{rule.title}\x1f{rule.level}\x1f{rule.status}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _reason(e: Exception, rule: LoadedRule) -> str:
    """The error without the file/rule prefix the compilers put in front (RuleProblem adds its own)."""
    reason = getattr(e, "reason", None)
    if isinstance(reason, str):
        return reason
    text = str(e)
    for prefix in (f"{rule.path}: correlation {rule.id} '{rule.title}': ", f"{rule.path}: "):
        text = text.removeprefix(prefix)
    return text


def _referenced(corr: LoadedRule) -> list[str]:
    refs = getattr(corr.sigma, "rules", None) or []
    return [str(getattr(r, "reference", r)) for r in refs]


def prepare_rules(
    rules: Sequence[LoadedRule], names: IndexNames, *, default_interval: timedelta
) -> tuple[list[EngineRule], list[RuleProblem]]:
    """Compile every enabled rule; a rule that fails to compile becomes an EngineRule with `error`
    (its health records why) and a RuleProblem, and never stops the others.

    Detection rules referenced by a correlation run on their own only if a referencing correlation
    says `generate: true` (Sigma v2: referenced rules produce no alerts of their own by default)."""
    from hcm_soc.detection.compiler import RuleCompiler

    compiler = RuleCompiler(names)
    problems: list[RuleProblem] = []
    compiled: dict[str, Any] = {}
    out: list[EngineRule] = []
    detections = [r for r in rules if r.kind == "detection"]
    correlations = [r for r in rules if r.kind == "correlation"]
    by_id: dict[str, EngineRule] = {}

    def engine_rule(rule: LoadedRule, comp: Any, error: str | None) -> EngineRule:
        return EngineRule(rule, comp, rule_version(rule), rule.interval or default_interval, error)

    for rule in detections:
        try:
            compiled[rule.id] = compiler.compile(rule)
            by_id[rule.id] = engine_rule(rule, compiled[rule.id], None)
        except Exception as e:  # one bad rule never stops the others
            why = f"cannot compile: {_reason(e, rule)}"
            if rule.enabled:
                problems.append(RuleProblem(rule.path, why, rule.id, rule.title))
            by_id[rule.id] = engine_rule(rule, None, why)
    base: dict[str, Any] = dict(compiled)
    for rule in detections:
        if rule.name and rule.id in compiled:
            base[rule.name] = compiled[rule.id]
    silenced: dict[str, bool] = {}  # base rule id -> still generates its own alerts
    for corr in correlations:
        generate = bool(getattr(corr.sigma, "generate", False))
        for ref in _referenced(corr):
            target = next((r.id for r in detections if ref in (r.id, r.name)), None)
            if target is not None:
                silenced[target] = silenced.get(target, False) or generate
        if not corr.enabled:
            continue
        try:
            from hcm_soc.detection.correlation import compile_correlation

            out.append(engine_rule(corr, compile_correlation(corr, base), None))
        except Exception as e:  # one bad rule never stops the others
            why = f"cannot compile: {_reason(e, corr)}"
            problems.append(RuleProblem(corr.path, why, corr.id, corr.title))
            out.append(engine_rule(corr, None, why))
    for rule in detections:
        if rule.enabled and silenced.get(rule.id, True):
            out.append(by_id[rule.id])
    return sorted(out, key=lambda r: r.id), problems


# --- jobs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleGroup:
    job_id: str
    interval: timedelta
    rules: tuple[EngineRule, ...]


def group_rules(rules: Sequence[EngineRule], *, size: int = GROUP_SIZE) -> list[RuleGroup]:
    """Rules with the same interval, sorted by id, cut into groups of at most `size`."""
    by_interval: dict[timedelta, list[EngineRule]] = {}
    for r in sorted(rules, key=lambda r: r.id):
        by_interval.setdefault(r.interval, []).append(r)
    groups: list[RuleGroup] = []
    for interval, members in sorted(by_interval.items()):
        seconds = f"{interval.total_seconds():g}s"
        for n, i in enumerate(range(0, len(members), size)):
            groups.append(RuleGroup(f"rules-{seconds}-{n}", interval, tuple(members[i : i + size])))
    return groups


class EngineScheduler:
    """The jobs of one engine on one APScheduler scheduler (a BackgroundScheduler by default)."""

    def __init__(
        self,
        engine: DetectionEngine,
        rules: Sequence[EngineRule],
        *,
        jitter: float,
        scheduler: BaseScheduler | None = None,
        workers: int = 2,
        counters_every: float = 60.0,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.engine = engine
        self.groups = group_rules(rules)
        self.jitter = jitter
        self.counters_every = counters_every
        self.stop_event = stop_event or threading.Event()
        self.scheduler = scheduler or BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=workers)}
        )

    def add_jobs(self, *, first_run: datetime | None = None) -> None:
        """One interval job per group (first run at `first_run`, default now) plus a counters job."""
        start = first_run or datetime.now(UTC)
        for group in self.groups:
            seconds = group.interval.total_seconds()
            self.scheduler.add_job(
                self.run_group,
                trigger=IntervalTrigger(seconds=seconds, jitter=self.jitter or None, timezone=UTC),
                args=[group],
                id=group.job_id,
                name=f"{len(group.rules)} rule(s) every {seconds:g}s",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(seconds)),
                next_run_time=start,
                replace_existing=True,
            )
        self.scheduler.add_job(
            self.log_counters,
            trigger=IntervalTrigger(seconds=self.counters_every, timezone=UTC),
            id=COUNTERS_JOB,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )

    def run_group(self, group: RuleGroup) -> list[RuleRun]:
        """The job: run each rule of the group in turn; stop early when the engine is stopping."""
        runs: list[RuleRun] = []
        for rule in group.rules:
            if self.stop_event.is_set():
                break
            try:
                runs.append(self.engine.run_rule(rule))
            except Exception:  # run_rule records its own failures; this is a bug, keep the others going
                log.exception("rule run crashed", extra={"rule_id": rule.id, "job": group.job_id})
        return runs

    def log_counters(self) -> None:
        log.info("engine counters", extra=self.engine.stats())

    def start(self) -> None:
        self.add_jobs()
        self.scheduler.start()
        log.info(
            "detection engine started",
            extra={"rules": sum(len(g.rules) for g in self.groups), "jobs": len(self.groups)},
        )

    def shutdown(self, *, wait: bool = True) -> None:
        self.stop_event.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        self.log_counters()


@dataclass
class EngineHandle:
    """A running engine: `stop()` (or setting the stop event) ends it; `join()` waits for the end."""

    engine: DetectionEngine
    scheduler: EngineScheduler
    thread: threading.Thread
    stop_event: threading.Event
    rules: list[EngineRule] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """True when the engine has stopped (every job finished)."""
        self.thread.join(timeout)
        return not self.thread.is_alive()


def load_engine_rules(
    settings: Settings, names: IndexNames, paths: Sequence[Path] | None = None
) -> tuple[list[EngineRule], list[RuleProblem]]:
    """Load, validate and compile the rules of `paths` (default settings.paths.rules)."""
    from hcm_soc.detection.loader import load_rules

    loaded = load_rules(list(paths if paths is not None else settings.paths.rules))
    rules, problems = prepare_rules(
        loaded.rules, names, default_interval=timedelta(seconds=settings.detection.interval)
    )
    return rules, [*loaded.problems, *problems]


def start_engine(
    settings: Settings,
    es: Elasticsearch,
    names: IndexNames,
    *,
    stop_event: threading.Event,
    rules: Sequence[EngineRule] | None = None,
    now: Clock = utc_now,
    workers: int = 2,
) -> EngineHandle:
    """Start the scheduled engine in the background; it runs until `stop_event` is set.

    Rules come from settings.paths.rules unless given. Rules that cannot be loaded or compiled are
    logged (and in `handle.problems`); the others run."""
    problems: list[RuleProblem] = []
    if rules is None:
        loaded, problems = load_engine_rules(settings, names)
    else:
        loaded = list(rules)
    for p in problems:
        log.warning("rule skipped", extra={"problem": str(p)})
    engine = DetectionEngine(es, names, settings.detection, now=now, stop_event=stop_event)
    sched = EngineScheduler(
        engine, loaded, jitter=settings.detection.jitter, workers=workers, stop_event=stop_event
    )
    sched.start()

    def wait_for_stop() -> None:
        stop_event.wait()
        log.info("detection engine stopping (waiting for running rules)")
        sched.shutdown(wait=True)

    thread = threading.Thread(target=wait_for_stop, name="hcm-soc-engine", daemon=True)
    thread.start()
    return EngineHandle(engine, sched, thread, stop_event, list(loaded), problems)
