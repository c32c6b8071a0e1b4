"""The rule workbench against the real Elasticsearch: validate, test on samples, backtest, save,
enable/disable (console rules and overrides of file rules), catalog with health, run now."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.config import Settings
from hcm_soc.detection.scheduler import load_engine_rules
from hcm_soc.detection.workbench import RuleInvalid, RuleNotFound, RuleWorkbench
from hcm_soc.store.names import IndexNames
from hcm_soc.store.rules import RuleStore
from tests.integration.rules_console.conftest import (
    CONSOLE_RULE_ID,
    FILE_RULE_ID,
    ROOT_LOGIN_RULE,
    SSH_FAILED_RULE,
    Seeder,
    ssh_event,
)

NO_CONDITION = ROOT_LOGIN_RULE.replace("    condition: selection\n", "")


def engine_ids(settings: Settings, es: Elasticsearch, names: IndexNames) -> dict[str, str]:
    rules, _ = load_engine_rules(settings, names, client=es)
    return {r.id: r.rule.title for r in rules}


def alert_count(es: Elasticsearch, names: IndexNames, rule_id: str) -> int:
    es.indices.refresh(index=names.alerts, ignore_unavailable=True)
    resp = es.count(index=names.alerts, query={"term": {"hcm.rule.id": rule_id}}, ignore_unavailable=True)
    return int(resp["count"])


def test_validation_errors_name_the_line_and_key_and_the_fix_passes(bench: RuleWorkbench) -> None:
    missing = bench.validate(NO_CONDITION)
    assert not missing.ok
    assert missing.problems == ["line 10: detection: Sigma rule must contain at least one condition"]

    unknown = bench.validate(ROOT_LOGIN_RULE.replace("product: linux", "product: amiga"))
    assert not unknown.ok and len(unknown.problems) == 1
    assert unknown.problems[0].startswith("line 7: logsource: no hcm-soc data source for product=amiga")

    broken = bench.validate("title: x\nlogsource: [linux\n")
    assert not broken.ok and broken.problems[0].startswith("line 3: invalid YAML")

    fixed = bench.validate(ROOT_LOGIN_RULE)
    assert fixed.ok and fixed.problems == []
    assert fixed.rule_id == CONSOLE_RULE_ID and fixed.level == "high"
    assert fixed.logsource == {"product": "linux", "category": None, "service": "sshd"}
    assert fixed.query is not None and "accepted\\ password\\ for\\ root" in fixed.query


def test_test_on_sample_events_returns_the_matching_indexes_and_leaves_nothing(
    bench: RuleWorkbench, es: Elasticsearch, installed: IndexNames
) -> None:
    events = [
        ssh_event("failure", user="root"),
        ssh_event("success", user="root"),
        ssh_event("success", user="alice"),
        ssh_event("success", user="root", host="so-gtvt-db02"),
    ]
    result = bench.test(ROOT_LOGIN_RULE, events)
    assert result.problems == []
    assert result.matches == [1, 3] and result.events == 4
    leftovers = es.indices.get(index=f"{installed.prefix}_scratch_*", allow_no_indices=True)
    assert leftovers == {}  # the scratch store is removed

    invalid = bench.test(NO_CONDITION, events)
    assert invalid.matches == [] and invalid.problems[0].startswith("line 10: detection:")


def test_save_refuses_an_invalid_rule_and_gives_a_rule_without_id_one(
    bench: RuleWorkbench, es: Elasticsearch, installed: IndexNames
) -> None:
    with pytest.raises(RuleInvalid) as err:
        bench.save(NO_CONDITION, author="admin")
    assert "line 10: detection" in str(err.value)
    assert RuleStore(es, installed).get(CONSOLE_RULE_ID) is None

    no_id = ROOT_LOGIN_RULE.replace(f"id: {CONSOLE_RULE_ID}\n", "")
    note = bench.validate(no_id)
    assert note.ok and note.rule_id is None and any("no id" in n for n in note.notes)
    saved = bench.save(no_id, author="admin")
    assert saved.id_assigned and saved.id != CONSOLE_RULE_ID and not saved.enabled
    stored = RuleStore(es, installed).get(saved.id)
    assert stored is not None and stored.yaml is not None
    assert f"\nid: {saved.id}\n" in stored.yaml and stored.author == "admin"
    assert bench.validate(stored.yaml).rule_id == saved.id


def test_console_rule_is_off_until_enabled_then_runs_and_raises_the_alert(
    bench: RuleWorkbench, settings: Settings, es: Elasticsearch, installed: IndexNames, seed: Seeder
) -> None:
    saved = bench.save(ROOT_LOGIN_RULE, author="admin")
    assert saved.id == CONSOLE_RULE_ID and not saved.enabled and not saved.id_assigned

    listed = {r.id: r for r in bench.catalog()}
    assert listed[CONSOLE_RULE_ID].source == "console" and not listed[CONSOLE_RULE_ID].enabled
    assert listed[FILE_RULE_ID].source.startswith("file:") and listed[FILE_RULE_ID].enabled
    assert CONSOLE_RULE_ID not in engine_ids(settings, es, installed)

    bench.set_enabled(CONSOLE_RULE_ID, True, author="admin")
    assert engine_ids(settings, es, installed)[CONSOLE_RULE_ID] == "SSH login as root accepted"

    seed("system.auth", [ssh_event("success", user="root"), ssh_event("success", user="alice")])
    outcome = bench.run_now(CONSOLE_RULE_ID)
    assert outcome.error is None and outcome.skipped is None
    assert outcome.matches == 1 and outcome.alerts_created == 1
    assert alert_count(es, installed, CONSOLE_RULE_ID) == 1

    es.indices.refresh(index=installed.state)
    row = {r.id: r for r in bench.catalog()}[CONSOLE_RULE_ID]
    assert row.enabled and row.health.runs == 1 and row.health.alerts == 1 and row.health.status == "ok"
    detail = bench.get(CONSOLE_RULE_ID)
    assert detail.yaml == ROOT_LOGIN_RULE and detail.query and "root" in detail.query

    # a second pass finds nothing new: the checkpoint moved
    assert bench.run_now(CONSOLE_RULE_ID).alerts_created == 0


def test_a_disabled_override_takes_a_file_rule_out_of_the_engine(
    bench: RuleWorkbench, settings: Settings, es: Elasticsearch, installed: IndexNames
) -> None:
    assert FILE_RULE_ID in engine_ids(settings, es, installed)
    bench.set_enabled(FILE_RULE_ID, False, author="admin")
    override = RuleStore(es, installed).get(FILE_RULE_ID)
    assert override is not None and override.is_override and not override.enabled
    assert override.title == "SSH failed password"
    assert FILE_RULE_ID not in engine_ids(settings, es, installed)
    row = {r.id: r for r in bench.catalog()}[FILE_RULE_ID]
    assert row.source.startswith("file:") and not row.enabled

    bench.set_enabled(FILE_RULE_ID, True, author="admin")
    assert FILE_RULE_ID in engine_ids(settings, es, installed)
    with pytest.raises(RuleNotFound):
        bench.set_enabled("00000000-0000-0000-0000-000000000000", True, author="admin")


def test_a_console_rule_with_a_file_rules_id_replaces_it(
    bench: RuleWorkbench, settings: Settings, es: Elasticsearch, installed: IndexNames
) -> None:
    edited = SSH_FAILED_RULE.replace("title: SSH failed password", "title: SSH failed password (edited)")
    bench.save(edited, author="admin", enabled=True)
    assert engine_ids(settings, es, installed)[FILE_RULE_ID] == "SSH failed password (edited)"
    rows = [r for r in bench.catalog() if r.id == FILE_RULE_ID]
    assert len(rows) == 1 and rows[0].source == "console" and rows[0].enabled
    assert rows[0].replaces is not None and rows[0].replaces.endswith("ssh_failed.yml")


def test_backtest_finds_stored_events_and_raises_no_alert(
    bench: RuleWorkbench, es: Elasticsearch, installed: IndexNames, seed: Seeder
) -> None:
    ids = seed("system.auth", [ssh_event("success", user="root"), ssh_event("failure", user="root")])
    result = bench.backtest(ROOT_LOGIN_RULE, hours=1)
    assert result.problems == []
    assert result.match_ids == [f"{installed.events('system.auth')}/{ids[0]}"] or (
        len(result.match_ids) == 1 and result.match_ids[0].endswith(f"/{ids[0]}")
    )
    assert result.matches[0]["user"]["name"] == "root" and result.examined == 2
    assert alert_count(es, installed, CONSOLE_RULE_ID) == 0
    assert bench.backtest(ROOT_LOGIN_RULE, hours=0).problems  # a span must be given


BRUTE_FORCE = f"""\
title: SSH brute force from one address
id: 5f0c8a9e-7a1b-4c1e-9b0a-00000000d001
status: test
level: high
correlation:
  type: event_count
  rules: [{FILE_RULE_ID}]
  timespan: 5m
  group-by: [source.ip]
  condition: {{gte: 3}}
"""


def test_a_console_correlation_names_a_file_rule_and_is_tested_on_samples(bench: RuleWorkbench) -> None:
    check = bench.validate(BRUTE_FORCE)
    assert check.ok and check.kind == "correlation" and check.query and "failed\\ password" in check.query
    unknown = bench.validate(BRUTE_FORCE.replace(FILE_RULE_ID, "no-such-rule"))
    assert unknown.problems == [
        "line 7: correlation.rules: correlation references a rule that is not loaded: "
        "Rule 'no-such-rule' not found in rule collection"
    ]
    events = [ssh_event("failure", ip="198.51.100.9") for _ in range(3)] + [
        ssh_event("failure", ip="198.51.100.10")
    ]
    result = bench.test(BRUTE_FORCE, events)
    assert result.problems == [] and result.matches == [0, 1, 2] and result.groups == 1
