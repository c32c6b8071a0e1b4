"""`hcm-soc config show`: the effective settings (secrets masked) or the setting names."""

from __future__ import annotations

from typing import Any

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table

app = typer.Typer(help="Inspect configuration.")

_SECRET = ("password", "api_key", "secret")


def _mask(data: Any, key: str = "") -> Any:
    if isinstance(data, dict):
        return {k: _mask(v, k) for k, v in data.items()}
    if data is not None and any(s in key for s in _SECRET):
        return "********"
    return data


@app.command()
def show(
    ctx: typer.Context,
    names: bool = typer.Option(False, "--names", help="list every setting and its environment variable"),
) -> None:
    """Print the effective settings as JSON (secrets masked), or with --names every setting's env variable."""
    from hcm_soc.config import setting_names

    if names:
        emit_table(["setting", "environment variable"], sorted(setting_names().items()))
        return
    app_ctx: AppContext = ctx.obj
    emit_json(_mask(app_ctx.settings.model_dump(mode="json")))
