"""The engine against real Elasticsearch: a Sigma rule from YAML to stored alerts, idempotence,
isolation of failing rules, and the alert/state stores' own contracts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.detection.engine import DetectionEngine, EngineRule
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.model import CompiledRule
from hcm_soc.detection.scheduler import prepare_rules
from hcm_soc.models.alert import Alert
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.detection_state import (
    CoverageLedger,
    DetectionStateStore,
    RuleHealth,
    RuleState,
    StateConflict,
)
from hcm_soc.store.names import IndexNames
from tests.integration.detection.conftest import SSH_FAILED_RULE, Seeder, ssh_event

RULE_ID = "5b0c6e43-6a3d-4d4b-9a57-1f0d3c2a9e01"


def load(folder: Path, names: IndexNames) -> list[EngineRule]:
    loaded = load_rules([folder])
    assert not loaded.problems, [str(p) for p in loaded.problems]
    rules, problems = prepare_rules(loaded.rules, names, default_interval=timedelta(minutes=1))
    assert not problems, [str(p) for p in problems]
    return rules


def test_sigma_rule_from_yaml_raises_one_ecs_alert_per_matching_event(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    (rule,) = load(rule_dir("so-tttt", {"ssh.yml": SSH_FAILED_RULE}), installed)
    hits = seed("system.auth", [ssh_event(ip="203.0.113.7"), ssh_event(ip="198.51.100.9", user="root")])
    seed(
        "system.auth",
        [
            ssh_event("success"),  # same log source, no match
            ssh_event(program="cron"),  # same text, another log source: never matched by an sshd rule
        ],
    )
    engine = make_engine()
    run = engine.run_rule(rule)
    assert run.ok, run.error
    assert (run.matches, run.alerts_created, run.duplicates) == (2, 2, 0)
    assert run.examined == 3  # the sshd events of the window (not the cron one)

    store = AlertStore(es, installed)
    store.refresh()
    alerts = {a.hcm.events[0].id: a for a in store.search(rule_id=RULE_ID)}
    assert set(alerts) == set(hits)
    alert = alerts[hits[1]]
    doc = es.get(index=installed.alerts, id=alert.id)["_source"]
    assert Alert.from_document(alert.id, doc) == alert  # what is stored is the validated model
    assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == 3
    assert doc["rule"] == {
        "id": RULE_ID,
        "name": "SSH failed password",
        "ruleset": "so-tttt",
        "description": "A password login to sshd failed.",
        "reference": ["https://attack.mitre.org/techniques/T1110/"],
        "category": "linux/sshd",
        "version": rule.version,
    }
    assert doc["threat"]["technique"]["id"] == ["T1110"]
    assert doc["threat"]["tactic"]["name"] == ["Credential Access"]
    assert doc["user"] == {"name": "root"} and doc["source"] == {"ip": "198.51.100.9"}
    assert doc["host"] == {"name": "so-tttt-web01"} and doc["event"]["dataset"] == "system.auth"
    assert doc["hcm"]["status"] == "open" and doc["hcm"]["rule"]["level"] == "medium"
    ref = doc["hcm"]["events"][0]
    assert es.get(index=ref["index"], id=ref["id"])["_source"]["user"]["name"] == "root"
    window = run.window
    assert window is not None
    assert doc["hcm"]["window"]["start"] == window.start.isoformat().replace("+00:00", "Z")

    health = DetectionStateStore(es, installed).health(RULE_ID)
    assert health is not None and health.status == "ok" and health.checkpoint == window.end
    assert (health.matches, health.alerts_created, health.events_examined) == (2, 2, 3)
    assert health.version == rule.version and health.rule_name == "SSH failed password"


def test_running_the_same_window_twice_never_duplicates_an_alert(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    (rule,) = load(rule_dir("city", {"ssh.yml": SSH_FAILED_RULE}), installed)
    seed("system.auth", [ssh_event(ip=f"203.0.113.{i}") for i in range(1, 6)])
    first = make_engine().run_rule(rule)
    assert first.alerts_created == 5
    # the checkpoint is lost (a crash between writing alerts and committing): the window is run again
    es.delete(index=installed.state, id=DetectionStateStore.doc_id(RULE_ID), refresh="wait_for")
    again = make_engine().run_rule(rule)
    assert (again.alerts_created, again.duplicates) == (0, 5)
    store = AlertStore(es, installed)
    store.refresh()
    assert store.count(rule_id=RULE_ID) == 5


def test_one_failing_rule_never_stops_the_others(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    # a log source hcm-soc has no events for: loads, but cannot compile
    no_source = SSH_FAILED_RULE.replace(RULE_ID, "0d7c7e0e-1e9f-4c55-9f3c-5a9b7f0e0002").replace(
        "product: linux\n    service: sshd", "product: aix\n    service: sshd"
    )
    folder = rule_dir("city", {"ssh.yml": SSH_FAILED_RULE, "aix.yml": no_source})
    loaded = load_rules([folder])
    rules, problems = prepare_rules(loaded.rules, installed, default_interval=timedelta(minutes=1))
    assert [p.rule_id for p in problems] == ["0d7c7e0e-1e9f-4c55-9f3c-5a9b7f0e0002"]
    good = next(r for r in rules if r.id == RULE_ID)
    # a rule whose query Elasticsearch refuses at search time
    broken_compiled = CompiledRule(
        good.rule, "(", {"query_string": {"query": "message:(("}}, good.compiled.indices, good.compiled.scope
    )
    renamed = replace(good.rule, id="0d7c7e0e-1e9f-4c55-9f3c-5a9b7f0e0003", title="Broken query")
    broken = EngineRule(renamed, broken_compiled, "v1", good.interval)
    seed("system.auth", [ssh_event()])
    summary = make_engine().run_all([broken, *rules])
    by_id = {r.rule_id: r for r in summary.runs}
    assert by_id[RULE_ID].ok and by_id[RULE_ID].alerts_created == 1
    assert by_id["0d7c7e0e-1e9f-4c55-9f3c-5a9b7f0e0003"].error is not None
    assert "no hcm-soc data source" in (by_id["0d7c7e0e-1e9f-4c55-9f3c-5a9b7f0e0002"].error or "")

    state = DetectionStateStore(es, installed)
    state.refresh()
    health = {h.rule_id: h for h in state.health_all()}
    assert health[RULE_ID].status == "ok"
    failing = health["0d7c7e0e-1e9f-4c55-9f3c-5a9b7f0e0003"]
    assert failing.status == "failing" and failing.consecutive_failures == 1 and failing.checkpoint is None
    assert failing.last_error is not None and "BadRequestError" in failing.last_error, failing.last_error
    invalid = health["0d7c7e0e-1e9f-4c55-9f3c-5a9b7f0e0002"]
    assert invalid.status == "invalid" and invalid.next_retry is None


def test_alert_store_creates_once_and_counts_409_as_duplicate(
    es: Elasticsearch, installed: IndexNames
) -> None:
    from hcm_soc.detection.alerts import build_alert
    from hcm_soc.detection.model import EventRef, Match, Window
    from tests.unit.detection.test_engine_windows import make_rule

    now = datetime.now(UTC)
    window = Window(now - timedelta(minutes=1), now)
    alerts = [
        build_alert(make_rule(), Match("r-ssh", f"ev{i}", (EventRef("idx", f"ev{i}"),)), window, raised=now)
        for i in range(3)
    ]
    store = AlertStore(es, installed)
    first = store.create_many(alerts[:2], refresh="wait_for")
    assert (first.created, first.duplicates) == (2, 0)
    second = store.create_many(alerts, refresh="wait_for")
    assert (second.created, second.duplicates) == (1, 2)
    assert second.created_ids == (alerts[2].id,)
    assert store.count(rule_id="r-ssh") == 3
    assert store.get(alerts[0].id) == alerts[0]
    assert store.get("missing") is None


def test_state_store_refuses_a_stale_write(es: Elasticsearch, installed: IndexNames) -> None:
    store = DetectionStateStore(es, installed)
    now = datetime.now(UTC).replace(microsecond=0)
    fresh = store.load("r1")
    assert fresh.seq_no is None and fresh.checkpoint is None
    saved = store.save(RuleState(health=RuleHealth(rule_id="r1", checkpoint=now, status="ok")), updated=now)
    with pytest.raises(StateConflict):  # a second "first" write
        store.save(RuleState(health=RuleHealth(rule_id="r1")), updated=now)
    a, b = store.load("r1"), store.load("r1")
    assert a.seq_no == saved.seq_no and a.checkpoint == now
    store.save(a.model_copy(update={"health": a.health.model_copy(update={"runs": 1})}), updated=now)
    with pytest.raises(StateConflict, match="another engine"):
        store.save(b, updated=now)
    store.refresh()
    assert [h.rule_id for h in store.health_all()] == ["r1"]
    assert store.health("r1") is not None and store.health("r1").runs == 1  # type: ignore[union-attr]
    assert store.health("never-ran") is None


def test_state_store_save_many_is_conditional_per_rule(es: Elasticsearch, installed: IndexNames) -> None:
    store = DetectionStateStore(es, installed)
    now = datetime.now(UTC).replace(microsecond=0)
    first = store.save_many(
        [RuleState(health=RuleHealth(rule_id=r, checkpoint=now)) for r in ("a", "b")], updated=now
    )
    assert all(isinstance(x, RuleState) and x.seq_no is not None for x in first)
    a, b = store.load_many(["a", "b"]).values()
    store.save(
        b.model_copy(update={"health": b.health.model_copy(update={"runs": 7})}), updated=now
    )  # another engine
    later = now + timedelta(minutes=1)
    result = store.save_many(
        [s.model_copy(update={"health": s.health.model_copy(update={"checkpoint": later})}) for s in (a, b)],
        updated=later,
    )
    assert isinstance(result[0], RuleState) and isinstance(result[1], StateConflict)
    states = store.load_many(["a", "b", "never-ran"])
    assert states["a"].checkpoint == later and states["b"].checkpoint == now and states["b"].health.runs == 7
    assert states["never-ran"].seq_no is None


def test_a_group_is_evaluated_in_one_batch_and_committed_together(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    ids = [f"5b0c6e43-6a3d-4d4b-9a57-1f0d3c2a9e1{n}" for n in range(3)]
    rules = load(
        rule_dir("city", {f"r{n}.yml": SSH_FAILED_RULE.replace(RULE_ID, i) for n, i in enumerate(ids)}),
        installed,
    )
    seeded = seed("system.auth", [ssh_event(ip="203.0.113.5"), ssh_event("success")])
    batched = make_engine(batch=True)
    runs = batched.run_group(rules)
    assert [(r.rule_id, r.ok, r.skipped, r.alerts_created) for r in runs] == [(i, True, None, 1) for i in ids]
    assert batched.stats()["batched"] == 3 and batched.stats()["runs"] == 3
    states = DetectionStateStore(es, installed).load_many(ids)
    ledger = CoverageLedger(es, installed)
    ledger.refresh()
    for i in ids:
        (entry,) = ledger.entries(i)
        assert states[i].health.status == "ok" and entry.end == states[i].checkpoint and entry.alerts == 1

    # the next cycle without batching continues from the same checkpoints
    more = seed("system.auth", [ssh_event(ip="203.0.113.6")])
    single = make_engine(batch=False)
    assert [r.alerts_created for r in single.run_group(rules)] == [1, 1, 1]
    assert single.stats()["batched"] == 0
    store = AlertStore(es, installed)
    store.refresh()
    for i in ids:
        assert sorted(a.hcm.match_key for a in store.search(rule_id=i)) == sorted([seeded[0], *more])


BRUTE_FORCE = """\
title: SSH brute force from one address
id: 7a3e2d10-5c4b-4e8f-a1d2-3b4c5d6e7f80
status: test
level: high
tags:
    - attack.credential_access
    - attack.t1110
