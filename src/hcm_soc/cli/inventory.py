"""`hcm-soc inventory ...`: validate the asset inventory, look up which asset and owner a value
belongs to, list the assets.

Data goes to stdout (a table, or JSON with `--json`), diagnostics to stderr. Exit codes: 0 ok,
1 findings (`validate` found problems, `lookup` matched no asset, or the inventory does not load).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info

if TYPE_CHECKING:
    from hcm_soc.inventory import Asset, AssetMatch, Inventory, Problem

app = typer.Typer(
    help="The asset inventory: validate it, look up the asset and owner of an IP, host name or URL.",
    no_args_is_help=True,
)

JSON_OPT = typer.Option(False, "--json", help="print JSON")
INVENTORY_OPT = typer.Option(
    None, "--inventory", "-i", help="inventory file, YAML or CSV (default: paths.inventory)"
)


def _app_ctx(ctx: typer.Context) -> AppContext:
    # registered under the root command, ctx.obj is its AppContext; run on its own (tests), a fresh one
    return ctx.obj if isinstance(ctx.obj, AppContext) else AppContext()


def _path(ctx: typer.Context, path: Path | None) -> Path:
    return path if path is not None else _app_ctx(ctx).settings.paths.inventory


def _load(ctx: typer.Context, path: Path | None) -> Inventory:
    from hcm_soc.inventory import load_inventory

    return load_inventory(_path(ctx, path))


def _problem_json(p: Problem) -> dict[str, Any]:
    loc = p.location
    return {"file": loc.file, "line": loc.line, "key": loc.key, "message": p.message}


def _owners(inventory: Inventory, asset: Asset) -> list[str]:
    return [c.email or c.phone or c.webhook or c.name for c in inventory.owner_contacts(asset)]


def _match_json(inventory: Inventory, m: AssetMatch) -> dict[str, Any]:
    return {
        "value": m.value,
        "matched_by": m.matched_by,
        "asset": m.asset.model_dump(mode="json"),
        "department": m.department.model_dump(mode="json"),
        "owners": [c.model_dump(mode="json") for c in inventory.owner_contacts(m.asset)],
    }


@app.command("validate")
def validate(
    ctx: typer.Context,
    path: Path | None = typer.Argument(None, help="inventory file, YAML or CSV (default: paths.inventory)"),
    json_out: bool = JSON_OPT,
) -> None:
    """Check the inventory; print every problem as `file:line: key: reason`. Exit 1 if any."""
    from hcm_soc.inventory import read_inventory

    target = _path(ctx, path)
    inventory, problems = read_inventory(target)
    if json_out:
        emit_json(
            {
                "path": str(target),
                "ok": not problems,
                "assets": len(inventory.assets) if inventory else None,
                "departments": len(inventory.departments) if inventory else None,
                "problems": [_problem_json(p) for p in problems],
            }
        )
    else:
        for p in problems:
            print(p)
        if inventory is not None and not problems:
            print(f"ok: {len(inventory.assets)} assets, {len(inventory.departments)} departments")
        else:
            info(f"{target}: {len(problems)} problem(s); see docs/inventory.md for the format")
    if problems:
        raise typer.Exit(1)


@app.command("lookup")
def lookup(
    ctx: typer.Context,
    value: str = typer.Argument(..., help="an IP address, host name or URL"),
    inventory_path: Path | None = INVENTORY_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Which asset (and department, owners) an IP address, host name or URL belongs to."""
    inventory = _load(ctx, inventory_path)
    matches = inventory.lookup(value)
    if json_out:
        emit_json({"value": value, "matches": [_match_json(inventory, m) for m in matches]})
    elif matches:
        emit_table(
            ("asset", "department", "sector", "criticality", "owners", "matched by"),
            [
                (
                    f"{m.asset.id} ({m.asset.name})",
                    m.department.name,
                    m.asset.sector,
                    m.asset.criticality,
                    ", ".join(_owners(inventory, m.asset)),
                    m.matched_by,
                )
                for m in matches
            ],
        )
    if not matches:
        info(f"no asset matches {value!r} in {inventory.source} ({len(inventory.assets)} assets)")
        raise typer.Exit(1)


@app.command("list")
def list_assets(
    ctx: typer.Context,
    inventory_path: Path | None = INVENTORY_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Every asset with its department, sector, criticality and what identifies it."""
    inventory = _load(ctx, inventory_path)
    if json_out:
        emit_json(
            {
                "source": inventory.source,
                "departments": [d.model_dump(mode="json") for d in inventory.departments.values()],
                "assets": [a.model_dump(mode="json") for a in inventory.assets],
            }
        )
        return
    emit_table(
        ("asset", "department", "sector", "criticality", "sensitivity", "addresses / hostnames / urls"),
        [
            (
                a.id,
                a.department,
                a.sector,
                a.criticality,
                a.sensitivity,
                ", ".join([*a.addresses, *a.hostnames, *a.urls]),
            )
            for a in inventory.assets
        ],
    )
