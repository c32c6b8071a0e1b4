"""Trigram screens on the real Elasticsearch (`.grams` sub-fields, hcm_soc.store.grams,
hcm_soc.detection.screen, docs/detection-cost.md "Trigram screens").

- the `.grams` sub-field holds the lower-cased trigrams of the value, spaces and punctuation included;
- every event a rule matches also matches its trigram screen (counts of `rule AND NOT screen` are
  zero over EVTX records turned into ECS by the parser: upper case, a `|cased` value, a list, a `*`
  inside a value, non-ASCII text, registry, script-block and EventData fields), and the screen is
  wider where it should be (near misses that hold every trigram but not the value);
- the batch gives `find_matches`' results with trigram screens, and a rule whose trigram screen
  finds nothing is in no count or hits search;
- on an index created without `.grams` (before schema 8) the batch uses the plain screens only and
  still gives `find_matches`' results.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.detection import scratch
from hcm_soc.detection.compiler import RuleCompiler
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.matcher import find_matches
from hcm_soc.detection.model import CompiledRule, Window
from hcm_soc.detection.scratch import ScratchEvents
from hcm_soc.store.names import IndexNames
from tests.integration.detection.test_screen import _evtx, batch_as_find_matches, proc

pytestmark = pytest.mark.integration

SYS32 = "C:\\Windows\\System32\\"
PS = SYS32 + "WindowsPowerShell\\v1.0\\powershell.exe"
RUN_KEY = "HKU\\S-1-5-21-1\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\"


def reg(target: str, details: str) -> dict[str, Any]:
    return _evtx(13, {"EventType": "SetValue", "Image": PS, "TargetObject": target, "Details": details})


def script(text: str) -> dict[str, Any]:
    return _evtx(
        4104,
        {"MessageNumber": "1", "MessageTotal": "1", "ScriptBlockText": text, "ScriptBlockId": "b1"},
        channel="Microsoft-Windows-PowerShell/Operational",
        provider="Microsoft-Windows-PowerShell",
    )


EVENTS = [
    proc(SYS32 + "wbem\\WMIC.exe", "WMIC.exe SHADOWCOPY DELETE /nointeractive"),  # 0: upper case
    proc(SYS32 + "wbem\\WMIC.exe", "wmic shadowcopy-x y delete"),  # 1: every trigram, not the value
    proc(SYS32 + "notepad.exe", "notepad.exe readme.txt"),  # 2
    proc(SYS32 + "rundll32.exe", 'rundll32.exe javascript:"\\..\\mshtml,RunHTMLApplication"'),  # 3
    proc(SYS32 + "rundll32.exe", "rundll32 shell32.dll,Control_RunDLL"),  # 4
    proc(PS, "powershell Invoke-Mimikatz -DumpCreds"),  # 5
    proc(PS, "powershell invoke-mimikatz -dumpcreds"),  # 6: the |cased value's trigrams, other case
    proc(SYS32 + "reg.exe", "reg.exe SAVE HKLM\\SAM C:\\sam.hiv"),  # 7
    proc("C:\\Users\\an\\Café.exe", "run CAFÉ.exe /q"),  # 8: non-ASCII
    reg(RUN_KEY + "Updater", "C:\\Users\\an\\AppData\\Roaming\\u.exe"),  # 9
    reg("HKLM\\Software\\Classes\\.txt\\OpenWithList", "notepad.exe"),  # 10
    script("[Ref].Assembly.GetType('System.Management.Automation.AmsiUtils')"),  # 11
    script("Get-ChildItem C:\\ | Sort-Object Length"),  # 12
]

WIN_PROC = "product: windows\n  category: process_creation"
RULES: dict[str, tuple[str, str]] = {
    "contains": (WIN_PROC, "sel:\n    CommandLine|contains: 'shadowcopy delete'"),
    "list": (
        WIN_PROC,
        "sel:\n    Image|endswith: '\\rundll32.exe'\n"
        "    CommandLine|contains:\n      - 'javascript:'\n      - 'mshtml'\n      - '.registerxll'",
    ),
    "cased": (WIN_PROC, "sel:\n    CommandLine|contains|cased: 'Invoke-Mimikatz'"),
    "inner-star": (WIN_PROC, "sel:\n    CommandLine|contains: 'reg*save hklm'"),
    "non-ascii": (WIN_PROC, "sel:\n    CommandLine|contains: 'café.exe /q'"),
    "registry": (
        "product: windows\n  category: registry_set",
        "sel:\n    TargetObject|contains: '\\CurrentVersion\\Run\\'\n    Details|contains: '\\AppData\\'",
    ),
    "script": ("product: windows\n  category: ps_script", "sel:\n    ScriptBlockText|contains: 'AmsiUtils'"),
    "absent": (WIN_PROC, "sel:\n    CommandLine|contains: 'sekurlsa::logonpasswords'"),
}
EXPECTED = {
    "contains": {0},
    "list": {3},
    "cased": {5},
    "inner-star": {7},
    "non-ascii": {8},
    "registry": {9},
    "script": {11},
    "absent": set(),
}
WIDER = {"contains": 1, "cased": 6}  # the near miss each of these trigram screens lets through


@dataclass
class Store:
    es: Elasticsearch
    window: Window
    rules: dict[str, CompiledRule]
    ids: list[str]
    index: str


def _write_rules(folder: Path) -> None:
    for name, (logsource, detection) in RULES.items():
        rid = str(uuid.uuid4())
        text = f"title: grams {name}\nid: {rid}\nstatus: test\nlevel: high\nlogsource:\n  {logsource}\n"
        text += "detection:\n  " + textwrap.indent(detection, "  ").lstrip() + "\n  condition: sel\n"
        (folder / f"{name}.yml").write_text(text, "utf-8")


def _open(es: Elasticsearch, folder: Path) -> Iterator[Store]:
    with ScratchEvents(es, base=IndexNames(prefix=f"t{uuid.uuid4().hex[:8]}", namespace="test")) as store:
        loaded, window = store.load_slice(EVENTS, id_prefix="e")
        load = load_rules([folder])
        assert not load.problems, load.problems
        compiler = RuleCompiler(store.names)
        rules = {Path(r.path).stem: compiler.compile(r) for r in load.rules}
        yield Store(es, window, rules, [e.id for e in loaded], loaded[0].index)


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gram-rules")
    _write_rules(folder)
    return folder


@pytest.fixture(scope="module")
def store(es: Elasticsearch, rules_dir: Path) -> Iterator[Store]:
    yield from _open(es, rules_dir)


def _schema_7_mappings() -> dict[str, Any]:
    """The events mappings as they were before `.grams` (the packaged ECS file as it stands)."""
    text = resources.files("hcm_soc.store").joinpath("templates/ecs-mappings.json").read_text("utf-8")
    mappings: dict[str, Any] = json.loads(text)["template"]["mappings"]
    return mappings


@pytest.fixture(scope="module")
def old_store(es: Elasticsearch, rules_dir: Path) -> Iterator[Store]:
    """The same events in indices created without the trigram analyzer and sub-fields."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scratch, "ecs_mappings", _schema_7_mappings)
        mp.setattr(scratch, "GRAM_SETTINGS", {})
        yield from _open(es, rules_dir)


