"""`hcm-soc playbooks ...`: validate, list and print the JSON Schema of the playbook files.

Data goes to stdout (a table, or JSON with `--json`), diagnostics to stderr. Exit codes: 0 ok,
1 `validate` found problems.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info

app = typer.Typer(
    help="Response playbooks (playbooks/*.yml): validate, list, schema.",
    no_args_is_help=True,
)

JSON_OPT = typer.Option(False, "--json", help="print JSON")


def _targets(ctx: typer.Context, paths: list[Path] | None) -> list[Path]:
    if paths:
        return list(paths)
    app_ctx: AppContext = ctx.obj if isinstance(ctx.obj, AppContext) else AppContext()
    return [app_ctx.settings.paths.playbooks]


def _problem_json(p: Any) -> dict[str, Any]:
    return {"file": p.location.file, "line": p.location.line, "key": p.location.key, "message": p.message}


@app.command("validate")
def validate(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(None, help="playbook files or folders (default: paths.playbooks)"),
    json_out: bool = JSON_OPT,
) -> None:
    """Check every playbook; print each problem as `file:line: key: reason` (exit 1 if any)."""
    from hcm_soc.playbooks.loader import load_playbooks

    targets = _targets(ctx, paths)
    loaded = load_playbooks(targets)
    if json_out:
        emit_json(
            {
                "paths": [str(p) for p in targets],
                "files": len(loaded.files),
                "playbooks": [p.id for p in loaded.playbooks],
                "problems": [_problem_json(p) for p in loaded.problems],
            }
        )
    else:
        for p in loaded.problems:
            print(p)
        if loaded.problems:
            info(
                f"{len(loaded.problems)} problem(s) in {len(loaded.files)} file(s); "
                f"{len(loaded.playbooks)} playbook(s) are valid"
            )
        else:
            print(f"ok: {len(loaded.playbooks)} playbooks")
            if not loaded.files:
                info(f"warning: no playbook files (*.yml, *.yaml) under {', '.join(map(str, targets))}")
    if loaded.problems:
        raise typer.Exit(1)


@app.command("list")
def list_playbooks(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(None, help="playbook files or folders (default: paths.playbooks)"),
    json_out: bool = JSON_OPT,
) -> None:
    """The valid playbooks in the order they are tried: id, order, enabled, trigger, steps."""
    from hcm_soc.playbooks.loader import load_playbooks
    from hcm_soc.playbooks.trigger import describe

    loaded = load_playbooks(_targets(ctx, paths))
    if json_out:
        emit_json(
            [
                {
                    "id": p.id,
                    "title": p.title,
                    "title_en": p.title_en,
                    "order": p.order,
                    "enabled": p.enabled,
                    "trigger": describe(p.trigger),
                    "steps": [{"id": s.id, "kind": s.kind} for s in p.steps],
                    "source": p.source,
                }
                for p in loaded.playbooks
            ]
        )
    else:
        emit_table(
            ["ID", "ORDER", "ENABLED", "TRIGGER", "STEPS"],
            [
                [
                    p.id,
                    p.order,
                    "yes" if p.enabled else "no",
                    _clip(describe(p.trigger), 70),
                    ",".join(s.kind for s in p.steps),
                ]
                for p in loaded.playbooks
            ],
        )
    if loaded.problems:
        info(
            f"warning: {len(loaded.problems)} problem(s) left playbooks out; see `hcm-soc playbooks validate`"
        )


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of a playbook file (for editors and CI)."""
    from hcm_soc.playbooks.model import playbook_json_schema

    doc = playbook_json_schema()
    emit_json(doc)
    sys.stdout.flush()


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
