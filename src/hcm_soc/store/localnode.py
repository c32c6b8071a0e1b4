"""The local development Elasticsearch node: build once with Maven, start, stop, status.

The node is genuine Elasticsearch (server jar and transport-netty4 module from
Maven Central) laid out by `dev/elasticsearch/pom.xml` and started by its
`DevNode` launcher in the background, bound to 127.0.0.1. Its pid, URL and
command line are recorded in `<base>/node.json`; `stop` ends exactly that
process. See docs/local-elasticsearch.md for why it is assembled this way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hcm_soc.errors import LocalNodeError

log = logging.getLogger(__name__)

MAIN_CLASS = "vn.hcmsoc.devnode.launcher.DevNode"
JVM_FLAGS = [
    "-XX:+UseG1GC",
    "-Dfile.encoding=UTF-8",
    "-Djava.awt.headless=true",
    "-Dlog4j2.formatMsgNoLookups=true",
    "-Dlog4j2.disable.jmx=true",
    "-Dio.netty.noUnsafe=true",
    "-Dio.netty.noKeySetOptimization=true",
    "-Dio.netty.recycler.maxCapacityPerThread=0",
    "-Des.networkaddress.cache.ttl=60",
    "-XX:-OmitStackTraceInFastThrow",
]


def project_root() -> Path:
    """The source checkout this package runs from (holds dev/elasticsearch/pom.xml)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "dev" / "elasticsearch" / "pom.xml").is_file():
            return parent
    raise LocalNodeError(
        "the local Elasticsearch node is built from the hcm-soc source checkout "
        "(dev/elasticsearch/pom.xml), which was not found above "
        f"{here}; run hcm-soc from its checkout, or set HCM_SOC_ES_URL to use your cluster"
    )


@dataclass(frozen=True, slots=True)
class NodeStatus:
    running: bool
    answering: bool
    url: str
    pid: int | None
    health: str | None = None


