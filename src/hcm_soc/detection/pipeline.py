"""The hcm-soc pySigma processing pipeline: Sigma log sources and fields -> our events in Elasticsearch.

One transformation (`HcmSocTransformation`) does, per rule:

1. find the rule's data source (`fieldmaps.sources`); none -> the rule is rejected with
   "no hcm-soc data source for product=… category=… service=…";
2. map field names to ECS (Windows: Winlogbeat's `winlog.event_data.` for the rest);
3. make Sigma's value semantics hold on our mapping (every string field has a lowercase
   `.caseless` keyword sub-field): case-insensitive strings query `<field>.caseless` with a
   lower-cased value, `|cased`/`|base64*` and regexes without `i` query the field itself,
   regexes are rewritten for Lucene (`hcm_soc.detection.lucene_regex`),
   `|cidr` on fields that are not `ip` becomes prefix wildcards, IP prefixes on `ip` fields
   become CIDR ranges; field references and regexes Lucene cannot express raise
   `ResidualCondition` (sigma-cli stops there; `RuleCompiler` then runs the pipeline again with
   `keep_residual=True` and the matcher checks the rule in Python on its log source's events);
4. make costly value lists cheap for Elasticsearch, matching the same events
   (docs/detection-cost.md): a Sysmon `Hashes|contains: 'MD5=<full hash>'` becomes an exact
   term on the `algo=<hex>` tokens the EVTX parser writes (`hcm.hashes`, `hcm.hash`); an
   `Image|endswith: '\\x.exe'` gets the exact term `process.name: x.exe` in front (implied by
   it, and Lucene skips the wildcard on segments where the name does not occur); an OR list
   of `MIN_UNION` or more wildcard values on one field (or of keywords, on each of the data
   source's keyword fields) becomes a few Lucene regexes (`lucene_regex.union_regexes`), one
   automaton and one walk of the field's terms instead of one per value;
5. AND the log-source condition in front of the rule's condition, so that the rule only ever
   matches events of its own log source and the Lucene text shows it.

The output depends on nothing but the rule: `sigma convert -t lucene -p hcm_soc RULE` (the
plugin in `sigma.pipelines.hcm_soc`) prints exactly what `RuleCompiler` compiles.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sigma.conditions import ConditionAND, ConditionOR
from sigma.exceptions import SigmaTransformationError
from sigma.modifiers import (
    SigmaBase64Modifier,
    SigmaBase64OffsetModifier,
    SigmaContainsModifier,
    SigmaEndswithModifier,
    SigmaStartswithModifier,
    SigmaUTF16Modifier,
)
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations.base import PreprocessingTransformation
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from hcm_soc.detection.fieldmaps.sources import DataSource, find_source, keyword_fields
from hcm_soc.detection.lucene_regex import (
    UnionRegex,
    UnsupportedRegex,
    inner_star,
    lucene_regex,
    union_regex_values,
)

PIPELINE_NAME = "hcm_soc"
LOGSOURCE_DETECTION = "_hcm_logsource"
CASELESS = ".caseless"
#: fields searched by keyword (field-less) detections: every lower-cased string sub-field
KEYWORD_FIELDS = ("*.caseless",)
#: Sysmon hash items (as queried) -> the field of their `algo=<hex>` tokens (parsers.evtx.hash_tokens)
HASH_TOKEN_FIELDS = {
    "winlog.event_data.Hashes" + CASELESS: "hcm.hashes",
    "winlog.event_data.Hash" + CASELESS: "hcm.hash",
}
#: executable fields -> the name field the parser fills with the same item's basename
#: (parsers.winlog_fields `_exe`); an `endswith '\\x.exe'` on the first implies name == x.exe
NAME_GUARDS = {
    "process.executable" + CASELESS: "process.name" + CASELESS,
    "process.parent.executable" + CASELESS: "process.parent.name" + CASELESS,
}
#: log sources (categories) whose events all carry `file.path` with `file.name` = its basename (the
#: EVTX parser's `_path` of the same Sysmon item: TargetFilename, ImageLoaded): there an `endswith
#: '\\x.dll'` on the path implies the name `x.dll` as well
FILE_NAME_GUARD_CATEGORIES = frozenset(
    {"file_event", "image_load", "driver_load", "file_change", "create_stream_hash", "file_delete"}
)
FILE_NAME_GUARD = {"file.path" + CASELESS: "file.name" + CASELESS}


def name_guards(source: DataSource | None) -> Mapping[str, str]:
    """The executable/path fields whose `endswith '\\name'` implies an exact name, for `source`."""
    if source is not None and source.product == "windows" and source.category in FILE_NAME_GUARD_CATEGORIES:
        return {**NAME_GUARDS, **FILE_NAME_GUARD}
    return NAME_GUARDS


#: hex digits per algorithm (as in parsers.evtx.HASH_LENGTHS)
HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128, "imphash": 32}
#: an OR list with at least this many wildcard values (or keywords) is searched as regexes
MIN_UNION = 3


class ResidualCondition(SigmaTransformationError):
    """A condition Lucene cannot express (a field reference, a regex Lucene cannot rewrite):
    sigma-cli stops here; RuleCompiler checks such rules in Python (`keep_residual`)."""


def register_sigma_aliases() -> None:
    """Teach pySigma the Sigma v2 modifier alias `utf16le` (= `wide`), which pySigma 1.5 lacks.

    Called by the loader and by the sigma-cli plugin before rules are parsed, so both read the
    same rules the same way."""
    from sigma.modifiers import SigmaWideModifier, modifier_mapping, reverse_modifier_mapping

    modifier_mapping.setdefault("utf16le", SigmaWideModifier)
    reverse_modifier_mapping.setdefault(SigmaWideModifier.__name__, "wide")


# -- field types (from the events template) -----------------------------------------------------


@functools.cache
def field_types() -> dict[str, str]:
    """ECS field -> Elasticsearch type, `keyword+` for keywords/texts with a `.caseless` sub-field
    (read from the events template, so the pipeline follows the mapping)."""
    from hcm_soc.store.templates import ecs_mappings

    props = ecs_mappings()["properties"]
    out: dict[str, str] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name, spec in node.items():
            if "properties" in spec:
                walk(spec["properties"], f"{prefix}{name}.")
                continue
            kind = spec.get("type", "object")
            out[f"{prefix}{name}"] = kind + ("+" if "caseless" in spec.get("fields", {}) else "")

    walk(props, "")
    return out


def _kind(field_name: str) -> str:
    """`string` (has .caseless), `text` (no .caseless), `number`, `ip`, `boolean`, `other`; unknown fields are
    dynamic strings, which the template's dynamic rule gives a `.caseless` sub-field."""
    kind = field_types().get(field_name)
    if kind is None:
        if field_name.startswith("log.syslog.structured_data."):
            return "text"  # flattened: no sub-fields
        return "string"
    if kind.endswith("+"):
        return "string"
    if kind in ("long", "integer", "short", "byte", "float", "double", "scaled_float", "half_float"):
        return "number"
    if kind == "ip":
        return "ip"
    if kind == "boolean":
        return "boolean"
    if kind in ("keyword", "text", "wildcard", "match_only_text", "object", "flattened"):
        return "text"
    return "other"


