"""Every EVTX attack recording through the real ingest pipeline into Elasticsearch, then
SigmaHQ rules compiled with pySigma's Lucene backend and `ecs_windows` pipeline, run as
`query_string` queries, must find the recordings they were written for.

Category rules (process_creation, ps_script, registry_set) get no `winlog.channel`
condition from ecs_windows, so their queries are restricted here to the events of the
category (Sysmon 1 / Security 4688, PowerShell 4104, Sysmon 13). Plain keyword fields
are case-sensitive; a rule whose values differ in case from the event is run with its
fields moved to the `.caseless` sub-fields, and the test asserts that it needs it.

The same recordings prove, for every SigmaHQ Windows rule compiled by hcm-soc, that its trigram
screen (hcm_soc.detection.screen) is implied by the rule: no event matches the rule and not its
screen.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch

from hcm_soc.collectors.base import RawRecord
from hcm_soc.collectors.evtx import EvtxReader, ingest_paths
from hcm_soc.collectors.pipeline import IngestPipeline
from hcm_soc.parsers.base import PARSE_FAILURE_TAG, ParseContext, SourceInfo
from hcm_soc.parsers.registry import get_parser
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, install, uninstall

CORPUS = Path(os.environ.get("HCM_SOC_EVTX_DIR", "/work/shared/corpus/evtx-attack-samples"))
SIGMAHQ = Path(os.environ.get("HCM_SOC_SIGMAHQ_DIR", "/work/shared/corpus/sigmahq"))
DATASET = "windows.evtx"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CORPUS.is_dir(), reason=f"EVTX corpus not found at {CORPUS} (set HCM_SOC_EVTX_DIR)"
    ),
]

SYSMON = 'winlog.channel:"Microsoft-Windows-Sysmon/Operational"'
PROCESS_CREATION = f"(({SYSMON} AND event.code:1) OR (winlog.channel:Security AND event.code:4688))"
PS_SCRIPT = 'winlog.channel:"Microsoft-Windows-PowerShell/Operational" AND event.code:4104'
REGISTRY_SET = f"{SYSMON} AND event.code:13"


class RecordingSink:
    """Passes records to the pipeline and remembers which file each id came from."""

    def __init__(self, inner: IngestPipeline) -> None:
        self.inner = inner
        self.keys: list[tuple[str, str]] = []

    def handle(self, record: RawRecord) -> None:
        self.keys.append((record.fields["log"]["file"]["path"], record.id_key))
        self.inner.handle(record)

    def flush(self) -> None:
        self.inner.flush()


@dataclass
class Ingested:
    es: Elasticsearch
    names: IndexNames
    index: str
    summary: dict[str, Any]
    pipeline: IngestPipeline
    keys: list[tuple[str, str]]


@pytest.fixture(scope="module")
def ingested(es: Elasticsearch) -> Iterator[Ingested]:
    names = IndexNames(prefix=f"t{uuid.uuid4().hex[:10]}", namespace="test")
    install(es, build_items(names))
    try:
        writer = BulkWriter(es, names, flush_interval=None)
        spec = get_parser("evtx")
        pipeline = IngestPipeline(
            writer,
            names.events(DATASET),
            SourceInfo("evtx-attack-samples", DATASET, "windows"),
            spec,
            ParseContext(dataset=DATASET),
        )
        sink = RecordingSink(pipeline)
        summary = ingest_paths([CORPUS], sink, reader=EvtxReader())
        writer.close()
        es.indices.refresh(index=names.events(DATASET))
        yield Ingested(es, names, names.events(DATASET), summary, pipeline, sink.keys)
    finally:
        _drop_events(es, names)
        uninstall(es, names)


def _drop_events(es: Elasticsearch, names: IndexNames) -> None:
    """Free the ~13 MB this module stores: a node without the data-streams module cannot
    delete a data stream (so `uninstall` leaves it, and its `<prefix>-*` index delete fails
    on it), but a rolled-over backing index and the fixed indices can go."""
    stream = names.events(DATASET)
    try:
        backing = list(es.indices.get(index=stream))  # resolves the stream to its backing indices
        es.indices.rollover(alias=stream)
        es.indices.delete(index=",".join(backing))
        es.indices.delete(index=f"{names.alerts},{names.incidents},{names.state}", ignore_unavailable=True)
    except ApiError:
        pass  # best effort, like uninstall


def test_every_record_read_is_stored(ingested: Ingested) -> None:
    es, index, summary = ingested.es, ingested.index, ingested.summary
    assert summary["unreadable"] == []
    assert summary["files_done"] == summary["files_total"] == len(list(CORPUS.rglob("*.evtx")))
    assert sum(summary["per_file"].values()) == summary["records"] == len(ingested.keys)
    # the same event (computer, channel, record id) in two recordings is one document: the first
    # file read keeps it, the later one counts as a duplicate
    first_file: dict[str, str] = {}
    for path, key in ingested.keys:
        first_file.setdefault(key, path)
    expected = Counter(first_file.values())
    stats = ingested.pipeline.stats()
    assert stats["dead_lettered"] == 0
    assert stats["duplicates"] == len(ingested.keys) - len(first_file)
    assert es.count(index=index)["count"] == len(first_file)
    resp = es.search(index=index, size=0, aggs={"files": {"terms": {"field": "log.file.path", "size": 1000}}})
    stored = {b["key"]: b["doc_count"] for b in resp["aggregations"]["files"]["buckets"]}
    assert stored == dict(expected)
    for path, count in summary["per_file"].items():  # and each file's reader count is what it sent
        assert sum(1 for p, _ in ingested.keys if p == path) == count


def test_only_undecodable_records_are_parse_failures(ingested: Ingested) -> None:
    failures = ingested.es.count(index=ingested.index, query={"term": {"tags": PARSE_FAILURE_TAG}})["count"]
    assert failures == ingested.summary["undecodable"] == ingested.pipeline.stats()["parse_failures"]
    assert ingested.summary["parser_errors"] == 0  # the corpus has no damaged chunk


def test_stored_shape_keeps_types(ingested: Ingested) -> None:
    es, index = ingested.es, ingested.index
    mapping = next(iter(es.indices.get_mapping(index=index).values()))["mappings"]["properties"]
    assert mapping["winlog"]["properties"]["event_id"]["type"] == "keyword"
    assert mapping["event"]["properties"]["code"]["type"] == "keyword"
    assert mapping["source"]["properties"]["ip"]["type"] == "ip"
    event_data = mapping["winlog"]["properties"]["event_data"]["properties"]
    # every EventData item is a string: one keyword mapping whatever the provider wrote
    assert {p.get("type") for p in event_data.values()} == {"keyword"}
    hits = es.search(
        index=index, query={"query_string": {"query": "event.code:4624 AND source.ip:10.0.2.17"}}, size=1
    )["hits"]["hits"]
    assert hits and hits[0]["_source"]["winlog"]["event_id"] == "4624"


# --- SigmaHQ rules ------------------------------------------------------------------------------
def _caseless_fields(es: Elasticsearch, index: str) -> set[str]:
    caps = es.field_caps(index=index, fields="*")["fields"]
    return {name.removesuffix(".caseless") for name in caps if name.endswith(".caseless")}


def _to_caseless(query: str, fields: set[str]) -> str:
    """Move every `field:` that has a lowercase-normalised sub-field to `field.caseless:`;
    Elasticsearch applies the normaliser to the query's terms and wildcard patterns."""
    return re.sub(
        r"(?<![\w.\\])([A-Za-z_@][\w.@]*):", lambda m: f"{m[1]}.caseless:" if m[1] in fields else m[0], query
    )


