"""Sigma v2 correlation rules: compiled against their base rules, evaluated with Elasticsearch aggregations.

`compile_correlation(rule, base)` turns a loaded SigmaCorrelationRule into a `CompiledCorrelation`:
the compiled base rules it references (by id or by name), its group-by fields mapped through
our pipeline to the event field of each base rule's log source (aliases included), the
timespan, and the condition. `find_correlation_matches(es, corr, window, limit=...)` runs it
over one ingest window (see `correlation_search.py` for the queries and
`correlation_eval.py` for the sliding-window semantics; docs/detection-correlation.md for
both).

Supported: event_count, value_count, temporal and temporal_ordered with group-by, timespan,
aliases, gt/gte/lt/lte/eq/neq conditions and, for temporal, extended conditions
(`a and (b or not c)`). Rejected with a reason: value_sum/avg/percentile/median, correlations
of correlations, extended conditions on temporal_ordered, group-by fields that map to more
than one event field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from hcm_soc.detection.correlation_eval import (
    CorrelationCondition,
    CorrelationType,
    EvalSpec,
    Expression,
    Measure,
)
from hcm_soc.detection.model import CompiledRule, LoadedRule, MatchResult, Window
from hcm_soc.errors import HcmSocError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: maps a Sigma field name, as used by a correlation over `base`, to the event field it means there
FieldMapper = Callable[[CompiledRule, str], str]

SUPPORTED_TYPES: tuple[CorrelationType, ...] = ("event_count", "value_count", "temporal", "temporal_ordered")
#: sub-fields the pipeline may query for case-insensitive matching; grouping uses the stored value
_QUERY_SUBFIELDS = (".caseless", ".text", ".keyword")


class CorrelationError(HcmSocError):
    """A correlation rule cannot be compiled or run; the message names the rule and the reason."""


@dataclass(frozen=True, slots=True)
class GroupField:
    """One group-by entry: `name` as written in the rule (a Sigma field or an alias), `fields` the
    event field in each base rule (same order as `CompiledCorrelation.bases`), `label` the name
    used in Match.group (the event field when all base rules agree, else `name`)."""

    name: str
    label: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class CompiledCorrelation:
    """A correlation ready to run. `bases` in the order the rule lists them (temporal_ordered's
    order); `value_fields` = the counted field per base rule (value_count only)."""

    rule: LoadedRule
    type: CorrelationType
    bases: tuple[CompiledRule, ...]
    group_by: tuple[GroupField, ...]
    timespan: timedelta
    condition: CorrelationCondition | None
    expression: str | None
    value_fields: tuple[str, ...] | None
    aliases: Mapping[str, tuple[str, ...]]
    generate: bool
    spec: EvalSpec

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def indices(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i for b in self.bases for i in b.indices))

    def describe(self) -> str:
        """One line for `rules list`/`rules convert`: what is counted, how, over what."""
        what = self.expression or str(self.condition)
        if self.type == "value_count" and self.value_fields:
            what = f"distinct {'/'.join(dict.fromkeys(self.value_fields))} {what}"
        by = ", ".join(g.label for g in self.group_by) or "(no group-by)"
        rules = ", ".join(b.rule.name or b.rule.id for b in self.bases)
        return f"{self.type} of [{rules}] {what} within {self.timespan} by {by}"


def compile_correlation(
    rule: LoadedRule, base: Mapping[str, CompiledRule], *, field_mapper: FieldMapper | None = None
) -> CompiledCorrelation:
    """Compile `rule` (kind "correlation") over `base` (compiled detection rules keyed by id and name).

    `field_mapper` maps a Sigma field to the event field of one base rule; the default applies the
    hcm-soc pySigma pipeline in that rule's log source."""
    from sigma.correlations import SigmaCorrelationCondition, SigmaCorrelationRule

    sig = rule.sigma
    if not isinstance(sig, SigmaCorrelationRule):
        raise CorrelationError(f"{_where(rule)}: is not a Sigma correlation rule (no `correlation:` section)")
    ctype = str(sig.type.name).lower()
    if ctype not in SUPPORTED_TYPES:
        raise CorrelationError(
            f"{_where(rule)}: correlation type {ctype!r} is not supported by hcm-soc "
            f"(supported: {', '.join(SUPPORTED_TYPES)}); disable the rule or rewrite it as one of those"
        )
    refs = _references(sig)
    if not refs:
        raise CorrelationError(f"{_where(rule)}: references no rules (`correlation: rules:` is empty)")
    bases = tuple(_resolve(rule, ref, base) for ref in refs)
    if len({b.rule.id for b in bases}) != len(bases):
        raise CorrelationError(f"{_where(rule)}: lists the same rule twice in `correlation: rules:`")
    mapper = field_mapper or default_field_mapper()

    aliases: dict[str, tuple[str, ...]] = {}
    for alias in sig.aliases:
        per_rule: dict[str, str] = {}
        for ref, sigma_field in alias.mapping.items():
            target = _resolve(rule, ref.reference, base)
            per_rule[target.rule.id] = sigma_field
        missing = [b.rule.id for b in bases if b.rule.id not in per_rule]
        if missing:
            raise CorrelationError(
                f"{_where(rule)}: alias {alias.alias!r} names no field for rule(s) {', '.join(missing)}; "
                f"add one line per referenced rule under `aliases: {alias.alias}:`"
            )
        aliases[alias.alias] = tuple(_map(rule, mapper, b, per_rule[b.rule.id]) for b in bases)

    def fields_for(name: str) -> tuple[str, ...]:
        if name in aliases:
            return aliases[name]
        return tuple(_map(rule, mapper, b, name) for b in bases)

    group_by = []
    for name in sig.group_by or ():
        fields = fields_for(name)
        label = fields[0] if len(set(fields)) == 1 else name
        group_by.append(GroupField(name, label, fields))

    timespan = timedelta(seconds=sig.timespan.seconds)
    condition: CorrelationCondition | None = None
    expression_text: str | None = None
    expression: Expression | None = None
    expression_monotone = True
    value_fields: tuple[str, ...] | None = None
    cond = sig.condition
    if isinstance(cond, SigmaCorrelationCondition):
        condition = CorrelationCondition(cast(Any, cond.op.name.lower()), int(cond.count))
        if ctype == "value_count":
            fieldref = cond.fieldref
            if isinstance(fieldref, list):
                if len(fieldref) != 1:
                    raise CorrelationError(
                        f"{_where(rule)}: value_count counts one field, the condition names {fieldref}"
                    )
                fieldref = fieldref[0]
            if not fieldref:
                raise CorrelationError(f"{_where(rule)}: value_count needs `condition: field:`")
            value_fields = fields_for(str(fieldref))
    else:
        if ctype == "temporal_ordered":
            raise CorrelationError(
                f"{_where(rule)}: an extended condition ({cond.expression!r}) on temporal_ordered is not "
                "supported (the order is the order of `rules:`); use type temporal or a count condition"
            )
        index = {b.rule.id: i for i, b in enumerate(bases)}
        expression, expression_monotone = _expression(
            rule, cond.parsed, lambda ref: index[_resolve(rule, ref, base).rule.id]
        )
        expression_text = str(cond.expression)

    measure = {
        "event_count": Measure.EVENTS,
        "value_count": Measure.VALUES,
        "temporal": Measure.RULES,
        "temporal_ordered": Measure.ORDERED,
    }[ctype]
    spec = EvalSpec(
        measure=measure,
        timespan_ms=int(timespan / timedelta(milliseconds=1)),
        n_rules=len(bases),
        condition=condition,
        expression=expression,
        expression_monotone=expression_monotone,
    )
    return CompiledCorrelation(
        rule=rule,
        type=cast(CorrelationType, ctype),
        bases=bases,
        group_by=tuple(group_by),
        timespan=timespan,
        condition=condition,
        expression=expression_text,
        value_fields=value_fields,
        aliases=aliases,
        generate=bool(sig.generate),
        spec=spec,
    )


