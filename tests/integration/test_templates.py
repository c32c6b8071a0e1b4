"""`install` against a real node: idempotent, versioned, upgrades existing data streams."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.store import templates
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.grams import GRAM_ANALYZER, indices_with_grams
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import SCHEMA_VERSION, TemplateItem, _with_meta, build_items, install


def _metadata_version(es: Elasticsearch) -> int:
    return int(es.cluster.state(metric="version")["version"])


def test_init_twice_changes_nothing_the_second_time(es: Elasticsearch, names: IndexNames) -> None:
    first = install(es, build_items(names))
    assert {r.action for r in first} == {"created"}
    assert {r.name for r in first} >= {names.alerts, names.incidents, names.state, f"{names.prefix}-events"}
    version = _metadata_version(es)
    second = install(es, build_items(names))
    assert {r.action for r in second} == {"unchanged"}
    assert _metadata_version(es) == version, "the second install wrote to the cluster"


def _bumped(items: list[TemplateItem], prefix: str) -> list[TemplateItem]:
    """The same items with one new ECS field, as a later release would ship them."""
    out = []
    for item in items:
        if item.name == f"{prefix}@ecs-mappings":
            body = copy.deepcopy(item.body)
            body.pop("version")
            body.pop("_meta")
            body["template"]["mappings"]["properties"]["hcm"]["properties"]["risk"] = {"type": "float"}
            item = replace(item, version=SCHEMA_VERSION + 1, body=_with_meta(body, SCHEMA_VERSION + 1))
        elif item.name == f"{prefix}-events":
            body = copy.deepcopy(item.body)
            body.pop("version")
            body.pop("_meta")
            mappings = copy.deepcopy(item.mappings or {})
            mappings["properties"]["hcm"]["properties"]["risk"] = {"type": "float"}
            item = replace(
                item, version=SCHEMA_VERSION + 1, body=_with_meta(body, SCHEMA_VERSION + 1), mappings=mappings
            )
        out.append(item)
    return out


def test_changed_template_version_is_upgraded_in_place(es: Elasticsearch, names: IndexNames) -> None:
    install(es, build_items(names))
    index = names.events("syslog.upgrade")
    with BulkWriter(es, names, flush_interval=None) as w:
        w.add(index, {"@timestamp": "2026-11-25T00:00:00Z", "message": "before the upgrade"})

    newer = _bumped(build_items(names), names.prefix)
    results = {r.name: r for r in install(es, newer)}
    assert results[f"{names.prefix}@ecs-mappings"].action == "updated"
    assert results[f"{names.prefix}@ecs-mappings"].installed_version == SCHEMA_VERSION
    events = results[f"{names.prefix}-events"]
    assert events.action == "updated"
    assert f"{index}: updated in place" in events.detail
    assert results[names.alerts].action == "unchanged"

    mapping = es.indices.get_mapping(index=index)
    for backing in mapping.values():
        assert backing["mappings"]["properties"]["hcm"]["properties"]["risk"] == {"type": "float"}

    # the new release again: nothing to do; the old release afterwards: no downgrade
    assert {r.action for r in install(es, newer)} == {"unchanged"}
    old = {r.name: r.action for r in install(es, build_items(names))}
    assert old[f"{names.prefix}@ecs-mappings"] == "kept-newer"
    assert old[f"{names.prefix}-events"] == "kept-newer"


def test_hand_edited_template_is_repaired_with_force(es: Elasticsearch, names: IndexNames) -> None:
    install(es, build_items(names))
    tpl = es.indices.get_index_template(name=f"{names.prefix}-alerts")["index_templates"][0]["index_template"]
    tpl["priority"] = 5
    es.indices.put_index_template(name=f"{names.prefix}-alerts", body=tpl)
    results = {(r.kind, r.name): r.action for r in install(es, build_items(names), force=True)}
    assert results[("index_template", f"{names.prefix}-alerts")] == "updated"
    again = es.indices.get_index_template(name=f"{names.prefix}-alerts")["index_templates"][0][
        "index_template"
    ]
    assert again["priority"] == 200


def test_schema_7_upgrades_to_trigram_sub_fields(
    es: Elasticsearch, names: IndexNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster installed before `.grams` (schema 7): the event data streams roll over to backing
    indices with the trigram analyzer and sub-fields (analysis cannot change on an open index), the
    alerts index keeps mappings without `.grams` (it could not take them), and the batch knows which
    indices have them."""
    with monkeypatch.context() as old:
        old.setattr(templates, "with_grams", lambda mappings: mappings)
        old.setattr(templates, "GRAM_SETTINGS", {})
        old.setattr(templates, "SCHEMA_VERSION", 7)
        install(es, templates.build_items(names))
    index = names.events("windows.evtx")
    doc = {"@timestamp": "2026-11-25T00:00:00Z", "process": {"command_line": "whoami /all"}}
    es.index(index=index, document=doc, op_type="create", refresh=True)
    (before,) = es.indices.get_mapping(index=index)

    results = {r.name: r for r in install(es, templates.build_items(names))}
    assert results[f"{names.prefix}-events"].action == "updated"
    assert f"{index}: rolled over" in results[f"{names.prefix}-events"].detail
    assert "grams" not in json.dumps(dict(es.indices.get_mapping(index=names.alerts)))
    es.index(index=index, document=doc, op_type="create", refresh=True)
    mappings = es.indices.get_mapping(index=index)
    (after,) = set(mappings) - {before}
    assert "grams" not in json.dumps(mappings[before])
    command_line = mappings[after]["mappings"]["properties"]["process"]["properties"]["command_line"]
    assert command_line["fields"]["grams"]["analyzer"] == GRAM_ANALYZER
    assert indices_with_grams(es, [before, after]) == {after}
    found = es.count(index=index, query={"term": {"process.command_line.grams": "who"}})["count"]
    assert found == 1  # the event written after the upgrade
