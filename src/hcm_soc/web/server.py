"""The console and API served in a background thread (uvicorn), for `hcm-soc run`, the demo and the
browser tests: `WebServer(app, host, port).start()` returns once the socket accepts connections,
`stop()` ends it. Signals stay with the caller: uvicorn installs its handlers only when it runs in
the main thread."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

from hcm_soc.errors import HcmSocError

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)


class WebServerError(HcmSocError):
    """The web server could not start (port in use, bad address)."""

    exit_code = 2


class WebServer:
    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        import uvicorn

        self.host, self.port = host, port
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="hcm-soc-web", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 15.0) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.started:
                log.info("web console serving", extra={"url": self.url})
                return self
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        raise WebServerError(
            f"the web console could not listen on {self.host}:{self.port} (in use, or not an address of "
            "this machine); choose another with --port or HCM_SOC_WEB_PORT"
        )

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
