"""The rule set the engine runs, and APScheduler 3.x around the engine until it is stopped.

`prepare_rules` compiles loaded rules into `EngineRule`s (a rule that does not compile is
kept, with its reason, so its health says why it never runs). Rules are grouped by
interval, at most `GROUP_SIZE` per group, one interval job per group with
`max_instances=1` and `coalesce=True`: a slow run is never overlapped by the next one and
missed ticks collapse into one run. Inside one process the engine's per-rule lock also
keeps two runs of a rule apart; across processes (a second engine, `engine run --once`
beside a running engine) the optimistic concurrency of the state document does. A
failing rule stays in its group; `DetectionEngine.run_rule` skips it until its backoff
has passed. A job first evaluates its plain detection rules in one batch (`engine.prefetch`),
then runs each rule, then — every `backfill_every` seconds — fills the holes of their coverage
ledger. With `detection.lease` on, `start_engine` runs the lease thread (detection/lease.py):
jobs of an engine that does not hold the lease do nothing, so a second engine is a standby
that takes over within `lease_ttl + lease_renew`. `start_engine` is what `hcm-soc engine run`
and `hcm-soc run` call.

The running engine also has a reload job (every `detection.reload_every` seconds): when a rule
file or a rule written in the web console changed (detection/ruleset.py), the rule set is
loaded again and only the jobs whose rules changed are replaced, added or removed — no restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

from hcm_soc.config import Settings
from hcm_soc.detection.engine import (
    DEFERRED,
    Clock,
    DetectionEngine,
    EngineRule,
    Pending,
    Prefetched,
    RuleRun,
    batchable,
    utc_now,
)
from hcm_soc.detection.model import LoadedRule, MatchResult, RuleProblem, Window
from hcm_soc.store.detection_state import RuleState, StateConflict
from hcm_soc.store.lease import LeaseLost
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.detection.lease import EngineLease

log = logging.getLogger("hcm_soc.detection.scheduler")

#: Rules per job: small enough that the thread pool spreads a large rule set, large enough that
#: thousands of rules do not become thousands of jobs.
GROUP_SIZE = 20
COUNTERS_JOB = "engine-counters"
SILENCE_JOB = "silent-sources"
RELOAD_JOB = "rules-reload"
#: default of `detection.reload_every` until config.py carries it
DEFAULT_RELOAD_EVERY = 30.0


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


# --- one group: batched evaluation, group commit ------------------------------------------------


def run_group(engine: DetectionEngine, rules: Sequence[EngineRule], *, force: bool = False) -> list[RuleRun]:
    """Run `rules` in turn (stopping early when the engine stops). With `settings.batch`, the plain
    detection rules with a single window are evaluated first in one batch, and committed together
    afterwards: a few requests for the whole group instead of three per rule."""
    prefetched = prefetch(engine, rules)
    pending: list[Pending] = []
    runs: list[RuleRun] = []
    for rule in rules:
        if engine.stop_event.is_set():
            break
        ahead = prefetched.get(rule.id)
        defer = pending if ahead is not None and ahead.result is not None else None
        try:
            runs.append(engine.run_rule(rule, force=force, prefetched=ahead, defer=defer))
        except Exception:  # run_rule records its own failures; this is a bug, keep the others going
            log.exception("rule run crashed", extra={"rule_id": rule.id})
    final = commit_pending(engine, pending)
    return [final.get(r.rule_id, r) if r.skipped == DEFERRED else r for r in runs]


def commit_pending(engine: DetectionEngine, pending: Sequence[Pending]) -> dict[str, RuleRun]:
    """Commit deferred single-window runs: the lease check, one conditional `_bulk` of their states,
    then one `_bulk` of ledger entries for those committed. Each rule ends as if run alone."""
    out: dict[str, RuleRun] = {}
    if not pending:
        return out
    try:
        if engine.lease is not None:
            engine.lease.check()
        save_many = getattr(engine.state, "save_many", None)
        end = engine.now()
        if save_many is not None:
            results: list[RuleState | Exception] = list(save_many([p.new for p in pending], updated=end))
        else:
            results = []
            for p in pending:
                try:
                    results.append(engine.state.save(p.new, updated=end))
                except Exception as e:  # reported per rule below
                    results.append(e)
    except Exception as e:  # lease lost or Elasticsearch down: every pending rule ends the same way
        results = [e] * len(pending)
    entries: list[tuple[Pending, RuleRun]] = []
    for p, res in zip(pending, results, strict=True):
        if isinstance(res, StateConflict | LeaseLost):
            lost = isinstance(res, LeaseLost)
            why = "lease lost" if lost else "stopped: another engine instance changed its state"
            out[p.rule.id] = RuleRun(p.rule.id, skipped=f"{why} ({res})")
            engine.count_run(out[p.rule.id], conflict=not lost)
        elif isinstance(res, Exception):
            out[p.rule.id] = engine.fail_run(p.rule, p.state, p.started, p.t0, res, chunks=0, window=None)
        else:
            out[p.rule.id] = engine.finish_run(p.rule, replace(p.done, skipped=None), p.gaps, p.t0)
            entries.append((p, p.chunk))
    if engine.ledger is not None and entries:
        try:
            engine.ledger.record(
                [engine.ledger_entry(p.rule, p.chunk, p.run_id, "evaluated") for p, _ in entries]
            )
        except Exception as e:  # back-fill repairs missing entries (see record_coverage)
            log.error("could not record coverage", extra={"rules": len(entries), "error": str(e)})
    return out


def prefetch(engine: DetectionEngine, rules: Sequence[EngineRule]) -> dict[str, Prefetched]:
    """States (one `_mget`) and single-window results (one batch) of the plain detection rules
    among `rules`, for `run_rule(prefetched=...)`; empty when `settings.batch` is off."""
    candidates = [r for r in rules if batchable(r)] if engine.settings.batch else []
    if not candidates or (engine.lease is not None and not engine.lease.held()):
        return {}
    started = engine.now()
    try:
        load_many = getattr(engine.state, "load_many", None)
        states = (
            load_many([r.id for r in candidates])
            if load_many is not None
            else {r.id: engine.state.load(r.id) for r in candidates}
        )
    except Exception as e:  # each rule then reads its own state and reports its own failure
        log.warning("could not read the states of a rule group", extra={"error": str(e)})
        return {}
    out: dict[str, Prefetched] = {}
    items: list[tuple[EngineRule, Window]] = []
    for r in candidates:
        state = states[r.id]
        windows = engine.plan(state.health.checkpoint, started)
        out[r.id] = Prefetched(started, state)
        if len(windows) == 1:
            items.append((r, windows[0]))
    if not items:
        return out
    try:
        results = engine.batch_evaluator(
            engine.es, [(r.compiled, w) for r, w in items], limit=engine.settings.max_alerts_per_run
        )
    except Exception as e:  # the batch failed as a whole: every rule searches on its own
        log.warning("batch evaluation failed; rules run one by one", extra={"error": str(e)})
        return out
    with engine.guard:
        engine.counters.batched += len(items)
    for (r, w), res in zip(items, results, strict=True):
        if isinstance(res, MatchResult):  # a refused item runs alone and records its own error
            out[r.id] = Prefetched(started, states[r.id], w, res)
    return out


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
        silence: Callable[[datetime], int] | None = None,
        silence_every: float = 300.0,
        reload: Callable[[], Sequence[EngineRule] | None] | None = None,
        reload_every: float = DEFAULT_RELOAD_EVERY,
    ) -> None:
        self.engine = engine
        # returns the new rule set, or None when nothing changed (see detection/ruleset.py)
        self.reload = reload
        self.reload_every = reload_every
        self.rules: list[EngineRule] = list(rules)
        self._jobs_lock = threading.Lock()
        self.silence = silence  # the built-in silent-source check, run on the lease holder only
        self.silence_every = silence_every
        self.groups = group_rules(rules)
        self.jitter = jitter
        self.counters_every = counters_every
        self.stop_event = stop_event or threading.Event()
        self._last_backfill: dict[str, float] = {}
        self.scheduler = scheduler or BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=workers)}
        )

    def add_jobs(self, *, first_run: datetime | None = None) -> None:
        """One interval job per group (first run at `first_run`, default now) plus a counters job."""
        start = first_run or datetime.now(UTC)
        for group in self.groups:
            self._add_group(group, start)
        if self.reload is not None:
            self.scheduler.add_job(
                self.run_reload,
                trigger=IntervalTrigger(seconds=self.reload_every, timezone=UTC),
                id=RELOAD_JOB,
                max_instances=1,
                coalesce=True,
                replace_existing=True,
            )
        if self.silence is not None:
            self.scheduler.add_job(
                self.run_silence,
                trigger=IntervalTrigger(seconds=self.silence_every, timezone=UTC),
                id=SILENCE_JOB,
                max_instances=1,
                coalesce=True,
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

    def _add_group(self, group: RuleGroup, start: datetime) -> None:
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

    def replace_rules(self, rules: Sequence[EngineRule]) -> dict[str, int]:
        """Swap in a new rule set: jobs whose rules (ids, versions, errors) are unchanged keep their
        schedule; changed and new groups are (re)added to run now; groups that are gone are removed.
        Returns counts of rules added, removed and changed, for the log."""
        from hcm_soc.detection.ruleset import group_signature, rule_changes

        with self._jobs_lock:
            groups = group_rules(rules)
            before = {g.job_id: group_signature(g.interval, g.rules) for g in self.groups}
            now = datetime.now(UTC)
            for group in groups:
                if before.get(group.job_id) != group_signature(group.interval, group.rules):
                    self._add_group(group, now)
            for job_id in before.keys() - {g.job_id for g in groups}:
                if self.scheduler.get_job(job_id) is not None:
                    self.scheduler.remove_job(job_id)
            counts = rule_changes(self.rules, rules)
            self.groups, self.rules = groups, list(rules)
        return counts

    def run_reload(self) -> dict[str, int] | None:
        """The reload job: the new rule set when rule files or console rules changed, else nothing.
        A failure (Elasticsearch away, a crash) keeps the current rules and is logged."""
        if self.reload is None or self.stop_event.is_set():
            return None
        try:
            rules = self.reload()
            if rules is None:
                return None
            counts = self.replace_rules(rules)
        except Exception:  # isolation boundary: a failed reload must never stop the running rules
            log.exception("rule reload failed; the current rules keep running")
            return None
        log.info("rules reloaded", extra={**counts, "rules": len(self.rules), "jobs": len(self.groups)})
        return counts

    def run_group(self, group: RuleGroup) -> list[RuleRun]:
        """The job: batch-evaluate, run each rule of the group in turn, back-fill now and then; stop
        early when the engine is stopping; nothing while another engine holds the lease."""
        runs: list[RuleRun] = []
        lease = self.engine.lease
        if self.stop_event.is_set() or (lease is not None and not lease.held()):
            return runs
        try:
            runs += self.engine.run_group(group.rules)
        except Exception:  # run_group isolates each rule; a bug here must not stop the scheduler
            log.exception("rule group crashed", extra={"job": group.job_id})
        last = self._last_backfill.get(group.job_id)
        if last is None or time.monotonic() - last >= self.engine.settings.backfill_every:
            self._last_backfill[group.job_id] = time.monotonic()
            try:
                runs += self.engine.backfill(group.rules)
            except Exception:  # backfill isolates its own failures; a bug here must not stop the job
                log.exception("back-fill crashed", extra={"job": group.job_id})
        return runs

    def run_silence(self) -> int:
        """The silent-source job: alerts for sources that stopped sending (0 when none, or when
        another engine holds the lease)."""
        lease = self.engine.lease
        if self.silence is None or self.stop_event.is_set() or (lease is not None and not lease.held()):
            return 0
        try:
            created = self.silence(datetime.now(UTC))
        except Exception:  # isolation boundary: the check must never stop the rules' jobs
            log.exception("silent-source check failed")
            return 0
        if created:
            log.info("silent sources", extra={"alerts_created": created})
        return created

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
    settings: Settings,
    names: IndexNames,
    paths: Sequence[Path] | None = None,
    *,
    client: Elasticsearch | None = None,
) -> tuple[list[EngineRule], list[RuleProblem]]:
    """Load, validate and compile the rules of `paths` (default settings.paths.rules); with `client`,
    merged with the rules written in the web console (detection/ruleset.py). Console rules that
    cannot be read are a problem, not a failure: the file rules still run."""
    from hcm_soc.detection.ruleset import RuleSource

    return RuleSource(settings, names, client, paths).load()


def make_lease(settings: Settings, es: Elasticsearch, names: IndexNames) -> EngineLease:
    """The lease of this engine process, named `detection.engine_id` (default host:pid)."""
    from hcm_soc.detection.lease import EngineLease, default_engine_id
    from hcm_soc.store.lease import LeaseStore

    d = settings.detection
    return EngineLease(
        LeaseStore(es, names), d.engine_id or default_engine_id(), ttl=d.lease_ttl, renew=d.lease_renew
    )


def lint_engine_rules(es: Elasticsearch, names: IndexNames, rules: Sequence[EngineRule]) -> list[RuleProblem]:
    """Rules the live mappings say can never match, as problems naming the field and the reason.

    They still run: a field that no index has yet (a dynamic `winlog.event_data.*` field) may
    appear with the next events, so the engine reports such a rule (log, `--once` summary) rather
    than silently running it or silently dropping it. A lint that fails is logged and skipped."""
    from hcm_soc.detection.lint import lint_rules

    compiled = [r.compiled for r in rules if r.compiled is not None]
    try:
        results = lint_rules(es, names, compiled)
    except Exception:  # isolation boundary: the lint must never keep the engine from starting
        log.exception("rule lint failed; rules run unlinted")
        return []
    problems: list[RuleProblem] = []
    for res in results:
        if res.can_match:
            continue
        why = "; ".join(str(f) for f in res.errors) or "no match possible with the live mappings"
        problem = RuleProblem(Path(res.path), f"lint: can never match: {why}", res.rule_id, res.title)
        log.warning("rule can never match", extra={"rule_id": res.rule_id, "reason": why})
        problems.append(problem)
    return problems


def start_engine(
    settings: Settings,
    es: Elasticsearch,
    names: IndexNames,
    *,
    stop_event: threading.Event,
    rules: Sequence[EngineRule] | None = None,
    now: Clock = utc_now,
    workers: int = 2,
    paths: Sequence[Path] | None = None,
    reload_every: float | None = None,
) -> EngineHandle:
    """Start the scheduled engine in the background; it runs until `stop_event` is set.

    Rules come from `paths` (default settings.paths.rules) plus the console rules unless `rules`
    are given. The reload job runs when the engine loads its own rules or `paths` is given (with
    explicit `rules` and no `paths`, the caller's set is kept as it is). Rules that cannot be
    loaded or compiled are logged (and in `handle.problems`); the others run. `reload_every`
    (seconds) overrides `detection.reload_every`."""
    from hcm_soc.detection.ruleset import RuleSource

    problems: list[RuleProblem] = []
    source = RuleSource(settings, names, es, paths) if rules is None or paths is not None else None
    if rules is None:
        assert source is not None
        loaded, problems = source.load()
    else:
        loaded = list(rules)
        if source is not None:
            source.load()  # the fingerprint of what the caller loaded, so the first reload is a no-op
    for p in problems:
        log.warning("rule skipped", extra={"problem": str(p)})
    problems = [*problems, *lint_engine_rules(es, names, loaded)]
    lease = make_lease(settings, es, names) if settings.detection.lease else None
    engine = DetectionEngine(es, names, settings.detection, now=now, stop_event=stop_event, lease=lease)
    if lease is not None:
        lease.tick()  # active at once if the lease is free; else a standby from the start
        lease.start(stop_event)
        log.info("engine lease", extra={"holder": lease.holder, "active": lease.held()})
    silence = None
    if settings.detection.silence_check:
        from hcm_soc.detection.silence import run_silence_check

        def silence(at: datetime) -> int:
            # the current rule set: the reload job may have changed it since the start
            current = sched.rules
            detection = [r.compiled for r in current if r.compiled is not None and r.rule.kind == "detection"]
            return run_silence_check(es, names, settings, at, rules=detection)

    sched = EngineScheduler(
        engine,
        loaded,
        jitter=settings.detection.jitter,
        workers=workers,
        stop_event=stop_event,
        silence=silence,
        silence_every=settings.detection.silence_every,
        reload=source.reload if source is not None else None,
        reload_every=reload_every or float(getattr(settings.detection, "reload_every", DEFAULT_RELOAD_EVERY)),
    )
    sched.start()

    def wait_for_stop() -> None:
        stop_event.wait()
        log.info("detection engine stopping (waiting for running rules)")
        sched.shutdown(wait=True)
        if lease is not None:
            lease.release()  # after the running rules: a standby takes over at its next poll

    thread = threading.Thread(target=wait_for_stop, name="hcm-soc-engine", daemon=True)
    thread.start()
    return EngineHandle(engine, sched, thread, stop_event, list(loaded), problems)
