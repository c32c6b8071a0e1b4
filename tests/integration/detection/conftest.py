"""Shared fixtures of the detection integration tests: seeding events, writing rules, building engines.

Events go into the real data streams `<prefix>-events-<dataset>-<namespace>` through the
real final ingest pipeline (which stamps `event.ingested`), with `refresh=wait_for`, so
that everything seeded is searchable when the seeding call returns.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.config import DetectionSettings
from hcm_soc.detection.engine import Clock, DetectionEngine, Evaluator, evaluate, utc_now
from hcm_soc.store.names import IndexNames


@dataclass
class Seeder:
    """Index crafted ECS events; returns their `_id`s (given, or random)."""

    es: Elasticsearch
    names: IndexNames

    def __call__(self, dataset: str, docs: list[dict[str, Any]], ids: list[str] | None = None) -> list[str]:
        ids = ids or [uuid.uuid4().hex for _ in docs]
        index = self.names.events(dataset)
        ops: list[dict[str, Any]] = []
        for doc_id, doc in zip(ids, docs, strict=True):
            body = {"@timestamp": datetime.now(UTC).isoformat(), **doc}
            body.setdefault("event", {}).setdefault("dataset", dataset)
            ops += [{"create": {"_index": index, "_id": doc_id}}, body]
        resp = self.es.bulk(operations=ops, refresh="wait_for")
        assert not resp["errors"], [i for i in resp["items"] if i["create"].get("error")]
        return ids


def ssh_event(
    outcome: str = "failure",
    *,
    host: str = "so-tttt-web01",
    user: str = "admin",
    ip: str = "203.0.113.7",
    program: str = "sshd",
    timestamp: str | None = None,
) -> dict[str, Any]:
    """An sshd login event shaped as the syslog parser writes it (event.module system)."""
    verb = "Failed password" if outcome == "failure" else "Accepted password"
    doc: dict[str, Any] = {
        "event": {
            "module": "system",
            "dataset": "system.auth",
            "kind": "event",
            "category": ["authentication"],
            "action": "ssh_login",
            "outcome": outcome,
        },
        "host": {"name": host, "hostname": host},
        "process": {"name": program, "pid": 4242},
        "user": {"name": user},
        "source": {"ip": ip, "address": ip, "port": 52100},
        "message": f"{verb} for {user} from {ip} port 52100 ssh2",
    }
    if timestamp:
        doc["@timestamp"] = timestamp
    return doc


SSH_FAILED_RULE = """\
title: SSH failed password
id: 5b0c6e43-6a3d-4d4b-9a57-1f0d3c2a9e01
status: test
description: A password login to sshd failed.
references:
    - https://attack.mitre.org/techniques/T1110/
author: hcm-soc tests
date: 2026-11-26
tags:
    - attack.credential_access
    - attack.t1110.001
logsource:
    product: linux
    service: sshd
detection:
    selection:
        message|contains: 'failed password'
    condition: selection
level: medium
"""


@pytest.fixture
def seed(es: Elasticsearch, installed: IndexNames) -> Seeder:
    return Seeder(es, installed)


@pytest.fixture
def rule_dir(tmp_path: Path) -> Callable[..., Path]:
    """`rule_dir(name, {file: yaml_text})` -> a folder of rule files (its name is the ruleset)."""

    def make(name: str, files: dict[str, str]) -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        for file, text in files.items():
            (folder / file).write_text(textwrap.dedent(text), encoding="utf-8")
        return folder

    return make


@pytest.fixture
def make_engine(es: Elasticsearch, installed: IndexNames) -> Callable[..., DetectionEngine]:
    """A DetectionEngine on the test's prefix; settings default to a 60 s interval, no safety margin
    (seeding waits for the refresh) and a one-hour first lookback."""

    def make(*, now: Clock = utc_now, evaluator: Evaluator = evaluate, **settings: Any) -> DetectionEngine:
        values: dict[str, Any] = {"interval": 60, "safety_margin": 0, "initial_lookback": 3600, "jitter": 0}
        values.update(settings)
        return DetectionEngine(es, installed, DetectionSettings(**values), now=now, evaluator=evaluator)

    return make
