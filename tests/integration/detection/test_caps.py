"""Alert caps against real Elasticsearch: a flood on one rule raises at most the cap plus one summary
alert that counts every suppressed match, and never hides another rule's alert in the same cycle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from elasticsearch import Elasticsearch

from hcm_soc.detection.engine import DetectionEngine
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.detection_state import CoverageLedger, DetectionStateStore
from hcm_soc.store.names import IndexNames
from tests.integration.detection.conftest import SSH_FAILED_RULE, Seeder, ssh_event
from tests.integration.detection.test_engine import RULE_ID, load

ROOT_LOGIN_ID = "0f5a3d2e-8c1b-4e7a-9b6d-2c4e1f3a5b70"
ROOT_LOGIN_RULE = f"""\
title: SSH root login accepted
id: {ROOT_LOGIN_ID}
status: test
logsource:
    product: linux
    service: sshd
detection:
    selection:
        message|contains: 'accepted password for root'
    condition: selection
level: high
"""

FLOOD = 5000


def test_a_flood_is_capped_with_one_summary_and_never_hides_another_rule(
    es: Elasticsearch,
    installed: IndexNames,
    seed: Seeder,
    rule_dir: Callable[..., Path],
    make_engine: Callable[..., DetectionEngine],
) -> None:
    rules = load(rule_dir("city", {"ssh.yml": SSH_FAILED_RULE, "root.yml": ROOT_LOGIN_RULE}), installed)
    # the flood: one attacking address, three user names (three group keys)
    seed(
        "system.auth",
        [ssh_event(ip="203.0.113.66", user=("admin", "oracle", "test")[i % 3]) for i in range(FLOOD)],
    )
    (quiet,) = seed("system.auth", [ssh_event("success", user="root", ip="198.51.100.5")])
    engine = make_engine(max_alerts_per_run=50, max_alerts_per_group=10)
    summary = engine.run_all(rules)  # both rules in one batch: one _msearch
    assert not summary.failed, summary.failed
    runs = {r.rule_id: r for r in summary.runs}
    assert engine.stats()["batched"] == 2

    store = AlertStore(es, installed)
    store.refresh()
    (root_alert,) = store.search(rule_id=ROOT_LOGIN_ID)
    assert root_alert.hcm.match_key == quiet

    flood = store.search(rule_id=RULE_ID, size=200)
    summaries = [a for a in flood if a.hcm.summary is not None]
    raised = [a for a in flood if a.hcm.summary is None]
    assert len(summaries) == 1 and 0 < len(raised) <= 30  # 3 keys x 10 per key, within 50 per run
    by_user: dict[str, int] = {}
    for a in raised:
        assert a.user is not None and a.user.name is not None
        by_user[a.user.name] = by_user.get(a.user.name, 0) + 1
    assert max(by_user.values()) <= 10
    s = summaries[0].hcm.summary
    assert s is not None and s.exact and s.suppressed == FLOOD - len(raised)  # every match accounted for
    top = {k.key: k.count for k in s.top_keys}  # who floods, counted over all the window's matches
    assert top["source.ip=203.0.113.66"] == FLOOD and top["user.name=admin"] == FLOOD // 3 + 1
    assert runs[RULE_ID].suppressed == FLOOD - len(raised) and runs[RULE_ID].matches == FLOOD

    # nothing silently lost: health counts them, the window is committed and in the ledger
    health = DetectionStateStore(es, installed).load(RULE_ID).health
    assert health.suppressed == FLOOD - len(raised) and health.checkpoint is not None
    ledger = CoverageLedger(es, installed)
    ledger.refresh()
    (entry,) = ledger.entries(RULE_ID)
    assert entry.suppressed == FLOOD - len(raised) and entry.end == health.checkpoint
