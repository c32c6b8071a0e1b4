"""The cheaper query forms match exactly what the per-value forms match, on the real Elasticsearch.

docs/detection-cost.md: the hcm-soc pipeline sends long wildcard lists as Lucene regex unions,
Sysmon `Hashes|contains: 'MD5=<full hash>'` as exact terms on the parser's `hcm.hashes` tokens,
and Windows keywords to `hcm.keywords` (a `copy_to` of every EventData/UserData value) instead
of every `.caseless` field. Each test here is a twin: the rule is compiled once as it is now and
once with those forms switched off (the per-value wildcards on every `.caseless` field that
hcm-soc used before), both run with `find_matches` on the same events, and both must return
exactly the expected events — the near misses next to them included.

The events are EVTX records turned into ECS by the project's parser (`parse_evtx_record`,
`finish`) and indexed with the real event mappings and ingest pipeline.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from hcm_soc.detection import compiler, pipeline
from hcm_soc.detection.compiler import RuleCompiler
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.matcher import find_matches
from hcm_soc.detection.model import CompiledRule, Window
from hcm_soc.parsers.base import ParseContext, SourceInfo, finish
from hcm_soc.parsers.evtx import parse_evtx_record
from hcm_soc.store.grams import GRAM_SETTINGS
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, ecs_mappings, install, uninstall

pytestmark = pytest.mark.integration

SYSMON = "Microsoft-Windows-Sysmon/Operational"
SOURCE = SourceInfo("test-windows-evtx", "windows.evtx", "windows")
MD5 = "0123456789ABCDEF0123456789ABCDEF"
IMPHASH = "FEDCBA9876543210FEDCBA9876543210"
SHA256 = "AB" * 32


def _evtx(
    eid: int, data: dict[str, Any] | None = None, *, channel: str = SYSMON, user_data: Any = None
) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    system = {
        "Provider": {
            "#attributes": {"Name": "Microsoft-Windows-Sysmon" if channel == SYSMON else "Eventlog"}
        },
        "EventID": eid,
        "Channel": channel,
        "Computer": "ws-01.hcm.local",
        "TimeCreated": {"#attributes": {"SystemTime": now}},
    }
    event: dict[str, Any] = {"System": system}
    if data is not None:
        event["EventData"] = data
    if user_data is not None:
        event["UserData"] = user_data
    record = {"event_record_id": 1, "timestamp": now, "data": {"Event": event}}
    doc = parse_evtx_record(record, ParseContext("windows.evtx"))
    return finish(doc, orjson.dumps(record["data"]).decode(), SOURCE, datetime.now(UTC))


def _proc(cmd: str, **extra: str) -> dict[str, Any]:
    return _evtx(1, {"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": cmd, **extra})


LONG = [f"zz{n:04d}qq" for n in range(300)]  # a list whose union needs several regexes

#: event id -> event; ids say what each is for
CORPUS: dict[str, dict[str, Any]] = {
    "slash": _proc("tool a/b run"),
    "slash-miss": _proc("tool a-b run"),
    "quote": _proc('echo q"z'),
    "quote-miss": _proc("echo qz"),
    "space-upper": _proc("RUN X Y NOW"),
    "space-miss": _proc("run xy now"),
    "paren": _proc("calc (1+1)"),
    "paren-miss": _proc("calc 1+1"),
    "emoji": _proc("echo \U0001f600 done"),
    "emoji-miss": _proc("echo \U0001f601 done"),
    "backslash": _proc("type C:\\Temp\\Evil.txt"),
    "backslash-miss": _proc("type C:/Temp/evil.txt"),
    "long-last": _proc(f"x {LONG[-1].upper()} y"),
    "long-first": _proc(f"{LONG[0]}"),
    "long-miss": _proc("zz0300qq"),
    "hash-hit": _proc("h1", Hashes=f"SHA1={'1' * 40},MD5={MD5},SHA256={SHA256},IMPHASH={IMPHASH}"),
    "hash-lower": _proc("h2", Hashes=f"md5={MD5.lower()}"),
    "hash-near": _proc("h3", Hashes=f"MD5={MD5[:-1]}0,IMPHASH={IMPHASH[:-1]}F"),
    "hash-sha256": _proc("h4", Hashes=f"SHA256={SHA256}"),
    "stream-hash": _evtx(
        15, {"TargetFilename": "C:\\Users\\a\\x.exe:Zone.Identifier", "Hash": f"IMPHASH={IMPHASH}"}
    ),
    "stream-hash-near": _evtx(15, {"TargetFilename": "C:\\y:Zone.Identifier", "Hash": f"IMPHASH={MD5}"}),
    "kw-event-data": _proc("plain", Description="loaded SekurLSA::logonpasswords here"),
    "kw-command": _proc("run MIMIKATZ.exe now"),
    "kw-miss": _proc("run mimikat.exe now", Description="sekurlsa logon"),
    "kw-user-data": _evtx(
        104,
        channel="System",
        user_data={"LogFileCleared": {"SubjectUserName": "EvilKW-admin", "Channel": "Security"}},
    ),
    "kw-user-data-miss": _evtx(
        104, channel="System", user_data={"LogFileCleared": {"SubjectUserName": "admin"}}
    ),
    "img-hit": _evtx(1, {"Image": "C:\\Windows\\System32\\CertUtil.exe", "CommandLine": "certutil"}),
    "img-4688": _evtx(
        4688,
        {"NewProcessName": "C:\\Windows\\System32\\certutil.exe", "ParentProcessName": "C:\\x\\MSHTA.EXE"},
        channel="Security",
    ),
    "img-bak": _evtx(1, {"Image": "C:\\Temp\\certutil.exe.bak", "CommandLine": "c"}),
    "img-prefix": _evtx(1, {"Image": "C:\\Tools\\notcertutil.exe", "CommandLine": "c"}),
    "img-slash": _evtx(1, {"Image": "C:/Tools/certutil.exe", "CommandLine": "c"}),
    "file-hit": _evtx(11, {"Image": "C:\\x\\w.exe", "TargetFilename": "C:\\Users\\Public\\EVIL.dll"}),
    "file-bak": _evtx(11, {"Image": "C:\\x\\w.exe", "TargetFilename": "C:\\Users\\Public\\evil.dll.bak"}),
    "file-prefix": _evtx(11, {"Image": "C:\\x\\w.exe", "TargetFilename": "C:\\Temp\\notevil.dll"}),
    "file-slash": _evtx(11, {"Image": "C:\\x\\w.exe", "TargetFilename": "C:/Temp/evil.dll"}),
    "dll-hit": _evtx(7, {"Image": "C:\\x\\w.exe", "ImageLoaded": "C:\\Temp\\evil.dll"}),
    "logon-no-ip": _evtx(4625, {"TargetUserName": "a", "IpAddress": "-"}, channel="Security"),
    "logon-ip": _evtx(4625, {"TargetUserName": "b", "IpAddress": "10.1.2.3"}, channel="Security"),
}


@dataclass
class Store:
    es: Elasticsearch
    names: IndexNames
    window: Window
    rules_dir: Path


@pytest.fixture(scope="module")
def store(es: Elasticsearch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    names = IndexNames(prefix=f"t{uuid.uuid4().hex[:10]}", namespace="test")
    install(es, [i for i in build_items(names) if i.kind == "pipeline"])
    settings: dict[str, Any] = {"index.number_of_shards": 1, "index.number_of_replicas": 0, **GRAM_SETTINGS}
    settings["index.final_pipeline"] = names.ingest_pipeline
    index = names.events("windows.evtx")
    try:
        start = datetime.now(UTC) - timedelta(minutes=1)
        es.indices.create(index=index, settings=settings, mappings=ecs_mappings())
        ops: list[dict[str, Any]] = []
        for doc_id, doc in CORPUS.items():
            ops += [{"create": {"_index": index, "_id": doc_id}}, doc]
        resp = es.bulk(operations=ops, refresh="wait_for")
        assert not resp["errors"], [i for i in resp["items"] if i["create"].get("error")]
        yield Store(
            es, names, Window(start, datetime.now(UTC) + timedelta(minutes=1)), tmp_path_factory.mktemp("r")
        )
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
        uninstall(es, names)


def _compile(store: Store, detection: str, logsource: str) -> CompiledRule:
    rid = str(uuid.uuid4())
    path = store.rules_dir / f"{rid}.yml"
    path.write_text(
        f"title: cost {rid[:8]}\nid: {rid}\nstatus: test\nlevel: high\nlogsource:\n"
        + textwrap.indent(logsource, "  ")
        + "\ndetection:\n"
        + textwrap.indent(textwrap.dedent(detection).strip(), "  ")
        + "\n",
        "utf-8",
    )
    load = load_rules([path])
    assert not load.problems, load.problems
    return RuleCompiler(store.names).compile(load.rules[0])


def twins(
    store: Store, detection: str, logsource: str = "product: windows\ncategory: process_creation"
) -> tuple[str, set[str], set[str]]:
    """(the Lucene text as compiled now, its hits, the hits of the per-value form on every
    `.caseless` field that the cheaper forms replace)."""
    new = _compile(store, detection, logsource)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "MIN_UNION", 10**9)
        mp.setattr(pipeline, "HASH_TOKEN_FIELDS", {})
        mp.setattr(pipeline, "NAME_GUARDS", {})
        mp.setattr(pipeline, "FILE_NAME_GUARD", {})
        mp.setattr(pipeline, "keyword_fields", lambda source: ("*.caseless",))
        mp.setattr(compiler, "keyword_fields", lambda source: ("*.caseless",))
        old = _compile(store, detection, logsource)
    assert old.query != new.query  # the twin really is the other form
    hits = [{m.key for m in find_matches(store.es, c, store.window, limit=1000).matches} for c in (new, old)]
    return new.lucene, hits[0], hits[1]


def test_contains_list_as_one_regex_escapes_specials_and_ignores_case(store: Store) -> None:
    lucene, new, old = twins(
        store,
        """
        sel:
            CommandLine|contains: ['a/b', 'q"z', 'X Y', '(1+1)', '\U0001f600', 'C:\\Temp\\evil']
        condition: sel
        """,
    )
    assert "process.command_line.caseless:/.*(" in lucene
    want = {"slash", "quote", "space-upper", "paren", "emoji", "backslash"}
    assert new == want and old == want


def test_wildcards_inside_values_and_anchored_lists(store: Store) -> None:
    lucene, new, old = twins(
        store, "sel:\n  CommandLine: ['run x? now', 'echo q?z', 'calc ?1+1?']\ncondition: sel"
    )
    assert "/(" in lucene and ").*/" not in lucene  # anchored at both ends: no leading/trailing .*
    assert new == old == {"space-miss", "quote", "paren"}
    # a `*` inside a value stays a wildcard of its own (unions of those determinize too large)
    lucene, new, old = twins(
        store,
        "sel:\n  CommandLine: ['run x? now', 'echo q?z', 'calc ?1+1?', 'echo q*z', 'tool*run']\ncondition: sel",
    )
    assert "/(" in lucene and "echo\\ q*z" in lucene and "tool*run" in lucene
    assert new == old == {"space-miss", "quote", "quote-miss", "paren", "slash", "slash-miss"}
    lucene, new, old = twins(store, "sel:\n  CommandLine|endswith: ['NOW', 'done', '.TXT']\ncondition: sel")
    assert r"/.*(now|done|\.txt)/" in lucene
    want = {"space-upper", "space-miss", "emoji", "emoji-miss", "backslash", "backslash-miss"}
    assert new == old == want | {"kw-command", "kw-miss"}


def test_a_list_longer_than_one_regex_is_split(store: Store) -> None:
    values = ", ".join(f"'{v}'" for v in LONG)
    lucene, new, old = twins(store, f"sel:\n  CommandLine|contains: [{values}]\ncondition: sel")
    assert lucene.count("/.*(") >= 2
    assert new == old == {"long-last", "long-first"}


def test_full_hash_tokens_are_exact_terms(store: Store) -> None:
    lucene, new, old = twins(
        store, f"sel:\n  Hashes|contains: ['MD5={MD5}', 'IMPHASH={IMPHASH.lower()}']\ncondition: sel"
    )
    assert "hcm.hashes:(" in lucene and "Hashes.caseless" not in lucene
    assert new == old == {"hash-hit", "hash-lower"}
    lucene, new, old = twins(store, f"sel:\n  Hashes|contains: 'SHA256={SHA256.lower()}'\ncondition: sel")
    assert new == old == {"hash-hit", "hash-sha256"}


def test_a_partial_hash_keeps_the_wildcard(store: Store) -> None:
    _, new, old = twins(
        store, f"sel:\n  Hashes|contains: ['MD5={MD5[:10]}', 'IMPHASH={IMPHASH}']\ncondition: sel"
    )
    assert new == old == {"hash-hit", "hash-lower", "hash-near"}
    compiled = _compile(
        store,
        f"sel:\n  Hashes|contains: 'MD5={MD5[:10]}'\ncondition: sel",
        "product: windows\ncategory: process_creation",
    )
    assert "hcm.hashes" not in compiled.lucene and "winlog.event_data.Hashes.caseless:*md5" in compiled.lucene


def test_stream_hash_tokens(store: Store) -> None:
    lucene, new, old = twins(
        store,
        f"sel:\n  Hash|contains: 'IMPHASH={IMPHASH}'\ncondition: sel",
        "product: windows\ncategory: create_stream_hash",
    )
    assert "hcm.hash:" in lucene
    assert new == old == {"stream-hash"}


def test_keywords_found_in_event_data_values(store: Store) -> None:
    _, new, old = twins(store, "kw:\n  - 'sekurlsa::logonpasswords'\ncondition: kw")
    assert new == old == {"kw-event-data"}
    lucene, new, old = twins(
        store, "kw:\n  - 'sekurlsa::'\n  - 'MIMIKATZ'\n  - 'nothing-here'\ncondition: kw"
    )
    assert "hcm.keywords:/.*(" in lucene
    assert new == old == {"kw-event-data", "kw-command"}


def test_keywords_found_in_user_data_values(store: Store) -> None:
    _, new, old = twins(store, "kw:\n  - 'evilkw'\ncondition: kw", "product: windows\nservice: system")
    assert new == old == {"kw-user-data"}


def test_a_dash_for_an_ip_address_is_searched_in_event_data(store: Store) -> None:
    # Windows writes '-' for "no address": `source.ip` cannot hold it (Elasticsearch refuses the
    # query), the parser keeps it in event_data, and the rule finds it there
    compiled = _compile(
        store, "sel:\n  IpAddress: '-'\ncondition: sel", "product: windows\nservice: security"
    )
    assert compiled.lucene.endswith(r"winlog.event_data.IpAddress.caseless:\-")
    assert {m.key for m in find_matches(store.es, compiled, store.window, limit=10).matches} == {
        "logon-no-ip"
    }


def test_endswith_a_file_name_is_guarded_by_the_process_name(store: Store) -> None:
    lucene, new, old = twins(store, "sel:\n  Image|endswith: '\\\\certutil.exe'\ncondition: sel")
    assert "process.name.caseless:certutil.exe AND process.executable.caseless:*\\\\certutil.exe" in lucene
    assert new == old == {"img-hit", "img-4688"}  # not .bak, notcertutil.exe, nor a '/' path
    lucene, new, old = twins(
        store,
        "sel:\n  ParentImage|endswith: ['\\\\mshta.exe', '\\\\wscript.exe', '\\\\cscript.exe', '\\\\x\\\\*']\n"
        "condition: sel",
    )
    assert "process.parent.name.caseless:(mshta.exe OR wscript.exe OR cscript.exe)" in lucene
    assert new == old == {"img-4688"}


def test_endswith_a_file_name_on_sysmon_file_events_is_guarded_by_the_file_name(store: Store) -> None:
    file_event = "product: windows\ncategory: file_event"
    lucene, new, old = twins(
        store, "sel:\n  TargetFilename|endswith: '\\\\evil.dll'\ncondition: sel", file_event
    )
    assert "file.name.caseless:evil.dll AND file.path.caseless:*\\\\evil.dll" in lucene
    assert new == old == {"file-hit"}  # not .bak, notevil.dll, nor a '/' path
    lucene, new, old = twins(
        store,
        "sel:\n  ImageLoaded|endswith: '\\\\evil.dll'\ncondition: sel",
        "product: windows\ncategory: image_load",
    )
    assert "file.name.caseless:evil.dll" in lucene
    assert new == old == {"dll-hit"}
