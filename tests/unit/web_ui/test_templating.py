"""Display helpers of the console: local time, SLA time left, the SLA that matters, the server-drawn
chart, sample-event parsing and autoescaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hcm_soc.models.incident import Incident, Sla
from hcm_soc.web.pages.admin import parse_samples
from hcm_soc.web.pages.overview import hour_chart, open_counts
from hcm_soc.web.templating import is_overdue, local_time, sla_due, templates, time_left

NOW = datetime(2026, 11, 26, 7, 5, tzinfo=UTC)  # 14:05 in Ho Chi Minh City


def incident(**kw: object) -> Incident:
    base: dict[str, object] = {"id": "INC-2026-000001", "title": "x", "created": NOW, "updated": NOW}
    return Incident.model_validate({**base, **kw})


def test_local_time() -> None:
    assert local_time(NOW) == "26/11/2026 14:05"
    assert local_time("2026-11-26T07:05:09Z", seconds=True) == "26/11/2026 14:05:09"
    assert local_time(None) == "—"
    assert local_time("not a date") == "—"


def test_time_left_and_overdue() -> None:
    assert time_left(NOW + timedelta(minutes=12), NOW, "vi") == "còn 12 phút"
    assert time_left(NOW - timedelta(minutes=5), NOW, "vi") == "quá hạn 5 phút"
    assert time_left(NOW + timedelta(hours=2, minutes=5), NOW, "vi") == "còn 2 giờ 5 phút"
    assert time_left(NOW + timedelta(days=3), NOW, "en") == "3 d left"
    assert time_left(NOW - timedelta(minutes=5), NOW, "en") == "overdue by 5 min"
    assert time_left(None, NOW, "vi") == "—"


def test_the_sla_that_matters() -> None:
    sla = Sla(acknowledge_by=NOW - timedelta(minutes=1), resolve_by=NOW + timedelta(hours=4))
    new = incident(sla=sla)
    assert sla_due(new) == sla.acknowledge_by and is_overdue(new, NOW)
    working = incident(sla=sla, status="investigating")
    assert sla_due(working) == sla.resolve_by and not is_overdue(working, NOW)
    closed = incident(sla=sla, status="resolved")
    assert sla_due(closed) is None and not is_overdue(closed, NOW)


def test_hour_chart_scales_to_the_peak() -> None:
    hours = [(NOW - timedelta(hours=23 - i), c) for i, c in enumerate([0] * 22 + [5, 10])]
    chart = hour_chart(hours)
    assert chart.total == 15 and len(chart.bars) == 24
    assert chart.bars[-1].h == chart.base - 20  # the peak uses the full height
    assert chart.bars[-2].h == (chart.base - 20) / 2
    assert chart.bars[0].h == 0 and chart.bars[0].tick is not None


def test_open_counts() -> None:
    a = {"id": "a", "name": "A", "department": "d1", "sector": "health"}
    b = {"id": "b", "name": "B", "department": "d2", "sector": "e-gov"}
    incs = [
        incident(priority="P1", assets=[a, b]),
        incident(priority="P1", assets=[a]),
        incident(priority="P3"),
    ]
    by_priority, by_sector = open_counts(incs)
    assert by_priority == [("P1", 2), ("P2", 0), ("P3", 1), ("P4", 0)]
    assert by_sector == [("health", 2), ("e-gov", 1), (None, 1)]


def test_parse_samples() -> None:
    events, problems = parse_samples('{"a": 1}\n\n[1]\n{bad\n{"b": 2}', "en")
    assert events == [{"a": 1}, {"b": 2}]
    assert problems[0] == "line 3: expected a JSON object"
    assert problems[1].startswith("line 4: not valid JSON")


def test_autoescape_is_on() -> None:
    out = templates.env.from_string("{{ v }}").render(v="<script>alert(1)</script>")
    assert out == "&lt;script&gt;alert(1)&lt;/script&gt;"
