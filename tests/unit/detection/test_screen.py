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
from hcm_soc.detection.screen import cheap_value, trigrams
from hcm_soc.store.grams import GRAM_FIELDS, gram_field
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


# -- trigram screens (GRAM_FIELDS have a `.grams` sub-field) ------------------------------------------


def _grams(rule: CompiledRule) -> str | None:
    return None if rule.screen_grams is None else rule.screen_grams["query_string"]["query"]


@pytest.mark.parametrize(
    ("value", "cased", "expected"),
    [
        ("*whoami*", False, ["who", "ami"]),  # every third trigram and the last
        ("*shadowcopy*", False, ["sha", "dow", "cop", "opy"]),
        ("*ab*", False, []),  # too short
        ("*ab?cd*", False, []),  # `?` splits the runs: none of three
        ("*abc*def*", False, ["abc", "def"]),
        ("*Invoke-Mimikatz*", True, ["inv", "oke", "-mi", "mik", "atz"]),  # cased: lower-cased
        ("*\\\\a b*", False, ["\\a ", "a b"]),  # backslash and space are characters like others
        ("*dé-ja vu*", False, ["-ja", " vu"]),  # only ASCII runs
        ("*😀😃😄*", False, []),
    ],
)
def test_trigrams_are_implied_by_the_value(value: str, cased: bool, expected: list[str]) -> None:
    sigma = SigmaString(value)
    got = trigrams(sigma, cased)
    assert got == expected
    # every trigram occurs in every string the value matches (here: the value with its wildcards
    # replaced by other text, lower-cased as `.grams` is)
    sample = value.replace("*", "xyz").replace("?", "q").lower()
    assert all(g in sample for g in got)


def test_gram_field_only_for_fields_with_grams() -> None:
    assert gram_field("process.command_line.caseless") == "process.command_line.grams"
    assert gram_field("process.command_line") == "process.command_line.grams"  # |cased
    assert gram_field("winlog.event_data.Details.caseless") == "winlog.event_data.Details.grams"
    assert gram_field("process.name.caseless") is None
    assert gram_field("winlog.event_data.Foo.caseless") is None
    assert all(gram_field(f) == f + ".grams" for f in GRAM_FIELDS)


def test_contains_gets_a_trigram_screen_and_stays_inexact(tmp_path: Path) -> None:
    rule = _compile(tmp_path, "sel:\n  CommandLine|contains: 'shadowcopy delete'\ncondition: sel")
    assert rule.screen is None  # no cheap condition at all
    assert _grams(rule) == (
        "(process.command_line.grams:sha AND process.command_line.grams:dow AND "
        "process.command_line.grams:cop AND process.command_line.grams:y\\ d AND "
        "process.command_line.grams:ele AND process.command_line.grams:ete)"
    )


def test_a_value_list_becomes_an_or_of_each_values_trigrams(tmp_path: Path) -> None:
    rule = _compile(
        tmp_path,
        "sel:\n  Image|endswith: '\\rundll32.exe'\n"
        "  CommandLine|contains:\n    - 'javascript:'\n    - 'mshtml'\n    - '.registerxll'\n"
        "condition: sel",
    )
    grams = _grams(rule)
    assert grams is not None and _screen(rule) is not None
    assert _screen(rule) in grams  # the cheap name guard stays
    f = "process.command_line.grams"
    for conj in (
        f"({f}:jav AND {f}:asc AND {f}:rip AND {f}:pt\\:)",
        f"({f}:msh AND {f}:tml)",
        f"({f}:\\.re AND {f}:gis AND {f}:ter AND {f}:xll)",
    ):
        assert conj in grams
    assert not rule.screen_exact


def test_a_value_without_trigrams_leaves_the_leaf_unscreened(tmp_path: Path) -> None:
    rule = _compile(
        tmp_path,
        "sel:\n  CommandLine|contains:\n    - 'whoami'\n    - '/c'\n    - 'net user'\ncondition: sel",
    )
    assert rule.screen is None and rule.screen_grams is None  # '/c' could be in any command line
    emoji = _compile(tmp_path, "sel:\n  CommandLine|contains: '😀'\ncondition: sel")
    assert emoji.screen_grams is None


def test_fields_without_grams_and_keywords_stay_as_before(tmp_path: Path) -> None:
    rule = _compile(tmp_path, "sel:\n  Company|contains: 'microsoft'\ncondition: sel")
    assert rule.screen is None and rule.screen_grams is None  # no .grams on process.pe.company
    keywords = _compile(tmp_path, "keywords:\n  - 'mimikatz'\ncondition: keywords")
    assert keywords.screen_grams is None  # a single keyword: every keyword field