def _count(store: Store, rule: CompiledRule, *extra: dict[str, Any]) -> int:
    query = {"bool": {"filter": [rule.scope, *extra]}}
    return int(store.es.count(index=",".join(rule.indices), query=query)["count"])


def _hits(store: Store, rule: CompiledRule, query: dict[str, Any]) -> set[str]:
    resp = store.es.search(
        index=",".join(rule.indices), query={"bool": {"filter": [rule.scope, query]}}, size=100
    )
    return {h["_id"] for h in resp["hits"]["hits"]}


def test_grams_hold_the_lower_cased_trigrams_of_the_value(store: Store) -> None:
    tokens = store.es.indices.analyze(index=store.index, field="process.command_line.grams", text="Ab C\\dé")
    assert [t["token"] for t in tokens["tokens"]] == ["ab ", "b c", " c\\", "c\\d", "\\dé"]
    # and a trigram query finds the event (search analyzer: the term as written)
    found = store.es.count(index=store.index, query={"term": {"process.command_line.grams": "y d"}})
    assert found["count"] == 2  # 'SHADOWCOPY DELETE' lower-cased, and 'shadowcopy-x y delete'


def test_the_rules_find_what_they_should(store: Store) -> None:
    for name, rule in store.rules.items():
        got = {m.key for m in find_matches(store.es, rule, store.window, limit=100).matches}
        assert got == {store.ids[i] for i in EXPECTED[name]}, name


def test_trigram_screens_are_implied_by_the_rules(store: Store) -> None:
    for name, rule in store.rules.items():
        assert rule.screen_grams is not None, name
        assert not rule.screen_exact, name
        rule_only = _count(store, rule, rule.query, {"bool": {"must_not": [rule.screen_grams]}})
        assert rule_only == 0, f"{name}: events the rule matches and its trigram screen does not"
        passed = _hits(store, rule, rule.screen_grams)
        expected = {store.ids[i] for i in EXPECTED[name]}
        wider = {store.ids[WIDER[name]]} if name in WIDER else set()
        # the screen lets through the rule's events and the near misses, nothing else of the corpus
        assert passed == expected | wider, name


def test_batch_uses_trigram_screens_and_gives_find_matches_results(store: Store) -> None:
    recording, _, pos = batch_as_find_matches(store.es, store.rules, store.window)
    screens = json.dumps([b for b in recording.bodies if "screens" in b.get("aggs", {})])
    assert ".grams:" in screens
    assert recording.built(pos["absent"]) == (False, False)  # no event holds its trigrams
    assert recording.built(pos["contains"]) == (True, True)  # its screen found events: counted, paged


def test_indices_without_grams_get_the_plain_screens(old_store: Store) -> None:
    mapping = old_store.es.indices.get_mapping(index=old_store.index)[old_store.index]["mappings"]
    assert "grams" not in json.dumps(mapping)
    recording, got, pos = batch_as_find_matches(old_store.es, old_store.rules, old_store.window)
    for name, g in zip(old_store.rules, got, strict=True):
        assert {m.key for m in g.matches} == {old_store.ids[i] for i in EXPECTED[name]}, name
    assert ".grams" not in json.dumps(recording.bodies)
    assert recording.built(pos["absent"]) == (True, False)  # no plain screen: counted with its query
