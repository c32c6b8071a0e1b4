"""The coverage ledger against real Elasticsearch: every committed window recorded, `rules coverage`
showing a lost span as a hole (exit 1), the engine back-filling it once (no duplicate alert), per
rule version."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import typer
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.coverage import coverage
from hcm_soc.detection.engine import DetectionEngine
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.detection_state import CoverageLedger, DetectionStateStore
from hcm_soc.store.names import IndexNames
from tests.integration.detection.conftest import SSH_FAILED_RULE, Seeder, ssh_event
from tests.integration.detection.test_engine import RULE_ID, load


def coverage_cli(es_url: str, names: IndexNames, *args: str) -> tuple[int, str]:
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = AppContext()

    app.command("coverage")(coverage)
    env = {
        "HCM_SOC_ES_URL": es_url,
        "HCM_SOC_INDEX_PREFIX": names.prefix,
        "HCM_SOC_INDEX_NAMESPACE": names.namespace,
    }
    result = CliRunner().invoke(app, ["coverage", *args], env=env)
    return result.exit_code, result.stdout


def test_a_lost_ledger_span_is_shown_as_a_hole_and_backfilled_once(
    es: Elasticsearch,
    es_url: str,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    (rule,) = load(rule_dir("city", {"ssh.yml": SSH_FAILED_RULE}), installed)
    engine = make_engine()
    ids: list[str] = []
    for n, version in enumerate(("v1", "v1", "v2")):  # three runs, the last one with a new definition
        ids += seed("system.auth", [ssh_event(ip=f"203.0.113.{n + 1}")])
        run = engine.run_rule(replace(rule, version=version))
        assert run.ok and run.alerts_created == 1, run
    ledger = CoverageLedger(es, installed)
    ledger.refresh()
    entries = ledger.entries(RULE_ID)
    assert len(entries) == 3 and [e.version for e in entries] == ["v1", "v1", "v2"]
    assert all(a.end == b.start for a, b in itertools.pairwise(entries))
    health = DetectionStateStore(es, installed).load(RULE_ID).health
    assert entries[-1].end == health.checkpoint and entries[0].start == health.coverage_start

    code, out = coverage_cli(es_url, installed, RULE_ID, "--since", "2h", "--json")
    data = json.loads(out)
    assert code == 0 and data["complete"] and data["holes"] == [] and data["entries"] == 3
    assert len(data["by_version"]["v1"]) == 1 and len(data["by_version"]["v2"]) == 1

    # lose the middle span (the window of the second event)
    lost = entries[1]
    es.delete(
        index=installed.state, id=CoverageLedger.doc_id(RULE_ID, lost.start, lost.end), refresh="wait_for"
    )
    code, out = coverage_cli(es_url, installed, RULE_ID, "--since", "2h")
    assert code == 1 and "HOLE" in out and "1 hole(s)" in out

    runs = engine.backfill([replace(rule, version="v2")])
    assert [(r.backfilled, r.alerts_created, r.duplicates) for r in runs] == [(1, 0, 1)]  # its alert existed
    assert engine.backfill([rule]) == []  # nothing left
    ledger.refresh()
    after = ledger.entries(RULE_ID)
    assert [(e.start, e.end) for e in after] == [(e.start, e.end) for e in entries]
    assert after[1].outcome == "backfill"
    code, out = coverage_cli(es_url, installed, RULE_ID, "--since", "2h", "--json")
    assert code == 0 and json.loads(out)["backfilled"] == 1

    store = AlertStore(es, installed)
    store.refresh()
    assert sorted(a.hcm.match_key for a in store.search(rule_id=RULE_ID)) == sorted(ids)


def test_coverage_of_an_unknown_rule_says_so(es_url: str, installed: IndexNames) -> None:
    code, _ = coverage_cli(es_url, installed, "no-such-rule")
    assert code == 1
    code, _ = coverage_cli(es_url, installed, RULE_ID, "--since", "soon")
    assert code == 2