# -- values ---------------------------------------------------------------------------------------

_IPV4_PREFIX = re.compile(r"^((?:\d{1,3}\.){1,3})$")


def _ip_prefix_cidr(value: SigmaString) -> SigmaCIDRExpression | None:
    """'10.', '192.168.' (startswith) or '10.*' -> a CIDR range; None if not such a prefix."""
    parts = value.s
    if len(parts) != 2 or not isinstance(parts[0], str) or parts[1] != SpecialChars.WILDCARD_MULTI:
        return None
    text = parts[0]
    if m := _IPV4_PREFIX.match(text):
        octets = m.group(1).rstrip(".").split(".")
        if all(int(o) < 256 for o in octets):
            return SigmaCIDRExpression(".".join(octets + ["0"] * (4 - len(octets))) + f"/{8 * len(octets)}")
    if re.fullmatch(r"(?:[0-9a-fA-F]{1,4}:){1,7}", text):
        groups = text.rstrip(":").split(":")
        net = ":".join(groups) + "::" if len(groups) < 8 else ":".join(groups)
        try:
            return SigmaCIDRExpression(str(ipaddress.ip_network(f"{net}/{16 * len(groups)}", strict=False)))
        except ValueError:
            return None
    return None


class _TypeMismatch(SigmaTransformationError):
    """A value that the field's Elasticsearch type cannot match (wildcards on an ip or a number)."""


