"""Checking a rule given as text (detection/rule_check.py) and the workbench's pure helpers:
problems carry "line N: key: reason", a rule without id is checked and given one on save."""

from __future__ import annotations

from hcm_soc.detection.rule_check import check_rule_text, key_path_at, line_of_key, placed
from hcm_soc.detection.workbench import with_id
from hcm_soc.store.names import IndexNames
from hcm_soc.store.rules import rule_identity, yaml_version

RULE = """\
title: Sudo to root failed
id: 0d6f6f7e-3b5a-4e8a-9d57-0b2f8f1c4a10
status: test
logsource:
    product: linux
    service: sudo
detection:
    selection:
        message|contains: 'incorrect password attempt'
    condition: selection
level: medium
"""
NAMES = IndexNames(prefix="t", namespace="unit")


def test_a_good_rule_checks_ok_with_its_query_level_and_log_source() -> None:
    c = check_rule_text(RULE, NAMES)
    assert c.check.ok and c.check.problems == []
    assert (
        c.check.rule_id == "0d6f6f7e-3b5a-4e8a-9d57-0b2f8f1c4a10" and c.check.title == "Sudo to root failed"
    )
    assert c.check.level == "medium" and c.check.kind == "detection"
    assert c.check.logsource == {"product": "linux", "category": None, "service": "sudo"}
    assert c.check.query is not None and "incorrect\\ password\\ attempt" in c.check.query
    assert c.compiled is not None and c.rule is not None and c.rule.id == c.check.rule_id


def test_missing_condition_is_placed_on_the_detection_line() -> None:
    c = check_rule_text(RULE.replace("    condition: selection\n", ""), NAMES)
    assert not c.check.ok
    assert c.check.problems == ["line 7: detection: Sigma rule must contain at least one condition"]


def test_an_undefined_search_identifier_points_at_the_condition_line() -> None:
    c = check_rule_text(RULE.replace("condition: selection", "condition: selection and other"), NAMES)
    assert c.check.problems == ["line 10: detection.condition: Detection 'other' not defined in detections"]


def test_unknown_log_source_unknown_modifier_bad_level_and_yaml_errors_are_clear() -> None:
    amiga = check_rule_text(RULE.replace("product: linux", "product: amiga"), NAMES).check.problems
    assert len(amiga) == 1 and amiga[0].startswith(
        "line 4: logsource: no hcm-soc data source for product=amiga"
    )
    modifier = check_rule_text(RULE.replace("contains", "contanes"), NAMES).check.problems
    assert modifier == ["line 9: detection.selection.message|contanes: Unknown modifier 'contanes'"]
    level = check_rule_text(RULE.replace("level: medium", "level: urgent"), NAMES).check.problems
    assert level == ["line 11: level: 'urgent' is not a valid Sigma rule level"]
    syntax = check_rule_text("title: x\ndetection: [a\n", NAMES).check.problems
    assert len(syntax) == 1 and syntax[0].startswith("line 3: invalid YAML:")


def test_empty_text_lists_and_several_documents_are_refused() -> None:
    assert check_rule_text("  \n", NAMES).check.problems == [
        "line 1: the rule is empty: write a Sigma rule in YAML"
    ]
    assert "a YAML list" in check_rule_text("- a\n", NAMES).check.problems[0]
    assert "2 YAML documents" in check_rule_text(RULE + "---\n" + RULE, NAMES).check.problems[0]


def test_a_rule_without_id_is_checked_and_noted_and_with_id_adds_it_after_the_title() -> None:
    no_id = RULE.replace("id: 0d6f6f7e-3b5a-4e8a-9d57-0b2f8f1c4a10\n", "")
    c = check_rule_text(no_id, NAMES)
    assert c.check.ok and c.check.rule_id is None and c.id_missing
    assert c.check.notes == ["the rule has no id: saving gives it a new UUID"]
    given = with_id(no_id, "11111111-1111-4111-8111-111111111111")
    assert given.splitlines()[:2] == [
        "title: Sudo to root failed",
        "id: 11111111-1111-4111-8111-111111111111",
    ]
    assert rule_identity(given) == ("11111111-1111-4111-8111-111111111111", "Sudo to root failed")
    assert with_id("status: test\n", "x").startswith("id: x\nstatus: test")


def test_key_paths_and_placement_helpers() -> None:
    assert key_path_at(RULE, 9) == "detection.selection.message|contains"
    assert key_path_at(RULE, 1) == "title"
    assert line_of_key(RULE, "detection.condition") == 10
    assert line_of_key(RULE, "detection.missing") == 7  # the parent's line
    assert placed(RULE, "the level is odd", None) == "line 11: level: the level is odd"
    assert placed(RULE, "something else", None) == "something else"
    assert yaml_version(RULE) == yaml_version(RULE) != yaml_version(RULE + "\n")