correlation:
    type: event_count
    rules:
        - ssh_failed_password
    group-by:
        - source.ip
    timespan: 5m
    condition:
        gte: 3
"""


def test_correlation_rule_raises_one_alert_per_group_and_silences_its_base_rule(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    base = SSH_FAILED_RULE.replace(
        "title: SSH failed password\n", "title: SSH failed password\nname: ssh_failed_password\n"
    )
    rules = load(rule_dir("city", {"ssh.yml": base, "brute.yml": BRUTE_FORCE}), installed)
    # Sigma v2: a rule referenced by a correlation (generate: false) raises no alert of its own
    assert [r.id for r in rules] == ["7a3e2d10-5c4b-4e8f-a1d2-3b4c5d6e7f80"]
    attacker = seed("system.auth", [ssh_event(ip="203.0.113.99", user=f"u{i}") for i in range(4)])
    seed("system.auth", [ssh_event(ip="198.51.100.1"), ssh_event(ip="198.51.100.1")])  # below the threshold
    summary = make_engine().run_all(rules)
    (run,) = summary.runs
    assert run.ok, run.error
    assert run.alerts_created == 1
    store = AlertStore(es, installed)
    store.refresh()
    (alert,) = store.search(rule_id="7a3e2d10-5c4b-4e8f-a1d2-3b4c5d6e7f80")
    assert alert.hcm.rule.kind == "correlation" and alert.hcm.group == {"source.ip": "203.0.113.99"}
    assert alert.source is not None and alert.source.ip == "203.0.113.99"
    assert alert.hcm.count >= 3 and {e.id for e in alert.hcm.events} <= set(attacker)
    assert alert.event.severity == 4 and alert.threat is not None and alert.threat.technique.id == ["T1110"]
    # the same window again (checkpoint lost): the same group and window give the same alert id
    es.delete(
        index=installed.state,
        id=DetectionStateStore.doc_id("7a3e2d10-5c4b-4e8f-a1d2-3b4c5d6e7f80"),
        refresh="wait_for",
    )
    again = make_engine().run_all(rules).runs[0]
    assert (again.alerts_created, again.duplicates) == (0, 1)
    # with `generate: true` the base rule raises its own alerts too
    generating = BRUTE_FORCE.replace("correlation:\n", "correlation:\n    generate: true\n")
    rules = load(rule_dir("generate", {"ssh.yml": base, "brute.yml": generating}), installed)
    assert sorted(r.id for r in rules) == sorted([RULE_ID, "7a3e2d10-5c4b-4e8f-a1d2-3b4c5d6e7f80"])
