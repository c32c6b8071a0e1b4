"""`hcm-soc run`: every enabled source of a collectors/ folder at once, a broken one skipped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from elasticsearch import Elasticsearch

from tests.conftest import free_port


def _count(es: Elasticsearch, index: str) -> int:
    if not es.indices.exists(index=index):
        return 0
    es.indices.refresh(index=index)
    return int(es.count(index=index)["count"])


def test_run_serves_file_and_syslog_sources_until_sigterm(
    es_url: str, es: Elasticsearch, tmp_path: Path
) -> None:
    prefix = f"run{uuid.uuid4().hex[:8]}"
    logs = tmp_path / "logs"
    logs.mkdir()
    access = logs / "access.log"
    access.write_text(
        '113.161.45.12 - - [25/Nov/2026:10:15:01 +0700] "GET /thu-tuc-hanh-chinh HTTP/1.1" 200 5123 "-" "Mozilla/5.0"\n',
        encoding="utf-8",
    )
    port = free_port()
    web_port = free_port()
    defs = tmp_path / "collectors"
    defs.mkdir()
    (defs / "portal.yml").write_text(
        f"name: portal\ntype: file\nformat: nginx\nfile:\n  paths: [{logs}/access.log*]\n  poll_interval: 0.1\n",
        encoding="utf-8",
    )
    (defs / "auth.yml").write_text(
        f"name: auth\ntype: syslog\nformat: syslog\ndataset: system.auth\nsyslog:\n  protocol: udp\n  listen: 127.0.0.1:{port}\n",
        encoding="utf-8",
    )
    (defs / "off.yml").write_text(
        "name: off\ntype: syslog\nformat: syslog\nenabled: false\n", encoding="utf-8"
    )
    (defs / "broken.yml").write_text("name: broken\ntype: tape\nformat: syslog\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCM_SOC_")}
    env.update(
        HCM_SOC_ES_URL=es_url,
        HCM_SOC_INDEX_PREFIX=prefix,
        HCM_SOC_PATHS_COLLECTORS=str(defs),
        HCM_SOC_LOCAL_ES_STATE_DIR=str(tmp_path / "state"),
        HCM_SOC_BULK_FLUSH_INTERVAL="0.2",
        HCM_SOC_WEB_PORT=str(web_port),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hcm_soc.cli.main", "run", "--report-every", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    web_index = f"{prefix}-events-nginx.access-default"
    auth_index = f"{prefix}-events-system.auth-default"
    try:
        deadline = time.monotonic() + 60
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            while time.monotonic() < deadline and _count(es, auth_index) == 0:
                udp.sendto(
                    b"<38>Nov 25 10:15:01 sotttt-web01 sshd[2211]: Failed password for root from 203.0.113.45 port 52144 ssh2",
                    ("127.0.0.1", port),
                )
                time.sleep(0.3)
        with access.open("a", encoding="utf-8") as f:  # a line written while the source runs
            f.write(
                '198.51.100.23 - - [25/Nov/2026:10:15:02 +0700] "GET /.env HTTP/1.1" 404 162 "-" "sqlmap/1.8"\n'
            )
        while time.monotonic() < deadline and _count(es, web_index) < 2:
            time.sleep(0.2)
        assert _count(es, web_index) == 2
        assert _count(es, auth_index) >= 1
        assert proc.poll() is None, "hcm-soc run exited early"
        # the console and API are served by the same process
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/health", timeout=10) as resp:
            assert resp.status == 200 and json.loads(resp.read())["elasticsearch"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "skipped:" in err and "broken.yml" in err and "type" in err
    assert "source counters" in err and "source=portal" in err and "source=auth" in err
    assert "source=off" not in err
    hits = es.search(index=auth_index, query={"term": {"source.ip": "203.0.113.45"}})["hits"]["hits"]
    assert hits[0]["_source"]["event"]["outcome"] == "failure"
    assert hits[0]["_source"]["hcm"]["source"] == "auth"
