"""Compile loaded Sigma detection rules into Elasticsearch queries, once per load.

`RuleCompiler(names).compile(rule)` runs pySigma's Lucene backend with the hcm-soc pipeline
(`hcm_soc.detection.pipeline`) on a copy of the rule and returns a `CompiledRule`:

- `lucene`: the query text, identical to `sigma convert -t lucene -p hcm_soc RULE`
  (it depends on the rule only; index names are kept apart in `indices`);
- `query`: that text as an Elasticsearch `query_string` query; field-less (keyword) terms
  search every lower-cased `.caseless` sub-field;
- `scope`: the rule's log-source condition alone, which the matcher uses to count the events
  a run examined.

A rule with a condition Lucene cannot express — a field reference (`|fieldref`) or a regex
with word boundaries, look-arounds… — compiles to a `PythonCheckedRule`: its query selects the
events of its log source and the matcher evaluates the whole rule on each of them in Python
(`matcher.sigma_match`). sigma-cli rejects such rules; `lucene` shows the log-source part only.

A rule that cannot be compiled raises `RuleCompileError` naming the rule and the reason;
`compile_all` turns those into `RuleProblem`s so one bad rule never stops the others.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hcm_soc.detection.fieldmaps.sources import DataSource, find_source, keyword_fields
from hcm_soc.detection.model import CompiledRule, LoadedRule, RuleProblem
from hcm_soc.detection.pipeline import (
    KEYWORD_FIELDS,
    ResidualCondition,
    hcm_soc_pipeline,
    no_source_message,
    scope_detection,
    scope_query,
)
from hcm_soc.detection.screen import ANYTHING, Screen, candidates_screen, rule_screen
from hcm_soc.errors import HcmSocError
from hcm_soc.store.names import IndexNames


class RuleCompileError(HcmSocError):
    """A rule could not be turned into an Elasticsearch query; `reason` says why."""

    def __init__(self, rule: LoadedRule, reason: str, *, residual: bool = False) -> None:
        self.rule_id = rule.id
        self.title = rule.title
        self.path = rule.path
        self.reason = reason
        self.residual = residual  # Lucene cannot say it, Python can (see PythonCheckedRule)
        super().__init__(f"{rule.path}: rule {rule.id} '{rule.title}': {reason}")


@dataclass(frozen=True, slots=True, eq=False)
class PythonCheckedRule(CompiledRule):
    """A rule the matcher checks in Python on every event of its log source in the window:
    `checked` is the rule after the pipeline (fields mapped, residual conditions kept as written),
    `residual` why Lucene could not take it."""

    checked: Any = None
    residual: str = ""


def lucene_query(text: str, keyword_fields: Sequence[str] = KEYWORD_FIELDS) -> dict[str, Any]:
    """The Elasticsearch query for a Lucene text produced by the hcm-soc pipeline; field-less
    (keyword) terms search `keyword_fields` (per data source, see fieldmaps.keyword_fields)."""
    return {
        "query_string": {
            "query": text,
            "fields": list(keyword_fields),
            "allow_leading_wildcard": True,
            # wildcard terms are not analysed: the pipeline already lower-cased what goes to .caseless
            "analyze_wildcard": False,
        }
    }


class RuleCompiler:
    """Compiles detection rules for the events under `names` (see the module doc)."""

    def __init__(self, names: IndexNames) -> None:
        self.names = names

    def lucene(self, rule: LoadedRule) -> str:
        """The Lucene text of `rule` (what `hcm-soc rules convert` prints)."""
        return self._convert(rule)[0]

    def _convert(self, rule: LoadedRule) -> tuple[str, Screen, Screen]:
        """The Lucene text of `rule`, its screen and its trigram screen (`hcm_soc.detection.screen`)."""
        from sigma.backends.elasticsearch import LuceneBackend
        from sigma.exceptions import SigmaError

        if rule.kind != "detection":
            raise RuleCompileError(
                rule, "a correlation rule has no single query; it is evaluated by aggregations"
            )
        ls = rule.sigma.logsource
        if find_source(ls.product, ls.category, ls.service) is None:
            raise RuleCompileError(rule, no_source_message(ls.product, ls.category, ls.service))
        backend = LuceneBackend(processing_pipeline=hcm_soc_pipeline())
        try:
            # the pipeline changes the rule it converts: work on a copy, the loaded rule stays as read
            sigma = copy.deepcopy(rule.sigma)
            # pySigma silences base rules of a correlation (`generate: false`); the engine and the
            # correlation need their query all the same
            sigma._output = True
            queries = backend.convert_rule(sigma)
        except ResidualCondition as e:
            raise RuleCompileError(rule, _reason(e), residual=True) from None
        except SigmaError as e:
            raise RuleCompileError(rule, _reason(e)) from None
        except (
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
            NotImplementedError,
        ) as e:  # pySigma on odd input
            raise RuleCompileError(rule, f"pySigma could not convert it ({type(e).__name__}: {e})") from None
        texts = [str(q) for q in queries]
        if not texts:
            raise RuleCompileError(rule, "the conversion produced no query")
        try:
            screen = rule_screen(backend, sigma, scoped=True)
            grams = rule_screen(backend, sigma, scoped=True, grams=True)
        except (SigmaError, ValueError, TypeError, KeyError, AttributeError, NotImplementedError):
            screen = grams = ANYTHING  # no screen: the rule is counted with its own query
        return (texts[0] if len(texts) == 1 else " OR ".join(f"({t})" for t in texts)), screen, grams

    def compile(self, rule: LoadedRule) -> CompiledRule:
        try:
            text, (screen, exact), (grams, _) = self._convert(rule)
        except RuleCompileError as e:
            if not e.residual:
                raise
            return self._python_checked(rule, e.reason)
        ls = rule.sigma.logsource
        source = find_source(ls.product, ls.category, ls.service)
        assert source is not None  # checked by lucene()
        return CompiledRule(
            rule=rule,
            lucene=text,
            query=lucene_query(text, keyword_fields(source)),
            indices=(self.names.events_pattern,),
            scope=scope_query(source),
            screen=None if screen is None else lucene_query(screen, keyword_fields(source)),
            screen_exact=exact and screen is not None,
            screen_grams=None if grams in (None, screen) else lucene_query(grams, keyword_fields(source)),
        )

    def _python_checked(self, rule: LoadedRule, residual: str) -> PythonCheckedRule:
        from sigma.exceptions import SigmaError

        ls = rule.sigma.logsource
        source = find_source(ls.product, ls.category, ls.service)
        assert source is not None
        checked = copy.deepcopy(rule.sigma)
        try:
            hcm_soc_pipeline(keep_residual=True).apply(checked)
        except SigmaError as e:
            raise RuleCompileError(rule, _reason(e)) from None
        text = scope_lucene(source)
        try:
            narrowed, _ = candidates_screen(checked)
        except (SigmaError, ValueError, TypeError, KeyError, AttributeError, NotImplementedError):
            narrowed = None  # every event of the log source is a candidate
        if narrowed is not None:
            text = f"({text}) AND {narrowed}"
        return PythonCheckedRule(
            rule=rule,
            lucene=text,
            query=lucene_query(text, keyword_fields(source)),
            indices=(self.names.events_pattern,),
            scope=scope_query(source),
            checked=checked,
            residual=residual,
        )

    def compile_all(self, rules: Iterable[LoadedRule]) -> tuple[list[CompiledRule], list[RuleProblem]]:
        compiled: list[CompiledRule] = []
        problems: list[RuleProblem] = []
        for rule in rules:
            try:
                compiled.append(self.compile(rule))
            except RuleCompileError as e:
                problems.append(RuleProblem(rule.path, e.reason, rule.id, rule.title))
        return compiled, problems


def _reason(e: Exception) -> str:
    text = str(e)
    # pySigma appends the rule location ("... in rule ..."); our messages carry it already
    for marker in (" in rule ", " | "):
        if marker in text and text.index(marker) > 20:
            text = text[: text.index(marker)]
    if "field references" in text:
        text = "field references (|fieldref) cannot be expressed in Lucene and the node has no scripting"
    return text


def scope_lucene(source: DataSource) -> str:
    """The Lucene text of a data source's log-source condition alone."""
    from sigma.backends.elasticsearch import LuceneBackend
    from sigma.processing.pipeline import ProcessingPipeline
    from sigma.rule import SigmaDetections, SigmaLogSource, SigmaRule

    probe = SigmaRule(
        title="scope",
        logsource=SigmaLogSource(product="hcm-soc"),  # any: the empty pipeline ignores it
        detection=SigmaDetections({"scope": scope_detection(source)}, ["scope"]),
    )
    return str(LuceneBackend(processing_pipeline=ProcessingPipeline()).convert_rule(probe)[0])
