"""Loading playbook files: every problem with file:line: key: reason; one bad file never stops the
others; duplicate ids across files. The broken files in tests/data/playbooks mark the line of their
one problem with `# expect: <text of the message>`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hcm_soc.playbooks.loader import PlaybookError, load_playbooks, parse_playbook, validate

DATA = Path(__file__).resolve().parents[2] / "data" / "playbooks"
BROKEN = sorted(DATA.glob("broken-*.yml"))
_EXPECT = re.compile(r"#\s*expect:\s*(.+)$")


def expectation(path: Path) -> tuple[int, str]:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if m := _EXPECT.search(line):
            return n, m.group(1).strip()
    raise AssertionError(f"{path} has no `# expect:` marker")


def test_the_data_has_each_kind_of_broken_playbook() -> None:
    names = {p.stem for p in BROKEN}
    assert {
        "broken-yaml-syntax",
        "broken-unknown-step",
        "broken-unknown-key",
        "broken-duration",
        "broken-level",
        "broken-template",
    } <= names


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_each_broken_file_has_one_problem_at_its_line(path: Path) -> None:
    line, text = expectation(path)
    problems = validate([path])
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert problem.location.file == str(path)
    assert problem.location.line == line
    assert text in problem.message
    assert str(problem).startswith(f"{path}:{line}: ")


def test_key_paths_name_the_place_in_the_file() -> None:
    keys = {Path(p.location.file).stem: p.location.key for p in validate(BROKEN)}
    assert keys["broken-unknown-key"] == "steps[0].notify.chanel"
    assert keys["broken-unknown-step"] == "steps[1].notfy"
    assert keys["broken-duration"] == "steps[0].group.window"
    assert keys["broken-level"] == "trigger.any[1].level.min"
    assert keys["broken-template"] == "steps[0].group.key"
    assert keys["broken-yaml-syntax"] is None


def test_unknown_key_lists_the_allowed_ones() -> None:
    (problem,) = validate([DATA / "broken-unknown-key.yml"])
    assert "allowed: id, when, channel, to, template, language, actions" in problem.message


def test_a_folder_loads_the_good_files_and_reports_the_bad_ones() -> None:
    loaded = load_playbooks([DATA])
    assert [p.id for p in loaded.playbooks] == ["test-dup", "test-web"]  # sorted by (order, id)
    bad_files = {Path(p.location.file).name for p in loaded.problems}
    assert bad_files == {p.name for p in BROKEN} | {"dup-b.yml"}
    assert len(loaded.files) == len(BROKEN) + 3
    web = loaded.get("test-web")
    assert web is not None and web.source == str(DATA / "valid-web.yml") and web.line == 1
    with pytest.raises(PlaybookError, match=r"7 playbook problem\(s\)"):
        loaded.raise_for_problems()


def test_duplicate_id_names_both_files_and_keeps_the_first() -> None:
    loaded = load_playbooks([DATA / "dup-a.yml", DATA / "dup-b.yml"])
    assert [(p.id, Path(p.source).name) for p in loaded.playbooks] == [("test-dup", "dup-a.yml")]
    (problem,) = loaded.problems
    assert problem.location.file.endswith("dup-b.yml") and problem.location.line == 1
    assert problem.location.key == "id"
    assert "dup-a.yml" in problem.message and "duplicate playbook id 'test-dup'" in problem.message


def test_the_same_file_given_twice_loads_once(tmp_path: Path) -> None:
    loaded = load_playbooks([DATA / "valid-web.yml", DATA / "valid-web.yml", DATA / "valid-web.yml"])
    assert [p.id for p in loaded.playbooks] == ["test-web"] and not loaded.problems


def test_missing_path_is_a_problem_and_the_rest_loads(tmp_path: Path) -> None:
    loaded = load_playbooks([tmp_path / "nope", DATA / "valid-web.yml"])
    assert [p.id for p in loaded.playbooks] == ["test-web"]
    (problem,) = loaded.problems
    assert "no such file or folder" in problem.message


def test_empty_folder_is_no_playbooks_and_no_problem(tmp_path: Path) -> None:
    loaded = load_playbooks([tmp_path])
    assert loaded.playbooks == [] and loaded.problems == [] and loaded.files == []


def problems_of(text: str) -> list[str]:
    playbook, problems = parse_playbook(text, "p.yml")
    assert playbook is None
    return [str(p) for p in problems]


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    text = """\
id: Bad Id
title: t
trigger:
  any:
    - {rule_ids: [a], tags: [b]}
    - rule_id: [a]
    - level: 3