@dataclass
class _Item:
    """Decisions for one detection item: which field to query and the values to send."""

    target: str | None
    values: list[SigmaType]


def _cased(item: SigmaDetectionItem) -> bool:
    return any(m in (SigmaBase64Modifier, SigmaBase64OffsetModifier) for m in item.modifiers)


def _utf16_base64(item: SigmaDetectionItem) -> list[SigmaType] | None:
    """`|utf16|base64[offset]` values encoded with the real UTF-16LE byte order mark (FF FE).

    pySigma 1.5 prefixes the text with U+FEFF and base64-encodes it as UTF-8 (EF BB BF), which
    never occurs in a UTF-16 payload; None when the item is not such a chain."""
    mods = item.modifiers
    if SigmaUTF16Modifier not in mods or not item.original_value:
        return None
    offset = SigmaBase64OffsetModifier in mods
    if not offset and SigmaBase64Modifier not in mods:
        return None
    head = "*" if SigmaContainsModifier in mods or SigmaEndswithModifier in mods else ""
    tail = "*" if SigmaContainsModifier in mods or SigmaStartswithModifier in mods else ""
    out: list[SigmaType] = []
    for original in item.original_value:
        data = b"\xff\xfe" + str(original).encode("utf-16le")
        if not offset:
            out.append(SigmaString(head + base64.b64encode(data).decode() + tail))
            continue
        starts, ends = SigmaBase64OffsetModifier.start_offsets, SigmaBase64OffsetModifier.end_offsets
        variants = [
            base64.b64encode(i * b" " + data)[starts[i] : ends[(len(data) + i) % 3]].decode()
            for i in range(3)
        ]
        out.append(SigmaExpansion([SigmaString(head + v + tail) for v in variants]))
    return out


def _convert_values(item: SigmaDetectionItem, fname: str | None, keep_residual: bool = False) -> _Item:
    """Field and values that give Sigma's semantics for `item` on our mapping (see module doc).

    With `keep_residual`, field references and regexes stay as Sigma wrote them, on the field
    itself, for the Python check of `hcm_soc.detection.matcher.sigma_match`."""
    if (
        keep_residual
        and fname
        and any(isinstance(v, SigmaFieldReference | SigmaRegularExpression) for v in item.value)
    ):
        return _Item(fname, list(item.value))
    if (fixed := _utf16_base64(item)) is not None:
        item.value = fixed
    if fname is None:  # keyword search: every .caseless field (see KEYWORD_FIELDS)
        return _Item(None, [_lower(v) for v in item.value])
    kind = _kind(fname)
    force_cased = _cased(item)
    out: list[SigmaType] = []
    caseless = False
    for v in item.value:
        if isinstance(v, SigmaFieldReference):
            raise ResidualCondition(
                f"field reference ({fname} |fieldref {v.field}): Lucene cannot compare two fields and "
                "the Elasticsearch node has no scripting (hcm-soc checks such rules in Python)"
            )
        if kind in ("number", "ip", "boolean") and isinstance(v, SigmaRegularExpression | SigmaExpansion):
            raise _TypeMismatch(
                f"{type(v).__name__} value on {kind} field {fname}: only text fields take patterns"
            )
        if isinstance(v, SigmaRegularExpression):
            ic = SigmaRegularExpressionFlag.IGNORECASE in v.flags
            try:
                translated = lucene_regex(str(v.regexp), v.flags)
            except UnsupportedRegex as e:
                raise ResidualCondition(
                    f"regular expression /{v.regexp}/ on {fname}: Lucene regex cannot express {e}"
                ) from None
            out.append(SigmaRegularExpression(translated))
            caseless |= ic and kind == "string"
        elif isinstance(v, SigmaCIDRExpression):
            if kind == "ip":
                out.append(v)
            else:
                out.append(SigmaExpansion([SigmaString(p) for p in v.expand()]))
                caseless |= kind == "string"
        elif isinstance(v, SigmaCasedString):
            out.append(_plain(v))
        elif isinstance(v, SigmaExpansion):
            out.append(
                SigmaExpansion([_plain(x) if isinstance(x, SigmaCasedString) else x for x in v.values])
            )
            caseless |= kind == "string" and not force_cased
        elif isinstance(v, SigmaString):
            if kind == "number":
                if v.contains_special() or not re.fullmatch(r"-?\d+(\.\d+)?", str(v)):
                    raise _TypeMismatch(
                        f"value '{v}' on numeric field {fname}: wildcards and text cannot match a number"
                    )
                out.append(SigmaNumber(float(str(v)) if "." in str(v) else int(str(v))))
            elif kind == "boolean":
                # Sysmon writes Signed: 'true'/'false' as text; we store a JSON boolean
                if str(v).lower() not in ("true", "false"):
                    raise _TypeMismatch(f"value '{v}' on boolean field {fname}: expected true or false")
                out.append(SigmaBool(str(v).lower() == "true"))
            elif kind == "ip" and v.contains_special():
                cidr = _ip_prefix_cidr(v)
                if cidr is None:
                    raise _TypeMismatch(
                        f"value '{v}' on IP field {fname}: only whole addresses and prefixes like '10.' "
                        "or '10.1.*' (or |cidr) can match an IP field"
                    )
                out.append(cidr)
            elif kind == "ip" and not _is_ip(str(v)):
                # Windows writes '-' for "no address": the parser keeps it in event_data only
                raise _TypeMismatch(f"value '{v}' on IP field {fname}: not an IP address")
            else:
                out.append(v)
                caseless |= kind == "string" and not force_cased
        else:  # numbers, booleans, null, exists, comparisons: the field itself
            out.append(v)
    if caseless:
        out = [_lower(v) for v in out]
        return _Item(fname + CASELESS, out)
    return _Item(fname, out)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _plain(v: SigmaString) -> SigmaString:
    s = SigmaString()
    s.s = v.s
    s.original = v.original
    return s


