"""Sigma value semantics and log-source scoping, proven on the real Elasticsearch.

One crafted corpus of positive and negative events is indexed once per module (with the real
ECS mappings and final ingest pipeline, so `event.ingested` and the `.caseless` sub-fields are
exactly as in production; plain indices named like the event data streams, because the
development node cannot delete data streams and every test run would leave shards behind); each test loads a rule from YAML, compiles it with the hcm-soc
pipeline and runs it with `find_matches`, then compares the matched event ids with the ids the
rule must match. Every test has events that must NOT match next to those that must.
"""

from __future__ import annotations

import base64
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.detection.compiler import RuleCompiler
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.matcher import find_matches
from hcm_soc.detection.model import Window
from hcm_soc.store.grams import GRAM_SETTINGS
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, ecs_mappings, install, uninstall

pytestmark = pytest.mark.integration

SYSMON = "Microsoft-Windows-Sysmon/Operational"


def _proc(image: str, cmd: str, *, channel: str = SYSMON, **extra: Any) -> dict[str, Any]:
    """A process creation as the EVTX parser stores it (Sysmon 1 or Security 4688)."""
    eid = "1" if channel == SYSMON else "4688"
    name = image.rsplit("\\", 1)[-1]
    doc: dict[str, Any] = {
        "event": {"module": "windows", "code": eid},
        "winlog": {"channel": channel, "event_id": eid, "event_data": {"Image": image, "CommandLine": cmd}},
        "process": {"executable": image, "name": name, "command_line": cmd, "pid": extra.pop("pid", 100)},
    }
    for key, value in extra.items():
        if key == "parent":
            doc["process"]["parent"] = {"executable": value, "name": value.rsplit("\\", 1)[-1]}
        else:
            doc["winlog"]["event_data"][key] = value
    return doc


def _net(dst: str, port: int = 443) -> dict[str, Any]:
    return {
        "event": {"module": "windows", "code": "3"},
        "winlog": {
            "channel": SYSMON,
            "event_id": "3",
            "event_data": {"DestinationIp": dst, "RelayAddr": dst},
        },
        "destination": {"ip": dst, "port": port},
        "process": {"executable": "C:\\Windows\\System32\\svchost.exe"},
    }


def _image_load(path: str, signed: bool) -> dict[str, Any]:
    """A Sysmon image load as the EVTX parser stores it: `Signed` becomes a JSON boolean."""
    return {
        "event": {"module": "windows", "code": "7"},
        "winlog": {"channel": SYSMON, "event_id": "7", "event_data": {"ImageLoaded": path}},
        "file": {"path": path, "name": path.rsplit("\\", 1)[-1], "code_signature": {"signed": signed}},
    }


def _b64(text: str, encoding: str = "utf-8") -> str:
    return base64.b64encode(text.encode(encoding)).decode()