def find_correlation_matches(
    es: Elasticsearch, corr: CompiledCorrelation, window: Window, *, limit: int
) -> MatchResult:
    """The bursts of `corr` that became true in `window` (on event.ingested); see correlation_search."""
    from hcm_soc.detection.correlation_search import search_correlation

    return search_correlation(es, corr, window, limit=limit)


def referenced_rule_names(rule: LoadedRule) -> list[str]:
    """The references (ids or names) a correlation rule lists, for schedulers and `rules list`."""
    return _references(rule.sigma)


# --- helpers ---------------------------------------------------------------------------------


def _where(rule: LoadedRule) -> str:
    return f"{rule.path}: correlation {rule.id} '{rule.title}'"


def _references(sig: Any) -> list[str]:
    if getattr(sig, "rules", None):
        return [str(r.reference) for r in sig.rules]
    cond = getattr(sig, "condition", None)
    if cond is not None and hasattr(cond, "get_referenced_rules"):
        return [str(r) for r in cond.get_referenced_rules()]
    return []


def _resolve(rule: LoadedRule, ref: str, base: Mapping[str, CompiledRule]) -> CompiledRule:
    found = base.get(ref)
    if found is not None:
        from hcm_soc.detection.compiler import PythonCheckedRule

        if isinstance(found, PythonCheckedRule):
            # its query is only the log-source condition: counting its hits would over-count
            raise CorrelationError(
                f"correlation {rule.id}: base rule {found.rule.id} is checked in Python "
                f"({found.residual}); a correlation needs a base rule that Elasticsearch can express"
            )
        return found
    from sigma.correlations import SigmaCorrelationRule

    # the loader resolved the references: tell a nested correlation from a rule that did not compile
    target = next(
        (
            getattr(r, "rule", None)
            for r in getattr(rule.sigma, "rules", None) or ()
            if str(r.reference) == ref
        ),
        None,
    )
    if isinstance(target, SigmaCorrelationRule):
        why = "it is itself a correlation rule, and correlations of correlations are not supported"
    elif target is not None:
        why = f"that rule ({target.id}) was loaded but could not be compiled; see its own problem"
    else:
        why = "no loaded detection rule has that id or name; check the reference"
    raise CorrelationError(
        f"{_where(rule)}: references rule {ref!r}: {why} (`hcm-soc rules validate` lists every problem)"
    )


