"""Rule lint without a cluster: the fields and query forms of compiled rules, the type table, the
mapping reader and the verdicts over given mappings and counts."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from hcm_soc.detection.compiler import RuleCompiler
from hcm_soc.detection.lint import FieldTypes, Leaf, RulePlan, _fits, _lint_one, _ScopeFacts, plan_rule
from hcm_soc.detection.loader import load_rules
from hcm_soc.store.names import IndexNames

KW = {"type": "keyword", "fields": {"caseless": {"type": "keyword", "normalizer": "lowercase"}}}


def plan(tmp_path: Path, detection: str, logsource: str = "product: linux\n  service: sshd") -> RulePlan:
    text = (
        "title: Unit rule\nid: 33333333-0000-4000-8000-000000000001\nstatus: test\n"
        f"logsource:\n  {logsource}\ndetection:\n{textwrap.indent(detection, '  ')}\n"
    )
    (tmp_path / "rule.yml").write_text(text, encoding="utf-8")
    load = load_rules([tmp_path])
    assert not load.problems, load.problems
    return plan_rule(RuleCompiler(IndexNames()).compile(load.rules[0]))


def leaves(p: RulePlan) -> set[tuple[str, str, bool]]:
    return {(x.field, x.form, x.scope) for x in p.leaves.values()}


def test_plan_reads_fields_and_forms_after_the_pipeline(tmp_path: Path) -> None:
    p = plan(
        tmp_path,
        "sel:\n  user.name|contains: adm\n  process.pid|gt: 5\n  source.ip|cidr: 10.0.0.0/8\n"
        "  url.path|re: '^/a[0-9]+$'\n  event.code: 4625\n"
        "f:\n  user.domain: null\ncondition: sel and not f",
    )
    assert p.source == "linux/sshd"
    assert leaves(p) == {
        ("event.module.caseless", "caseless", True),
        ("process.name.caseless", "caseless", True),
        ("user.name.caseless", "caseless", False),
        ("process.pid", "range", False),
        ("source.ip", "cidr", False),
        ("url.path", "regex", False),
        ("event.code", "number", False),
        ("user.domain", "absent", False),
    }


@pytest.mark.parametrize(
    ("form", "value", "kind", "ok"),
    [
        ("range", "gt 5", "long", True),
        ("range", "gt 5", "date", True),
        ("range", "gt 5", "keyword", False),
        ("cidr", "10.0.0.0/8", "ip", True),
        ("cidr", "10.0.0.0/8", "keyword", False),
        ("wildcard", "*x*", "keyword", True),
        ("wildcard", "*x*", "long", False),
        ("regex", "/a+/", "ip", False),
        ("caseless", "x", "keyword", True),
        ("caseless", "x", "boolean", False),
        ("term", "abc", "long", False),
        ("term", "12", "long", True),
        ("term", "10.1.2.3", "ip", True),
        ("term", "host", "ip", False),
        ("number", "5", "ip", False),
        ("number", "5", "keyword", True),
        ("bool", "true", "boolean", True),
        ("bool", "true", "long", False),
    ],
)
def test_type_table(form: Any, value: str, kind: str, ok: bool) -> None:
    status, reason = _fits(Leaf("f", form, value), kind)
    assert (status == "ok") is ok and (reason is None) is ok


def test_field_types_reads_multi_fields_aliases_flattened_and_runtime() -> None:
    types = FieldTypes(
        {
            "properties": {
                "user": {"properties": {"name": KW}},
                "who": {"type": "alias", "path": "user.name"},
                "labels": {"type": "flattened"},
                "n": {"type": "long"},
            },
            "runtime": {"day": {"type": "keyword"}},
        }
    )
    assert types.get("user.name") == "keyword" and types.get("user.name.caseless") == "keyword"
    assert types.get("who") == "keyword" and types.get("labels.any.key") == "keyword"
    assert types.get("day") == "keyword" and types.get("n") == "long"
    assert types.get("n.caseless") is None and types.get("user") is None


def mapping(**props: Any) -> FieldTypes:
    base: dict[str, Any] = {
        "event": {"properties": {"module": KW}},
        "process": {"properties": {"name": KW, "pid": {"type": "long"}}},
        "user": {"properties": {"name": KW}},
    }
    return FieldTypes({"properties": {**base, **props}})


def facts(total: int = 10, recent: int = 10, **values: int) -> _ScopeFacts:
    return _ScopeFacts(indices=[".ds-a"], total=total, recent=recent, values=dict(values))


def test_verdicts(tmp_path: Path) -> None:
    template = FieldTypes({})
    live = {".ds-a": mapping()}
    good = plan(tmp_path, "sel:\n  user.name: admin\n  process.pid|gt: 5\ncondition: sel")
    r = _lint_one(good, facts(**{"user.name": 3, "process.pid": 3}), live, template, "7d")
    assert r.status == "ok" and r.can_match

    stale = _lint_one(good, facts(**{"user.name": 3}), live, template, "7d")
    assert stale.can_match and [f.field for f in stale.warnings] == ["process.pid"]

    typo = plan(tmp_path, "sel:\n  usr.name: admin\ncondition: sel")
    dead = _lint_one(typo, facts(), live, template, "7d")
    assert not dead.can_match and [f.field for f in dead.errors] == ["usr.name.caseless"]
    unseen = _lint_one(typo, _ScopeFacts(), {}, template, "7d")  # no index yet: the field may come
    assert unseen.can_match and not unseen.errors and "at all" in unseen.warnings[0].reason

    either = plan(tmp_path, "a:\n  usr.name: x\nb:\n  user.name: x\ncondition: a or b")
    r = _lint_one(either, facts(**{"user.name": 1}), live, template, "7d")
    assert r.can_match and not r.errors and "rest can still match" in r.warnings[0].reason

    negated = plan(tmp_path, "a:\n  user.name: x\nb:\n  usr.name: x\ncondition: a and not b")
    r = _lint_one(negated, facts(**{"user.name": 1}), live, template, "7d")
    assert r.can_match and not r.errors and "never excludes any event" in r.warnings[0].reason

    split = {".ds-a": mapping(), ".ds-b": mapping(process={"properties": {"name": KW, "pid": KW}})}
    two = _ScopeFacts(
        indices=[".ds-a", ".ds-b"], total=2, recent=2, values={"user.name": 1, "process.pid": 1}
    )
    r = _lint_one(good, two, split, template, "7d")
    assert r.can_match and not r.errors
    assert [f.field for f in r.warnings] == ["process.pid"] and "1 of 2 indices" in r.warnings[0].reason


def test_correlation_verdicts(tmp_path: Path) -> None:
    from hcm_soc.detection.correlation import compile_correlation
    from hcm_soc.detection.lint import _lint_correlation

    base_text = (
        "title: Failed\nid: 33333333-0000-4000-8000-000000000002\nname: failed\nstatus: test\n"
        "logsource:\n  product: linux\n  service: sshd\ndetection:\n  sel:\n    user.name: x\n  condition: sel\n"
    )
    corr_text = (
        "title: Many\nid: 33333333-0000-4000-8000-000000000003\nstatus: test\ncorrelation:\n"
        "  type: event_count\n  rules: [failed]\n  group-by: [{field}]\n  timespan: 5m\n  condition: {{gte: 3}}\n"
    )
    live = {".ds-a": mapping(message={"type": "match_only_text"})}
    verdicts = {}
    for field in ("message", "user.name", "host.name"):
        folder = tmp_path / field
        folder.mkdir()
        (folder / "base.yml").write_text(base_text, encoding="utf-8")
        (folder / "corr.yml").write_text(corr_text.format(field=field), encoding="utf-8")
        load = load_rules([folder])
        assert not load.problems, load.problems
        base = next(r for r in load.rules if r.kind == "detection")
        compiled = RuleCompiler(IndexNames()).compile(base)
        corr = compile_correlation(
            next(r for r in load.rules if r.kind == "correlation"), {"failed": compiled}
        )
        base_result = _lint_one(plan_rule(compiled), facts(**{"user.name": 1}), live, FieldTypes({}), "7d")
        verdicts[field] = _lint_correlation(corr, {base.id: base_result}, live)
    assert not verdicts["message"].can_match and "no doc values" in verdicts["message"].errors[0].reason
    assert verdicts["user.name"].status == "ok"
    assert verdicts["host.name"].can_match and "one group (null)" in verdicts["host.name"].warnings[0].reason