def _lower(v: SigmaType) -> SigmaType:
    if isinstance(v, SigmaCasedString):
        return _plain(v)
    if isinstance(v, SigmaString):
        return v.lower()
    if isinstance(v, SigmaExpansion):
        return SigmaExpansion([_lower(x) for x in v.values])
    if isinstance(v, SigmaNumber | SigmaBool) and not isinstance(v, SigmaCompareExpression):
        return SigmaString(str(v).lower())  # a .caseless keyword holds numbers as text
    return v


# -- the transformation ----------------------------------------------------------------------------


def no_source_message(product: str | None, category: str | None, service: str | None) -> str:
    return (
        f"no hcm-soc data source for product={product or '-'} category={category or '-'} "
        f"service={service or '-'}: no collector writes such events (see docs/detection.md, "
        "log-source mapping)"
    )


def map_field(source: DataSource, name: str) -> str | tuple[str, ...]:
    """The ECS field(s) a Sigma field name means in `source` (also for correlation group-by)."""
    mapped = source.fields.get(name)
    if mapped is not None:
        return mapped
    if source.unmapped_prefix and "." not in name:
        return source.unmapped_prefix + name
    return name


@dataclass
class HcmSocTransformation(PreprocessingTransformation):
    """Log-source scope, field names and value semantics for one rule (see the module doc)."""

    keep_residual: bool = False

    def apply(self, rule: Any) -> None:
        super().apply(rule)
        if not isinstance(rule, SigmaRule):
            return
        ls = rule.logsource
        source = find_source(ls.product, ls.category, ls.service)
        if source is None:
            raise SigmaTransformationError(no_source_message(ls.product, ls.category, ls.service))
        for detection in rule.detection.detections.values():
            self._detection(detection, source)
        scope = scope_detection(source)
        rule.detection.detections[LOGSOURCE_DETECTION] = scope
        for cond in rule.detection.parsed_condition:
            cond.condition = f"{LOGSOURCE_DETECTION} and ({cond.condition})"

    def _detection(self, detection: SigmaDetection, source: DataSource | None) -> None:
        for i, item in enumerate(detection.detection_items):
            if isinstance(item, SigmaDetection):
                self._detection(item, source)
                continue
            names = map_field(source, item.field) if source and item.field else item.field
            # Windows keeps every EventData item as written: the text fallback for typed ECS fields
            raw = None
            if source and source.unmapped_prefix and item.field and "." not in item.field:
                raw = source.unmapped_prefix + item.field
            if self.keep_residual and source:
                item.value = [
                    SigmaFieldReference(_first(map_field(source, v.field)), v.starts_with, v.ends_with)
                    if isinstance(v, SigmaFieldReference)
                    else v
                    for v in item.value
                ]
            if isinstance(names, tuple):
                subs: list[SigmaDetectionItem | SigmaDetection] = []
                for name in names:
                    sub = SigmaDetectionItem(name, list(item.modifiers), list(item.value), item.value_linking)
                    subs.append(self._item(sub, name, raw, source))
                new: SigmaDetectionItem | SigmaDetection = SigmaDetection(subs, item.source, ConditionOR)
            else:
                new = self._item(item, names, raw, source)
            new.parent = detection
            detection.detection_items[i] = new

    def _item(
        self,
        item: SigmaDetectionItem,
        name: str | None,
        raw: str | None = None,
        source: DataSource | None = None,
    ) -> SigmaDetectionItem | SigmaDetection:
        try:
            decided = _convert_values(item, name, self.keep_residual)
        except _TypeMismatch:
            if raw is None or raw == name:
                raise
            decided = _convert_values(item, raw, self.keep_residual)
        item.field = decided.target
        item.value = decided.values
        item.disable_conversion_to_plain()
        self.processing_item_applied(item)
        if self.keep_residual or source is None or item.value_linking is not ConditionOR:
            return item  # the Python check reads the fields as written; `|all` lists are ANDs
        return _cheaper(item, keyword_fields(source), name_guards(source))


