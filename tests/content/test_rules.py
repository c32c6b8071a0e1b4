"""Every rule shipped in `rules/` loads, validates and compiles with no problem, and carries the
metadata analysts and playbooks rely on (no Elasticsearch needed)."""

from __future__ import annotations

import re
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from hcm_soc.detection.fieldmaps.sources import find_source
from hcm_soc.detection.loader import RuleLoad, load_rules
from hcm_soc.store.names import IndexNames

RULES = Path(__file__).resolve().parents[2] / "rules"
FILES = sorted(p for p in RULES.rglob("*") if p.suffix in (".yml", ".yaml"))
_TAG = re.compile(r"^attack\.(t\d{4}(\.\d{3})?|s\d{4}|[a-z-]+)$")


@cache
def _load() -> RuleLoad:
    return load_rules([RULES])


@cache
def _compiled() -> Any:
    from hcm_soc.cli.rules import compile_rules

    return compile_rules(_load().rules, IndexNames())


def _doc(path: Path) -> dict[str, Any]:
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert len(docs) == 1, f"{path}: one rule per file"
    doc = docs[0]
    assert isinstance(doc, dict)
    return doc


def test_the_rule_folder_is_grouped_by_log_source() -> None:
    assert FILES, f"no rules in {RULES}"
    assert {p.parent.name for p in FILES} <= {"linux", "web", "network", "windows"}
    assert (RULES / "README.md").is_file()


def test_every_rule_loads_without_problems_or_warnings() -> None:
    load = _load()
    assert [str(p) for p in load.problems] == []
    assert [str(w) for w in load.warnings] == []
    assert len(load.rules) == len(FILES)
    assert {r.ruleset for r in load.rules} == {"city"}


def test_every_rule_compiles() -> None:
    compiled = _compiled()
    assert [str(p) for p in compiled.problems] == []
    assert compiled.count == len(FILES)


def test_correlations_reference_rules_shipped_with_them() -> None:
    load = _load()
    names = {r.name for r in load.rules if r.name}
    compiled = _compiled()
    for rule in load.rules:
        if rule.kind != "correlation":
            continue
        corr = compiled.correlations[rule.id]
        assert {b.rule.name for b in corr.bases} <= names
        assert corr.timespan.total_seconds() > 0 and corr.group_by


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(RULES).as_posix())
def test_rule_metadata(path: Path) -> None:
    doc = _doc(path)
    assert str(uuid.UUID(doc["id"])) == doc["id"], "id must be a lowercase UUID"
    assert doc["status"] in ("stable", "test")
    assert doc["level"] in ("informational", "low", "medium", "high", "critical")
    assert doc["author"] == "hcm-soc"
    assert len(doc["description"].strip()) > 40
    assert doc["references"] and all(str(r).startswith("https://") for r in doc["references"])
    assert doc["falsepositives"]
    tags = doc["tags"]
    assert any(re.match(r"^attack\.t\d{4}", t) for t in tags), "at least one ATT&CK technique"
    assert all(_TAG.match(t) for t in tags), tags
    if "correlation" in doc:
        assert "logsource" not in doc and "detection" not in doc
        return
    ls = doc["logsource"]
    assert find_source(ls.get("product"), ls.get("category"), ls.get("service")) is not None
    folder = path.parent.name
    expected = {"linux": "linux", "windows": "windows"}.get(folder)
    if expected:
        assert ls.get("product") == expected


def test_ids_and_names_are_unique() -> None:
    docs = [_doc(p) for p in FILES]
    ids = [d["id"] for d in docs]
    assert len(ids) == len(set(ids))
    names = [d["name"] for d in docs if "name" in d]
    assert len(names) == len(set(names))
    titles = [d["title"] for d in docs]
    assert len(titles) == len(set(titles))


def test_custom_interval_attribute_is_read() -> None:
    beacon = next(r for r in _load().rules if r.title.startswith("Possible Beaconing"))
    assert beacon.interval is not None and beacon.interval.total_seconds() == 300
    assert beacon.enabled
