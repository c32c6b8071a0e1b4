"""Incident lifecycle and document rules without Elasticsearch: transitions, timestamps, bounds, diffs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from hcm_soc.incidents.lifecycle import CLOSED, OPEN, STATUSES, TRANSITIONS, TransitionError, apply_status
from hcm_soc.incidents.service import alert_entities, higher_level, summary_diff, with_alert
from hcm_soc.models.incident import MAX_ALERT_REFS, MAX_ENTITIES, Entities, Incident
from tests.unit.incidents.factory import T0, make_alert


def _incident(**kw: object) -> Incident:
    return Incident.model_validate(
        {"id": "INC-2026-000001", "title": "t", "created": T0, "updated": T0, **kw}
    )


ALLOWED = {
    ("new", "acknowledged"),
    ("new", "investigating"),
    ("new", "false_positive"),
    ("new", "resolved"),
    ("acknowledged", "investigating"),
    ("acknowledged", "contained"),
    ("acknowledged", "resolved"),
    ("acknowledged", "false_positive"),
    ("investigating", "contained"),
    ("investigating", "resolved"),
    ("investigating", "false_positive"),
    ("contained", "resolved"),
    ("contained", "investigating"),
    ("resolved", "investigating"),
    ("false_positive", "investigating"),
}


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_every_transition_is_allowed_exactly_as_designed(current: str, target: str) -> None:
    inc = _incident(status=current)
    if (current, target) in ALLOWED:
        assert apply_status(inc, target, now=T0).status == target  # type: ignore[arg-type]
    else:
        with pytest.raises(TransitionError, match="allowed: " + ", ".join(TRANSITIONS[current])):  # type: ignore[index]
            apply_status(inc, target, now=T0)  # type: ignore[arg-type]


def test_open_and_closed_partition_the_statuses() -> None:
    assert set(OPEN) | CLOSED == set(STATUSES) and not set(OPEN) & CLOSED


def test_moves_set_and_clear_timestamps() -> None:
    later = T0 + timedelta(hours=2)
    investigating = apply_status(_incident(), "investigating", now=T0)
    assert investigating.acknowledged_at == T0  # leaving `new` is the acknowledgement
    resolved = apply_status(investigating, "resolved", now=later)
    assert resolved.resolved_at == later and resolved.acknowledged_at == T0
    reopened = apply_status(resolved, "investigating", now=later + timedelta(hours=1))
    assert reopened.resolved_at is None and reopened.acknowledged_at == T0


def test_naive_datetimes_are_refused_and_seq_no_is_not_stored() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        _incident(created=datetime(2026, 1, 1))
    doc = _incident(seq_no=4, primary_term=1).to_document()
    assert "seq_no" not in doc and "primary_term" not in doc and doc["created"] == "2026-11-26T03:00:00Z"
    hit = {"_id": "INC-2026-000001", "_source": doc, "_seq_no": 9, "_primary_term": 2}
    back = Incident.from_hit(hit)
    assert (back.seq_no, back.primary_term) == (9, 2)
    with pytest.raises(ValidationError):
        _incident(status="closed")


def test_alert_refs_are_capped_but_every_id_is_kept() -> None:
    inc = _incident()
    for n in range(MAX_ALERT_REFS + 5):
        inc = with_alert(inc, make_alert(at=T0 + timedelta(seconds=n), src=f"10.0.{n // 250}.{n % 250}"))
    assert len(inc.alerts) == MAX_ALERT_REFS
    assert len(inc.alert_ids) == inc.alert_count == MAX_ALERT_REFS + 5
    assert len(inc.entities.ips) == MAX_ENTITIES  # 205 sources + one destination, capped
    assert inc.last_alert_at == T0 + timedelta(seconds=MAX_ALERT_REFS + 4)


def test_level_only_rises_and_group_window_only_moves_with_the_caller() -> None:
    until = T0 + timedelta(hours=1)
    inc = with_alert(_incident(level="high", group_until=until), make_alert(level="low"))
    assert inc.level == "high" and inc.group_until == until
    inc = with_alert(inc, make_alert(level="critical"), group_until=until + timedelta(hours=1))
    assert inc.level == "critical" and inc.group_until == until + timedelta(hours=1)
    assert higher_level(None, "low") == "low" and higher_level("medium", None) == "medium"


def test_alert_entities_and_merge_keep_first_seen_order() -> None:
    a = make_alert(src="1.1.1.1", dst=None, host="h1", user="u1", url="http://x/a")
    assert alert_entities(a) == Entities(ips=["1.1.1.1"], users=["u1"], hosts=["h1"], urls=["http://x/a"])
    merged = Entities(ips=["2.2.2.2", "1.1.1.1"]).merged(alert_entities(a))
    assert merged.ips == ["2.2.2.2", "1.1.1.1"] and merged.hosts == ["h1"]


def test_summary_diff_names_only_changed_fields() -> None:
    before = _incident(priority="P3", tags=["a"])
    after = before.model_copy(update={"priority": "P1", "tags": ["a", "b"], "comments": []})
    assert summary_diff(before, after) == (
        {"priority": "P3", "tags": ["a"]},
        {"priority": "P1", "tags": ["a", "b"]},
    )
    assert summary_diff(before, before.model_copy()) == (None, None)


def test_correlation_group_values_count_as_entities() -> None:
    base = make_alert(src="1.1.1.1", dst=None, host=None)
    alert = base.model_copy(
        update={
            "hcm": base.hcm.model_copy(update={"group": {"source.ip": "1.1.1.1", "user.name": "sa", "n": 3}})
        }
    )
    ent = alert_entities(alert)
    assert ent.ips == ["1.1.1.1"] and ent.users == ["sa"] and ent.hosts == []