# -- cheaper forms of the same condition (module doc, step 4) ------------------------------------------


def _hash_token(value: SigmaType) -> str | None:
    """`md5=<hex>` for a lower-cased `*md5=<hex>*` whose hex is the algorithm's full length."""
    if not isinstance(value, SigmaString):
        return None
    parts = value.s
    if len(parts) != 3 or parts[0] != SpecialChars.WILDCARD_MULTI or parts[2] != SpecialChars.WILDCARD_MULTI:
        return None
    token = parts[1]
    if not isinstance(token, str):
        return None
    algo, sep, digits = token.partition("=")
    if sep and HASH_LENGTHS.get(algo) == len(digits) and re.fullmatch(r"[0-9a-f]+", digits):
        return token
    return None


def _contains(value: SigmaString) -> SigmaString:
    """`*value*`: what a keyword means (the Lucene backend wraps keywords the same way)."""
    out = SigmaString()
    out.s = [SpecialChars.WILDCARD_MULTI, *value.s, SpecialChars.WILDCARD_MULTI]
    return out


def _literal(text: str) -> SigmaString:
    """`text` as a Sigma string with no wildcard (`*`, `?` and `\\` stay literal characters)."""
    out = SigmaString()
    out.s = [text]
    return out


def _sibling(item: SigmaDetectionItem, field_name: str, values: list[SigmaType]) -> SigmaDetectionItem:
    new = SigmaDetectionItem(field_name, [], values, ConditionOR)
    new.disable_conversion_to_plain()
    return new


def _endswith_name(value: SigmaType) -> str | None:
    """`x.exe` for a lower-cased `*\\x.exe` whose last part has no wildcard and no separator."""
    if not isinstance(value, SigmaString) or len(value.s) != 2 or value.s[0] != SpecialChars.WILDCARD_MULTI:
        return None
    tail = value.s[1]
    if not isinstance(tail, str) or not tail.startswith("\\") or len(tail) < 2:
        return None
    name = tail[1:]
    return None if any(c in name for c in "\\/") else name