def _compile(rule: str) -> str:
    from sigma.backends.elasticsearch import LuceneBackend
    from sigma.collection import SigmaCollection
    from sigma.pipelines.elasticsearch.windows import ecs_windows

    text = (SIGMAHQ / "rules/windows" / rule).read_text(encoding="utf-8")
    queries = LuceneBackend(ecs_windows()).convert(SigmaCollection.from_yaml(text))
    assert len(queries) == 1
    return str(queries[0])


def _hits(ing: Ingested, query: str, scope: str | None) -> list[dict[str, Any]]:
    q = f"({query}) AND ({scope})" if scope else query
    resp = ing.es.search(
        index=ing.index,
        query={"query_string": {"query": q}},
        size=100,
        source_includes=["log.file.path", "event.code", "winlog.channel"],
    )
    return [h["_source"] for h in resp["hits"]["hits"]]


# (rule, recording it was written for, scope for category rules, needs .caseless, event codes of the hits)
RULES = [
    (
        "process_creation/proc_creation_win_lolbin_pcalua.yml",
        "Execution/exec_sysmon_1_lolbin_pcalua.evtx",
        PROCESS_CREATION,
        False,
        {"1"},
    ),
    (
        "powershell/powershell_script/posh_ps_malicious_keywords.yml",
        "Credential Access/Powershell_4104_MiniDumpWriteDump_Lsass.evtx",
        PS_SCRIPT,
        False,
        {"4104"},
    ),
    (
        "builtin/security/win_security_audit_log_cleared.yml",
        "Defense Evasion/DE_1102_security_log_cleared.evtx",
        None,
        False,
        {"1102"},
    ),
    (
        "builtin/system/service_control_manager/win_system_meterpreter_or_cobaltstrike_getsystem_service_installation.yml",
        "Privilege Escalation/System_7045_namedpipe_privesc.evtx",
        None,
        False,
        {"7045"},
    ),
    # the rule says ...\Policies\System\EnableLUA; Windows logged ...\policies\system\EnableLUA
    (
        "registry/registry_set/registry_set_uac_disable.yml",
        "Defense Evasion/DE_UAC_Disabled_Sysmon_12_13.evtx",
        REGISTRY_SET,
        True,
        {"13"},
    ),
]