#: dataset -> {event id: event}; ids say what each event is for
CORPUS: dict[str, dict[str, Any]] = {
    "windows.evtx": {
        "dll-unsigned": _image_load("C:\\Users\\Public\\evil.dll", False),
        "dll-signed": _image_load("C:\\Windows\\System32\\evil.dll", True),
        "whoami-upper": _proc("C:\\Windows\\System32\\WHOAMI.EXE", "whoami /ALL", IntegrityLevel="High"),
        "whoami-4688": _proc("C:\\Windows\\System32\\whoami.exe", "whoami /priv", channel="Security"),
        "whoami-bak": _proc("C:\\Temp\\whoami.exe.bak", "whoami.exe.bak"),
        "secret-cased": _proc("C:\\a\\tool.exe", "tool Secret=1"),
        "secret-upper": _proc("C:\\a\\tool.exe", "tool SECRET=1"),
        "net-user": _proc("C:\\Windows\\System32\\net.exe", "net user admin", pid=4),
        "net-user-upper": _proc("C:\\Windows\\System32\\net.exe", "NET USER guest", pid=8),
        "net-uuser": _proc("C:\\Windows\\System32\\net.exe", "net uuser admin", pid=12),
        "star-literal": _proc("C:\\a\\x.exe", "echo a*b done"),
        "star-other": _proc("C:\\a\\x.exe", "echo aZb done"),
        "question-literal": _proc("C:\\a\\x.exe", "what? now"),
        "question-other": _proc("C:\\a\\x.exe", "whatX now"),
        "backslash-dir": _proc("C:\\a\\x.exe", "dir C:\\Users\\Public\\evil.ps1"),
        "re-digits": _proc("C:\\a\\x.exe", "ping 10.1.2.3 -n 55"),
        "re-multi": _proc("C:\\a\\x.exe", "first line\nsecond line\nthird"),
        "re-upper": _proc("C:\\a\\x.exe", "PING HOST -N 7"),
        "enc-dash": _proc("C:\\ps.exe", "powershell -enc AAAA"),
        "enc-slash": _proc("C:\\ps.exe", "powershell /enc AAAA"),
        "enc-endash": _proc("C:\\ps.exe", "powershell \u2013enc AAAA"),
        "enc-none": _proc("C:\\ps.exe", "powershell -nop AAAA"),
        "b64-iex": _proc("C:\\ps.exe", "powershell -e " + _b64("xx IEX (New-Object Net.WebClient)")),
        "b64-iex-off1": _proc("C:\\ps.exe", "powershell -e " + _b64("y IEX (New-Object Net.WebClient)")),
        "b64-wide": _proc("C:\\ps.exe", "powershell -e " + _b64("zz ping 1.1.1.1", "utf-16-le")),
        "b64-be": _proc("C:\\ps.exe", "powershell -e " + _b64("zz ping 2.2.2.2", "utf-16-be")),
        "b64-bom": _proc("C:\\ps.exe", "powershell -e " + _b64("\ufeffping 3.3.3.3", "utf-16-le")),
        "b64-other": _proc("C:\\ps.exe", "powershell -e " + _b64("Get-Date")),
        "parent-explorer": _proc("C:\\x\\calc.exe", "calc", parent="C:\\Windows\\EXPLORER.EXE"),
        "fieldref-same": _proc("C:\\Tools\\Self.exe", "self run", parent="c:\\tools\\self.EXE"),
        "fieldref-diff": _proc("C:\\Tools\\Self.exe", "self running", parent="C:\\Windows\\explorer.exe"),
        "keyword-hit": {**_proc("C:\\a\\k.exe", "k"), "message": "an EVIL Thing happened here"},
        "keyword-miss": {**_proc("C:\\a\\k.exe", "k"), "message": "a good thing happened"},
        "net-10": _net("10.20.30.40"),
        "net-public": _net("8.8.8.8"),
        "net-v6-in": _net("2001:db8:1::5"),
        "net-v6-out": _net("2001:db9::5"),
        "net-172": _net("172.16.5.4", 8080),
        "logon-4625": {
            "event": {"module": "windows", "code": "4625"},
            "winlog": {"channel": "Security", "event_id": "4625", "event_data": {"IpAddress": "-"}},
        },
    },
    "system.auth": {
        "ssh-failed": {
            "event": {"module": "system"},
            "process": {"name": "sshd"},
            "message": "Failed password for invalid user admin from 10.1.1.1 port 22 ssh2",
        },
        "sudo-failed-word": {
            "event": {"module": "system"},
            "process": {"name": "sudo"},
            "message": "Failed password check for sudo",
        },
    },
    "nginx.access": {
        "web-sqli": {
            "event": {"module": "nginx"},
            "url": {"original": "/a?id=1 UNION SELECT pw", "path": "/a", "query": "id=1 UNION SELECT pw"},
            "http": {"request": {"method": "GET"}, "response": {"status_code": 200}},
            "source": {"ip": "203.0.113.9"},
            "user_agent": {"original": "sqlmap/1.8"},
        },
        "web-404": {
            "event": {"module": "nginx"},
            "url": {"original": "/admin.php", "path": "/admin.php"},
            "http": {"request": {"method": "POST"}, "response": {"status_code": 404}},
            "source": {"ip": "198.51.100.7"},
            "user_agent": {"original": "Mozilla/5.0"},
        },
    },
    "network.firewall": {
        "fw-block-445": {
            "event": {"module": "system", "category": ["network"], "action": "ufw-block"},
            "process": {"name": "kernel"},
            "source": {"ip": "185.220.101.7", "port": 51514},
            "destination": {"ip": "10.10.20.11", "port": 445},
        },
    },
    "network.dns": {
        "dns-long": {
            "question_len": 1,
            "dns": {"question": {"name": "aGVsbG8.tunnel.example.com", "type": "TXT"}},
        },
        "dns-plain": {"dns": {"question": {"name": "www.hochiminhcity.gov.vn", "type": "A"}}},
    },
    "network.flow": {
        "flow-4444": {"destination": {"ip": "203.0.113.50", "port": 4444}, "network": {"transport": "tcp"}},
    },
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
    try:
        start = datetime.now(UTC) - timedelta(minutes=1)
        ops: list[dict[str, Any]] = []
        for dataset, events in CORPUS.items():
            es.indices.create(index=names.events(dataset), settings=settings, mappings=ecs_mappings())
            for doc_id, doc in events.items():
                body = {"@timestamp": datetime.now(UTC).isoformat(), **doc}
                body["event"] = {**body.get("event", {}), "dataset": dataset}
                ops += [{"create": {"_index": names.events(dataset), "_id": doc_id}}, body]
        resp = es.bulk(operations=ops, refresh="wait_for")
        assert not resp["errors"], [i for i in resp["items"] if i["create"].get("error")]
        end = datetime.now(UTC) + timedelta(minutes=1)
        yield Store(es, names, Window(start, end), tmp_path_factory.mktemp("rules"))
    finally:
        # by name: the node refuses wildcard deletes
        es.indices.delete(index=",".join(names.events(d) for d in CORPUS), ignore_unavailable=True)
        uninstall(es, names)


def _rule(store: Store, body: str, logsource: str = "product: windows\n  category: process_creation") -> Path:
    rid = str(uuid.uuid4())
    text = f"title: semantics {rid[:8]}\nid: {rid}\nstatus: test\nlevel: high\nlogsource:\n  {logsource}\n"
    path = store.rules_dir / f"{rid}.yml"
    path.write_text(text + textwrap.dedent(body), "utf-8")
    return path


def matched(
    store: Store, body: str, logsource: str = "product: windows\n  category: process_creation"
) -> set[str]:
    path = _rule(store, body, logsource)
    load = load_rules([path])
    assert not load.problems, load.problems
    compiled = RuleCompiler(store.names).compile(load.rules[0])
    result = find_matches(store.es, compiled, store.window, limit=1000)
    return {m.key for m in result.matches}


def test_case_insensitive_by_default_and_both_process_creation_sources(store: Store) -> None:
    got = matched(store, "detection:\n  sel:\n    Image|endswith: '\\whoami.exe'\n  condition: sel\n")
    assert got == {"whoami-upper", "whoami-4688"}


def test_cased_modifier_is_case_sensitive(store: Store) -> None:
    got = matched(store, "detection:\n  sel:\n    CommandLine|cased|contains: 'Secret'\n  condition: sel\n")
    assert got == {"secret-cased"}
    got = matched(store, "detection:\n  sel:\n    CommandLine|contains: 'Secret'\n  condition: sel\n")
    assert got == {"secret-cased", "secret-upper"}


def test_wildcards_star_and_question_mark(store: Store) -> None:
    got = matched(store, "detection:\n  sel:\n    CommandLine: 'net u?er *'\n  condition: sel\n")
    assert got == {"net-user", "net-user-upper"}


def test_escaped_star_question_and_backslash_are_literal(store: Store) -> None:
    assert matched(store, "detection:\n  sel:\n    CommandLine|contains: 'a\\*b'\n  condition: sel\n") == {
        "star-literal"
    }
    assert matched(
        store, "detection:\n  sel:\n    CommandLine|startswith: 'what\\?'\n  condition: sel\n"
    ) == {"question-literal"}
    # a plain backslash stays a backslash; '\\\\*' is one backslash then the wildcard
    got = matched(store, "detection:\n  sel:\n    CommandLine: 'dir C:\\Users\\\\*'\n  condition: sel\n")
    assert got == {"backslash-dir"}


def test_contains_startswith_endswith_all(store: Store) -> None:
    assert matched(store, "detection:\n  sel:\n    CommandLine|startswith: 'NET '\n  condition: sel\n") == {
        "net-user",
        "net-user-upper",
        "net-uuser",
    }
    assert matched(store, "detection:\n  sel:\n    CommandLine|endswith: 'ADMIN'\n  condition: sel\n") == {
        "net-user",
        "net-uuser",
    }
    body = "detection:\n  sel:\n    CommandLine|contains|all: ['net', ' user']\n  condition: sel\n"
    assert matched(store, body) == {"net-user", "net-user-upper"}


def test_regex_is_case_sensitive_unanchored_and_knows_digits(store: Store) -> None:
    body = "detection:\n  sel:\n    CommandLine|re: 'ping \\S+ -n \\d{2}$'\n  condition: sel\n"
    assert matched(store, body) == {"re-digits"}
    body = "detection:\n  sel:\n    CommandLine|re|i: 'ping \\w+ -n \\d$'\n  condition: sel\n"
    assert matched(store, body) == {"re-upper"}
    body = "detection:\n  sel:\n    CommandLine|re: '^whoami'\n  condition: sel\n"
    assert matched(store, body) == {"whoami-upper", "whoami-4688", "whoami-bak"}


def test_regex_multiline_and_dotall_flags(store: Store) -> None:
    # without m, ^ is the start of the value only; with m, of any line
    assert (
        matched(store, "detection:\n  sel:\n    CommandLine|re: '^second line$'\n  condition: sel\n") == set()
    )
    body = "detection:\n  sel:\n    CommandLine|re|m: '^second line$'\n  condition: sel\n"
    assert matched(store, body) == {"re-multi"}
    # without s, '.' does not cross a newline
    assert (
        matched(store, "detection:\n  sel:\n    CommandLine|re: 'first.*third'\n  condition: sel\n") == set()
    )
    body = "detection:\n  sel:\n    CommandLine|re|s: 'first.*third'\n  condition: sel\n"
    assert matched(store, body) == {"re-multi"}


def test_cidr_ipv4_and_ipv6_on_ip_and_on_text_fields(store: Store) -> None:
    ls = "product: windows\n  category: network_connection"
    body = "detection:\n  sel:\n    DestinationIp|cidr: ['10.0.0.0/8', '2001:db8::/32']\n  condition: sel\n"
    assert matched(store, body, ls) == {"net-10", "net-v6-in"}
    # RelayAddr is no ECS field: winlog.event_data.RelayAddr, a keyword -> wildcard expansion
    body = "detection:\n  sel:\n    RelayAddr|cidr: ['10.0.0.0/8', '2001:db8::/32']\n  condition: sel\n"
    assert matched(store, body, ls) == {"net-10", "net-v6-in"}
    body = "detection:\n  sel:\n    DestinationIp|startswith: ['10.', '172.16.']\n  condition: sel\n"
    assert matched(store, body, ls) == {"net-10", "net-172"}


def test_windash(store: Store) -> None:
    body = "detection:\n  sel:\n    CommandLine|windash|contains: ' -enc '\n  condition: sel\n"
    assert matched(store, body) == {"enc-dash", "enc-slash", "enc-endash"}


def test_base64_base64offset_and_utf16(store: Store) -> None:
    body = "detection:\n  sel:\n    CommandLine|base64offset|contains: 'IEX (New-Object'\n  condition: sel\n"
    assert matched(store, body) == {"b64-iex", "b64-iex-off1"}
    body = (
        "detection:\n  sel:\n    CommandLine|wide|base64offset|contains: 'ping 1.1.1.1'\n  condition: sel\n"
    )
    assert matched(store, body) == {"b64-wide"}
    body = "detection:\n  sel:\n    CommandLine|utf16le|base64offset|contains: 'ping 1.1.1.1'\n  condition: sel\n"
    assert matched(store, body) == {"b64-wide"}
    body = "detection:\n  sel:\n    CommandLine|utf16be|base64offset|contains: 'ping 2.2.2.2'\n  condition: sel\n"
    assert matched(store, body) == {"b64-be"}
    # utf16 = UTF-16LE with its byte order mark, so base64 (no offset) of the whole value
    body = "detection:\n  sel:\n    CommandLine|utf16|base64|contains: 'ping 3.3.3.3'\n  condition: sel\n"
    assert matched(store, body) == {"b64-bom"}
    body = "detection:\n  sel:\n    CommandLine|base64|contains: 'Get-Date'\n  condition: sel\n"
    assert matched(store, body) == {"b64-other"}
    # base64 text is case-sensitive: the lower-cased encoding must not match
    body = f"detection:\n  sel:\n    CommandLine|contains: '{_b64('Get-Date').lower()}'\n    CommandLine|cased|contains: 'x'\n  condition: sel\n"
    assert matched(store, body) == set()


def test_exists_and_null(store: Store) -> None:
    everything = {k for k, v in CORPUS["windows.evtx"].items() if v["winlog"]["event_id"] in ("1", "4688")}
    assert matched(store, "detection:\n  sel:\n    IntegrityLevel|exists: true\n  condition: sel\n") == {
        "whoami-upper"
    }
    got = matched(store, "detection:\n  sel:\n    IntegrityLevel|exists: false\n  condition: sel\n")
    assert got == everything - {"whoami-upper"}
    with_parent = {k for k in everything if "parent" in CORPUS["windows.evtx"][k]["process"]}
    assert with_parent >= {"parent-explorer", "fieldref-same"}
    got = matched(store, "detection:\n  sel:\n    ParentImage: null\n  condition: sel\n")
    assert got == everything - with_parent
    got = matched(store, "detection:\n  sel:\n    ParentImage|endswith: '\\explorer.exe'\n  condition: sel\n")
    assert got == {"parent-explorer", "fieldref-diff"}


def test_numeric_comparisons(store: Store) -> None:
    assert matched(store, "detection:\n  sel:\n    ProcessId|gt: 4\n  condition: sel\n") >= {
        "net-user-upper",
        "net-uuser",
    }
    assert "net-user" not in matched(store, "detection:\n  sel:\n    ProcessId|gt: 4\n  condition: sel\n")
    assert matched(store, "detection:\n  sel:\n    ProcessId|lte: 8\n  condition: sel\n") == {
        "net-user",
        "net-user-upper",
    }
    assert matched(store, "detection:\n  sel:\n    ProcessId|lt: 8\n  condition: sel\n") == {"net-user"}
    assert matched(
        store,
        "detection:\n  sel:\n    ProcessId|gte: 12\n  sel2:\n    CommandLine|startswith: net\n  condition: sel and sel2\n",
    ) == {"net-uuser"}
    ls = "category: webserver"
    assert matched(store, "detection:\n  sel:\n    sc-status|gte: 400\n  condition: sel\n", ls) == {"web-404"}


def test_keyword_search_is_case_insensitive_full_text(store: Store) -> None:
    got = matched(store, "detection:\n  keywords:\n    - 'evil thing'\n  condition: keywords\n")
    assert got == {"keyword-hit"}


def test_field_reference_is_checked_in_python_on_the_log_source(store: Store) -> None:
    body = "detection:\n  sel:\n    Image|fieldref: ParentImage\n  condition: sel\n"
    assert matched(store, body) == {"fieldref-same"}
    body = "detection:\n  sel:\n    Image|endswith: 'self.exe'\n  same:\n    Image|fieldref: ParentImage\n  condition: sel and not same\n"
    assert matched(store, body) == {"fieldref-diff"}


def test_regex_with_word_boundaries_is_checked_in_python(store: Store) -> None:
    body = "detection:\n  sel:\n    CommandLine|re: '\\brun\\b'\n  condition: sel\n"
    assert matched(store, body) == {"fieldref-same"}
    body = "detection:\n  sel:\n    CommandLine|re|i: '^SELF\\b'\n  condition: sel\n"
    assert matched(store, body) == {"fieldref-same", "fieldref-diff"}


def test_sigma_filter_excludes_events_from_the_named_rule(store: Store) -> None:
    rid = str(uuid.uuid4())
    rule = store.rules_dir / "filtered" / "rule.yml"
    rule.parent.mkdir()
    rule.write_text(
        f"title: net user\nid: {rid}\nname: net_user_use\nlogsource:\n  product: windows\n  category: process_creation\n"
        "detection:\n  sel:\n    CommandLine|startswith: 'net '\n  condition: sel\n",
        "utf-8",
    )
    (rule.parent / "filter.yml").write_text(
        f"title: admins may\nid: {uuid.uuid4()}\nlogsource:\n  product: windows\n  category: process_creation\n"
        "filter:\n  rules:\n    - net_user_use\n  selection:\n    CommandLine|endswith: admin\n  condition: not selection\n",
        "utf-8",
    )
    load = load_rules([rule.parent])
    assert not load.problems, load.problems
    compiled = RuleCompiler(store.names).compile(load.rules[0])
    got = {m.key for m in find_matches(store.es, compiled, store.window, limit=100).matches}
    assert got == {"net-user-upper"}


def test_rules_only_match_their_own_log_source(store: Store) -> None:
    # 'Failed password' also appears in a sudo line: sshd rules see sshd only, auth sees both
    body = "detection:\n  keywords:\n    - 'Failed password'\n  condition: keywords\n"
    assert matched(store, body, "product: linux\n  service: sshd") == {"ssh-failed"}
    assert matched(store, body, "product: linux\n  service: auth") == {"ssh-failed", "sudo-failed-word"}
    assert matched(store, body, "product: windows\n  category: process_creation") == set()
    body = "detection:\n  sel:\n    cs-uri-query|contains: 'union select'\n  condition: sel\n"
    assert matched(store, body, "category: webserver") == {"web-sqli"}
    assert matched(store, body, "category: proxy") == set()
    body = "detection:\n  sel:\n    dst_port: 445\n    action: ufw-block\n  condition: sel\n"
    assert matched(store, body, "category: firewall") == {"fw-block-445"}
    body = "detection:\n  sel:\n    query|endswith: '.tunnel.example.com'\n  condition: sel\n"
    assert matched(store, body, "category: dns") == {"dns-long"}
    body = "detection:\n  sel:\n    record_type: txt\n  condition: sel\n"
    assert matched(store, body, "product: zeek\n  service: dns") == {"dns-long"}
    body = "detection:\n  sel:\n    id.resp_p: 4444\n  condition: sel\n"
    assert matched(store, body, "product: zeek\n  service: conn") == {"flow-4444"}


def test_examined_counts_the_log_source_and_limit_truncates(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hcm_soc.detection.matcher as matcher

    path = _rule(store, "detection:\n  sel:\n    CommandLine|contains: ' '\n  condition: sel\n")
    compiled = RuleCompiler(store.names).compile(load_rules([path]).rules[0])
    proc = {k for k, v in CORPUS["windows.evtx"].items() if v["winlog"]["event_id"] in ("1", "4688")}
    want = {k for k in proc if " " in CORPUS["windows.evtx"][k]["process"]["command_line"]}
    monkeypatch.setattr(matcher, "PAGE_SIZE", 3)  # force several search_after pages
    full = find_matches(store.es, compiled, store.window, limit=1000)
    assert {m.key for m in full.matches} == want and not full.truncated
    assert full.examined == len(proc)
    part = find_matches(store.es, compiled, store.window, limit=5)
    assert len(part.matches) == 5 and part.truncated
    assert {m.key for m in part.matches} <= want
    empty = Window(store.window.start - timedelta(hours=2), store.window.start - timedelta(hours=1))
    none = find_matches(store.es, compiled, empty, limit=10)
    assert none.matches == () and none.examined == 0


def test_pattern_on_an_ip_field_falls_back_to_the_raw_event_data_on_windows(store: Store) -> None:
    # IpAddress maps to source.ip (type ip), which holds no '-': the EventData item as written does
    body = "detection:\n  sel:\n    EventID: 4625\n    IpAddress|contains: '-'\n  condition: sel\n"
    assert matched(store, body, "product: windows\n  service: security") == {"logon-4625"}


def test_window_is_half_open_on_event_ingested(store: Store) -> None:
    path = _rule(store, "detection:\n  sel:\n    CommandLine: 'net user admin'\n  condition: sel\n")
    compiled = RuleCompiler(store.names).compile(load_rules([path]).rules[0])
    hit = store.es.get(index=store.names.events("windows.evtx"), id="net-user")
    at = datetime.fromisoformat(hit["_source"]["event"]["ingested"][:23] + "+00:00")  # ms, as indexed
    ms = timedelta(milliseconds=1)
    assert [m.key for m in find_matches(store.es, compiled, Window(at, at + ms), limit=5).matches] == [
        "net-user"
    ]
    assert find_matches(store.es, compiled, Window(at - ms, at), limit=5).matches == ()


def test_same_event_id_in_two_backing_indices_is_one_match(store: Store) -> None:
    """After a rollover or a replay an event id can exist in two indices of the pattern: one match."""
    index = store.names.events("dup.check")
    settings: dict[str, Any] = {"index.number_of_shards": 1, "index.number_of_replicas": 0, **GRAM_SETTINGS}
    settings["index.final_pipeline"] = store.names.ingest_pipeline
    store.es.indices.create(index=index, settings=settings, mappings=ecs_mappings())
    try:
        doc = {**CORPUS["windows.evtx"]["net-user"], "@timestamp": datetime.now(UTC).isoformat()}
        doc["event"] = {**doc["event"], "dataset": "windows.evtx"}
        store.es.index(index=index, id="net-user", document=doc, refresh="wait_for")
        window = Window(store.window.start, datetime.now(UTC) + timedelta(minutes=1))
        path = _rule(store, "detection:\n  sel:\n    CommandLine: 'net user admin'\n  condition: sel\n")
        compiled = RuleCompiler(store.names).compile(load_rules([path]).rules[0])
        result = find_matches(store.es, compiled, window, limit=10)
        assert [m.key for m in result.matches] == ["net-user"]
        assert result.matches[0].events[0].id == "net-user"
    finally:
        store.es.indices.delete(index=index, ignore_unavailable=True)


def test_boolean_fields_take_sigma_text_true_false(store: Store) -> None:
    image_load = "product: windows\n  category: image_load"
    unsigned = (
        "detection:\n  sel:\n    Signed: 'false'\n    ImageLoaded|endswith: '\\evil.dll'\n  condition: sel\n"
    )
    signed = "detection:\n  sel:\n    Signed: 'True'\n  condition: sel\n"
    assert matched(store, unsigned, image_load) == {"dll-unsigned"}
    assert matched(store, signed, image_load) == {"dll-signed"}
