"""The engine's rule set: the rule folders plus the rules written in the web console.

`RuleSource` loads file rules (settings.paths.rules or given paths) together with the console
rules and overrides of `<prefix>-rules` (store/rules.py) and compiles them into `EngineRule`s:

- a console rule with the id of a file rule replaces it;
- the stored `enabled` switch decides whether a console rule runs (new console rules are off);
- an override (a stored switch without YAML) turns a file rule on or off.

`changed()` compares a cheap fingerprint — each rule file's size and mtime, each console
document's id, version and switch — with the one of the last load, so that the reload job of
the running engine (scheduler.EngineScheduler.reload) re-parses and re-compiles only when
something changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcm_soc.detection.loader import RuleText, load_rules, rule_files
from hcm_soc.detection.model import RuleProblem
from hcm_soc.errors import HcmSocError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.config import Settings
    from hcm_soc.detection.loader import RuleLoad
    from hcm_soc.detection.runs import EngineRule
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.rules import StoredRule

log = logging.getLogger("hcm_soc.detection.ruleset")

#: the folder name console rules carry in problems and `LoadedRule.path` (`console/<id>.yml`)
CONSOLE_DIR = Path("console")


def console_path(rule_id: str) -> Path:
    """The label a console rule carries where a file rule has its path."""
    return CONSOLE_DIR / f"{rule_id}.yml"


def is_console_path(path: Path) -> bool:
    return path.parent == CONSOLE_DIR and not path.is_absolute()


@dataclass(frozen=True, slots=True)
class ConsoleRules:
    """What `<prefix>-rules` holds, as the loader takes it."""

    texts: tuple[RuleText, ...] = ()
    overrides: dict[str, bool] = field(default_factory=dict)
    stored: tuple[StoredRule, ...] = ()

    @property
    def signature(self) -> tuple[tuple[str, str | None, bool], ...]:
        return tuple((r.id, r.version, r.enabled) for r in self.stored)


def console_rules(stored: Sequence[StoredRule]) -> ConsoleRules:
    """Loader inputs from stored documents: texts for console rules, switches for all."""
    texts = tuple(RuleText(console_path(r.id), r.yaml) for r in stored if r.yaml is not None)
    return ConsoleRules(texts, {r.id: r.enabled for r in stored}, tuple(stored))


def read_console_rules(client: Elasticsearch, names: IndexNames) -> ConsoleRules:
    """The console rules and overrides; raises DependencyUnavailable/RuleStoreError when unreadable."""
    from hcm_soc.store.rules import RuleStore

    return console_rules(RuleStore(client, names).list())


def load_with_console(paths: Sequence[Path], console: ConsoleRules | None) -> RuleLoad:
    """File rules of `paths` merged with the console rules (see the module doc)."""
    if console is None:
        return load_rules(list(paths))
    return load_rules(list(paths), texts=console.texts, overrides=console.overrides)


def file_signature(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    files, _ = rule_files(list(paths))
    out: list[tuple[str, int, int]] = []
    for f, _ruleset in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


class RuleSource:
    """Loads (and re-loads on change) the engine's rule set; `client` None: file rules only."""

    def __init__(
        self,
        settings: Settings,
        names: IndexNames,
        client: Elasticsearch | None = None,
        paths: Sequence[Path] | None = None,
    ) -> None:
        self.settings = settings
        self.names = names
        self.client = client
        self.paths = list(paths if paths is not None else settings.paths.rules)
        self._signature: Any = None

    def _console(self, *, strict: bool, problems: list[RuleProblem]) -> ConsoleRules | None:
        if self.client is None:
            return None
        try:
            return read_console_rules(self.client, self.names)
        except HcmSocError as e:
            if strict:
                raise
            problems.append(RuleProblem(Path(self.names.rules), f"console rules not loaded: {e}"))
            log.warning("console rules not loaded", extra={"error": str(e)})
            return None

    def load(self, *, strict: bool = False) -> tuple[list[EngineRule], list[RuleProblem]]:
        """Load and compile everything. `strict`: a console read failure raises instead of being
        reported as a problem (the reload job keeps its current rules then)."""
        problems: list[RuleProblem] = []
        console = self._console(strict=strict, problems=problems)
        signature = (file_signature(self.paths), console.signature if console else None)
        rules, more = self._compile(load_with_console(self.paths, console))
        self._signature = signature
        return rules, [*problems, *more]

    def changed(self) -> bool:
        """True when a rule file or a console document changed since the last `load` (raises when
        the console rules cannot be read: nothing is known then)."""
        console = self._console(strict=True, problems=[])
        return (file_signature(self.paths), console.signature if console else None) != self._signature

    def reload(self) -> list[EngineRule] | None:
        """The reload job's call: the new rule set when something changed, else None (raises when
        the console rules cannot be read: the scheduler then keeps the current rules)."""
        if not self.changed():
            return None
        rules, problems = self.load(strict=True)
        for p in problems:
            log.warning("rule skipped", extra={"problem": str(p)})
        return rules

    def _compile(self, loaded: RuleLoad) -> tuple[list[EngineRule], list[RuleProblem]]:
        from hcm_soc.detection.scheduler import prepare_rules

        rules, problems = prepare_rules(
            loaded.rules, self.names, default_interval=timedelta(seconds=self.settings.detection.interval)
        )
        return rules, [*loaded.problems, *problems]


def _member(rule: EngineRule) -> tuple[str, str, str | None]:
    return (rule.id, rule.version, rule.error)


def group_signature(interval: timedelta, rules: Sequence[EngineRule]) -> tuple[Any, ...]:
    """What makes a scheduler job's rules the same after a reload: interval, ids, versions, errors."""
    return (interval, tuple(_member(r) for r in rules))


def rule_changes(old: Sequence[EngineRule], new: Sequence[EngineRule]) -> dict[str, int]:
    """Rules added, removed and changed (another version or error) from `old` to `new`."""
    before, after = {r.id: r for r in old}, {r.id: r for r in new}
    changed = sum(1 for k in before.keys() & after.keys() if _member(before[k]) != _member(after[k]))
    return {
        "added": len(after.keys() - before.keys()),
        "removed": len(before.keys() - after.keys()),
        "changed": changed,
    }