@pytest.mark.skipif(
    not SIGMAHQ.is_dir(), reason=f"SigmaHQ rules not found at {SIGMAHQ} (set HCM_SOC_SIGMAHQ_DIR)"
)
@pytest.mark.parametrize(
    ("rule", "recording", "scope", "needs_caseless", "codes"), RULES, ids=[Path(r[0]).stem for r in RULES]
)
def test_sigmahq_rule_matches_its_recording(
    ingested: Ingested, rule: str, recording: str, scope: str | None, needs_caseless: bool, codes: set[str]
) -> None:
    query = _compile(rule)
    plain = _hits(ingested, query, scope)
    caseless = _hits(ingested, _to_caseless(query, _caseless_fields(ingested.es, ingested.index)), scope)
    hits = caseless if needs_caseless else plain
    files = {h["log"]["file"]["path"] for h in hits}
    assert str(CORPUS / recording) in files, f"{rule} found {sorted(files)}"
    assert {h["event"]["code"] for h in hits} == codes
    if needs_caseless:
        assert plain == [], "the case-sensitive query matched: this rule no longer needs .caseless"
    else:
        assert len(caseless) >= len(plain)


@pytest.mark.skipif(
    not SIGMAHQ.is_dir(), reason=f"SigmaHQ rules not found at {SIGMAHQ} (set HCM_SOC_SIGMAHQ_DIR)"
)
def test_trigram_screens_are_implied_by_every_sigmahq_windows_rule(ingested: Ingested) -> None:
    from hcm_soc.detection.compiler import RuleCompiler
    from hcm_soc.detection.loader import load_rules
    from hcm_soc.detection.model import CompiledRule

    load = load_rules([SIGMAHQ / "rules/windows"])
    compiled, _ = RuleCompiler(ingested.names).compile_all(r for r in load.rules if r.kind == "detection")
    screened = [c for c in compiled if isinstance(c, CompiledRule) and c.screen_grams is not None]
    assert len(screened) > 1000  # most Windows rules have one
    matching = 0
    for i in range(0, len(screened), 100):
        part = screened[i : i + 100]
        aggs = {
            str(j): {
                "filters": {
                    "filters": {
                        "rule": c.query,
                        "rule_not_screen": {"bool": {"filter": [c.query], "must_not": [c.screen_grams]}},
                    }
                }
            }
            for j, c in enumerate(part)
        }
        resp = ingested.es.search(index=ingested.index, size=0, aggs=aggs)
        for j, c in enumerate(part):
            buckets = resp["aggregations"][str(j)]["buckets"]
            assert buckets["rule_not_screen"]["doc_count"] == 0, f"{c.rule.path}: events outside its screen"
            matching += buckets["rule"]["doc_count"] > 0
    assert matching > 50  # the recordings exercise the implication on real matches
