"""Fixtures of the console-rule tests: settings on the test's prefix with a folder of file rules,
a RuleWorkbench on the real Elasticsearch, and the sample rules and events they use."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.config import DetectionSettings, IndexSettings, PathSettings, Settings
from hcm_soc.detection.workbench import RuleWorkbench
from hcm_soc.store.names import IndexNames
from tests.integration.detection.conftest import SSH_FAILED_RULE, Seeder, ssh_event

__all__ = ["SSH_FAILED_RULE", "Seeder", "ssh_event"]

FILE_RULE_ID = "5b0c6e43-6a3d-4d4b-9a57-1f0d3c2a9e01"  # SSH_FAILED_RULE, kept in a rule file
CONSOLE_RULE_ID = "8e1f3a52-0c1d-4f7e-b1a2-6c9d0e4f5a77"

#: a console rule: sshd logins of the user "root" that succeeded
ROOT_LOGIN_RULE = f"""\
title: SSH login as root accepted
id: {CONSOLE_RULE_ID}
status: test
description: Someone logged in to sshd as root with a password.
author: hcm-soc tests
date: 2026-11-26
logsource:
    product: linux
    service: sshd
detection:
    selection:
        message|contains: 'accepted password for root'
    condition: selection
level: high
"""


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)  # polling a condition with a deadline, not waiting for Elasticsearch blindly


@pytest.fixture
def rules_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "ssh_failed.yml").write_text(SSH_FAILED_RULE, encoding="utf-8")
    return folder


@pytest.fixture
def settings(installed: IndexNames, rules_folder: Path) -> Settings:
    # no safety margin: seeding waits for the refresh, so a run may look right up to "now"
    return Settings(
        index=IndexSettings(prefix=installed.prefix, namespace=installed.namespace),
        paths=PathSettings(rules=[rules_folder]),
        detection=DetectionSettings(
            interval=60, jitter=0, safety_margin=0, initial_lookback=3600, lease=False
        ),
    )


@pytest.fixture
def bench(settings: Settings, es: Elasticsearch, installed: IndexNames) -> RuleWorkbench:
    return RuleWorkbench(settings, es, installed)


@pytest.fixture
def seed(es: Elasticsearch, installed: IndexNames) -> Seeder:
    return Seeder(es, installed)
