"""`hcm-soc engine ...`: the scheduled Sigma detection engine."""

from __future__ import annotations

import typer

app = typer.Typer(help="The scheduled Sigma detection engine.", no_args_is_help=True)