def _cheaper(
    item: SigmaDetectionItem,
    kw_fields: tuple[str, ...],
    guards: Mapping[str, str] | None = None,
    guard: bool = True,
) -> SigmaDetectionItem | SigmaDetection:
    """The same OR list as `item` (values already converted), in forms Elasticsearch builds cheaply:
    hash tokens as exact terms, `Image|endswith: '\\x.exe'` guarded by an exact term on the
    process name, `MIN_UNION`+ wildcard values (or keywords) as few regexes."""
    # an expansion (|windash, |base64offset, |cidr …) is "any of these": in an OR list its values
    # are values of the list
    values = [x for v in item.value for x in (v.values if isinstance(v, SigmaExpansion) else [v])]
    alternatives: list[SigmaDetectionItem | SigmaDetection] = []
    if (token_field := HASH_TOKEN_FIELDS.get(item.field or "")) is not None:
        tokens = [t for v in values if (t := _hash_token(v)) is not None]
        if tokens:
            values = [v for v in values if _hash_token(v) is None]
            alternatives.append(_sibling(item, token_field, [SigmaString(t) for t in tokens]))
    if (
        guard
        and (name_field := (NAME_GUARDS if guards is None else guards).get(item.field or "")) is not None
    ):
        # executable endswith '\x.exe' implies name == 'x.exe' (the parser's basename of the same
        # item): the exact term, in front, lets Lucene skip the wildcard's walk of the executable's
        # terms on every segment where no such name occurs (the conjunction is empty there)
        named = [(v, n) for v in values if (n := _endswith_name(v)) is not None]
        if named:
            names = list(dict.fromkeys(n for _, n in named))
            exact = SigmaDetectionItem(name_field, [], [_literal(n) for n in names], ConditionOR)
            exact.disable_conversion_to_plain()
            tails = _cheaper(_sibling(item, item.field or "", [v for v, _ in named]), kw_fields, guard=False)
            alternatives.append(SigmaDetection([exact, tails], item.source, ConditionAND))
            values = [v for v in values if not any(v is w for w, _ in named)]
    if item.field is None:
        # keywords mean `*value*`; bound to the source's keyword fields when those are named
        fields: tuple[str, ...] = () if "*" in "".join(kw_fields) else kw_fields
        patterns = [v for v in values if isinstance(v, SigmaString) and not inner_star(v)]
        wide = [_contains(v) for v in patterns]
    else:
        fields = (item.field,) if item.field.endswith(CASELESS) or _kind(item.field) == "string" else ()
        patterns = [
            v for v in values if isinstance(v, SigmaString) and v.contains_special() and not inner_star(v)
        ]
        wide = patterns
    if fields and len(patterns) >= MIN_UNION and (regexes := union_regex_values(wide)) is not None:
        values = [v for v in values if not any(v is p for p in patterns)]
        for f in fields:
            alternatives.append(_sibling(item, f, [UnionRegex(r, united) for r, united in regexes]))
    if not alternatives:
        return item  # as it was, expansions included
    if not values and len(alternatives) == 1:
        return alternatives[0]
    if values:
        item.value = values
        alternatives.insert(0, item)
    if len(alternatives) == 1:
        return alternatives[0]
    return SigmaDetection(alternatives, item.source, ConditionOR)


def scope_detection(source: DataSource) -> SigmaDetection:
    """The log-source condition of `source` as a Sigma detection, values already converted."""
    alternatives: list[Any] = [dict(c) for c in source.conditions]
    definition: Any = alternatives if len(alternatives) > 1 else alternatives[0]
    detection = SigmaDetection.from_definition(definition)
    HcmSocTransformation()._detection(detection, None)
    return detection


def scope_query(source: DataSource) -> dict[str, Any]:
    """The log-source condition of `source` as an Elasticsearch bool query (for `examined`)."""
    shoulds = []
    for cond in source.conditions:
        musts: list[dict[str, Any]] = []
        for key, value in cond.items():
            fname, _, modifier = key.partition("|")
            if modifier == "exists":
                musts.append({"exists": {"field": fname}})
                continue
            values = value if isinstance(value, list) else [value]
            if all(isinstance(v, int) for v in values):
                musts.append({"terms": {fname: values}})
            else:
                musts.append({"terms": {fname + CASELESS: [str(v).lower() for v in values]}})
        shoulds.append({"bool": {"filter": musts}})
    return shoulds[0] if len(shoulds) == 1 else {"bool": {"should": shoulds, "minimum_should_match": 1}}


def _first(names: str | tuple[str, ...]) -> str:
    return names if isinstance(names, str) else names[0]


def hcm_soc_pipeline(keep_residual: bool = False) -> ProcessingPipeline:
    """The project's processing pipeline (used by RuleCompiler and, as `-p hcm_soc`, by sigma-cli)."""
    return ProcessingPipeline(
        name="hcm-soc: Sigma log sources and fields to hcm-soc's ECS events (case-insensitive via .caseless)",
        priority=20,
        allowed_backends=frozenset({"elasticsearch", "lucene"}),
        items=[ProcessingItem(identifier="hcm_soc", transformation=HcmSocTransformation(keep_residual))],
    )
