"""Loading rules: every problem reported with file, line, rule and reason; one bad rule never
stops the others; filters, correlations, custom attributes, rulesets."""

from __future__ import annotations

import os
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from hcm_soc.detection.loader import load_rules, parse_interval, ruleset_of

GOOD_ID = "5f1c6d0e-9a51-4c1e-8d1a-0d3c1f0a0001"


def rule_text(
    rid: str | None = None, *, title: str = "Whoami run", extra: str = "", detection: str = ""
) -> str:
    rid = rid or str(uuid.uuid4())
    detection = detection or "sel:\n    Image|endswith: '\\whoami.exe'\n  condition: sel"
    return (
        f"title: {title}\nid: {rid}\nstatus: test\nlevel: medium\n"
        "logsource:\n  product: windows\n  category: process_creation\n"
        f"detection:\n  {detection}\n{extra}"
    )


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), "utf-8")
    return path


def test_good_rule_is_loaded_with_its_metadata(tmp_path: Path) -> None:
    write(
        tmp_path,
        "r.yml",
        rule_text(
            GOOD_ID, extra="tags:\n  - attack.discovery\n  - attack.t1033\nreferences:\n  - https://x/y\n"
        ),
    )
    load = load_rules([tmp_path])
    assert load.problems == []
    (rule,) = load.rules
    assert (rule.id, rule.title, rule.kind, rule.level, rule.status) == (
        GOOD_ID,
        "Whoami run",
        "detection",
        "medium",
        "test",
    )
    assert (rule.product, rule.category, rule.service) == ("windows", "process_creation", None)
    assert rule.tags == ("attack.discovery", "attack.t1033")
    assert rule.references == ("https://x/y",)
    assert rule.enabled and rule.interval is None
    assert rule.ruleset == tmp_path.name


def test_broken_yaml_is_reported_with_its_line_and_others_still_load(tmp_path: Path) -> None:
    write(tmp_path, "a_good.yml", rule_text(GOOD_ID))
    write(tmp_path, "b_broken.yml", "title: x\nid: 1\ndetection:\n  sel: [unclosed\n  condition: sel\n")
    load = load_rules([tmp_path])
    assert [r.id for r in load.rules] == [GOOD_ID]
    (problem,) = load.problems
    assert problem.path.name == "b_broken.yml"
    assert "invalid YAML" in problem.message
    assert problem.line == 5


def test_missing_fields_are_problems_naming_the_rule(tmp_path: Path) -> None:
    rid = str(uuid.uuid4())
    write(tmp_path, "no_detection.yml", f"title: No detection\nid: {rid}\nlogsource:\n  product: windows\n")
    write(
        tmp_path,
        "no_logsource.yml",
        rule_text(str(uuid.uuid4()), title="No logsource").replace(
            "logsource:\n  product: windows\n  category: process_creation\n", ""
        ),
    )
    load = load_rules([tmp_path])
    assert load.rules == []
    by_file = {p.path.name: p for p in load.problems}
    assert by_file["no_detection.yml"].rule_id == rid
    assert by_file["no_detection.yml"].title == "No detection"
    assert "detection" in by_file["no_detection.yml"].message.lower()
    assert "log source" in by_file["no_logsource.yml"].message.lower()


def test_unknown_modifier_is_reported_with_the_line_of_the_field(tmp_path: Path) -> None:
    text = rule_text(detection="sel:\n    Image|endswiht: x.exe\n  condition: sel")
    path = write(tmp_path, "bad_mod.yml", text)
    load = load_rules([path])
    (problem,) = load.problems
    assert "endswiht" in problem.message
    assert problem.line == text.splitlines().index("    Image|endswiht: x.exe") + 1
    assert str(problem).startswith(f"{path}:{problem.line}: ")


def test_duplicate_ids_across_files_keep_the_first_and_report_the_second(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", rule_text(GOOD_ID, title="First"))
    write(tmp_path, "sub/b.yml", rule_text(GOOD_ID, title="Second"))
    load = load_rules([tmp_path])
    assert [r.title for r in load.rules] == ["First"]
    (problem,) = load.problems
    assert (
        problem.path.name == "b.yml" and "duplicate rule id" in problem.message and "a.yml" in problem.message
    )
    assert problem.rule_id == GOOD_ID


def test_filter_naming_an_unknown_rule_is_a_problem_and_known_ones_apply(tmp_path: Path) -> None:
    write(tmp_path, "rule.yml", rule_text(GOOD_ID))
    write(
        tmp_path,
        "filter.yml",
        f"""\
        title: Known admins
        id: {uuid.uuid4()}
        logsource:
          product: windows
          category: process_creation
        filter:
          rules:
            - {GOOD_ID}
            - does_not_exist
          selection:
            User: ADMIN
          condition: not selection
        """,
    )
    load = load_rules([tmp_path])
    assert [r.id for r in load.rules] == [GOOD_ID]
    (problem,) = load.problems
    assert "does_not_exist" in problem.message and problem.path.name == "filter.yml"
    assert problem.line is not None
    # the filter was applied to the rule it names: its condition now excludes the selection
    condition = load.rules[0].sigma.detection.condition[0]
    assert "and" in condition and "selection" in condition


def test_filter_whose_log_source_does_not_cover_the_rule_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path, "rule.yml", rule_text(GOOD_ID))
    write(
        tmp_path,
        "filter.yml",
        f"title: f\nid: {uuid.uuid4()}\nlogsource:\n  category: webserver\n"
        f"filter:\n  rules: [{GOOD_ID}]\n  sel:\n    cs-method: GET\n  condition: not sel\n",
    )
    load = load_rules([tmp_path])
    (problem,) = load.problems
    assert "log source" in problem.message and "category=webserver" in problem.message


