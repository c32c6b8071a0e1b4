"""Sigma v2 correlation rules against the real Elasticsearch: real YAML through the loader and the
compiler, crafted events with controlled @timestamp written through the project's ingest pipeline
(so `event.ingested` is stamped by Elasticsearch) into a scratch store with the production ECS
mappings, then `find_correlation_matches`.

The scratch store (`detection.scratch.ScratchEvents`) uses plain indices rather than the
production data streams because the development node cannot delete data streams: every test
would leave shards behind on the shared node.

Every case has its negative twin: the threshold minus one, the wrong order, another group, a
window where nothing new arrived.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.detection.compiler import RuleCompiler
from hcm_soc.detection.correlation import CompiledCorrelation, compile_correlation, find_correlation_matches
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.model import CompiledRule, MatchResult, Window
from hcm_soc.detection.scratch import ScratchEvents
from hcm_soc.store.names import IndexNames

pytestmark = pytest.mark.integration

BASE_RULES = """
title: SSH login failed
id: 5f0c8a9e-7a1b-4c1e-9b0a-00000000c001
name: ssh_failed
status: test
level: low
logsource: {product: linux, service: sshd}
detection:
  sel: {event.outcome: failure}
  condition: sel
---
title: SSH login accepted
id: 5f0c8a9e-7a1b-4c1e-9b0a-00000000c002
name: ssh_ok
status: test
level: low
logsource: {product: linux, service: sshd}
detection:
  sel: {event.outcome: success}
  condition: sel
---
title: Portal login form posted
id: 5f0c8a9e-7a1b-4c1e-9b0a-00000000c003
name: portal_login
status: test
level: low
logsource: {category: webserver}
detection:
  sel:
    cs-method: POST
    cs-uri-stem|endswith: /login
  condition: sel
