"""`hcm-soc init`: install (idempotently) templates, the ingest pipeline and fixed indices."""

from __future__ import annotations

from dataclasses import asdict

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table


def init(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
    force: bool = typer.Option(False, "--force", help="rewrite every item, repairing edits made by hand"),
) -> None:
    """Install or upgrade index templates, the ingest pipeline and the alerts/incidents/state indices."""
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.templates import build_items, install

    app_ctx: AppContext = ctx.obj
    s = app_ctx.settings
    results = install(
        app_ctx.client(),
        build_items(IndexNames.from_settings(s), shards=s.index.shards, replicas=s.index.replicas),
        force=force,
    )
    if json_out:
        emit_json([asdict(r) for r in results])
        return
    emit_table(
        ["kind", "name", "action", "version", "detail"],
        [(r.kind, r.name, r.action, r.version, r.detail) for r in results],
    )
    changed = sum(r.action in ("created", "updated") for r in results)
    print(f"{changed} of {len(results)} items written; {len(results) - changed} already current")
