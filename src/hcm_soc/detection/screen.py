"""A rule's *screen*: a cheap query that every event the rule matches also matches.

Elasticsearch's cost of a Sigma rule is building its query (docs/detection-cost.md): every
leading-wildcard value and regex is an automaton walked against the term dictionary of its
field. Exact terms, prefixes, numbers, ranges and field-exists tests cost a term look-up. The
screen keeps a rule's cheap conditions and drops the costly ones where that only widens it:

- a cheap leaf is itself (and the screen is *exact*: it matches exactly the rule's events);
- a costly leaf (a wildcard other than one trailing `*`, a regex, a keyword) is *anything*;
- `a AND b` is the screens of the parts that are not *anything*;
- `a OR b` is *anything* as soon as one part is, else the OR of the parts' screens;
- `NOT a` is `NOT a` when `a` is exact, else *anything*.

So `rule ⇒ screen` always holds, and a window where the screen matches no event of the rule's log
source is a window where the rule matches none: the batch (`hcm_soc.detection.batch`) counts the
screens of all rules first, deduplicated (most process-creation rules name a few executables, and
many rules share them), and builds the full query only of the rules whose screen found events.
When the screen is exact, its count is the rule's count and the rule's own count is skipped too.

The log-source condition (the pipeline ANDs it in front of every rule) is left out of the screen:
every batched search filters on it already.

*Trigram screens* (`grams=True`) also keep the costly leaves on the fields that have a `.grams`
sub-field (`hcm_soc.store.templates.GRAM_FIELDS`: command lines, executables, script blocks,
registry and file paths, …), in a cheaper form they imply: a value that matches `*abcdef*` contains
`abc` and `def`, so the event's `.grams` holds both terms. A wildcard value becomes the AND of
trigrams of its literal runs (every third one and the last: fewer terms, still implied); a regex
the pipeline wrote for a list of wildcard values (`lucene_regex.UnionRegex`) the OR of its values'
ANDs; a value with no trigram (shorter runs, only non-ASCII text) stays *anything*. Only ASCII
trigrams are used: lower-casing them is the same in Python and in Lucene. Such a screen is never
exact, and only searches indices created with the `.grams` sub-fields (the batch checks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    SigmaBool,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaNull,
    SigmaNumber,
    SigmaString,
    SpecialChars,
)

from hcm_soc.detection.lucene_regex import UnionRegex
from hcm_soc.store.grams import gram_field

#: (Lucene text or None for "anything", exact)
Screen = tuple[str | None, bool]

ANYTHING: Screen = (None, False)


def cheap_value(value: Any) -> bool:
    """A value Elasticsearch looks up without walking a term dictionary: an exact string, a string
    with one trailing `*` after at least one character (a prefix), a number, a boolean, a null, an
    exists test, a CIDR range or a comparison."""
    if isinstance(value, SigmaString):
        parts = value.s
        specials = [i for i, p in enumerate(parts) if isinstance(p, SpecialChars)]
        if not specials:
            return bool(parts)
        return (
            len(specials) == 1
            and specials[0] == len(parts) - 1
            and parts[-1] is SpecialChars.WILDCARD_MULTI
            and len(parts) > 1
        )
    return isinstance(
        value,
        SigmaNumber | SigmaBool | SigmaNull | SigmaExists | SigmaCIDRExpression | SigmaCompareExpression,
    )


def trigrams(value: SigmaString, cased: bool) -> list[str]:
    """Lower-cased ASCII trigrams that every string matching `value` (a Sigma string with wildcards,
    already lower-cased unless `cased`) contains: from each run of three or more ASCII characters
    between wildcards, every third trigram and the last one."""
    out: list[str] = []
    runs: list[str] = []
    current = ""
    for part in value.s:
        if isinstance(part, str):
            for ch in part:
                if ch.isascii():
                    current += ch
                else:
                    runs.append(current)
                    current = ""
        else:
            runs.append(current)
            current = ""
    runs.append(current)
    for run in runs:
        text = run.lower() if cased else run
        if len(text) < 3:
            continue
        starts = list(range(0, len(text) - 2, 3))
        if starts[-1] != len(text) - 3:
            starts.append(len(text) - 3)
        for i in starts:
            if text[i : i + 3] not in out:
                out.append(text[i : i + 3])
    return out


def _term(text: str) -> str:
    """`text` as one Lucene query term: every character but letters and digits escaped."""
    return "".join(c if c.isascii() and c.isalnum() else "\\" + c for c in text)


def gram_screen(field_name: str, value: Any) -> str | None:
    """The trigram form of a costly leaf `field_name = value` (see the module doc), None if it has none."""
    grams_field = gram_field(field_name)
    if grams_field is None:
        return None
    cased = not field_name.endswith(".caseless")
    values = value.values if isinstance(value, UnionRegex) else (value,)
    alternatives = []
    for v in values:
        if not isinstance(v, SigmaString):
            return None
        grams = trigrams(v, cased)
        if not grams:
            return None  # one value with no trigram: the leaf could match anything
        alternatives.append("(" + " AND ".join(f"{grams_field}:{_term(g)}" for g in grams) + ")")
    return _join(alternatives, "OR") if alternatives else None


def _join(texts: list[str], op: str) -> str:
    return texts[0] if len(texts) == 1 else "(" + f" {op} ".join(texts) + ")"


def _all_of(parts: list[Screen]) -> Screen:
    """The screen of an AND: its parts' screens that are not *anything*; exact if all are."""
    texts = [t for t, _ in parts if t is not None]
    exact = all(e for _, e in parts)
    return (_join(texts, "AND") if texts else None), exact


