"""`hcm-soc rules ...`: validate, list, convert, test, backtest and status of Sigma rules."""

from __future__ import annotations

import typer

app = typer.Typer(help="Sigma rules: validate, list, convert, test, backtest, status.", no_args_is_help=True)