steps:
  - group: 5
  - close
  - {notify: {to: [analysts]}, set: {}}
  - set: {priority: P9, sla: {acknowledge: 1x}}
  - escalate: {max_levels: 3}
foo: 1
"""
    assert problems_of(text) == [
        "p.yml:1: id: string should match pattern '^[a-z0-9][a-z0-9-]*$'; got 'Bad Id'",
        "p.yml:5: trigger.any[0]: a condition has exactly one key, got 2: rule_ids, tags; "
        "combine several with `all: [...]` or `any: [...]`",
        "p.yml:6: trigger.any[1]: unknown condition 'rule_id' (did you mean 'rule_ids'?); conditions: "
        "any, all, not, rule_ids, tags, level, log_source, asset, source_ip, always",
        "p.yml:7: trigger.any[2].level: expected a mapping (key: value); got 3",
        "p.yml:9: steps[0].group: the settings of a step are a mapping (e.g. `notify: {to: [analysts]}`), got 5",
        "p.yml:10: steps[1].close.when_quiet: required key is missing",
        "p.yml:11: steps[2]: a step is a one-key mapping naming its kind "
        "(enrich, group, set, notify, webhook, escalate, close); got keys: notify, set",
        "p.yml:12: steps[3].set.priority: expected 'matrix', 'P1', 'P2', 'P3' or 'P4'; got 'P9'",
        "p.yml:12: steps[3].set.sla.acknowledge: expected a duration like 30s, 15m, 4h or 3d (or seconds), got '1x'",
        "p.yml:13: steps[4].escalate: max_levels above 1 needs repeat (the time between two levels, e.g. 1h)",
        "p.yml:14: foo: unknown key; allowed: id, title, title_en, description, enabled, order, trigger, steps",
    ]


def test_missing_top_level_keys_point_at_the_document() -> None:
    assert problems_of("id: a\nsteps: [enrich]\n") == [
        "p.yml:1: title: required key is missing",
        "p.yml:1: trigger: required key is missing",
    ]


def test_sibling_when_is_located_next_to_the_kind() -> None:
    text = "id: a\ntitle: t\ntrigger: {always: true}\nsteps:\n  - notify:\n      to: [analysts]\n    when:\n      level: {mn: high}\n"
    assert problems_of(text) == [
        "p.yml:8: steps[0].notify.when.level.mn: unknown key (did you mean 'min'?); allowed: min, max"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "p.yml:1: empty file"),
        ("- a\n", "p.yml:1: a playbook file is one mapping"),
        ("id: a\n---\nid: b\n", "p.yml:2: YAML syntax error: expected a single document"),
        (
            "id: a\ntitle: t\ntitle: u\ntrigger: {always: true}\nsteps: [enrich]\n",
            "p.yml:3: title: key given twice (first at line 2)",
        ),
        (
            "id: a\ntitle: t\ntrigger: {always: true}\nsteps: [enrich]\nsource: x\n",
            "p.yml:5: source: is set by the loader",
        ),
        (
            "id: a\ntitle: t\ntrigger: {always: true}\nsteps:\n  - notify:\n      to: [analysts]\n"
            "      actions: {vi: [Chặn: IP]}\n",
            "p.yml:7: steps[0].notify.actions.vi[0]: expected text, got a mapping",
        ),
    ],
)
def test_file_level_problems(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yml"
    bad.write_bytes("title: Tây Ninh é\n".encode("latin-1"))
    (problem,) = validate([bad])
    assert problem.location.file == str(bad) and "cannot read the file" in problem.message
