"""Index templates, component templates, the ingest pipeline and fixed indices: built and installed.

`install(client, items)` is idempotent and versioned: every item carries
`version` (bumped by hand when its content changes) and `_meta.hcm_soc_hash`
(a hash of its content). An item is written only when it is missing, older, or
its content differs; otherwise nothing is sent. After an index template is
upgraded, existing data streams / indices take the new mappings and dynamic
settings in place when compatible; a data stream whose mappings conflict rolls
over so that its next backing index has the new ones.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from elasticsearch import ApiError, NotFoundError

from hcm_soc.errors import TemplateError
from hcm_soc.store.grams import GRAM_SETTINGS, merge_mappings, with_grams
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger(__name__)

#: Bump when any template, mapping, setting or the pipeline changes (the hash catches edits
#: made without a bump, and hand edits made on the cluster).
SCHEMA_VERSION = 8

Kind = Literal["pipeline", "component_template", "index_template", "index"]
Action = Literal["created", "updated", "unchanged", "kept-newer"]

_STRINGS_AS_KEYWORD = {
    "strings_as_caseless_keyword": {
        "match_mapping_type": "string",
        "mapping": {
            "type": "keyword",
            "ignore_above": 8191,
            "fields": {"caseless": {"type": "keyword", "normalizer": "lowercase", "ignore_above": 8191}},
        },
    }
}


@dataclass(frozen=True, slots=True)
class TemplateItem:
    kind: Kind
    name: str
    version: int
    body: dict[str, Any]
    #: for index templates: the mappings/settings that existing targets should take on upgrade
    mappings: dict[str, Any] | None = None
    dynamic_settings: dict[str, Any] | None = None
    data_stream: bool = False
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class InstallResult:
    kind: Kind
    name: str
    action: Action
    version: int
    installed_version: int | None = None
    detail: str = ""


def _content_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _with_meta(body: dict[str, Any], version: int) -> dict[str, Any]:
    out = copy.deepcopy(body)
    h = _content_hash(body)
    out["version"] = version
    out["_meta"] = {**out.get("_meta", {}), "managed_by": "hcm-soc", "hcm_soc_hash": h}
    return out


def ecs_mappings(*, grams: bool = True) -> dict[str, Any]:
    """The events mappings (ECS and hcm-soc fields, `.caseless` sub-fields, and unless `grams` is
    False the `.grams` ones); an index created with `.grams` needs GRAM_SETTINGS (the
    `@ecs-mappings` component template carries both)."""
    text = resources.files("hcm_soc.store").joinpath("templates/ecs-mappings.json").read_text("utf-8")
    mappings: dict[str, Any] = json.loads(text)["template"]["mappings"]
    return with_grams(mappings) if grams else mappings


def build_items(names: IndexNames, *, shards: int = 1, replicas: str = "0-1") -> list[TemplateItem]:
    """Everything `hcm-soc init` installs, in dependency order."""
    p = names.prefix
    base_settings = {"index.number_of_shards": shards, "index.auto_expand_replicas": replicas}
    ecs = ecs_mappings()
    pipeline = {
        "description": "hcm-soc: stamp event.ingested with the time Elasticsearch received the event",
        "processors": [
            {
                "set": {
                    "field": "event.ingested",
                    "value": "{{{_ingest.timestamp}}}",
                    "override": True,
                    "tag": "event_ingested",
                }
            }
        ],
    }
    events_settings = {
        "template": {
            "settings": {
                **base_settings,
                "index.final_pipeline": names.ingest_pipeline,
                "index.refresh_interval": "1s",
                "index.mapping.total_fields.limit": 5000,
            }
        }
    }

    def own(*, extra_props: dict[str, Any], dynamic: bool | str = True) -> dict[str, Any]:
        return {
            "dynamic": dynamic,
            "date_detection": False,
            "dynamic_templates": [_STRINGS_AS_KEYWORD],
            "properties": {"@timestamp": {"type": "date"}, **extra_props},
        }

    kw = {"type": "keyword", "ignore_above": 1024}
    date = {"type": "date"}
    deadletter_mappings = {
        "dynamic": False,
        "properties": {
            "@timestamp": date,
            "error": {"properties": {"type": kw, "message": {"type": "text"}, "status": {"type": "integer"}}},
            "event": {
                "properties": {
                    "original": {"type": "keyword", "index": False, "doc_values": False},
                    "dataset": kw,
                    "ingested": date,
                }
            },
            "hcm": {"properties": {"target_index": kw, "doc_id": kw, "source": kw}},
        },
    }
    audit_mappings = own(
        extra_props={
            "event": {"properties": {"action": kw, "outcome": kw, "ingested": date}},
            "user": {"properties": {"name": kw}},
            "message": {"type": "text"},
            "details": {"type": "flattened"},
        }
    )
    count = {"type": "long"}
    # one document per rule (`rule-state:<rule id>`): checkpoint + health, see store/detection_state.py
    state_mappings = own(
        extra_props={
            "type": kw,
            "updated": date,
            "details": {"type": "flattened"},
            "rule": {
                "properties": {"id": kw, "name": kw, "ruleset": kw, "kind": kw, "version": kw, "path": kw}
            },
            "checkpoint": date,
            "health": {
                "properties": {
                    **{f: date for f in ("last_run_start", "last_run_end", "last_success", "last_error_at")},
                    **{
                        f: date
                        for f in ("window_start", "window_end", "next_retry", "last_gap_at", "coverage_start")
                    },
                    **{
                        f: count
                        for f in (
                            "duration_ms",
                            "events_examined",
                            "matches",
                            "alerts_created",
                            "duplicates_skipped",
                            "runs",
                            "failures",
                            "consecutive_failures",
                            "gaps_detected",
                            "suppressed",
                            "suppressed_total",
                        )
                    },
                    "status": kw,
                    "last_error": {"type": "text"},
                    "last_gap": {"type": "text"},
                    "version": kw,
                    "previous_version": kw,
                }
            },
            # the coverage ledger: one document per evaluated window (`coverage:<rule>:<start>-<end>`)
            "coverage": {
                "properties": {
                    "start": date,
                    "end": date,
                    "duration_ms": count,
                    "run_id": kw,
                    "engine_id": kw,
                    "outcome": kw,
                    "matches": count,
                    "alerts": count,
                    "suppressed": count,
                }
            },
            # the engine lease (`lease:<name>`), see store/lease.py
            "lease": {
                "properties": {
                    "name": kw,
                    "holder": kw,
                    "acquired": date,
                    "renewed": date,
                    "expires": date,
                    "takeovers": count,
                }
            },
        },
    )
    # the notice outbox (notify/outbox.py): one document per notice, updated with each attempt
    notice_mappings = own(
        extra_props={
            **{f: date for f in ("created", "updated", "next_attempt", "sent_at", "expires")},
            **{f: kw for f in ("id", "incident_id", "status", "kind", "channel", "recipient", "step")},
            "attempts": count,
            "last_error": {"type": "text"},
            "context": {"type": "flattened"},
            "subject": {"type": "text"},
        }
    )
    # web users, sessions and API tokens (store/users.py): one document per user / session / token
    users_mappings = own(
        extra_props={
            **{f: date for f in ("created", "updated", "expires", "last_login", "last_used", "last_seen")},
            "departments": kw,
        }
    )
    # rules written in the console (store/rules.py): the Sigma YAML, enabled or not, who and when
    rules_mappings = own(
        extra_props={
            **{f: date for f in ("created", "updated")},
            "id": kw,
            "title": kw,
            "yaml": {"type": "text", "index": False},
            "enabled": {"type": "boolean"},
        }
    )
    alert_incident_extra = {
        "hcm": {
            "properties": {
                "status": kw,
                "severity": kw,
                "priority": kw,
                "assignee": kw,
                "created": date,
                "updated": date,
                "rule": {"properties": {"id": kw, "title": kw, "level": kw, "version": kw}},
            }
        }
    }
    # alerts: what ECS lacks (see models/alert.py); dates mapped because date_detection is off
    alert_extra = merge_mappings(
        alert_incident_extra,
        {
            "hcm": {
                "properties": {
                    "match_key": kw,
                    # set once by the playbook runner: the incident the alert joined, or none
                    "incident": kw,
                    "playbook": kw,
                    "triage": {"properties": {"at": date, "outcome": kw, "reason": {"type": "text"}}},
                    "events": {"properties": {"index": kw, "id": kw}},
                    "events_total": count,
                    "count": count,
                    "group": {"type": "flattened"},
                    "first_seen": date,
                    "last_seen": date,
                    "window": {"properties": {"start": date, "end": date}},
                    "rule": {"properties": {"status": kw, "kind": kw, "tags": kw}},
                    # a summary alert: matches over the caps, counted instead of raised
                    "summary": {
                        "properties": {
                            "suppressed": count,
                            "exact": {"type": "boolean"},
                            "max_alerts_per_run": count,
                            "max_alerts_per_group": count,
                            "top_keys": {"properties": {"key": kw, "count": count}},
                        }
                    },
                }
            }
        },
    )
    # incidents (models/incident.py): every date sorted or ranged on is a date; the timeline's
    # before/after values are free-form, so the timeline is stored but not indexed (bounded mapping)
    text_kw = {"type": "text", "fields": {"keyword": kw}}
    incident_mappings = own(
        dynamic=False,
        extra_props={
            **{
                f: kw
                for f in (
                    "id",
                    "status",
                    "priority",
                    "level",
                    "assignee",
                    "queue",
                    "group_key",
                    "playbook",
                    "alert_ids",
                    "rule_ids",
                    "tags",
                )
            },
            **{
                f: date
                for f in (
                    "created",
                    "updated",
                    "acknowledged_at",
                    "resolved_at",
                    "group_until",
                    "last_alert_at",
                )
            },
            "title": text_kw,
            "description": {"type": "text"},
            "alert_count": count,
            "escalation_level": {"type": "integer"},
            "sla": {
                "properties": {
                    "acknowledge_by": date,
                    "resolve_by": date,
                    "acknowledge_minutes": {"type": "integer"},
                    "resolve_minutes": {"type": "integer"},
                }
            },
            "assets": {
                "properties": {
                    "id": kw,
                    "name": text_kw,
                    "department": kw,
                    "department_name": text_kw,
                    "sector": kw,
                    "criticality": {"type": "integer"},
                    "owners": kw,
                }
            },
            "alerts": {
                "properties": {"id": kw, "rule_id": kw, "rule_title": text_kw, "level": kw, "timestamp": date}
            },
            "entities": {"properties": {"ips": kw, "users": kw, "hosts": kw, "urls": kw}},
            "comments": {"properties": {"at": date, "author": kw, "text": {"type": "text"}}},
            "timeline": {"type": "object", "enabled": False},
        },
    )
    items: list[TemplateItem] = [
        TemplateItem("pipeline", names.ingest_pipeline, SCHEMA_VERSION, _with_meta(pipeline, SCHEMA_VERSION)),
        TemplateItem(
            "component_template",
            f"{p}@ecs-mappings",
            SCHEMA_VERSION,
            _with_meta({"template": {"mappings": ecs, "settings": GRAM_SETTINGS}}, SCHEMA_VERSION),
        ),
        TemplateItem(
            "component_template",
            f"{p}@events-settings",
            SCHEMA_VERSION,
            _with_meta(events_settings, SCHEMA_VERSION),
        ),
    ]

    def index_template(
        name: str,
        pattern: str,
        *,
        mappings: dict[str, Any] | None,
        composed_of: list[str] | None = None,
        settings: dict[str, Any] | None = None,
        data_stream: bool,
        effective_mappings: dict[str, Any],
        dynamic_settings: dict[str, Any],
    ) -> TemplateItem:
        body: dict[str, Any] = {"index_patterns": [pattern], "priority": 200, "template": {}}
        if composed_of:
            body["composed_of"] = composed_of
        if mappings is not None:
            body["template"]["mappings"] = mappings
        if settings is not None:
            body["template"]["settings"] = settings
        if data_stream:
            body["data_stream"] = {}
        return TemplateItem(
            "index_template",
            name,
            SCHEMA_VERSION,
            _with_meta(body, SCHEMA_VERSION),
            mappings=effective_mappings,
            dynamic_settings=dynamic_settings,
            data_stream=data_stream,
            pattern=pattern,
        )

    alert_mappings = merge_mappings(ecs_mappings(grams=False), own(extra_props=alert_extra))
    events_dyn = {
        k: v for k, v in events_settings["template"]["settings"].items() if k != "index.number_of_shards"
    }
    plain_dyn = {"index.auto_expand_replicas": replicas}
    items += [
        index_template(
            f"{p}-events",
            f"{p}-events-*",
            mappings=None,
            composed_of=[f"{p}@ecs-mappings", f"{p}@events-settings"],
            data_stream=True,
            effective_mappings=ecs,
            dynamic_settings=events_dyn,
        ),
        # the ECS mappings without `.grams` (alerts are not searched by rules): the alerts index,
        # created once, could not take the trigram analyzer on upgrade (analysis is fixed at creation)
        index_template(
            f"{p}-alerts",
            names.alerts,
            mappings=alert_mappings,
            settings=base_settings,
            data_stream=False,
            effective_mappings=alert_mappings,
            dynamic_settings=plain_dyn,
        ),
        index_template(
            f"{p}-incidents",
            names.incidents,
            mappings=incident_mappings,
            settings=base_settings,
            data_stream=False,
            effective_mappings=incident_mappings,
            dynamic_settings=plain_dyn,
        ),
        index_template(
            f"{p}-notices",
            names.notices,
            mappings=notice_mappings,
            settings=base_settings,
            data_stream=False,
            effective_mappings=notice_mappings,
            dynamic_settings=plain_dyn,
        ),
        index_template(
            f"{p}-users",
            names.users,
            mappings=users_mappings,
            settings=base_settings,
            data_stream=False,
            effective_mappings=users_mappings,
            dynamic_settings=plain_dyn,
        ),
        index_template(
            f"{p}-rules",
            names.rules,
            mappings=rules_mappings,
            settings=base_settings,
            data_stream=False,
            effective_mappings=rules_mappings,
            dynamic_settings=plain_dyn,
        ),
        index_template(
            f"{p}-state",
            names.state,
            mappings=state_mappings,
            settings=base_settings,
            data_stream=False,
            effective_mappings=state_mappings,
            dynamic_settings=plain_dyn,
        ),
        index_template(
            f"{p}-audit",
            f"{p}-audit-*",
            mappings=audit_mappings,
            settings=base_settings,
            data_stream=True,
            effective_mappings=audit_mappings,
            dynamic_settings=plain_dyn,
        ),
        index_template(
            f"{p}-deadletter",
            f"{p}-deadletter-*",
            mappings=deadletter_mappings,
            settings=base_settings,
            data_stream=True,
            effective_mappings=deadletter_mappings,
            dynamic_settings=plain_dyn,
        ),
    ]
    for index in (names.alerts, names.incidents, names.notices, names.users, names.rules, names.state):
        items.append(TemplateItem("index", index, SCHEMA_VERSION, {}))
    return items


def _installed(client: Elasticsearch, item: TemplateItem) -> dict[str, Any] | None:
    try:
        if item.kind == "pipeline":
            return dict(client.ingest.get_pipeline(id=item.name)[item.name])
        if item.kind == "component_template":
            resp = client.cluster.get_component_template(name=item.name)
            return dict(resp["component_templates"][0]["component_template"])
        if item.kind == "index_template":
            resp = client.indices.get_index_template(name=item.name)
            return dict(resp["index_templates"][0]["index_template"])
    except NotFoundError:
        return None
    raise AssertionError(item.kind)


def _put(client: Elasticsearch, item: TemplateItem) -> None:
    if item.kind == "pipeline":
        client.ingest.put_pipeline(id=item.name, body=item.body)
    elif item.kind == "component_template":
        client.cluster.put_component_template(name=item.name, body=item.body)
    elif item.kind == "index_template":
        client.indices.put_index_template(name=item.name, body=item.body)


def _apply_to_existing(client: Elasticsearch, item: TemplateItem) -> str:
    """Push upgraded mappings/settings onto indices and data streams the template already made."""
    assert item.pattern is not None
    resolved = client.indices.resolve_index(name=item.pattern, expand_wildcards="all")
    notes: list[str] = []
    targets = (
        [ds["name"] for ds in resolved.get("data_streams", [])]
        if item.data_stream
        else [ix["name"] for ix in resolved.get("indices", []) if not ix["name"].startswith(".")]
    )
    for target in targets:
        try:
            if item.mappings:
                client.indices.put_mapping(
                    index=target, body=item.mappings, write_index_only=item.data_stream
                )
            if item.dynamic_settings:
                client.indices.put_settings(index=target, body={"index": _undot(item.dynamic_settings)})
            notes.append(f"{target}: updated in place")
        except ApiError as e:
            if not item.data_stream:
                raise TemplateError(
                    f"index {target} cannot take the mappings of template {item.name} v{item.version}: "
                    f"{e.message}; reindex it into a new index or delete it"
                ) from e
            client.indices.rollover(alias=target)
            notes.append(f"{target}: rolled over (mappings conflict: {e.message})")
    return "; ".join(notes)


def _undot(settings: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("index."): v for k, v in settings.items()}


def install(client: Elasticsearch, items: list[TemplateItem], *, force: bool = False) -> list[InstallResult]:
    """Install `items` in order; return what happened to each. Writes nothing when all are
    current. The check compares versions and the content hash hcm-soc stored, so an edit
    made by hand on the cluster is not seen: `force=True` rewrites every item.

    Consecutive items of one kind do not depend on each other (index templates name component
    templates installed before them; indices match templates installed before them), so each such
    run is sent concurrently: Elasticsearch batches the cluster-state updates, which makes an
    install several times faster on a busy cluster than one item after the other."""
    results: list[InstallResult] = []
    phase: list[TemplateItem] = []

    def flush() -> None:
        if len(phase) == 1:
            results.append(_install_one(client, phase[0], force))
        elif phase:
            with ThreadPoolExecutor(max_workers=min(8, len(phase))) as pool:
                results.extend(pool.map(lambda it: _install_one(client, it, force), phase))
        phase.clear()

    for item in items:
        if phase and phase[-1].kind != item.kind:
            flush()
        phase.append(item)
    flush()
    return results


def _install_one(client: Elasticsearch, item: TemplateItem, force: bool) -> InstallResult:
    if item.kind == "index":
        if client.indices.exists(index=item.name):
            return InstallResult(item.kind, item.name, "unchanged", item.version)
        try:
            client.indices.create(index=item.name)
            return InstallResult(item.kind, item.name, "created", item.version)
        except ApiError as e:
            if e.error != "resource_already_exists_exception":
                raise TemplateError(f"could not create index {item.name}: {e.message}") from e
            return InstallResult(item.kind, item.name, "unchanged", item.version)
    current = _installed(client, item)
    cur_version = current.get("version") if current else None
    cur_hash = (current.get("_meta") or {}).get("hcm_soc_hash") if current else None
    want_hash = item.body["_meta"]["hcm_soc_hash"]
    if not force and current is not None and isinstance(cur_version, int) and cur_version > item.version:
        return InstallResult(
            item.kind,
            item.name,
            "kept-newer",
            item.version,
            cur_version,
            "a newer hcm-soc installed it; not downgraded",
        )
    if not force and current is not None and cur_version == item.version and cur_hash == want_hash:
        return InstallResult(item.kind, item.name, "unchanged", item.version, cur_version)
    try:
        _put(client, item)
    except ApiError as e:
        raise TemplateError(f"could not install {item.kind} {item.name} v{item.version}: {e.message}") from e
    detail = ""
    if current is not None and item.kind == "index_template":
        detail = _apply_to_existing(client, item)
    action: Action = "created" if current is None else "updated"
    log.info("template %s", action, extra={"kind": item.kind, "item": item.name, "version": item.version})
    return InstallResult(item.kind, item.name, action, item.version, cur_version, detail)


def uninstall(client: Elasticsearch, names: IndexNames) -> None:
    """Remove everything stored under `names.prefix`: data streams, indices, templates, pipeline.

    Best effort: a node without the data-streams module (the local development
    node) cannot delete data streams; their backing indices other than the write
    index are deleted, the write index is closed, the streams and their templates stay."""
    p = names.prefix
    try:
        client.indices.delete_data_stream(name=f"{p}-*")
    except ApiError as e:
        log.debug("data streams not deleted", extra={"prefix": p, "error": str(e)})
    resolved = client.indices.resolve_index(name=f"{p}-*", expand_wildcards="all")
    write_indices = {
        ds["backing_indices"][-1] for ds in resolved.get("data_streams", []) if ds["backing_indices"]
    }
    if write_indices:
        # the stream could not be deleted, so neither can its write index: close it, which frees
        # its shards (closed indices do not count against cluster.max_shards_per_node)
        try:
            client.indices.close(index=",".join(sorted(write_indices)), expand_wildcards="all")
        except ApiError as e:
            log.debug("write indices not closed", extra={"prefix": p, "error": str(e)})
    doomed = [ix["name"] for ix in resolved.get("indices", []) if ix["name"] not in write_indices]
    # one request (one cluster-state update) for all of them; one by one only if that is refused
    try:
        if doomed:
            client.indices.delete(index=",".join(doomed), ignore_unavailable=True, expand_wildcards="all")
    except ApiError:
        for name in doomed:
            try:
                client.indices.delete(index=name)
            except ApiError as e:
                log.debug("index not deleted", extra={"index": name, "error": str(e)})
    for call in (
        lambda: client.indices.delete_index_template(name=f"{p}-*"),
        lambda: client.cluster.delete_component_template(name=f"{p}@*"),
        lambda: client.ingest.delete_pipeline(id=f"{p}-*"),
    ):
        try:
            call()
        except ApiError as e:
            log.debug("uninstall step skipped", extra={"prefix": p, "error": str(e)})