def test_correlation_is_resolved_or_reported(tmp_path: Path) -> None:
    write(tmp_path, "base.yml", rule_text(GOOD_ID, extra="name: whoami_run\n"))
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    corr = "title: {t}\nid: {i}\ncorrelation:\n  type: event_count\n  rules: [{r}]\n  group-by: [Computer]\n  timespan: 5m\n  condition:\n    gte: 3\n"
    write(tmp_path, "corr_ok.yml", corr.format(t="Many whoami", i=good, r="whoami_run"))
    write(tmp_path, "corr_bad.yml", corr.format(t="Missing base", i=bad, r="no_such_rule"))
    load = load_rules([tmp_path])
    assert {r.id: r.kind for r in load.rules} == {GOOD_ID: "detection", good: "correlation"}
    (problem,) = load.problems
    assert problem.rule_id == bad and "no_such_rule" in problem.message


def test_hcm_soc_custom_attribute(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", rule_text(GOOD_ID, extra="hcm_soc:\n  interval: 5m\n  enabled: false\n"))
    write(tmp_path, "b.yml", rule_text(title="Bad interval", extra="hcm_soc:\n  interval: soon\n"))
    write(tmp_path, "c.yml", rule_text(title="Bad key", extra="hcm_soc:\n  intervall: 5m\n"))
    load = load_rules([tmp_path])
    (rule,) = load.rules
    assert rule.interval == timedelta(minutes=5) and rule.enabled is False
    messages = sorted(p.message for p in load.problems)
    assert len(messages) == 2
    assert "intervall" in messages[0] and "interval 'soon'" in messages[1]


def test_validator_findings_warn_or_stop_the_rule(tmp_path: Path) -> None:
    # a duplicated tag is a style finding: the rule loads, with a warning
    write(tmp_path, "a.yml", rule_text(GOOD_ID, extra="tags:\n  - attack.t1033\n  - attack.t1033\n"))
    load = load_rules([tmp_path])
    assert [r.id for r in load.rules] == [GOOD_ID]
    assert any("duplicate_tag" in w.message for w in load.warnings)
    # a rule without an id cannot be scheduled (checkpoints and alert ids use it)
    write(tmp_path, "b.yml", rule_text().replace("id: ", "x-id: "))
    load = load_rules([tmp_path])
    assert [p.path.name for p in load.problems] == ["b.yml"]
    assert "no id" in load.problems[0].message or "identifier" in load.problems[0].message.lower()


def test_missing_path_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    load = load_rules([tmp_path / "nowhere"])
    assert load.rules == [] and "no such file" in load.problems[0].message


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), (90, 90)]
)
def test_parse_interval(text: str | int, seconds: int) -> None:
    assert parse_interval(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["0m", "-5m", "5 minutes", True, ""])
def test_parse_interval_refuses(text: str | bool) -> None:
    with pytest.raises(ValueError):
        parse_interval(text)


def test_ruleset_names(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "rules").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    assert ruleset_of(project / "rules") == "city"
    (tmp_path / "sigmahq" / "rules").mkdir(parents=True)
    assert ruleset_of(tmp_path / "sigmahq" / "rules") == "sigmahq"
    (tmp_path / "vendor-x").mkdir()
    assert ruleset_of(tmp_path / "vendor-x") == "vendor-x"


def test_sigmahq_corpus_loads_without_errors() -> None:
    checkout = Path(os.environ.get("HCM_SOC_SIGMAHQ_DIR", "/work/shared/corpus/sigmahq"))
    corpus = checkout / "rules" if (checkout / "rules").is_dir() else checkout
    if not (corpus / "windows").is_dir():
        pytest.skip(f"SigmaHQ corpus not found at {checkout} (set HCM_SOC_SIGMAHQ_DIR to a SigmaHQ checkout)")
    load = load_rules([corpus / "windows" / "process_creation"])
    assert len(load.rules) > 1000
    assert load.problems == []
    assert {r.ruleset for r in load.rules} == {"process_creation"}
