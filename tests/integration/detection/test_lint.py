"""Rule lint on the real Elasticsearch: live mappings, recent values, log sources with no events,
and `hcm-soc rules lint` as an administrator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.detection.compiler import RuleCompiler
from hcm_soc.detection.correlation import compile_correlation
from hcm_soc.detection.lint import LintResult, lint_rules
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.scheduler import lint_engine_rules, prepare_rules
from hcm_soc.store.names import IndexNames
from tests.integration.detection.conftest import Seeder, ssh_event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def rule(rule_id: str, title: str, logsource: str, detection: str) -> str:
    return (
        f"title: {title}\nid: {rule_id}\nstatus: test\nlevel: medium\n"
        f"logsource:\n{logsource}\ndetection:\n{detection}\n"
    )


SSHD = "    product: linux\n    service: sshd"
GOOD = "11111111-0000-4000-8000-000000000001"
NO_FIELD = "11111111-0000-4000-8000-000000000002"
GT_KEYWORD = "11111111-0000-4000-8000-000000000003"
NO_VALUES = "11111111-0000-4000-8000-000000000004"
NO_EVENTS = "11111111-0000-4000-8000-000000000005"
LONG_CASELESS = "11111111-0000-4000-8000-000000000006"
HALF_DEAD = "11111111-0000-4000-8000-000000000007"
NEGATED = "11111111-0000-4000-8000-000000000008"
BY_MESSAGE = "11111111-0000-4000-8000-000000000009"
BY_HOST = "11111111-0000-4000-8000-00000000000a"


def correlation(rule_id: str, group_by: str) -> str:
    return (
        f"title: Repeated failures by {group_by}\nid: {rule_id}\nstatus: test\nlevel: high\n"
        f"correlation:\n  type: event_count\n  rules: [{GOOD}]\n  group-by: [{group_by}]\n"
        "  timespan: 5m\n  condition: {gte: 3}\n"
    )


RULES = {
    "good.yml": rule(
        GOOD,
        "SSH failed password",
        SSHD,
        "    sel:\n        message|contains: 'failed password'\n        user.name: admin\n    condition: sel",
    ),
    "no_field.yml": rule(
        NO_FIELD, "Typo in a field name", SSHD, "    sel:\n        usr.nmae: admin\n    condition: sel"
    ),
    "gt_keyword.yml": rule(
        GT_KEYWORD,
        "Numeric comparison on a keyword",
        SSHD,
        "    sel:\n        user.name|gt: 5\n    condition: sel",
    ),
    "no_values.yml": rule(
        NO_VALUES,
        "Field without recent values",
        SSHD,
        "    sel:\n        user.domain: corp\n    condition: sel",
    ),
    "no_events.yml": rule(
        NO_EVENTS,
        "Windows process creation",
        "    product: windows\n    category: process_creation",
        "    sel:\n        Image|endswith: '\\\\whoami.exe'\n    condition: sel",
    ),
    "long_caseless.yml": rule(
        LONG_CASELESS,
        "Dynamic number matched as text",
        SSHD,
        "    sel:\n        sshd.attempts: '5'\n    condition: sel",  # quoted: a string, matched caselessly
    ),
    "half_dead.yml": rule(
        HALF_DEAD,
        "One alternative cannot match",
        SSHD,
        "    a:\n        usr.nmae: admin\n    b:\n        user.name: admin\n    condition: a or b",
    ),
    "by_message.yml": correlation(BY_MESSAGE, "message"),  # a text field: no doc values to group on
    "by_host.yml": correlation(BY_HOST, "host.name"),
    "negated.yml": rule(
        NEGATED,
        "Missing field under not",
        SSHD,
        "    a:\n        user.name: admin\n    b:\n        usr.nmae: admin\n    condition: a and not b",
    ),
}


def test_lint_on_live_mappings(
    es: Elasticsearch, installed: IndexNames, seed: Seeder, rule_dir: Callable[..., Path]
) -> None:
    event = ssh_event()
    event["sshd"] = {"attempts": 5}  # dynamic mapping makes this a long: no .caseless sub-field
    seed("system.auth", [event, ssh_event("success", user="operator")])
    load = load_rules([rule_dir("lint", RULES)])
    assert not load.problems, load.problems
    compiled, problems = RuleCompiler(installed).compile_all([r for r in load.rules if r.kind == "detection"])
    assert not problems, problems
    by_id = {c.rule.id: c for c in compiled}
    correlations = [compile_correlation(r, by_id) for r in load.rules if r.kind == "correlation"]
    results: dict[str, LintResult] = {
        r.rule_id: r for r in lint_rules(es, installed, [*compiled, *correlations], recent=timedelta(days=1))
    }

    good = results[GOOD]  # a good rule: clean
    assert good.status == "ok", good.findings
    assert good.can_match and good.events_recent == 2 and good.events_total == 2
    assert len(good.indices) == 1 and good.source == "linux/sshd"

    missing = results[NO_FIELD]  # a field that does not exist: can never match
    assert not missing.can_match
    [err] = missing.errors
    assert err.field == "usr.nmae.caseless"
    assert "not in the mapping" in err.reason and "linux/sshd" in err.reason

    gt = results[GT_KEYWORD]  # a numeric comparison on a keyword field
    assert not gt.can_match
    [err] = gt.errors
    assert err.field == "user.name" and "numeric comparison" in err.reason and "keyword" in err.reason

    stale = results[NO_VALUES]  # a field with no recent values: a warning
    assert stale.can_match and not stale.errors
    [warn] = stale.warnings
    assert warn.field == "user.domain" and "no value" in warn.reason

    nothing = results[NO_EVENTS]  # a log source with no events at all: a warning
    assert nothing.can_match and not nothing.errors and nothing.events_total == 0 and nothing.indices == ()
    [warn] = nothing.warnings
    assert warn.field is None and "no events for log source windows/process_creation at all" in warn.reason

    number = results[LONG_CASELESS]  # a string matched case-insensitively on a dynamic long field
    assert not number.can_match
    [err] = number.errors
    assert err.field == "sshd.attempts.caseless" and "mapped as long" in err.reason

    half = results[HALF_DEAD]  # one dead alternative: the rule can still match
    assert half.can_match and not half.errors
    assert any(
        w.field == "usr.nmae.caseless" and "the rest can still match" in w.reason for w in half.warnings
    )
    negated = results[NEGATED]
    assert negated.can_match and not negated.errors  # `not <dead>` is always true ...
    assert "never excludes any event" in negated.warnings[0].reason  # ... so the filter is useless

    by_message = results[BY_MESSAGE]  # a correlation grouping on a text field fails every run
    assert by_message.source == "correlation" and not by_message.can_match
    [err] = by_message.errors
    assert err.field == "message" and "no doc values" in err.reason
    by_host = results[BY_HOST]
    assert by_host.status == "ok" and by_host.can_match and by_host.events_recent == 2

    # the engine reports (and still runs) the rules that cannot match, naming field and reason
    engine_rules, engine_problems = prepare_rules(
        load.rules, installed, default_interval=timedelta(minutes=1)
    )
    assert not engine_problems
    reported = {p.rule_id: p.message for p in lint_engine_rules(es, installed, engine_rules)}
    assert set(reported) == {NO_FIELD, GT_KEYWORD, LONG_CASELESS, BY_MESSAGE}
    assert "usr.nmae.caseless" in reported[NO_FIELD] and "can never match" in reported[NO_FIELD]


def test_cli_lint(es_url: str, installed: IndexNames, seed: Seeder, rule_dir: Callable[..., Path]) -> None:
    seed("system.auth", [ssh_event()])
    folder = rule_dir("cli", {k: RULES[k] for k in ("good.yml", "gt_keyword.yml", "no_events.yml")})
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HCM_SOC_")},
        "HCM_SOC_ES_URL": es_url,
        "HCM_SOC_INDEX_PREFIX": installed.prefix,
        "HCM_SOC_INDEX_NAMESPACE": installed.namespace,
        "HCM_SOC_PATHS_RULES": str(folder),
    }

    def hcm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hcm_soc.cli.main", "rules", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    every = hcm("lint")
    assert every.returncode == 1, every.stderr
    assert "numeric comparison" in every.stdout and "can never match" in every.stdout
    assert "3 rule(s) linted: 1 can never match" in every.stdout
    one = hcm("lint", GOOD, "--json")
    assert one.returncode == 0, one.stderr
    [result] = json.loads(one.stdout)
    assert result["id"] == GOOD and result["status"] == "ok" and result["can_match"] is True
    warned = hcm("lint", NO_EVENTS)
    assert warned.returncode == 0 and "no events for log source" in warned.stdout
    validate = hcm("validate", "--lint")
    assert validate.returncode == 1 and "numeric comparison" in validate.stdout