class LocalNode:
    """One local node, identified by its base directory (data, logs, node.json)."""

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int = 9200,
        cluster_name: str = "hcm-soc-dev",
        heap: str = "1g",
        root: Path | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.port = port
        self.cluster_name = cluster_name
        self.heap = heap
        self._root = root

    # -- build -----------------------------------------------------------------
    @property
    def project_dir(self) -> Path:
        root = self._root or project_root()
        return root / "dev" / "elasticsearch"

    @property
    def dist_dir(self) -> Path:
        return self.project_dir / "target" / "dist"

    def _source_stamp(self) -> str:
        h = hashlib.sha256()
        files = [self.project_dir / "pom.xml"]
        files += sorted((self.project_dir / "src").rglob("*.java"))
        files += sorted((self.project_dir / "modules").rglob("*.properties"))
        for f in files:
            h.update(f.relative_to(self.project_dir).as_posix().encode())
            h.update(f.read_bytes())
        return h.hexdigest()

    def ensure_built(self) -> Path:
        """Run Maven once (again only when the Maven project changed); return the distribution dir."""
        stamp_file = self.dist_dir / ".stamp"
        stamp = self._source_stamp()
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            return self.dist_dir
        mvn = shutil.which("mvn")
        java = shutil.which("java")
        if mvn is None or java is None:
            raise LocalNodeError(
                "building the local Elasticsearch node needs Java 17+ and Maven on PATH "
                f"(java: {java or 'missing'}, mvn: {mvn or 'missing'}); install them "
                "(Debian: apt-get install openjdk-17-jdk-headless maven) or set HCM_SOC_ES_URL"
            )
        print(
            "hcm-soc: resolving Elasticsearch from Maven Central and building the local node "
            "(first time only, about a minute)...",
            file=sys.stderr,
            flush=True,
        )
        shutil.rmtree(self.dist_dir, ignore_errors=True)
        proc = subprocess.run(
            [mvn, "-B", "-q", "-f", str(self.project_dir / "pom.xml"), "package"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise LocalNodeError(f"Maven could not build the local Elasticsearch node:\n{tail}")
        stamp_file.write_text(stamp)
        return self.dist_dir

    # -- state -----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.base_dir / "node.json"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "logs" / "node.out"

    def _read_state(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _pid_is_ours(self, pid: int) -> bool:
        """True when `pid` is alive and is our DevNode for this base directory."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return False
        args = [a.decode(errors="replace") for a in cmdline]
        return MAIN_CLASS in args and str(self.base_dir) in args

    def _recorded_pid(self) -> int | None:
        state = self._read_state()
        pid = state.get("pid") if state else None
        if isinstance(pid, int) and self._pid_is_ours(pid):
            return pid
        return None

    def health(self, timeout: float = 2.0) -> str | None:
        """Cluster health colour, or None when nothing answers at our URL."""
        try:
            with urllib.request.urlopen(f"{self.url}/_cluster/health", timeout=timeout) as resp:
                return str(json.loads(resp.read()).get("status"))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def status(self) -> NodeStatus:
        pid = self._recorded_pid()
        health = self.health()
        return NodeStatus(
            running=pid is not None,
            answering=health in ("green", "yellow"),
            url=self.url,
            pid=pid,
            health=health,
        )

    # -- start / stop ----------------------------------------------------------
    def start(self, timeout: float = 180.0) -> NodeStatus:
        """Start the node unless it already runs; wait until health is yellow or green."""
        current = self.status()
        if current.running and current.answering:
            return current
        if current.running:
            return self._wait_healthy(current.pid, timeout)
        if self.health() is not None:
            raise LocalNodeError(
                f"port {self.port} already answers as Elasticsearch but not as this hcm-soc node "
                f"({self.base_dir}); stop that server, choose HCM_SOC_LOCAL_ES_PORT, "
                "or point HCM_SOC_ES_URL at it"
            )
        dist = self.ensure_built()
        java = shutil.which("java") or "java"
        (self.base_dir / "logs").mkdir(parents=True, exist_ok=True)
        cmd = [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            *JVM_FLAGS,
            f"-Djava.io.tmpdir={self.base_dir / 'tmp'}",
            f"-Dhcm.devnode.home={dist}",
            "--module-path",
            str(dist / "lib"),
            "--add-modules",
            "ALL-MODULE-PATH",
            "-cp",
            str(dist / "launcher" / "hcm-devnode-launcher.jar"),
            MAIN_CLASS,
            "-basePath",
            str(self.base_dir),
            "-httpPort",
            str(self.port),
            "-clusterName",
            self.cluster_name,
            "-transportPort",
            f"{self.port + 100}-{self.port + 199}",
        ]
        (self.base_dir / "tmp").mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.base_dir,
            )
        state = {
            "pid": proc.pid,
            "url": self.url,
            "cluster_name": self.cluster_name,
            "started_at": time.time(),
        }
        self.state_file.write_text(json.dumps(state))
        log.info("local elasticsearch starting", extra={"pid": proc.pid, "url": self.url})
        return self._wait_healthy(proc.pid, timeout, proc)

    def _wait_healthy(
        self, pid: int | None, timeout: float, proc: subprocess.Popen[bytes] | None = None
    ) -> NodeStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise LocalNodeError(
                    f"the local Elasticsearch node exited with code {proc.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self._log_tail()}"
                )
            health = self.health()
            if health in ("green", "yellow"):
                return NodeStatus(True, True, self.url, pid, health)
            time.sleep(0.5)
        raise LocalNodeError(
            f"the local Elasticsearch node did not report yellow/green health within {timeout:.0f}s; "
            f"see {self.log_file}:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop our node (SIGTERM, then SIGKILL after `timeout`). False when it was not running."""
        pid = self._recorded_pid()
        if pid is None:
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pid_is_ours(pid):
                break
            time.sleep(0.2)
        else:
            log.warning("local elasticsearch did not stop in time; killing", extra={"pid": pid})
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self._pid_is_ours(pid):
                time.sleep(0.1)
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        return True


def local_node_from_settings(settings: object) -> LocalNode:
    """The LocalNode described by `Settings` (imported lazily to keep this module light)."""
    from hcm_soc.config import Settings

    assert isinstance(settings, Settings)
    return LocalNode(
        settings.state_dir / "elasticsearch",
        port=settings.local_es.port,
        cluster_name=settings.local_es.cluster_name,
        heap=settings.local_es.heap,
    )
