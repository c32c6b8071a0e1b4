"""`hcm-soc web [--host H] [--port P]`: serve the web console and the REST API (foreground).

Installs the index templates first (idempotent), so a fresh cluster works at once. Exit codes:
2 when the address cannot be used, 3 when Elasticsearch is unreachable.
"""

from __future__ import annotations

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import info
from hcm_soc.cli.rules import es_errors


def web(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="address to listen on (default: settings web.host)"),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="port to listen on (default: settings web.port)"
    ),
) -> None:
    """Serve the web console and the REST API (/api, /openapi.json, /metrics)."""
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.templates import build_items, install
    from hcm_soc.web.app import serve
    from hcm_soc.web.server import WebServerError, port_free

    app_ctx: AppContext = ctx.obj
    settings = app_ctx.settings
    bind_host = host or settings.web.host
    bind_port = port or settings.web.port
    if not port_free(bind_host, bind_port):
        raise WebServerError(
            f"cannot listen on {bind_host}:{bind_port}: the port is in use or the address is not one of "
            "this machine's; choose another with --port/--host (or HCM_SOC_WEB_PORT)"
        )
    client = app_ctx.client()
    names = IndexNames.from_settings(settings)
    with es_errors():
        install(client, build_items(names, shards=settings.index.shards, replicas=settings.index.replicas))
    info(f"hcm-soc web console and API on http://{bind_host}:{bind_port}/ (Ctrl-C stops)")
    serve(settings, client, host=bind_host, port=bind_port)
