"""The playbook models: durations, step shapes and defaults, priority matrix, SLA, recipients,
group-key templates (sandboxed) and the JSON Schema of a playbook file."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from hcm_soc.playbooks.model import (
    DEFAULT_MATRIX,
    GroupStep,
    NoticeActions,
    Playbook,
    SetStep,
    format_duration,
    parse_duration,
    playbook_json_schema,
    template_context,
)
from tests.unit.playbooks.factory import make_alert


def playbook(steps: list[Any], trigger: Any = None, **extra: Any) -> Playbook:
    return Playbook.model_validate(
        {"id": "t", "title": "Thử", "trigger": trigger or {"always": True}, "steps": steps, **extra}
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("4h", 14400),
        ("3d", 259200),
        ("1w", 604800),
        ("90", 90),
        (90, 90),
        (1.5, 1.5),
        (" 2h ", 7200),
        ("0.5h", 1800),
    ],
)
def test_parse_duration(text: Any, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["1 hour", "h", "", "-5m", "0", 0, True, "5x", None, [5]])
def test_parse_duration_refuses(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1800, "30m"), (86400, "1d"), (90, "90s"), (7200, "2h"), (1209600, "2w"), (1.5, "1.5s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_steps_one_key_mapping_bare_kind_and_default_ids() -> None:
    p = playbook(
        [
            "enrich",
            {"group": {"key": "{{ rule.id }}"}},
            {"notify": {"to": ["analysts"]}},
            {"notify": {"to": ["owner"], "id": "tell-owner"}},
        ]
    )
    assert [(s.kind, s.id) for s in p.steps] == [
        ("enrich", "enrich-1"),
        ("group", "group-2"),
        ("notify", "notify-3"),
        ("notify", "tell-owner"),
    ]
    group = p.steps[1]
    assert isinstance(group, GroupStep) and group.window == timedelta(hours=1)


def test_step_id_and_when_may_sit_next_to_the_kind() -> None:
    p = playbook([{"notify": {"to": ["analysts"]}, "id": "n", "when": {"level": {"min": "high"}}}])
    step = p.steps[0]
    assert step.id == "n"
    assert step.when is not None


def test_duplicate_step_ids_and_two_group_steps_are_refused() -> None:
    with pytest.raises(ValidationError, match="step id 'x' is used by steps 1 and 2"):
        playbook([{"enrich": {"id": "x"}}, {"notify": {"to": ["analysts"], "id": "x"}}])
    with pytest.raises(ValidationError, match="at most one group step"):
        playbook([{"group": {"key": "a"}}, {"group": {"key": "b"}}])


def test_models_are_frozen_and_forbid_unknown_keys() -> None:
    p = playbook(["enrich"])
    with pytest.raises(ValidationError):
        p.order = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        playbook(["enrich"], colour="red")


@pytest.mark.parametrize(
    ("level", "criticality", "expected"),
    [
        ("critical", 1, "P2"),
        ("critical", 4, "P1"),
        ("high", 1, "P3"),
        ("high", 3, "P1"),
        ("medium", 2, "P3"),
        ("medium", 4, "P2"),
        ("low", 4, "P3"),
        ("informational", 4, "P4"),
        ("high", None, "P2"),
        (None, 3, "P3"),
    ],
)
def test_priority_from_the_default_matrix(level: str | None, criticality: int | None, expected: str) -> None:
    step = SetStep(priority="matrix")
    # no matched asset → default_criticality 2; no level → low
    assert step.priority_for(level, criticality) == expected


def test_matrix_rows_override_the_default_level_by_level() -> None:
    step = SetStep.model_validate({"priority": "matrix", "matrix": {"high": ["P4", "P4", "P4", "P1"]}})
    assert step.priority_for("high", 3) == "P4"
    assert step.priority_for("high", 4) == "P1"
    assert step.priority_for("critical", 1) == DEFAULT_MATRIX["critical"][0]
    assert SetStep(priority="P2").priority_for("informational", 1) == "P2"
    assert SetStep().priority_for("critical", 4) is None


def test_matrix_needs_four_columns_and_priority_matrix() -> None:
    with pytest.raises(ValidationError, match="at least 4"):
        SetStep.model_validate({"priority": "matrix", "matrix": {"high": ["P1"]}})
    with pytest.raises(ValidationError, match="only used with priority: matrix"):
        SetStep.model_validate({"priority": "P1", "matrix": {"high": ["P1", "P1", "P1", "P1"]}})


def test_sla_flat_or_by_priority() -> None:
    flat = SetStep.model_validate({"sla": {"acknowledge": "30m", "resolve": "1d"}})
    assert flat.sla is not None
    times = flat.sla.for_priority("P3")
    assert (
        times is not None
        and times.acknowledge == timedelta(minutes=30)
        and times.resolve == timedelta(days=1)
    )
    by = SetStep.model_validate({"sla": {"by_priority": {"P1": {"acknowledge": "15m", "resolve": "4h"}}}})
    assert by.sla is not None
    p1 = by.sla.for_priority("P1")
    assert p1 is not None and p1.acknowledge == timedelta(minutes=15)
    assert by.sla.for_priority("P4") is None
    with pytest.raises(ValidationError, match="not both"):
        SetStep.model_validate({"sla": {"acknowledge": "1h", "by_priority": {"P1": {"acknowledge": "1m"}}}})
    with pytest.raises(ValidationError, match="give acknowledge"):
        SetStep.model_validate({"sla": {}})


@pytest.mark.parametrize(
    ("channel", "to", "ok"),
    [
        ("email", ["owner", "analysts", "technical", "escalation"], True),
        ("email", ["soc@ttattt.example.vn"], True),
        ("email", ["bob"], False),
        ("email", ["http://x.example/hook"], False),
        ("webhook", ["https://ticket.example.vn/api"], True),
        ("webhook", ["soc@ttattt.example.vn"], False),
    ],
)
def test_notify_recipients(channel: str, to: list[str], ok: bool) -> None:
    data = {"notify": {"channel": channel, "to": to}}
    if ok:
        assert playbook([data]).steps[0].to == to  # type: ignore[union-attr]
    else:
        with pytest.raises(ValidationError, match="neither a recipient group"):
            playbook([data])


def test_notify_template_names_are_the_shipped_ones() -> None:
    with pytest.raises(ValidationError, match="incident_opened"):
        playbook([{"notify": {"to": ["analysts"], "template": "opened"}}])


def test_actions_per_language_fall_back_to_the_other() -> None:
    a = NoticeActions(vi=["Chặn IP"], en=[])
    assert a.for_language("en") == ["Chặn IP"]
    assert NoticeActions(vi=["a"], en=["b"]).for_language("en") == ["b"]
    with pytest.raises(ValidationError, match="vi and/or en"):
        NoticeActions()


def test_escalate_after_and_levels() -> None:
    p = playbook([{"escalate": {}}, {"close": {"when_quiet": "3d"}}])
    esc, close = p.steps
    assert esc.after == "acknowledge_sla" and esc.to == ["escalation"] and esc.template == "escalation"  # type: ignore[union-attr]
    assert close.when_quiet == timedelta(days=3) and close.status == "resolved"  # type: ignore[union-attr]
    timed = playbook([{"escalate": {"after": "45m", "repeat": "1h", "max_levels": 3}}]).steps[0]
    assert timed.after == timedelta(minutes=45)  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="needs repeat"):
        playbook([{"escalate": {"max_levels": 2}}])


def test_group_key_renders_over_the_alert_and_asset_missing_is_empty() -> None:
    step = GroupStep(key="{{ rule.id }}:{{ host.name | default(source.ip) }}:{{ asset.id }}")
    with_host = make_alert(rule_id="r-1", host="web01", source_ip="203.0.113.5")
    no_host = make_alert(rule_id="r-1", source_ip="203.0.113.5")
    assert step.render_key(template_context(with_host.to_document(), {"id": "portal"})) == "r-1:web01:portal"
    assert step.render_key(template_context(no_host.to_document())) == "r-1:203.0.113.5:"
    nothing = GroupStep(key="{{ user.name.first }}|{{ process.executable }}")
    assert nothing.render_key(template_context(no_host.to_document())) == "|"


def test_template_context_has_alert_id_asset_and_department() -> None:
    alert = make_alert(rule_id="r-2", source_ip="10.10.5.23")
    step = GroupStep(key="{{ id }}|{{ alert.rule.id }}|{{ asset.sector }}|{{ department.id }}")
    context = template_context(
        alert.to_document(), {"sector": "other"}, department={"id": "sotaichinh"}, alert_id=alert.id
    )
    assert step.render_key(context) == f"{alert.id}|r-2|other|sotaichinh"
    assert step.render_key(template_context(alert.to_document())) == "|r-2||"


def test_group_key_templates_are_sandboxed() -> None:
    step = GroupStep(key="{{ rule.__class__.__mro__ }}{{ ''.__class__.__subclasses__ }}")
    assert step.render_key(template_context(make_alert().to_document())) == ""


@pytest.mark.parametrize("key", ["{{ rule.id ", "{% if %}", "{{ rule.id | no_such_filter }}"])
def test_group_key_that_does_not_compile_is_a_validation_error(key: str) -> None:
    with pytest.raises(ValidationError, match="template does not compile"):
        GroupStep(key=key)


def test_json_dump_spells_durations_and_not_as_written() -> None:
    p = playbook([{"group": {"key": "k", "window": "90m"}}], trigger={"not": {"always": True}})
    doc = p.model_dump(mode="json")
    assert doc["steps"][0]["window"] == "90m"
    assert doc["trigger"] == {"not": {"always": True}}
    assert Playbook.model_validate(doc) == p


def test_json_schema_describes_the_file_format() -> None:
    schema = playbook_json_schema()
    assert "source" not in schema["properties"] and "trigger" in schema["required"]
    variants = schema["properties"]["steps"]["items"]["oneOf"]
    kinds = [next(iter(v["required"])) for v in variants if v.get("type") == "object"]
    assert kinds == ["enrich", "group", "set", "notify", "webhook", "escalate", "close"]
    assert "kind" not in schema["$defs"]["NotifyStep"]["properties"]
    assert schema["$defs"]["NotCondition"]["required"] == ["not"]
