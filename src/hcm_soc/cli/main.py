"""The root of the `hcm-soc` command: global options, sub-commands, errors -> exit codes.

Exit codes: 0 ok, 1 findings, 2 usage or configuration error, 3 a dependency
(Elasticsearch, SMTP, Maven) unreachable.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click
import typer
from typer.exceptions import TyperException

from hcm_soc import __version__
from hcm_soc.cli import collect as collect_cmd
from hcm_soc.cli import config as config_cmd
from hcm_soc.cli import engine as engine_cmd
from hcm_soc.cli import es as es_cmd
from hcm_soc.cli import incidents as incidents_cmd
from hcm_soc.cli import inventory as inventory_cmd
from hcm_soc.cli import pcap as pcap_cmd
from hcm_soc.cli import playbooks as playbooks_cmd
from hcm_soc.cli import response as response_cmd
from hcm_soc.cli import rules as rules_cmd
from hcm_soc.cli import rules_health as _rules_health  # noqa: F401  (registers rules status|lint|silent-sources)
from hcm_soc.cli import users as users_cmd
from hcm_soc.cli import web as web_cmd
from hcm_soc.cli.context import AppContext
from hcm_soc.cli.coverage import coverage as coverage_cmd
from hcm_soc.cli.demo import demo
from hcm_soc.cli.init import init
from hcm_soc.errors import HcmSocError

app = typer.Typer(
    name="hcm-soc",
    help="hcm-soc: security monitoring for Ho Chi Minh City — collectors, Sigma detection, playbooks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(es_cmd.app, name="es")
app.add_typer(config_cmd.app, name="config")
app.command("init")(init)
app.command("demo")(demo)
app.command("collect")(collect_cmd.collect)
app.command("run")(collect_cmd.run)
app.command("ingest")(collect_cmd.ingest)
app.command("pcap")(pcap_cmd.pcap)
app.add_typer(collect_cmd.collectors_app, name="collectors")
rules_cmd.app.command("coverage")(coverage_cmd)
app.add_typer(rules_cmd.app, name="rules")
app.add_typer(engine_cmd.app, name="engine")
app.add_typer(inventory_cmd.app, name="inventory")
app.add_typer(incidents_cmd.app, name="incidents")
playbooks_cmd.app.command("run")(response_cmd.run_playbooks)
app.add_typer(playbooks_cmd.app, name="playbooks")
app.add_typer(response_cmd.notices_app, name="notices")
app.command("web")(web_cmd.web)
app.add_typer(users_cmd.app, name="users")

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"hcm-soc {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings file (or HCM_SOC_CONFIG)"),
    debug: bool = typer.Option(False, "--debug", help="show tracebacks and debug logs"),
    log_format: str | None = typer.Option(
        None, "--log-format", help="text or json (default: settings.log_format)"
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version"
    ),
) -> None:
    import logging

    from hcm_soc.logs import setup_logging

    _state["debug"] = debug
    ctx.obj = AppContext(config_file=config, debug=debug)
    fmt = log_format or "text"
    if fmt not in ("text", "json"):
        raise typer.BadParameter("expected text or json", param_hint="--log-format")
    setup_logging(fmt, logging.DEBUG if debug else logging.INFO)


def main() -> None:
    try:
        rv = app(standalone_mode=False)
    except (click.exceptions.Abort, typer.Abort):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except (click.ClickException, TyperException) as e:
        # typer vendors its own click: usage errors come from either
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            print(f"hcm-soc: error: {e}", file=sys.stderr)
        sys.exit(2)
    except HcmSocError as e:
        if _state["debug"]:
            traceback.print_exc()
        print(f"hcm-soc: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
