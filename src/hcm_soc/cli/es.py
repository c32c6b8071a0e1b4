"""`hcm-soc es start|stop|status`: the local development Elasticsearch node."""

from __future__ import annotations

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, info

app = typer.Typer(
    help="Manage the local development Elasticsearch node (never used when HCM_SOC_ES_URL is set)."
)


def _external(ctx: AppContext, json_out: bool) -> int:
    from hcm_soc.errors import DependencyUnavailable
    from hcm_soc.store.client import ping

    urls = ctx.settings.es.url
    try:
        server = ping(ctx.client())
    except DependencyUnavailable as e:
        if json_out:
            emit_json({"external": True, "urls": urls, "answering": False, "error": str(e)})
        else:
            info(f"HCM_SOC_ES_URL is set ({', '.join(urls)}) but the cluster does not answer: {e}")
        return 3
    version = server.get("version", {}).get("number")
    if json_out:
        emit_json({"external": True, "urls": urls, "answering": True, "version": version})
    else:
        print(
            f"external cluster {', '.join(urls)} answers (Elasticsearch {version}); no local node is managed"
        )
    return 0


@app.command()
def start(ctx: typer.Context) -> None:
    """Build (first time) and start the local node; wait until it answers with yellow/green health."""
    app_ctx: AppContext = ctx.obj
    if not app_ctx.settings.uses_local_node:
        raise typer.Exit(_external(app_ctx, False))
    node = app_ctx.local_node()
    before = node.status()
    status = node.start(timeout=app_ctx.settings.local_es.start_timeout)
    verb = "already running" if before.running and before.answering else "started"
    print(f"local Elasticsearch {verb}: {status.url} (pid {status.pid}, health {status.health})")
    info(f"data and logs: {node.base_dir}")


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop exactly the local node that `start` launched."""
    app_ctx: AppContext = ctx.obj
    if not app_ctx.settings.uses_local_node:
        print("HCM_SOC_ES_URL is set: hcm-soc manages no local node, nothing to stop")
        return
    node = app_ctx.local_node()
    if node.stop():
        print(f"local Elasticsearch stopped ({node.url})")
    else:
        print(f"local Elasticsearch was not running ({node.url})")


@app.command()
def status(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Say whether the node runs and answers; exit 0 when it answers, 3 otherwise."""
    app_ctx: AppContext = ctx.obj
    if not app_ctx.settings.uses_local_node:
        raise typer.Exit(_external(app_ctx, json_out))
    s = app_ctx.local_node().status()
    if json_out:
        emit_json(
            {
                "external": False,
                "running": s.running,
                "answering": s.answering,
                "url": s.url,
                "pid": s.pid,
                "health": s.health,
            }
        )
    elif s.answering:
        print(f"running: {s.url} (pid {s.pid}, health {s.health})")
    elif s.running:
        print(f"starting or unhealthy: {s.url} (pid {s.pid}, health {s.health or 'no answer'})")
    else:
        print(f"not running: {s.url} (start it with `hcm-soc es start`)")
    raise typer.Exit(0 if s.answering else 3)
