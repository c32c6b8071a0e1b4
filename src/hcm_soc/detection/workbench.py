"""The rule workbench: what the web console, the REST API and the CLI call to work on rules.

`RuleWorkbench` validates a Sigma rule given as text (detection/rule_check.py: every problem
as "line N: key: reason"), tests it on sample events in a scratch store of the real
Elasticsearch, backtests it over the last hours of stored events (no alert is raised), saves
it as a console rule (store/rules.py: off until enabled), switches rules on and off (a file
rule through an override), lists every rule with its health (the `<prefix>-state` index) and
runs one engine pass of a rule on demand.

The rule set it shows is the engine's: file rules of `settings.paths.rules` merged with the
console rules (detection/ruleset.py), so what the catalog says is enabled is what runs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from hcm_soc.detection.loader import RuleLoad, RuleText
from hcm_soc.detection.model import LoadedRule, Window
from hcm_soc.detection.rule_check import Checked, RuleCheck, check_rule_text
from hcm_soc.detection.ruleset import (
    console_path,
    console_rules,
    file_signature,
    is_console_path,
    load_with_console,
)
from hcm_soc.errors import HcmSocError
from hcm_soc.store.names import IndexNames
from hcm_soc.store.rules import RuleStore, StoredRule

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.config import Settings
    from hcm_soc.store.detection_state import RuleHealth

__all__ = [
    "BacktestResult",
    "RuleCheck",
    "RuleDetail",
    "RuleDisabledConflict",
    "RuleInvalid",
    "RuleNotFound",
    "RuleSummary",
    "RuleWorkbench",
    "RunOutcome",
    "TestResult",
]

#: sample events accepted by one `test` (the editor's box, not a bulk import)
MAX_SAMPLE_EVENTS = 1000
#: the longest backtest span: older events are better searched with `hcm-soc rules backtest`
MAX_BACKTEST_HOURS = 24 * 31


class RuleInvalid(HcmSocError):
    """A rule with problems cannot be saved; `check.problems` lists them."""

    exit_code = 1

    def __init__(self, check: RuleCheck) -> None:
        self.check = check
        self.problems = list(check.problems)  # the web layer lists them in the error body
        super().__init__(
            "the rule has problems and was not saved: "
            + "; ".join(check.problems)
            + " (fix them and save again)"
        )


class RuleNotFound(HcmSocError):
    """No file rule or console rule has this id."""

    exit_code = 2


class RuleDisabledConflict(HcmSocError):
    """The rule exists but is switched off, so it cannot be run now (the name ends in Conflict:
    the web layer answers 409, the request conflicts with the rule's state)."""

    exit_code = 2


class TestResult(BaseModel):
    """Which of the sample events the rule matched (their 0-based indexes in the list given)."""

    __test__ = False  # not a pytest test class

    matches: list[int] = []
    problems: list[str] = []
    events: int = 0
    groups: int = 0  # a correlation: the groups that fired


class BacktestResult(BaseModel):
    """Stored events the rule would have matched in the span; `matches` are the event documents."""

    matches: list[dict[str, Any]] = []
    match_ids: list[str] = []  # "<index>/<_id>" of each entry of `matches`
    examined: int = 0  # events of the rule's log source in the span
    truncated: bool = False
    problems: list[str] = []
    start: datetime | None = None
    end: datetime | None = None


class HealthView(BaseModel):
    """A rule's health as the catalog shows it (from store/detection_state.RuleHealth)."""

    status: str = "never_run"
    last_run: datetime | None = None
    last_success: datetime | None = None
    runs: int = 0
    matches: int = 0  # last run
    alerts: int = 0  # last run
    failures: int = 0
    last_error: str | None = None
    gaps: int = 0
    duration_ms: int = 0  # the cost of the last run


class RuleSummary(BaseModel):
    id: str
    title: str | None = None
    level: str | None = None
    logsource: dict[str, str | None] | None = None
    kind: str | None = None
    source: str  # "file:<path>" or "console"
    enabled: bool
    health: HealthView = HealthView()
    problems: list[str] = []  # why the rule does not load (it is listed but cannot run)
    replaces: str | None = None  # a console rule with the id of a file rule: "file:<path>"
    updated: datetime | None = None
    updated_by: str | None = None


class RuleDetail(BaseModel):
    summary: RuleSummary
    yaml: str | None = None
    query: str | None = None


class RunOutcome(BaseModel):
    alerts_created: int = 0
    matches: int = 0
    examined: int = 0
    error: str | None = None
    skipped: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _health(h: RuleHealth | None) -> HealthView:
    if h is None:
        return HealthView()
    return HealthView(
        status=h.status,
        last_run=h.last_run_end or h.last_run_start,
        last_success=h.last_success,
        runs=h.runs,
        matches=h.matches,
        alerts=h.alerts_created,
        failures=h.failures,
        last_error=h.last_error,
        gaps=h.gaps_detected,
        duration_ms=h.duration_ms,
    )


def with_id(text: str, rule_id: str) -> str:
    """`text` with `id: <rule_id>` after its top-level `title:` line (at the top when it has none)."""
    lines = text.splitlines(keepends=True)
    at = next((i + 1 for i, line in enumerate(lines) if re.match(r"^title\s*:", line)), 0)
    if at and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    lines.insert(at, f"id: {rule_id}\n")
    return "".join(lines)


class RuleWorkbench:
    """See the module doc. Every method reads Elasticsearch afresh; file rules are cached by mtime."""

    def __init__(
        self,
        settings: Settings,
        client: Elasticsearch,
        names: IndexNames,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.client = client
        self.names = names
        self.clock = clock
        self.store = RuleStore(client, names, clock=clock)
        self._cache: tuple[Any, RuleLoad] | None = None
        self._files_cache: tuple[Any, RuleLoad] | None = None

    # -- the rule set ---------------------------------------------------------------------------------
    @property
    def paths(self) -> list[Path]:
        return [p for p in self.settings.paths.rules if p.exists()]

    def _load(self, stored: Sequence[StoredRule] | None = None) -> tuple[RuleLoad, list[StoredRule]]:
        """File rules merged with the console rules (the engine's view), cached until a file or a
        console document changes."""
        docs = list(stored) if stored is not None else self.store.list()
        console = console_rules(docs)
        key = (file_signature(self.paths), console.signature)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, load_with_console(self.paths, console))
        return self._cache[1], docs

    def _context_loader(self, own_id: str | None) -> Callable[[str, Path], RuleLoad]:
        """For a correlation being checked: the rule set with this text in place of its stored self."""

        def load(text: str, label: Path) -> RuleLoad:
            docs = [d for d in self.store.list() if d.id != own_id]
            console = console_rules(docs)
            texts = (RuleText(label, text), *console.texts)
            from hcm_soc.detection.loader import load_rules

            return load_rules(self.paths, texts=texts, overrides=console.overrides)

        return load

    def _check(self, text: str) -> Checked:
        from hcm_soc.store.rules import rule_identity

        try:
            own_id, _ = rule_identity(text)
        except HcmSocError:
            own_id = None
        return check_rule_text(text, self.names, context_loader=self._context_loader(own_id))

    # -- editing --------------------------------------------------------------------------------------
    def validate(self, text: str) -> RuleCheck:
        """Parse, validate and compile `text`; every problem as "line N: key: reason"."""
        return self._check(text).check

    def test(self, text: str, events: Sequence[Mapping[str, Any]]) -> TestResult:
        """Evaluate the rule on `events` in a scratch store of the real Elasticsearch (removed after):
        the 0-based indexes of the events it matched."""
        from hcm_soc.detection.scratch import ScratchLoadError
        from hcm_soc.detection.trial import compile_one, run_on_samples

        checked = self._check(text)
        if not checked.check.ok or checked.rule is None:
            return TestResult(problems=checked.check.problems, events=len(events))
        if not events:
            return TestResult(problems=["no sample events: give at least one ECS event (a JSON object)"])
        if len(events) > MAX_SAMPLE_EVENTS:
            return TestResult(
                problems=[f"{len(events)} sample events; at most {MAX_SAMPLE_EVENTS} are tested at once"],
                events=len(events),
            )
        bad = [i for i, e in enumerate(events) if not isinstance(e, Mapping)]
        if bad:
            return TestResult(
                problems=[f"event {i}: expected a JSON object (ECS fields)" for i in bad[:10]],
                events=len(events),
            )
        rule, context = checked.rule, checked.context

        def compile_for(names: IndexNames) -> Any:
            return compile_one(context or [rule], rule, names)[1]

        try:
            stored, result = run_on_samples(
                self.client,
                self.names,
                compile_for,
                events,
                numbers=list(range(len(events))),
                limit=self.settings.detection.max_alerts_per_run,
            )
        except ScratchLoadError as e:
            return TestResult(problems=[str(e)], events=len(events))
        index_of = {s.id: s.line for s in stored}
        matched = sorted({index_of[e.id] for m in result.matches for e in m.events if e.id in index_of})
        groups = len(result.matches) if rule.kind == "correlation" else 0
        return TestResult(matches=matched, events=len(events), groups=groups)

    def backtest(self, text: str, *, hours: float, limit: int = 100) -> BacktestResult:
        """Run the rule over the events ingested in the last `hours` (event.ingested); no alert,
        no checkpoint, nothing written."""
        from hcm_soc.detection.trial import fetch_sources, run_compiled

        if not 0 < hours <= MAX_BACKTEST_HOURS:
            return BacktestResult(problems=[f"hours: expected more than 0 and at most {MAX_BACKTEST_HOURS}"])
        if limit < 1:
            return BacktestResult(problems=["limit: expected at least 1"])
        checked = self._check(text)
        if not checked.check.ok or checked.compiled is None:
            return BacktestResult(problems=checked.check.problems)
        end = self.clock()
        window = Window(start=end - timedelta(hours=hours), end=end)
        result = run_compiled(self.client, checked.compiled, window, limit=limit)
        refs = [e for m in result.matches for e in m.events][:limit]
        sources = fetch_sources(self.client, refs)
        return BacktestResult(
            matches=[sources.get(e.id, {}) for e in refs],
            match_ids=[f"{e.index}/{e.id}" for e in refs],
            examined=result.examined,
            truncated=result.truncated,
            start=window.start,
            end=window.end,
        )

    def save(self, text: str, *, author: str, enabled: bool | None = False) -> StoredRule:
        """Store the rule as a console rule after checking it (RuleInvalid when it has problems).
        A rule without an id gets a new UUID (`id_assigned` in the result). `enabled` None keeps
        the stored switch of an existing rule (off for a new one)."""
        checked = self._check(text)
        if not checked.check.ok:
            raise RuleInvalid(checked.check)
        assigned = False
        if checked.id_missing:
            text = with_id(text, str(uuid.uuid4()))
            again = self._check(text)
            if not again.check.ok:
                raise RuleInvalid(again.check)
            assigned = True
        saved = self.store.put(text, author=author, enabled=enabled)
        return saved.model_copy(update={"id_assigned": assigned})

    def set_enabled(self, rule_id: str, enabled: bool, *, author: str) -> None:
        """Switch a console rule, or a file rule through an override; RuleNotFound for an unknown id."""
        stored = self.store.get(rule_id)
        if stored is None or stored.is_override:
            load, _ = self._load()
            rule = load.by_id().get(rule_id)
            if rule is None and stored is None:
                raise RuleNotFound(
                    f"no rule has the id {rule_id!r} (neither in {', '.join(map(str, self.paths)) or 'the rule folders'} "
                    "nor among the console rules); see the rule list"
                )
            self.store.set_enabled(rule_id, enabled, author=author, title=rule.title if rule else None)
            return
        self.store.set_enabled(rule_id, enabled, author=author)

    def delete(self, rule_id: str) -> bool:
        """Remove a console rule or an override; False when there was none."""
        return self.store.delete(rule_id)

    # -- reading --------------------------------------------------------------------------------------
    def catalog(self) -> list[RuleSummary]:
        """Every file and console rule (enabled or not) with its health, sorted by title."""
        from hcm_soc.store.detection_state import DetectionStateStore

        load, docs = self._load()
        health = {h.rule_id: h for h in DetectionStateStore(self.client, self.names).health_all()}
        out = [self._summary(r, docs, load, health.get(r.id)) for r in load.rules]
        listed = {s.id for s in out}
        for d in docs:  # console rules that no longer load: shown with their problems
            if d.yaml is not None and d.id not in listed:
                out.append(self._broken(d, load, health.get(d.id)))
        return sorted(out, key=lambda s: ((s.title or "").lower(), s.id))

    def get(self, rule_id: str) -> RuleDetail:
        """One rule: its summary, its YAML (a file rule: its file's text) and its query."""
        from hcm_soc.detection.trial import RuleNotUsable, compile_one
        from hcm_soc.store.detection_state import DetectionStateStore

        load, docs = self._load()
        health = DetectionStateStore(self.client, self.names).health(rule_id)
        rule = load.by_id().get(rule_id)
        stored = next((d for d in docs if d.id == rule_id), None)
        if rule is None:
            if stored is None or stored.yaml is None:
                raise RuleNotFound(f"no rule has the id {rule_id!r}; see the rule list")
            return RuleDetail(summary=self._broken(stored, load, health), yaml=stored.yaml)
        summary = self._summary(rule, docs, load, health)
        if stored is not None and stored.yaml is not None:
            text: str | None = stored.yaml
        else:
            try:
                text = rule.path.read_text("utf-8")
            except OSError:
                text = None
        query: str | None = None
        try:
            _, compiled = compile_one(load.rules, rule, self.names)
            query = (
                compiled.lucene if rule.kind == "detection" else " | ".join(b.lucene for b in compiled.bases)
            )
        except RuleNotUsable as e:
            summary.problems.append(str(e))
        return RuleDetail(summary=summary, yaml=text, query=query)

    def run_now(self, rule_id: str) -> RunOutcome:
        """One engine pass of this rule (everything since its checkpoint; alerts are raised as the
        scheduled engine would). RuleDisabledConflict for a rule that is off, RuleNotFound for none."""
        from hcm_soc.detection.engine import DetectionEngine
        from hcm_soc.detection.scheduler import load_engine_rules

        rules, _problems = load_engine_rules(self.settings, self.names, client=self.client)
        target = next((r for r in rules if r.id == rule_id), None)
        if target is None:
            load, _ = self._load()
            if rule_id in load.by_id():
                raise RuleDisabledConflict(
                    f"rule {rule_id} is disabled (or only feeds a correlation): enable it first, "
                    "or backtest it to see what it would match"
                )
            raise RuleNotFound(f"no rule has the id {rule_id!r}; see the rule list")
        engine = DetectionEngine(self.client, self.names, self.settings.detection, now=self.clock)
        run = engine.run_all([target], force=True).runs[0]
        return RunOutcome(
            alerts_created=run.alerts_created,
            matches=run.matches,
            examined=run.examined,
            error=run.error,
            skipped=run.skipped,
        )

    # -- helpers --------------------------------------------------------------------------------------
    def _summary(
        self, rule: LoadedRule, docs: Sequence[StoredRule], load: RuleLoad, health: RuleHealth | None
    ) -> RuleSummary:
        console = is_console_path(rule.path)
        stored = next((d for d in docs if d.id == rule.id), None)
        replaces = None
        if console:
            # the file rule it replaces, if any, is not in the load: look for the id in the files
            replaces = self._file_of(rule.id)
        return RuleSummary(
            id=rule.id,
            title=rule.title,
            level=rule.level,
            logsource=None
            if rule.kind == "correlation"
            else {"product": rule.product, "category": rule.category, "service": rule.service},
            kind=rule.kind,
            source="console" if console else f"file:{rule.path}",
            enabled=rule.enabled,
            health=_health(health),
            problems=[p.message for p in load.problems if p.rule_id == rule.id],
            replaces=replaces,
            updated=stored.updated if stored else None,
            updated_by=stored.updated_by if stored else None,
        )

    def _broken(self, stored: StoredRule, load: RuleLoad, health: RuleHealth | None) -> RuleSummary:
        label = console_path(stored.id)
        return RuleSummary(
            id=stored.id,
            title=stored.title,
            source="console",
            enabled=stored.enabled,
            health=_health(health),
            problems=[p.message for p in load.problems if p.path == label] or ["the rule does not load"],
            updated=stored.updated,
            updated_by=stored.updated_by,
        )

    def _file_of(self, rule_id: str) -> str | None:
        """`file:<path>` of the file rule with this id, from a load of the files alone (cached)."""
        key = file_signature(self.paths)
        if self._files_cache is None or self._files_cache[0] != key:
            self._files_cache = (key, load_with_console(self.paths, None))
        rule = self._files_cache[1].by_id().get(rule_id)
        return f"file:{rule.path}" if rule else None
