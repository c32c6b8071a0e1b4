"""Trigram sub-fields (`.grams`) of the string fields Sigma rules search with leading wildcards.

A rule's `contains`/`endswith` value is an automaton Elasticsearch walks against the whole term
dictionary of its field, on every segment: the main cost of a Sigma rule (docs/detection-cost.md).
The fields SigmaHQ searches that way most also get `.grams`, their lower-cased character trigrams,
so that a rule's screen (`hcm_soc.detection.screen`) can ask "are all trigrams of the value there"
with term look-ups first, and the rule's own query is built only where they are. This is what
Elastic's `wildcard` field type does (an n-gram index to find candidates, the exact match to
verify), with the verification left to the rule's query; the local node has no `wildcard` type.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from elastic_transport import TransportError
from elasticsearch import ApiError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger(__name__)

#: The string fields Sigma rules search most with `contains`/`endswith` (leading wildcards, regexes)
#: get a `.grams` sub-field: their lower-cased character trigrams. A rule's screen
#: (`hcm_soc.detection.screen`) turns `*value*` into "every trigram of value is there", which
#: Elasticsearch answers with term look-ups instead of a walk of the field's whole term dictionary
#: (docs/detection-cost.md, "Trigram screens"). What Elastic's `wildcard` field type does, with the
#: verification left to the rule's own query.
GRAM_FIELDS = (
    "process.command_line",
    "process.parent.command_line",
    "process.executable",
    "process.parent.executable",
    "powershell.file.script_block_text",
    "registry.path",
    "file.path",
    "url.original",
    "user_agent.original",
    "dns.question.name",
)
# Not `message`: syslog, the city's largest log volume, would pay trigrams on every line for the few
# Linux keyword lists they would screen (`bench/bulk_ingest.py` measures that path).
#: EventData items searched the same way (they also copy to `hcm.keywords`, like every EventData item).
GRAM_EVENT_DATA = ("Details", "ContextInfo", "Payload")
GRAMS = ".grams"
#: The trigram analyzer (every character, including spaces and punctuation, lower-cased per code
#: point like the `lowercase` normalizer of `.caseless`), and the `.grams` sub-field that uses it.
#: A query names a trigram as an exact term (search analyzer `keyword`).
GRAM_ANALYZER = "hcm_grams"
GRAM_SETTINGS = {
    "index.analysis.tokenizer.hcm_trigram.type": "ngram",
    "index.analysis.tokenizer.hcm_trigram.min_gram": 3,
    "index.analysis.tokenizer.hcm_trigram.max_gram": 3,
    "index.analysis.tokenizer.hcm_trigram.token_chars": [],
    f"index.analysis.analyzer.{GRAM_ANALYZER}.type": "custom",
    f"index.analysis.analyzer.{GRAM_ANALYZER}.tokenizer": "hcm_trigram",
    f"index.analysis.analyzer.{GRAM_ANALYZER}.filter": ["lowercase"],
}
_GRAMS_SUBFIELD = {
    "type": "text",
    "analyzer": GRAM_ANALYZER,
    "search_analyzer": "keyword",
    "index_options": "docs",
    "norms": False,
}


_GRAM_BASES = frozenset(GRAM_FIELDS) | {f"winlog.event_data.{n}" for n in GRAM_EVENT_DATA}


def gram_field(field_name: str) -> str | None:
    """`<field>.grams` for a field (or its `.caseless` sub-field) that has trigrams, else None."""
    base = field_name.removesuffix(".caseless")
    return base + GRAMS if base in _GRAM_BASES else None


def with_grams(mappings: dict[str, Any]) -> dict[str, Any]:
    """The events mappings with `.grams` sub-fields on GRAM_FIELDS and the GRAM_EVENT_DATA items:
    dynamic templates in front of the generic ones (most of those fields are mapped dynamically),
    and the sub-field on those mapped explicitly."""
    out = copy.deepcopy(mappings)
    generic = next(
        t["strings_as_caseless_keyword"]["mapping"]
        for t in out["dynamic_templates"]
        if "strings_as_caseless_keyword" in t
    )
    event_data = next(
        t["winlog_event_data_keywords"]["mapping"]
        for t in out["dynamic_templates"]
        if "winlog_event_data_keywords" in t
    )
    explicit: list[str] = []
    for name in GRAM_FIELDS:
        node: dict[str, Any] = out
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.get("properties", {}).get(part, {})
        spec = node.get("properties", {}).get(leaf)
        if spec is not None:
            spec.setdefault("fields", {})["grams"] = dict(_GRAMS_SUBFIELD)
            explicit.append(name)
    with_grams = [
        {
            "strings_with_grams": {
                "match_mapping_type": "string",
                "path_match": [n for n in GRAM_FIELDS if n not in explicit],
                "mapping": merge_mappings(generic, {"fields": {"grams": _GRAMS_SUBFIELD}}),
            }
        },
        {
            "winlog_event_data_grams": {
                "match_mapping_type": "string",
                "path_match": [f"winlog.event_data.{n}" for n in GRAM_EVENT_DATA],
                "mapping": merge_mappings(event_data, {"fields": {"grams": _GRAMS_SUBFIELD}}),
            }
        },
    ]
    out["dynamic_templates"] = with_grams + out["dynamic_templates"]
    return out


#: Indices known to have been created with GRAM_SETTINGS (settings of an open index do not change).
_WITH_GRAMS: set[str] = set()


def indices_with_grams(client: Elasticsearch, indices: Iterable[str]) -> set[str]:
    """Those of `indices` created with the trigram analyzer, hence with `.grams` on every GRAM_FIELDS
    field they map (an index created before SCHEMA_VERSION 8 has none: a trigram screen would find
    nothing there). Unreadable settings count as "without". Only the indices with them are
    remembered (settings of an open index do not change); the others are asked again next time,
    which is only while an index from before the upgrade still holds events of a window."""
    wanted = set(indices)
    missing = sorted(wanted - _WITH_GRAMS)
    if missing:
        try:
            resp = client.indices.get_settings(
                index=",".join(missing),
                name=f"index.analysis.analyzer.{GRAM_ANALYZER}.type",
                flat_settings=True,
                allow_no_indices=True,
                ignore_unavailable=True,
            )
        except (AttributeError, ApiError, TransportError) as e:  # a restricted user, a client wrapper
            log.warning("index settings unreadable (%s): trigram screens not used on %s", e, missing)
            return wanted & _WITH_GRAMS
        if len(_WITH_GRAMS) > 100_000:
            _WITH_GRAMS.clear()
        _WITH_GRAMS.update(name for name, body in resp.items() if body.get("settings"))
    return wanted & _WITH_GRAMS


def merge_mappings(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of mapping dicts (b wins), as composable templates compose them."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_mappings(out[k], v)
        elif k == "dynamic_templates" and isinstance(out.get(k), list):
            out[k] = out[k] + [t for t in v if t not in out[k]]
        else:
            out[k] = copy.deepcopy(v)
    return out
