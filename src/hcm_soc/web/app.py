"""The app factory: `create_app(settings, client)` builds the console and the REST API as one
FastAPI application, and `serve` runs it with uvicorn in the foreground (`hcm-soc web`).

Callers install the index templates first (`hcm-soc web` does). What the app holds:
`app.state.services` (WebServices), security headers on every response, the error mapping of
`web.errors`, `/static` (vendored htmx, styles), and the routers: login/logout and `/api/me`
(web.auth), the REST API under `/api`, `/metrics`, and the console pages (web.pages).
The interactive docs (/docs, /redoc) are off: they load scripts from a CDN, which the CSP and an
offline network both refuse; `/openapi.json` describes the API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from hcm_soc import __version__
from hcm_soc.config import Settings
from hcm_soc.web.errors import install_error_handlers
from hcm_soc.web.headers import SecurityHeadersMiddleware
from hcm_soc.web.services import build_services, utcnow

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger("hcm_soc.web")

STATIC_DIR = Path(__file__).parent / "static"

DESCRIPTION = """The REST API of hcm-soc, the security monitoring platform of Ho Chi Minh City.

Authenticate with an API token (`Authorization: Bearer hcm_…`, from `hcm-soc users token` or
`POST /api/users/{username}/tokens`) or a console session (cookie `hcm_session`; state-changing
requests then need the `X-CSRF-Token` header from `GET /api/me`). Errors are
`{"error": {"code": "...", "message": "..."}}`. See docs/api.md."""


def create_app(
    settings: Settings, client: Elasticsearch, *, clock: Callable[[], datetime] = utcnow
) -> FastAPI:
    from hcm_soc.web import pages
    from hcm_soc.web.api import metrics_router
    from hcm_soc.web.api import router as api_router
    from hcm_soc.web.auth.routes import router as auth_router

    services = build_services(settings, client, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            services.close()  # flush what REST ingest buffered

    app = FastAPI(
        title="hcm-soc",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.started = time.time()
    app.add_middleware(SecurityHeadersMiddleware)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(auth_router)
    app.include_router(api_router, prefix="/api")
    app.include_router(metrics_router)
    app.include_router(pages.router)
    return app


def serve(settings: Settings, client: Elasticsearch, *, host: str, port: int) -> None:
    """Serve the console and the API until interrupted (Ctrl-C / SIGTERM end it cleanly)."""
    import uvicorn

    app = create_app(settings, client)
    log.info("web console serving", extra={"url": f"http://{host}:{port}"})
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