"""


def correlation(
    id_suffix: str, type_: str, rules: Sequence[str], timespan: str, extra: str, condition: str | None
) -> str:
    cond = f"\n  condition: {condition}" if condition else ""
    return (
        f"title: Correlation {id_suffix}\nid: 5f0c8a9e-7a1b-4c1e-9b0a-00000000d{id_suffix}\nstatus: test\n"
        f"level: high\ncorrelation:\n  type: {type_}\n  rules: [{', '.join(rules)}]\n"
        f"  timespan: {timespan}\n{extra}{cond}\n"
    )


BRUTE_FORCE = correlation("001", "event_count", ["ssh_failed"], "1m", "  group-by: [rhost]", "{gte: 5}")
SPRAY = correlation(
    "002", "value_count", ["ssh_failed"], "5m", "  group-by: [rhost]", "{gte: 3, field: User}"
)
ANY_ORDER = correlation("003", "temporal", ["ssh_failed", "ssh_ok"], "5m", "  group-by: [rhost]", None)
IN_ORDER = correlation("004", "temporal_ordered", ["ssh_failed", "ssh_ok"], "5m", "  group-by: [rhost]", None)
WEB_THEN_SSH = correlation(
    "005",
    "temporal_ordered",
    ["portal_login", "ssh_ok"],
    "10m",
    "  group-by: [attacker]\n  aliases:\n    attacker:\n      portal_login: c-ip\n      ssh_ok: rhost",
    None,
)
FEW_LOGINS = correlation("006", "event_count", ["ssh_ok"], "1m", "  group-by: [rhost]", "{lt: 3}")
COUNT_ALL = correlation("007", "event_count", ["ssh_failed"], "1m", "", "{gte: 3}")
FAILED_NOT_OK = correlation(
    "008", "temporal", ["ssh_failed", "ssh_ok"], "5m", "  group-by: [rhost]", "ssh_failed and not ssh_ok"
)


# --- helpers ---------------------------------------------------------------------------------


def compile_rules(tmp_path: Path, names: IndexNames, corr_yaml: str) -> CompiledCorrelation:
    """The correlation through the real loader and compiler, as the engine gets it."""
    path = tmp_path / "rules" / "correlation.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(BASE_RULES + "---\n" + corr_yaml, encoding="utf-8")
    load = load_rules([path.parent])
    assert not load.problems, [str(p) for p in load.problems]
    compiler = RuleCompiler(names)
    base: dict[str, CompiledRule] = {}
    corr_rule = None
    for rule in load.rules:
        if rule.kind == "correlation":
            corr_rule = rule
            continue
        compiled = compiler.compile(rule)
        base[rule.id] = compiled
        if rule.name:
            base[rule.name] = compiled
    assert corr_rule is not None
    return compile_correlation(corr_rule, base)


_ids = itertools.count()


def ssh(at: datetime, outcome: str, address: str, user: str = "root") -> dict[str, Any]:
    return {
        "@timestamp": at.isoformat(),
        "event": {
            "module": "system",
            "dataset": "syslog",
            "outcome": outcome,
            "category": ["authentication"],
        },
        "process": {"name": "sshd"},
        "source": {"address": address, "ip": address},
        "user": {"name": user},
        "host": {"name": "so-tttt-web01"},
        "message": f"{'Accepted' if outcome == 'success' else 'Failed'} password for {user} from {address}",
    }


def web_post(at: datetime, ip: str, path: str = "/dich-vu-cong/login") -> dict[str, Any]:
    return {
        "@timestamp": at.isoformat(),
        "event": {"module": "nginx", "dataset": "nginx.access"},
        "source": {"ip": ip, "address": ip},
        "http": {"request": {"method": "POST"}, "response": {"status_code": 200}},
        "url": {"path": path, "original": path},
        "host": {"name": "dichvucong-web"},
    }


def index(scratch: ScratchEvents, events: Sequence[dict[str, Any]]) -> list[str]:
    """Store `events` (event.ingested stamped by the ingest pipeline), searchable on return."""
    loaded = scratch.load(events, first_line=next(_ids) * 1000, id_prefix="ev")
    return [e.id for e in loaded]


def max_ingested(es: Elasticsearch, names: IndexNames) -> datetime:
    resp = es.search(index=names.events_pattern, size=0, aggs={"m": {"max": {"field": "event.ingested"}}})
    return datetime.fromtimestamp(resp["aggregations"]["m"]["value"] / 1000, UTC)


def after_all_ingested(es: Elasticsearch, names: IndexNames) -> datetime:
    """A window end after every event stored so far: 1 ms past the newest event.ingested, waited for
    on the clock (Elasticsearch stamps event.ingested from this machine's clock) so that events
    written next are ingested after it."""
    boundary = max_ingested(es, names) + timedelta(milliseconds=1)
    deadline = time.monotonic() + 5
    while datetime.now(UTC) <= boundary:
        assert time.monotonic() < deadline, "the clock did not pass the ingest boundary"
    return boundary


def run(es: Elasticsearch, corr: CompiledCorrelation, start: datetime, end: datetime) -> MatchResult:
    return find_correlation_matches(es, corr, Window(start, end), limit=100)


def groups(result: MatchResult) -> list[dict[str, Any]]:
    return [dict(m.group) for m in result.matches]


@pytest.fixture
def scratch(es: Elasticsearch) -> Iterator[ScratchEvents]:
    with ScratchEvents(es, IndexNames(prefix=f"t{uuid.uuid4().hex[:10]}", namespace="test")) as store:
        yield store


@pytest.fixture
def scratch_names(scratch: ScratchEvents) -> IndexNames:
    """The names the rules are compiled for: the scratch store's."""
    return scratch.names


@pytest.fixture
def past() -> datetime:
    """An instant well before now (windows over it are closed), on a whole minute."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(hours=2)


@pytest.fixture
def since() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=1)


# --- event_count -----------------------------------------------------------------------------


def test_event_count_threshold_exactly_n_vs_n_minus_1_and_group_separation(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
) -> None:
    corr = compile_rules(tmp_path, scratch_names, BRUTE_FORCE)
    t0 = past + timedelta(seconds=5)
    events = [ssh(t0 + timedelta(seconds=10 * i), "failure", "203.0.113.5") for i in range(5)]  # 5 in 40 s
    events += [ssh(t0 + timedelta(seconds=10 * i), "failure", "203.0.113.6") for i in range(4)]  # only 4
    events += [ssh(t0 + timedelta(seconds=25 * i), "failure", "203.0.113.7") for i in range(5)]  # 5 in 100 s
    events += [ssh(t0 + timedelta(seconds=i), "success", "203.0.113.8") for i in range(6)]  # other rule
    ids = index(scratch, events)
    result = run(es, corr, since, after_all_ingested(es, scratch_names))

    assert groups(result) == [{"source.address": "203.0.113.5"}]
    match = result.matches[0]
    assert match.count == 5
    assert match.first_seen == t0 and match.last_seen == t0 + timedelta(seconds=40)
    assert [e.id for e in match.events] == ids[:5]
    assert all(e.source["source"]["address"] == "203.0.113.5" for e in match.events)
    assert match.rule_id == corr.id
    assert result.examined == len(events)  # all are sshd events, the log source of the base rule
    assert not result.truncated


def test_burst_straddling_a_bucket_boundary_is_found(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
) -> None:
    corr = compile_rules(tmp_path, scratch_names, BRUTE_FORCE)
    # 5 failures from :57 to :01 -- past is on a whole minute, so the burst spans two minute buckets
    boundary = past + timedelta(minutes=1)
    burst = [
        ssh(boundary - timedelta(seconds=3) + timedelta(seconds=i), "failure", "198.51.100.9")
        for i in range(5)
    ]
    index(scratch, burst)
    # fixed 1-minute buckets (what a date_histogram-only design would count) never reach 5
    hist = es.search(
        index=scratch_names.events_pattern,
        size=0,
        aggs={"m": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"}}},
    )
    assert max(b["doc_count"] for b in hist["aggregations"]["m"]["buckets"]) == 3

    result = run(es, corr, since, after_all_ingested(es, scratch_names))
    assert groups(result) == [{"source.address": "198.51.100.9"}]
    assert result.matches[0].first_seen == boundary - timedelta(seconds=3)


# --- value_count ---------------------------------------------------------------------------------


def test_value_count_counts_distinct_users_per_source(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
) -> None:
    corr = compile_rules(tmp_path, scratch_names, SPRAY)
    t0 = past + timedelta(minutes=3)
    events = [
        ssh(t0 + timedelta(seconds=i), "failure", "192.0.2.10", user=u)
        for i, u in enumerate(["an", "binh", "chi"])
    ]
    events += [ssh(t0 + timedelta(seconds=i), "failure", "192.0.2.11", user="admin") for i in range(10)]
    events += [
        ssh(t0 + timedelta(seconds=i), "failure", "192.0.2.12", user=u) for i, u in enumerate(["an", "binh"])
    ]
    index(scratch, events)
    result = run(es, corr, since, after_all_ingested(es, scratch_names))
    assert groups(result) == [{"source.address": "192.0.2.10"}]
    assert result.matches[0].count == 3


# --- temporal / temporal_ordered -------------------------------------------------------------------


def test_temporal_any_order_and_temporal_ordered_wrong_order(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
) -> None:
    any_order = compile_rules(tmp_path, scratch_names, ANY_ORDER)
    in_order = compile_rules(tmp_path, scratch_names, IN_ORDER)
    t0 = past + timedelta(minutes=7)
    events = [
        # right order: failure then success
        ssh(t0, "failure", "10.20.0.1"),
        ssh(t0 + timedelta(minutes=1), "success", "10.20.0.1"),
        # wrong order: success then failure
        ssh(t0, "success", "10.20.0.2"),
        ssh(t0 + timedelta(minutes=1), "failure", "10.20.0.2"),
        # right order but 6 minutes apart (timespan 5m)
        ssh(t0, "failure", "10.20.0.3"),
        ssh(t0 + timedelta(minutes=6), "success", "10.20.0.3"),
        # one rule only
        ssh(t0, "failure", "10.20.0.4"),
        ssh(t0 + timedelta(seconds=1), "failure", "10.20.0.4"),
    ]
    index(scratch, events)
    end = after_all_ingested(es, scratch_names)

    got_any = run(es, any_order, since, end)
    assert sorted(g["source.address"] for g in groups(got_any)) == ["10.20.0.1", "10.20.0.2"]
    assert all(m.count == 2 for m in got_any.matches)
    got_ordered = run(es, in_order, since, end)
    assert groups(got_ordered) == [{"source.address": "10.20.0.1"}]
    assert {e.source["event"]["outcome"] for e in got_ordered.matches[0].events} == {"failure", "success"}


def test_aliases_join_fields_of_different_log_sources(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
) -> None:
    corr = compile_rules(tmp_path, scratch_names, WEB_THEN_SSH)
    assert corr.group_by[0].fields == ("source.ip", "source.address")
    t0 = past + timedelta(minutes=20)
    web = [
        web_post(t0, "172.16.5.5"),
        web_post(t0, "172.16.5.6"),
        web_post(t0, "172.16.5.7", path="/tra-cuu"),
    ]
    logins = [
        ssh(t0 + timedelta(minutes=2), "success", "172.16.5.5"),  # same address as a portal login: match
        ssh(t0 + timedelta(minutes=2), "success", "172.16.9.9"),  # no portal login from there
        ssh(t0 + timedelta(minutes=2), "success", "172.16.5.7"),  # a GET-less POST to another path
    ]
    index(scratch, web + logins)
    result = run(es, corr, since, after_all_ingested(es, scratch_names))
    assert groups(result) == [{"attacker": "172.16.5.5"}]
    assert {e.source["event"]["dataset"] for e in result.matches[0].events} == {"nginx.access", "syslog"}


# --- windows: exactly once, idempotent keys --------------------------------------------------------


def test_burst_split_over_two_runs_is_reported_once_with_a_stable_key(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
) -> None:
    corr = compile_rules(tmp_path, scratch_names, BRUTE_FORCE)
    t0 = past + timedelta(minutes=30)
    first = [ssh(t0 + timedelta(seconds=i), "failure", "203.0.113.50") for i in range(3)]
    second = [ssh(t0 + timedelta(seconds=3 + i), "failure", "203.0.113.50") for i in range(2)]
    index(scratch, first)
    middle = after_all_ingested(es, scratch_names)
    index(scratch, second)
    end = after_all_ingested(es, scratch_names)

    assert run(es, corr, since, middle).matches == ()  # 3 of 5 so far
    found = run(es, corr, middle, end)
    assert groups(found) == [{"source.address": "203.0.113.50"}]
    assert found.matches[0].count == 5
    # contiguous later window: nothing new
    later = end + timedelta(seconds=30)
    assert run(es, corr, end, later).matches == ()
    # overlapping windows (a retried or caught-up run) find the same burst under the same key
    again = run(es, corr, since, later)
    overlap = run(es, corr, middle - timedelta(milliseconds=1), later)
    assert [m.key for m in again.matches] == [m.key for m in overlap.matches] == [found.matches[0].key]


def test_continuing_attack_is_one_match_and_new_burst_after_quiet_is_another(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
) -> None:
    corr = compile_rules(tmp_path, scratch_names, BRUTE_FORCE)
    t0 = past + timedelta(minutes=40)
    steady = [ssh(t0 + timedelta(seconds=5 * i), "failure", "203.0.113.60") for i in range(36)]  # 3 min
    later = [ssh(t0 + timedelta(minutes=10, seconds=i), "failure", "203.0.113.60") for i in range(5)]
    index(scratch, steady + later)
    result = run(es, corr, since, after_all_ingested(es, scratch_names))
    assert [m.first_seen for m in result.matches] == [t0, t0 + timedelta(minutes=10)]
    assert len({m.key for m in result.matches}) == 2


# --- fewer than ---------------------------------------------------------------------------------


def test_fewer_than_reports_closed_sessions_with_events_only(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
) -> None:
    corr = compile_rules(tmp_path, scratch_names, FEW_LOGINS)
    t0 = past + timedelta(minutes=50)
    events = [ssh(t0 + timedelta(seconds=i), "success", "10.30.0.1") for i in range(2)]  # 2 < 3: match
    events += [ssh(t0 + timedelta(seconds=i), "success", "10.30.0.2") for i in range(3)]  # 3: no
    # a session still open (its minute is not over): not decided yet
    recent = datetime.now(UTC) + timedelta(minutes=5)
    events += [ssh(recent, "success", "10.30.0.3")]
    index(scratch, events)
    end = after_all_ingested(es, scratch_names)
    result = run(es, corr, since, end)
    assert groups(result) == [{"source.address": "10.30.0.1"}]
    assert result.matches[0].count == 2


# --- many groups, no group-by, the match limit ----------------------------------------------------


def test_many_groups_are_paged_and_the_limit_truncates(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hcm_soc.detection.correlation_search as search

    monkeypatch.setattr(search, "GROUP_PAGE", 7)  # 40 groups: 6 composite pages
    corr = compile_rules(tmp_path, scratch_names, BRUTE_FORCE)
    t0 = past + timedelta(minutes=60)
    noisy = [f"10.40.0.{i}" for i in (3, 17, 38)]
    events = [ssh(t0 + timedelta(seconds=i), "failure", f"10.40.0.{i}") for i in range(40)]
    events += [ssh(t0 + timedelta(seconds=50 + k), "failure", ip) for ip in noisy for k in range(4)]
    index(scratch, events)
    end = after_all_ingested(es, scratch_names)

    result = run(es, corr, since, end)
    assert sorted(g["source.address"] for g in groups(result)) == sorted(noisy)
    assert not result.truncated
    limited = find_correlation_matches(es, corr, Window(since, end), limit=2)
    assert len(limited.matches) == 2 and limited.truncated


def test_without_group_by_all_events_of_the_rule_are_one_group(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
) -> None:
    corr = compile_rules(tmp_path, scratch_names, COUNT_ALL)
    t0 = past + timedelta(minutes=70)
    events = [ssh(t0 + timedelta(seconds=i), "failure", f"10.50.0.{i}") for i in range(3)]
    events += [ssh(t0 + timedelta(minutes=5, seconds=i), "failure", f"10.50.1.{i}") for i in range(2)]
    index(scratch, events)
    result = run(es, corr, since, after_all_ingested(es, scratch_names))
    assert [(m.group, m.count, m.first_seen) for m in result.matches] == [((), 3, t0)]


def test_extended_temporal_condition_with_not(
    es: Elasticsearch,
    scratch: ScratchEvents,
    scratch_names: IndexNames,
    tmp_path: Path,
    past: datetime,
    since: datetime,
) -> None:
    corr = compile_rules(tmp_path, scratch_names, FAILED_NOT_OK)
    assert corr.expression == "ssh_failed and not ssh_ok"
    t0 = past + timedelta(minutes=80)
    events = [ssh(t0, "failure", "10.60.0.1"), ssh(t0 + timedelta(seconds=5), "failure", "10.60.0.1")]
    events += [ssh(t0, "failure", "10.60.0.2"), ssh(t0 + timedelta(minutes=2), "success", "10.60.0.2")]
    events += [ssh(t0, "success", "10.60.0.3")]
    index(scratch, events)
    result = run(es, corr, since, after_all_ingested(es, scratch_names))
    assert groups(result) == [{"source.address": "10.60.0.1"}]
    assert result.matches[0].count == 1  # one of the two rules seen
