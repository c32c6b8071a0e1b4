"""Trigger matching: each condition kind, any/all/not, and which playbook takes an alert."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from hcm_soc.playbooks.model import Condition, Playbook
from hcm_soc.playbooks.trigger import TriggerContext, describe, matches, select_playbook
from tests.unit.playbooks.factory import make_alert, make_match

_CONDITION: TypeAdapter[Any] = TypeAdapter(Condition)


def cond(data: Any) -> Any:
    return _CONDITION.validate_python(data)


def ctx(assets: Any = (), **alert: Any) -> TriggerContext:
    return TriggerContext(alert=make_alert(**alert), assets=list(assets))


def test_rule_ids_case_insensitive() -> None:
    c = cond({"rule_ids": ["DFC56350-c768-45e3-97da-91039d49aea0", "other"]})
    assert matches(c, ctx(rule_id="dfc56350-c768-45e3-97da-91039d49aea0"))
    assert not matches(c, ctx(rule_id="29518059-6dd9-45f9-8a2c-3850f0d5a97c"))


@pytest.mark.parametrize(
    ("wanted", "tags", "expected"),
    [
        (["attack.credential_access"], ["attack.credential-access"], True),  # _ and - are one spelling
        (["attack.credential-access"], ["attack.credential_access"], True),
        (["Attack.T1110.001"], ["attack.t1110.001"], True),
        (["attack.t1110*"], ["attack.t1110.003"], True),
        (["attack.t1110*"], ["attack.t1110"], True),
        (["attack.t1110*"], ["attack.t1190"], False),
        (["attack.t1110"], ["attack.t1110.001"], False),  # exact unless a pattern
        (["attack.t1190", "attack.t1505.003"], ["attack.persistence", "attack.t1505.003"], True),
        (["attack.t1046"], [], False),
    ],
)
def test_tags(wanted: list[str], tags: list[str], expected: bool) -> None:
    assert matches(cond({"tags": wanted}), ctx(tags=tags)) is expected


@pytest.mark.parametrize(
    ("bounds", "level", "expected"),
    [
        ({"min": "medium"}, "medium", True),
        ({"min": "medium"}, "low", False),
        ({"min": "medium"}, "critical", True),
        ({"max": "low"}, "informational", True),
        ({"max": "low"}, "medium", False),
        ({"min": "low", "max": "high"}, "high", True),
        ({"min": "low", "max": "high"}, "critical", False),
        ({"min": "informational"}, None, False),  # no level: neither above nor below
    ],
)
def test_level(bounds: dict[str, str], level: str | None, expected: bool) -> None:
    assert matches(cond({"level": bounds}), ctx(level=level)) is expected


def test_level_bounds_must_make_sense() -> None:
    with pytest.raises(ValueError, match="min high is above max low"):
        cond({"level": {"min": "high", "max": "low"}})
    with pytest.raises(ValueError, match="give min, max or both"):
        cond({"level": {}})


@pytest.mark.parametrize(
    ("source", "category", "expected"),
    [
        ({"product": "linux", "service": "auth"}, "linux/auth", True),
        ({"product": "Linux"}, "linux/auth", True),
        ({"service": "sshd"}, "linux/auth", False),
        ({"product": "windows", "category": "process_creation"}, "windows/process_creation", True),
        ({"product": "windows"}, "linux/auth", False),
        ({"category": "webserver"}, "webserver", True),
        ({"product": "zeek", "service": "conn"}, "zeek/conn", True),
        ({"category": "dns"}, None, False),  # a correlation alert has no log source of its own
        ({"product": "windows"}, "webserver", False),
    ],
)
def test_log_source(source: dict[str, str], category: str | None, expected: bool) -> None:
    assert matches(cond({"log_source": source}), ctx(category=category)) is expected


def test_asset_any_matched_asset_must_fit_every_key() -> None:
    portal = make_match(asset_id="portal", sector="e_government", criticality=3, tags=["internet-facing"])
    ws = make_match(asset_id="ws", sector="other", criticality=1, sensitivity="public", department="sotc")
    c = cond({"asset": {"sector": ["e_government"], "criticality": {"min": 3}}})
    assert matches(c, ctx([ws, portal]))
    assert not matches(c, ctx([ws]))
    assert not matches(c, ctx([]))  # no matched asset: false
    # every key holds for the SAME asset: portal is e_government, ws is criticality 1
    mixed = cond({"asset": {"sector": ["e_government"], "criticality": {"max": 1}}})
    assert not matches(mixed, ctx([ws, portal]))
    assert matches(cond({"asset": {"department": ["sotc"]}}), ctx([portal, ws]))
    assert matches(cond({"asset": {"sensitivity": ["public", "secret"]}}), ctx([ws]))
    assert matches(cond({"asset": {"tags": ["Internet-Facing", "x"]}}), ctx([portal]))
    assert not matches(cond({"asset": {"tags": ["internet-facing"]}}), ctx([ws]))


def test_asset_sector_must_be_a_known_sector() -> None:
    with pytest.raises(ValueError, match="e_government"):
        cond({"asset": {"sector": ["egov"]}})


def test_source_ip_in_networks_incl_correlation_group() -> None:
    inside = cond({"source_ip": ["10.0.0.0/8", "192.168.0.0/16", "fc00::/7"]})
    assert matches(inside, ctx(source_ip="10.10.5.23"))
    assert matches(inside, ctx(source_ip="fd00::5"))
    assert not matches(inside, ctx(source_ip="203.0.113.45"))
    assert not matches(inside, ctx())
    assert matches(inside, ctx(group={"source.ip": "192.168.1.9"}))
    assert matches(cond({"source_ip": ["203.0.113.45"]}), ctx(source_ip="203.0.113.45"))
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        cond({"source_ip": ["10.0.0.0/33"]})


def test_any_all_not_always() -> None:
    high = {"level": {"min": "high"}}
    ssh = {"tags": ["attack.t1110*"]}
    a = ctx(level="high", tags=["attack.t1110.001"])
    b = ctx(level="low", tags=["attack.t1110.001"])
    assert matches(cond({"all": [high, ssh]}), a) and not matches(cond({"all": [high, ssh]}), b)
    assert matches(cond({"any": [high, ssh]}), b)
    assert not matches(cond({"any": [high, {"tags": ["x"]}]}), b)
    assert matches(cond({"not": high}), b) and not matches(cond({"not": high}), a)
    assert matches(cond({"always": True}), b)
    nested = cond({"all": [{"any": [high, {"not": {"always": True}}]}, {"not": {"not": ssh}}]})
    assert matches(nested, a) and not matches(nested, b)


def test_always_false_is_refused() -> None:
    with pytest.raises(ValueError):
        cond({"always": False})


def pb(pid: str, order: int, trigger: Any, enabled: bool = True) -> Playbook:
    return Playbook.model_validate(
        {
            "id": pid,
            "title": pid,
            "order": order,
            "enabled": enabled,
            "trigger": trigger,
            "steps": [{"notify": {"to": ["analysts"]}}],
        }
    )


def test_select_playbook_first_enabled_match_by_order_then_id() -> None:
    web = pb("web", 100, {"tags": ["attack.t1190"]})
    web_off = pb("web-early", 10, {"tags": ["attack.t1190"]}, enabled=False)
    tie = pb("a-web", 100, {"tags": ["attack.t1190"]})
    catch_all = pb("default", 1000, {"always": True})
    alert = ctx(tags=["attack.t1190"])
    assert select_playbook([catch_all, web, web_off], alert) is web
    assert select_playbook([catch_all, web, tie], alert) is tie  # same order: by id
    assert select_playbook([catch_all, web], ctx(tags=["attack.t1046"])) is catch_all
    assert select_playbook([web, web_off], ctx(tags=["attack.t1046"])) is None
    assert select_playbook([], alert) is None


def test_describe_summarises_the_tree() -> None:
    c = cond(
        {
            "all": [
                {"any": [{"rule_ids": ["a", "b", "c"]}, {"tags": ["attack.t1110*"]}]},
                {"not": {"source_ip": ["10.0.0.0/8"]}},
                {"level": {"min": "medium"}},
                {"asset": {"sector": ["e_government"], "criticality": {"min": 3}}},
                {"log_source": {"product": "windows"}},
            ]
        }
    )
    assert describe(c) == (
        "all(any(rule_ids[3], tags: attack.t1110*), not(source_ip in 10.0.0.0/8), level>=medium, "
        "asset(sector=e_government criticality 3..4), log_source product=windows)"
    )
