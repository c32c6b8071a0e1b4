"""`hcm-soc web` end to end: the command installs the templates, serves the console and the API on
the address it is given, and stops gracefully on SIGTERM; a port in use is refused with exit code 2.

The command function is mounted on a minimal Typer app here (the lead registers it in cli/main.py),
with the same AppContext the real root builds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from elasticsearch import Elasticsearch

from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import uninstall
from tests.conftest import free_port

RUNNER = """
import sys
import typer
from hcm_soc.cli.context import AppContext
from hcm_soc.cli.web import web
from hcm_soc.errors import HcmSocError

app = typer.Typer()

@app.callback()
def root(ctx: typer.Context) -> None:
    ctx.obj = AppContext()

app.command("web")(web)
try:
    app(standalone_mode=False)
except HcmSocError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
"""


@pytest.fixture
def prefix(es: Elasticsearch) -> Iterator[IndexNames]:
    names = IndexNames(prefix=f"t{uuid.uuid4().hex[:10]}", namespace="test")
    yield names
    uninstall(es, names)


def _env(es_url: str, names: IndexNames, tmp: str) -> dict[str, str]:
    return {
        **os.environ,
        "HCM_SOC_ES_URL": es_url,
        "HCM_SOC_INDEX_PREFIX": names.prefix,
        "HCM_SOC_INDEX_NAMESPACE": names.namespace,
        "HCM_SOC_LOCAL_ES_STATE_DIR": tmp,
    }


def test_web_serves_the_api_and_stops_on_sigterm(
    es: Elasticsearch, es_url: str, prefix: IndexNames, tmp_path: object
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, "web", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(es_url, prefix, str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)  # polling for the listener with a deadline
        assert health is not None, proc.stderr.read() if proc.stderr else ""
        assert health.status_code == 200 and health.json()["elasticsearch"]["status"] == "up"
        assert health.headers["x-frame-options"] == "DENY"
        assert httpx.get(f"http://127.0.0.1:{port}/api/incidents", timeout=5).status_code == 401
        assert (
            "/api/incidents" in httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()["paths"]
        )
        assert es.indices.exists(index=prefix.users)  # the command installed the templates
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM)
    assert code in (0, -signal.SIGTERM)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_web_refuses_a_port_in_use(es_url: str, prefix: IndexNames, tmp_path: object) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", RUNNER, "web", "--port", str(port)],
            env=_env(es_url, prefix, str(tmp_path)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr


def test_web_exits_3_when_elasticsearch_does_not_answer(prefix: IndexNames, tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, "web", "--port", str(free_port())],
        env=_env(f"http://127.0.0.1:{free_port()}", prefix, str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "Elasticsearch did not answer" in done.stderr
