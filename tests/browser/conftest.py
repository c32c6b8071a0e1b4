"""Browser tests: the demo's data in the real Elasticsearch, the console served on 127.0.0.1, and
Debian's Chromium driven by Playwright (`executable_path=/usr/bin/chromium`, never a downloaded
browser). Screenshots go to each test's temporary directory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.config import Settings, load_settings
from hcm_soc.demo import DemoReport
from hcm_soc.demo_console import DemoUser
from hcm_soc.store.names import IndexNames
from hcm_soc.web.server import WebServer
from tests.conftest import free_port

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Console:
    url: str
    settings: Settings
    names: IndexNames
    report: DemoReport
    users: dict[str, DemoUser]  # by role
    app: Any

    @property
    def services(self) -> Any:
        return self.app.state.services


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed (/usr/bin/chromium); bin/test installs it with apt as root"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def console(es: Elasticsearch, es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The demo's whole pipeline on a fresh prefix, its users, and the console serving it."""
    from hcm_soc.demo import run_demo
    from hcm_soc.demo_console import demo_users, owner_departments
    from hcm_soc.store.templates import uninstall
    from hcm_soc.web.app import create_app

    names = IndexNames(prefix=f"b{uuid.uuid4().hex[:10]}", namespace="test")
    port = free_port()
    base = load_settings(env={})
    settings = base.model_copy(
        update={
            "es": base.es.model_copy(update={"url": [es_url]}),
            "index": base.index.model_copy(update={"prefix": names.prefix, "namespace": names.namespace}),
            "paths": base.paths.model_copy(
                update={
                    "rules": [ROOT / "rules"],
                    "playbooks": ROOT / "playbooks",
                    "collectors": ROOT / "collectors",
                    "inventory": ROOT / "inventory" / "city-systems.yml",
                }
            ),
            "notify": base.notify.model_copy(update={"base_url": f"http://127.0.0.1:{port}"}),
            # the demo's events are seconds old when the admin runs a new rule on them
            "detection": base.detection.model_copy(update={"safety_margin": 1.0}),
            "local_es": base.local_es.model_copy(update={"state_dir": tmp_path_factory.mktemp("state")}),
        }
    )
    report = run_demo(settings, lambda _msg: None)
    assert report.response is not None and report.response.opened >= 3, report.response
    users = demo_users(settings, es, names, owner_departments(report.response.incident_departments))
    app = create_app(settings, es)
    server = WebServer(app, "127.0.0.1", port).start()
    try:
        yield Console(server.url, settings, names, report, {u.role: u for u in users}, app)
    finally:
        server.stop()
        if not os.environ.get("HCM_SOC_KEEP_NODE"):
            uninstall(es, names)


def login(page: Any, console: Console, role: str, next_path: str = "/") -> None:
    user = console.users[role]
    page.goto(f"{console.url}/login?next={next_path}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
