"""Trying a rule outside the engine: compile it with what it needs, run it on sample events in a
scratch store or over stored events, and fetch the events behind its matches. Nothing here
creates alerts or moves checkpoints.

Shared by `hcm-soc rules test|backtest|convert|cost` (cli/rules.py) and the console's rule
workbench (detection/workbench.py), so both give the same answer for the same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hcm_soc.detection.model import CompiledRule, LoadedRule, MatchResult, RuleProblem, Window
from hcm_soc.errors import HcmSocError
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.detection.scratch import LoadedEvent


class RuleNotUsable(HcmSocError):
    """The rule was found but does not load or compile."""

    exit_code = 2


@dataclass
class CompiledSet:
    """Every rule of a load, compiled: detection rules by id and by name, correlations by id."""

    detections: dict[str, CompiledRule]
    correlations: dict[str, Any]
    problems: list[RuleProblem]

    @property
    def count(self) -> int:
        return len({id(c) for c in self.detections.values()}) + len(self.correlations)


def compile_rules(rules: Sequence[LoadedRule], names: IndexNames) -> CompiledSet:
    """Compile detection rules first, then correlations against them; collect every problem."""
    from hcm_soc.detection.compiler import RuleCompiler
    from hcm_soc.detection.correlation import compile_correlation

    detections = [r for r in rules if r.kind == "detection"]
    compiled, problems = RuleCompiler(names).compile_all(detections)
    by_key: dict[str, CompiledRule] = {}
    for c in compiled:
        by_key[c.rule.id] = c
        if c.rule.name:
            by_key[c.rule.name] = c
    correlations: dict[str, Any] = {}
    for r in rules:
        if r.kind != "correlation":
            continue
        try:
            correlations[r.id] = compile_correlation(r, by_key)
        except HcmSocError as e:
            problems.append(RuleProblem(r.path, str(e), r.id, r.title))
    return CompiledSet(by_key, correlations, list(problems))


def referenced_rules(rules: Sequence[LoadedRule], rule: LoadedRule) -> list[LoadedRule]:
    """The detection rules a correlation names (by id or name), looked up in `rules`."""
    if rule.kind != "correlation":
        return []
    from hcm_soc.detection.correlation import referenced_rule_names

    refs = set(referenced_rule_names(rule))
    return [r for r in rules if r.kind == "detection" and (r.id in refs or (r.name or "") in refs)]


def compile_one(rules: Sequence[LoadedRule], rule: LoadedRule, names: IndexNames) -> tuple[CompiledSet, Any]:
    """(compiled set, the compiled form of `rule`), compiling only `rule` and the rules it names
    among `rules`; the rule's own problem -> RuleNotUsable."""
    cset = compile_rules([rule, *referenced_rules(rules, rule)], names)
    own = cset.correlations.get(rule.id) if rule.kind == "correlation" else cset.detections.get(rule.id)
    if own is None:
        reasons = "; ".join(str(p) for p in cset.problems) or "unknown reason"
        raise RuleNotUsable(f"rule {rule.id} '{rule.title}' does not compile: {reasons}")
    return cset, own


def run_compiled(es: Elasticsearch, compiled: Any, window: Window, *, limit: int) -> MatchResult:
    """One evaluation of a compiled detection or correlation rule over `window` (the engine's own)."""
    from hcm_soc.detection.engine import evaluate

    return evaluate(es, compiled, window, limit=limit)


def run_on_samples(
    es: Elasticsearch,
    base: IndexNames,
    compile_for: Callable[[IndexNames], Any],
    events: Sequence[Mapping[str, Any]],
    *,
    numbers: Sequence[int] | None = None,
    limit: int,
) -> tuple[list[LoadedEvent], MatchResult]:
    """Load `events` into a scratch store beside `base` (removed afterwards), compile the rule for
    the scratch indices (`compile_for(names)`) and evaluate it over them.

    Returns the stored events (event i has `line` = numbers[i]) and what the rule matched."""
    from hcm_soc.detection.scratch import ScratchEvents

    with ScratchEvents(es, base) as scratch:
        own = compile_for(scratch.names)
        stored = scratch.load(list(events), numbers=numbers)
        result = run_compiled(es, own, scratch.window(), limit=limit)
    return stored, result


def fetch_sources(es: Elasticsearch, refs: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """_id -> _source for matched events whose source the matcher did not return."""
    need = [r for r in refs if not r.source]
    out = {r.id: r.source for r in refs if r.source}
    if need:
        resp = es.mget(docs=[{"_index": r.index, "_id": r.id} for r in need])
        out.update({d["_id"]: d["_source"] for d in resp["docs"] if d.get("found")})
    return out