def _map(rule: LoadedRule, mapper: FieldMapper, base: CompiledRule, sigma_field: str) -> str:
    try:
        mapped = mapper(base, sigma_field)
    except CorrelationError:
        raise
    except Exception as e:  # the pipeline's own errors, with the rule that caused them
        raise CorrelationError(
            f"{_where(rule)}: cannot map field {sigma_field!r} for rule {base.rule.id}: {e}"
        ) from e
    for suffix in _QUERY_SUBFIELDS:
        if mapped.endswith(suffix):
            mapped = mapped[: -len(suffix)]
    return mapped


def _expression(rule: LoadedRule, node: Any, index_of: Callable[[str], int]) -> tuple[Expression, bool]:
    """An extended temporal condition as a predicate on the bitmask of rules seen, and whether it is
    monotone (no `not`: seeing more rules can only make it true)."""
    from sigma.correlations import (
        CorrelationConditionAND,
        CorrelationConditionNOT,
        CorrelationConditionOR,
        SigmaRuleReference,
    )

    if isinstance(node, SigmaRuleReference):
        bit = 1 << index_of(str(node.reference))
        return (lambda mask: bool(mask & bit)), True
    parts = [_expression(rule, arg, index_of) for arg in node.args]
    preds = [p for p, _ in parts]
    mono = all(m for _, m in parts)
    if isinstance(node, CorrelationConditionAND):
        return (lambda mask: all(p(mask) for p in preds)), mono
    if isinstance(node, CorrelationConditionOR):
        return (lambda mask: any(p(mask) for p in preds)), mono
    if isinstance(node, CorrelationConditionNOT):
        inner = preds[0]
        return (lambda mask: not inner(mask)), False
    raise CorrelationError(f"{_where(rule)}: unexpected element in extended condition: {node!r}")


# --- field mapping through the hcm-soc pipeline's tables --------------------------------------


def default_field_mapper() -> FieldMapper:
    """The hcm-soc pipeline's field map (`pipeline.map_field`) in the base rule's log source: the
    same event field a detection on that Sigma field queries (imported here: nothing heavy at
    import time)."""
    from hcm_soc.detection.fieldmaps.sources import find_source
    from hcm_soc.detection.pipeline import map_field

    def mapper(base: CompiledRule, sigma_field: str) -> str:
        rule = base.rule
        ls = rule.sigma.logsource  # the log source the compiler mapped the rule's own fields in
        source = find_source(ls.product, ls.category, ls.service)
        if source is None:
            raise CorrelationError(
                f"rule {rule.id} has no hcm-soc data source (product={ls.product or '-'} "
                f"category={ls.category or '-'} service={ls.service or '-'})"
            )
        mapped = map_field(source, sigma_field)
        if isinstance(mapped, tuple):
            raise CorrelationError(
                f"field {sigma_field!r} means {len(mapped)} event fields ({', '.join(mapped)}) in the log "
                f"source of rule {rule.id}; group or count by one of them (an alias can name the event "
                "field for each rule)"
            )
        return mapped

    return mapper
