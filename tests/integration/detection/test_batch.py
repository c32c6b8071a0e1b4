"""evaluate_batch gives exactly what find_matches gives, rule by rule, with far fewer requests.

One scratch store per module (plain indices named like the event data streams, deleted at
the end) holds two slices of events loaded one after the other, so that rules can be asked
about slice A, slice B, both, or an empty window in one batch. Every test compares each
item's result with `find_matches` on the same rule and window: matches (keys, order,
events), examined and truncated.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch

from hcm_soc.detection.batch import evaluate_batch, evaluate_batch_outcomes
from hcm_soc.detection.compiler import PythonCheckedRule, RuleCompiler
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.matcher import PAGE_SIZE, find_matches
from hcm_soc.detection.model import CompiledRule, MatchResult, Window
from hcm_soc.detection.scratch import ScratchEvents
from hcm_soc.store.names import IndexNames

pytestmark = pytest.mark.integration

SYSMON = "Microsoft-Windows-Sysmon/Operational"
NOISY = 1200  # > PAGE_SIZE: the noisy rule needs several pages


def proc(image: str, cmd: str, *, dataset: str = "windows.sysmon") -> dict[str, Any]:
    return {
        "event": {"module": "windows", "code": "1", "dataset": dataset},
        "winlog": {"channel": SYSMON, "event_id": "1", "event_data": {"Image": image, "CommandLine": cmd}},
        "process": {"executable": image, "name": image.rsplit("\\", 1)[-1], "command_line": cmd},
        "host": {"name": "so-gtvt-ws07"},
    }


def ssh(outcome: str, user: str) -> dict[str, Any]:
    verb = "Failed password" if outcome == "failure" else "Accepted password"
    return {
        "event": {"module": "system", "dataset": "system.auth", "outcome": outcome},
        "process": {"name": "sshd"},
        "user": {"name": user},
        "message": f"{verb} for {user} from 203.0.113.9 port 52100 ssh2",
    }


def web(path: str) -> dict[str, Any]:
    return {
        "event": {"module": "nginx", "dataset": "nginx.access"},
        "url": {"original": path, "path": path.split("?")[0]},
        "http": {"request": {"method": "GET"}, "response": {"status_code": 200}},
        "source": {"ip": "198.51.100.4"},
    }


def slice_a() -> list[dict[str, Any]]:
    events = [proc("C:\\Tools\\noisy.exe", f"noisy.exe --tick {i}") for i in range(NOISY)]
    events += [
        proc("C:\\Windows\\System32\\whoami.exe", f"whoami /{k}") for k in ("all", "priv", "groups")
    ] * 10
    events += [proc("C:\\Windows\\System32\\net.exe", f"net user u{i}") for i in range(20)]
    events += [proc("C:\\Windows\\System32\\notepad.exe", "notepad a.txt") for _ in range(15)]
    events += [ssh("failure", f"user{i % 4}") for i in range(40)] + [ssh("success", "ops") for _ in range(10)]
    events += [web("/index.html")] * 30 + [web("/cgi-bin/x?f=../../etc/passwd") for _ in range(7)]
    events += [proc("C:\\Tools\\Self.exe", "self run") for _ in range(3)]
    return events


def slice_b() -> list[dict[str, Any]]:
    events = [proc("C:\\Windows\\System32\\WHOAMI.EXE", "WHOAMI /ALL") for _ in range(5)]
    events += [proc("C:\\Tools\\noisy.exe", f"noisy.exe --tick b{i}") for i in range(40)]
    events += [ssh("failure", "root") for _ in range(6)]
    return events


RULES = {
    "noisy": ("product: windows\n  category: process_creation", "sel:\n    Image|endswith: '\\noisy.exe'"),
    "whoami": ("product: windows\n  category: process_creation", "sel:\n    Image|endswith: '\\whoami.exe'"),
    # overlaps whoami and net: one event matches several rules
    "system32": (
        "product: windows\n  category: process_creation",
        "sel:\n    Image|contains: '\\system32\\'",
    ),
    "net-user": (
        "product: windows\n  category: process_creation",
        "sel:\n    CommandLine|contains|all:\n      - 'net'\n      - ' user '",
    ),
    "nothing": (
        "product: windows\n  category: process_creation",
        "sel:\n    CommandLine|contains: 'mimikatz'",
    ),
    "registry": ("product: windows\n  category: registry_set", "sel:\n    TargetObject|contains: '\\Run\\'"),
    "ssh-failed": ("product: linux\n  service: sshd", "sel:\n    - 'Failed password'"),
    "web-passwd": ("category: webserver", "sel:\n    cs-uri-query|contains: '/etc/passwd'"),
    "web-passwd-url": ("category: webserver", "sel:\n    c-uri|contains: 'etc/passwd'"),
    # Lucene cannot say it: the batch hands it to find_matches
    "fieldref": ("product: windows\n  category: process_creation", "sel:\n    Image|fieldref: ParentImage"),
    # also Python-checked (word boundaries), with the same candidates: paged once with fieldref
    "re-whoami": (
        "product: windows\n  category: process_creation",
        "sel:\n    CommandLine|re: '\\bwhoami\\b'",
    ),
    "re-noisy": (
        "product: windows\n  category: process_creation",
        "sel:\n    CommandLine|re: '\\bnoisy\\.exe\\b'",
    ),
}


@dataclass
class Store:
    es: Elasticsearch
    names: IndexNames
    a: Window
    b: Window
    rules: dict[str, CompiledRule]

    @property
    def both(self) -> Window:
        return Window(self.a.start, self.b.end)


@pytest.fixture(scope="module")
def store(es: Elasticsearch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    folder = tmp_path_factory.mktemp("batch-rules")
    for name, (logsource, detection) in RULES.items():
        rid = str(uuid.uuid4())
        text = f"title: batch {name}\nid: {rid}\nstatus: test\nlevel: high\nlogsource:\n  {logsource}\n"
        text += "detection:\n  " + textwrap.indent(detection, "  ").lstrip() + "\n  condition: sel\n"
        (folder / f"{name}.yml").write_text(text, "utf-8")
    with ScratchEvents(es, base=IndexNames(prefix=f"t{uuid.uuid4().hex[:8]}", namespace="test")) as scratch:
        _, a = scratch.load_slice(slice_a(), id_prefix="a")
        _, b = scratch.load_slice(slice_b(), id_prefix="b")
        assert a.end <= b.start, "the slices must not overlap in event.ingested"
        load = load_rules([folder])
        assert not load.problems, load.problems
        compiler = RuleCompiler(scratch.names)
        by_name = {Path(r.path).stem: compiler.compile(r) for r in load.rules}
        assert all(isinstance(by_name[n], PythonCheckedRule) for n in ("fieldref", "re-whoami", "re-noisy"))
        yield Store(es, scratch.names, a, b, by_name)


def expected(es: Elasticsearch, items: list[tuple[CompiledRule, Window]], limit: int) -> list[MatchResult]:
    return [find_matches(es, c, w, limit=limit) for c, w in items]


def assert_same(
    got: list[MatchResult], want: list[MatchResult], items: list[tuple[CompiledRule, Window]]
) -> None:
    assert len(got) == len(want)
    for (compiled, window), g, w in zip(items, got, want, strict=True):
        name = compiled.rule.title
        assert [m.key for m in g.matches] == [m.key for m in w.matches], name
        assert g.matches == w.matches, name  # events (index, id, source), times, rule id
        assert (g.examined, g.truncated) == (w.examined, w.truncated), (name, window)


class CountingClient:
    """Passes every call to the real client and counts the searches it sends."""

    def __init__(self, es: Elasticsearch) -> None:
        self._es = es
        self.msearch_calls = 0
        self.sub_searches = 0
        self.search_calls = 0

    def msearch(self, **kwargs: Any) -> Any:
        self.msearch_calls += 1
        self.sub_searches += len(kwargs["searches"]) // 2
        return self._es.msearch(**kwargs)

    def search(self, **kwargs: Any) -> Any:
        self.search_calls += 1
        return self._es.search(**kwargs)


def test_same_results_as_find_matches_for_many_rules_over_one_window(store: Store) -> None:
    items = [(c, store.both) for c in store.rules.values()]
    want = expected(store.es, items, limit=5000)
    counting = CountingClient(store.es)
    got = evaluate_batch(counting, items, limit=5000)  # type: ignore[arg-type]
    assert_same(got, want, items)
    by_title = {c.rule.title: r for (c, _), r in zip(items, got, strict=True)}
    # the corpus does what the test needs: a rule beyond one page, overlaps, no match, nothing examined
    assert len(by_title["batch noisy"].matches) == NOISY + 40 > PAGE_SIZE
    assert len(by_title["batch whoami"].matches) == 35
    assert len(by_title["batch system32"].matches) == 35 + 20 + 15
    assert by_title["batch nothing"].matches == () and by_title["batch nothing"].examined > NOISY
    assert by_title["batch registry"].examined == 0
    assert len(by_title["batch ssh-failed"].matches) == 46
    assert by_title["batch fieldref"].matches == () and by_title["batch fieldref"].examined > NOISY
    # one _msearch to examine the windows, one to count the rules' screens, one to count each
    # remaining rule's events, then one round of pages: the counts size the page (the noisy rule's
    # 1,240 hits would need 3 of the matcher's pages)
    assert len(by_title["batch re-whoami"].matches) == 30  # case-sensitive: not 'WHOAMI /ALL'
    assert len(by_title["batch re-noisy"].matches) == NOISY + 40
    # only the Python-checked rules are searched on their own: the three page their candidates
    # together, in as many searches as find_matches pages them for one rule
    alone = CountingClient(store.es)
    find_matches(alone, store.rules["fieldref"], store.both, limit=5000)  # type: ignore[arg-type]
    assert counting.search_calls == alone.search_calls
    assert counting.msearch_calls == 4
    # one-search-per-rule: every detection rule costs at least one search
    assert counting.msearch_calls + counting.search_calls < len(items)


@pytest.mark.parametrize("limit", [1, 3, 34, 35, 36, 1000, 1240])
def test_truncation_at_the_limit(store: Store, limit: int) -> None:
    items = [(c, store.both) for c in store.rules.values()]
    got = evaluate_batch(store.es, items, limit=limit)
    assert_same(got, expected(store.es, items, limit), items)
    assert any(r.truncated for r in got) == (limit < 1240)


def test_each_rule_its_own_window_including_empty_ones(store: Store) -> None:
    empty = Window(store.b.end, store.b.end)
    between = Window(store.a.end, store.b.start)  # may be empty or hold nothing
    windows = [store.a, store.b, store.both, empty, between, Window(store.a.start, store.b.start)]
    items = [(c, w) for c in store.rules.values() for w in windows]
    got = evaluate_batch(store.es, items, limit=600)
    assert_same(got, expected(store.es, items, limit=600), items)
    noisy = [r for (c, _), r in zip(items, got, strict=True) if c.rule.title == "batch noisy"]
    assert [len(r.matches) for r in noisy[:4]] == [600, 40, 600, 0]
    assert [r.truncated for r in noisy[:4]] == [True, False, True, False]


def test_the_same_event_in_two_backing_indices_is_one_match(store: Store, es: Elasticsearch) -> None:
    with ScratchEvents(es, base=IndexNames(prefix=f"t{uuid.uuid4().hex[:8]}", namespace="test")) as scratch:
        twice = [
            proc("C:\\Windows\\System32\\whoami.exe", "whoami", dataset=d)
            for d in ("windows.sysmon", "windows.evtx")
        ]
        scratch.load([twice[0]], id_prefix="dup")
        scratch.load([twice[1]], id_prefix="dup")  # same _id (dup-1), another index
        window = scratch.window()
        rule = RuleCompiler(scratch.names).compile(store.rules["whoami"].rule)
        items = [(rule, window)]
        got = evaluate_batch(es, items, limit=10)
        assert_same(got, expected(es, items, 10), items)
        assert [m.key for m in got[0].matches] == ["dup-1"] and got[0].examined == 2


def test_a_rule_elasticsearch_refuses_does_not_hide_the_others(store: Store) -> None:
    good = store.rules["whoami"]
    bad = CompiledRule(
        rule=good.rule,
        lucene="process.name:((",
        query={"query_string": {"query": "process.name:(("}},
        indices=good.indices,
        scope=good.scope,
    )
    items = [(good, store.both), (bad, store.both), (store.rules["ssh-failed"], store.both)]
    outcomes = evaluate_batch_outcomes(store.es, items, limit=100)
    assert isinstance(outcomes[1], ApiError)
    ok = [outcomes[0], outcomes[2]]
    assert all(isinstance(o, MatchResult) for o in ok)
    assert_same(ok, expected(store.es, [items[0], items[2]], 100), [items[0], items[2]])  # type: ignore[arg-type]
    with pytest.raises(ApiError):
        evaluate_batch(store.es, items, limit=100)
