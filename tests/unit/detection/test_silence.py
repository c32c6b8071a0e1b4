"""The silent-source check's judgement of one source and its alert, from crafted aggregation buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from hcm_soc.detection.silence import RULE_ID, SilenceParams, SilentSourceCheck, SourceState, source_state
from hcm_soc.store.names import IndexNames

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HOUR = 3_600_000


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def bucket(times: list[datetime], host: str | None = "web01", dataset: str = "system.auth") -> dict[str, Any]:
    """A composite bucket as Elasticsearch answers it for events ingested at `times`."""
    hours = sorted({ms(t) // HOUR * HOUR for t in times})
    return {
        "key": {"dataset": dataset, "host": host},
        "doc_count": len(times),
        "first": {"value": float(ms(min(times)))},
        "last": {"value": float(ms(max(times)))},
        "active": {"buckets": [{"key": h, "doc_count": 1} for h in hours]},
        "latest": {"hits": {"hits": [{"_index": ".ds-x", "_id": "last"}]}},
    }


def series(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    out = [start]
    while out[-1] + step <= end:
        out.append(out[-1] + step)
    return out


def test_steady_source_that_stops_is_silent_after_the_floor() -> None:
    times = series(NOW - timedelta(hours=24), NOW - timedelta(minutes=20), timedelta(minutes=1))
    state = source_state(bucket(times), NOW, SilenceParams())
    assert state is not None
    assert state.mean_gap == timedelta(minutes=1) and state.longest_gap == timedelta(0)
    assert state.threshold == timedelta(minutes=15) and state.silent
    early = source_state(bucket(times), NOW - timedelta(minutes=10), SilenceParams())
    assert early is not None and not early.silent  # 10 minutes after its last event: not yet


def test_sparse_source_is_judged_by_its_own_rate() -> None:
    times = series(NOW - timedelta(days=3), NOW - timedelta(hours=1), timedelta(hours=6))
    state = source_state(bucket(times), NOW, SilenceParams())
    assert state is not None and not state.silent
    assert state.mean_gap == timedelta(hours=6) and state.threshold == timedelta(hours=18)
    late = source_state(bucket(times), NOW + timedelta(hours=18), SilenceParams())
    assert late is not None and late.silent


def test_a_source_that_sleeps_at_night_is_not_silent_at_night() -> None:
    days = [NOW.replace(hour=0) - timedelta(days=d) for d in (1, 2, 3)]
    times = [
        t for d in days for t in series(d + timedelta(hours=8), d + timedelta(hours=18), timedelta(minutes=2))
    ]
    night = days[0] + timedelta(hours=30)  # 12 hours after its last event, as every night
    state = source_state(bucket(times), night, SilenceParams())
    assert state is not None and state.longest_gap == timedelta(hours=13)
    assert state.threshold == timedelta(hours=13) and not state.silent


def test_too_few_events_are_not_judged() -> None:
    times = [NOW - timedelta(hours=5 - i) for i in range(4)]
    assert source_state(bucket(times), NOW, SilenceParams()) is None
    assert source_state(bucket(times), NOW, SilenceParams(min_events=4)) is not None


def test_a_one_shot_import_has_no_rate_to_judge() -> None:
    times = series(
        NOW - timedelta(hours=3), NOW - timedelta(hours=3) + timedelta(minutes=5), timedelta(seconds=1)
    )
    assert source_state(bucket(times), NOW, SilenceParams()) is None
    assert source_state(bucket(times), NOW, SilenceParams(min_history=timedelta(minutes=1))) is not None


def test_params_from_settings() -> None:
    from hcm_soc.config import load_settings

    assert SilenceParams.from_settings(load_settings(env={})) == SilenceParams()


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="bucket"):
        SilenceParams(bucket=timedelta(days=8))
    with pytest.raises(ValueError, match="min_events"):
        SilenceParams(min_events=1)


def state(host: str | None, last: datetime, blind: tuple[str, ...] = ()) -> SourceState:
    return SourceState(
        dataset="system.auth",
        host=host,
        events=100,
        first_seen=last - timedelta(days=1),
        last_seen=last,
        mean_gap=timedelta(minutes=1),
        longest_gap=timedelta(0),
        threshold=timedelta(minutes=15),
        silent_for=NOW - last,
        last_event=(".ds-x", "e1"),
        blind_rules=blind,
    )


def test_alert_id_depends_on_source_and_silence_start_only() -> None:
    check = SilentSourceCheck(cast(Any, None), IndexNames(prefix="u"))
    last = NOW - timedelta(hours=1)
    a = check.alert(state("web01", last, ("r1",)), NOW)
    b = check.alert(state("web01", last, ("r1", "r2")), NOW + timedelta(minutes=30))
    assert a.id == b.id  # checked again during the same silence
    assert check.alert(state("web02", last), NOW).id != a.id
    assert check.alert(state("web01", last + timedelta(hours=2)), NOW).id != a.id  # a new silence
    assert check.alert(state(None, last), NOW).id != a.id
    doc = a.to_document()
    assert doc["rule"]["id"] == RULE_ID and doc["rule"]["ruleset"] == "built-in"
    assert doc["host"]["name"] == "web01" and doc["hcm"]["group"]["blind_rules"] == ["r1"]
    assert doc["hcm"]["window"]["start"].startswith("2026-11-26T11:00:00")
    assert "1 rule(s) now blind: r1" in a.message
    assert "no enabled rule reads it" in check.alert(state("web01", last), NOW).message
