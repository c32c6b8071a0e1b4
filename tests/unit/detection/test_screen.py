"""Rule screens (hcm_soc.detection.screen): which conditions a rule's screen keeps, drops and negates,
when it is exact, and how a Python-checked rule's candidates are narrowed. That every event a rule
matches also matches its screen is proven on the real node in
tests/integration/detection/test_screen.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sigma.types import SigmaNumber, SigmaRegularExpression, SigmaString

from hcm_soc.detection.compiler import PythonCheckedRule, RuleCompiler
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.model import CompiledRule
from hcm_soc.detection.screen import cheap_value
from hcm_soc.store.names import IndexNames
from tests.unit.detection.test_compiler import write_rule

WIN_PROC = "product: windows\ncategory: process_creation"


def _compile(tmp_path: Path, detection: str, logsource: str = WIN_PROC) -> CompiledRule:
    load = load_rules([write_rule(tmp_path, logsource, detection)])
    assert not load.problems, load.problems
    return RuleCompiler(IndexNames()).compile(load.rules[0])


def _screen(rule: CompiledRule) -> str | None:
    return None if rule.screen is None else rule.screen["query_string"]["query"]


@pytest.mark.parametrize(
    ("value", "cheap"),
    [
        (SigmaString("cmd.exe"), True),
        (SigmaString("c:\\windows\\*"), True),  # a prefix
        (SigmaString("*\\cmd.exe"), False),  # a leading wildcard walks the terms
        (SigmaString("*whoami*"), False),
        (SigmaString("who?mi"), False),
        (SigmaString("a*b"), False),
        (SigmaString("*"), False),
        (SigmaString(""), False),
        (SigmaNumber(4688), True),
        (SigmaRegularExpression("who.mi"), False),
    ],
)
def test_cheap_values(value: object, cheap: bool) -> None:
    assert cheap_value(value) is cheap


def test_executable_endswith_keeps_the_exact_name_and_drops_the_wildcards(tmp_path: Path) -> None:
    rule = _compile(
        tmp_path,
        """
        sel_img:
            Image|endswith: '\\certutil.exe'
        sel_cli:
            CommandLine|contains: '-urlcache'
        condition: all of sel_*
        """,
    )
    assert _screen(rule) == "(process.name.caseless:certutil.exe)"
    assert rule.screen_exact is False
    assert "winlog.channel" not in (_screen(rule) or "")  # the log source is every search's filter


def test_a_rule_of_exact_values_has_an_exact_screen(tmp_path: Path) -> None:
    rule = _compile(
        tmp_path,
        """
        sel:
            OriginalFileName: 'whoami.exe'
            IntegrityLevel: 'System'
        condition: sel
        """,
    )
    screen = _screen(rule)
    assert screen is not None
    assert "process.pe.original_file_name.caseless:whoami.exe" in screen
    assert "system" in screen
    assert rule.screen_exact is True


def test_or_with_a_costly_branch_has_no_screen(tmp_path: Path) -> None:
    rule = _compile(
        tmp_path,
        """
        sel_name:
            OriginalFileName: 'whoami.exe'
        sel_cli:
            CommandLine|contains: 'whoami'
        condition: 1 of sel_*
        """,
    )
    assert rule.screen is None and rule.screen_exact is False


def test_or_of_cheap_branches_is_kept_whole(tmp_path: Path) -> None:
    rule = _compile(
        tmp_path,
        """
        sel_img:
            - Image|endswith: '\\wmic.exe'
            - OriginalFileName: 'wmic.exe'
        sel_cli:
            CommandLine|contains: 'shadowcopy'
        condition: all of sel_*
        """,
    )
    screen = _screen(rule)
    assert screen is not None
    assert "process.name.caseless:wmic.exe" in screen and "original_file_name.caseless:wmic.exe" in screen
    assert " OR " in screen and "shadowcopy" not in screen


def test_negation_is_kept_only_when_exact(tmp_path: Path) -> None:
    exact_not = _compile(
        tmp_path,
        """
        sel:
            Image|endswith: '\\rundll32.exe'
        filter:
            ParentImage: 'C:\\Windows\\explorer.exe'
        condition: sel and not filter
        """,
    )
    screen = _screen(exact_not)
    assert screen is not None
    assert "(NOT (process.parent.executable.caseless:c\\:\\\\windows\\\\explorer.exe))" in screen
    costly_not = _compile(
        tmp_path,
        """
        sel:
            Image|endswith: '\\rundll32.exe'
        filter:
            CommandLine|contains: 'shell32.dll'
        condition: sel and not filter
        """,
    )
    assert _screen(costly_not) == "(process.name.caseless:rundll32.exe)"  # NOT of a costly part: dropped


def test_keywords_have_no_screen(tmp_path: Path) -> None:
    rule = _compile(tmp_path, "kw:\n    - 'mimikatz'\ncondition: kw", "product: linux\nservice: auth")
    assert rule.screen is None


def test_prefixes_numbers_and_ranges_are_cheap(tmp_path: Path) -> None:
    rule = _compile(
        tmp_path,
        """
        sel:
            DestinationPort: 4444
            DestinationIp|cidr: '10.0.0.0/8'
            Image|startswith: 'C:\\Users\\'
        condition: sel
        """,
        "product: windows\ncategory: network_connection",
    )
    screen = _screen(rule)
    assert screen is not None
    assert "destination.port:4444" in screen and "destination.ip:10.0.0.0\\/8" in screen
    assert "process.executable.caseless:c\\:\\\\users\\\\*" in screen
    assert rule.screen_exact is True


def test_python_checked_rule_candidates_keep_what_lucene_can_say(tmp_path: Path) -> None:
    rule = _compile(
        tmp_path,
        """
        sel:
            Image|endswith: '\\notepad.exe'
            CommandLine|contains: 'secret'
        ref:
            User|fieldref: ParentUser
        condition: sel and not ref
        """,
    )
    assert isinstance(rule, PythonCheckedRule)
    # the log source, then everything but the field reference (costly wildcards included)
    assert "winlog.channel" in rule.lucene
    assert "process.executable.caseless:*\\\\notepad.exe" in rule.lucene
    assert "process.command_line.caseless:*secret*" in rule.lucene
    assert "ParentUser" not in rule.lucene and "User" not in rule.lucene
    assert rule.query["query_string"]["query"] == rule.lucene


def test_python_checked_rule_with_only_a_residual_condition_keeps_its_log_source(tmp_path: Path) -> None:
    rule = _compile(tmp_path, "sel:\n    CommandLine|re: '\\bwhoami\\b'\ncondition: sel")
    assert isinstance(rule, PythonCheckedRule)
    assert "command_line" not in rule.lucene and "winlog.channel" in rule.lucene