def _any_of(parts: list[Screen]) -> Screen:
    """The screen of an OR: *anything* as soon as one part is (or there is none), else all of them."""
    if not parts or any(t is None for t, _ in parts):
        return None, any(t is None and e for t, e in parts)
    return _join([t for t, _ in parts if t is not None], "OR"), all(e for _, e in parts)


def screen_of(
    backend: Any,
    node: Any,
    state: Any,
    keep: Callable[[Any], bool] = cheap_value,
    grams: bool = False,
) -> Screen:
    """The screen of a parsed (and processed) Sigma condition `node`, converted with `backend` (the
    Lucene backend that converted the rule, so that a kept leaf is written exactly as in the rule);
    `keep(value)` says which field-value leaves the screen keeps (default: the cheap ones); `grams`:
    the other leaves on fields with trigrams are kept in their trigram form (not exact)."""
    if isinstance(node, ConditionAND):
        return _all_of([screen_of(backend, arg, state, keep, grams) for arg in node.args])
    if isinstance(node, ConditionOR):
        return _any_of([screen_of(backend, arg, state, keep, grams) for arg in node.args])
    if isinstance(node, ConditionNOT):
        text, exact = screen_of(backend, node.args[0], state, keep, grams)
        if text is not None and exact:
            return f"(NOT {text})", True
        return ANYTHING
    if isinstance(node, ConditionFieldEqualsValueExpression):
        if not keep(node.value):
            gram_text = gram_screen(node.field, node.value) if grams else None
            return ANYTHING if gram_text is None else (gram_text, False)
        text = backend.convert_condition(node, state)
        if not isinstance(text, str):
            return ANYTHING  # a deferred expression: not a plain Lucene clause
        return f"({text})", True
    if isinstance(node, ConditionValueExpression):
        return ANYTHING  # a keyword: every keyword field, with wildcards
    return ANYTHING


def rule_screen(
    backend: Any,
    rule: Any,
    scoped: bool,
    keep: Callable[[Any], bool] = cheap_value,
    grams: bool = False,
) -> Screen:
    """The screen of a converted pySigma `rule` (its conditions ORed); `scoped`: the conditions are
    `<log source> and (…)` (the hcm-soc pipeline), whose first part the screen leaves out; `grams`:
    a trigram screen (module doc)."""
    from sigma.conversion.state import ConversionState

    screens: list[Screen] = []
    for cond in rule.detection.parsed_condition:
        tree = cond.parsed
        state = ConversionState(processing_state={})
        if scoped:
            if not isinstance(tree, ConditionAND) or len(tree.args) < 2:
                return ANYTHING  # not the shape the pipeline writes: no screen
            screens.append(_all_of([screen_of(backend, arg, state, keep, grams) for arg in tree.args[1:]]))
        else:
            screens.append(screen_of(backend, tree, state, keep, grams))
    return _any_of(screens)


def candidates_screen(rule: Any) -> Screen:
    """For a rule checked in Python (`compiler.PythonCheckedRule`: the pipeline ran with residual
    conditions kept), the screen of everything Lucene can say about it — every leaf except those of
    a detection item that holds a field reference or a regex (kept as Sigma wrote them, on the raw
    field, for the Python check), cheap or not: the matcher then fetches and checks only the events
    that pass it instead of every event of the log source."""
    from sigma.backends.elasticsearch import LuceneBackend
    from sigma.processing.pipeline import ProcessingPipeline
    from sigma.rule import SigmaDetection
    from sigma.types import SigmaFieldReference, SigmaRegularExpression

    residual: set[int] = set()

    def walk(detection: Any) -> None:
        for item in detection.detection_items:
            if isinstance(item, SigmaDetection):
                walk(item)
            elif any(isinstance(v, SigmaFieldReference | SigmaRegularExpression) for v in item.value):
                residual.update(id(v) for v in item.value)

    for detection in rule.detection.detections.values():
        walk(detection)
    # the parsed leaves hold the detection items' own value objects
    backend = LuceneBackend(processing_pipeline=ProcessingPipeline())
    return rule_screen(backend, rule, scoped=True, keep=lambda value: id(value) not in residual)
