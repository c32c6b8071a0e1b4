"""`hcm-soc demo`: run the whole pipeline as far as it exists, on the local Elasticsearch."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info

if TYPE_CHECKING:
    from hcm_soc.config import Settings
    from hcm_soc.demo import DemoReport


def demo(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="print the report as JSON"),
    no_serve: bool = typer.Option(
        False,
        "--no-serve",
        help="exit when the pipeline has run instead of serving the console (for scripts)",
    ),
    port: int | None = typer.Option(None, "--port", help="console port (default: web.port, or a free one)"),
) -> None:
    """Start the local Elasticsearch (unless HCM_SOC_ES_URL is set), install templates, read the
    bundled logs and packet capture of city systems, run the Sigma engine once with the city's
    rules, run the playbooks (incidents, notices to the owners through a local mail sink), show
    what was stored, which alerts were raised and which incidents were opened — then serve the web
    console on 127.0.0.1 with one user per role until Ctrl-C (not with --no-serve or --json)."""
    from dataclasses import asdict

    from hcm_soc.demo import run_demo
    from hcm_soc.web.server import port_free

    app_ctx: AppContext = ctx.obj
    settings = app_ctx.settings
    import logging

    # the demo prints its own progress; per-rule and per-file log lines would bury it
    for noisy in ("hcm_soc.detection", "hcm_soc.collectors", "hcm_soc.store.bulk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    serve = not (no_serve or json_out)
    host = "127.0.0.1"
    web_port = port or settings.web.port
    if serve and port is None and not port_free(host, web_port):
        web_port = _free_port(host)
    # the acknowledgement links in the demo's e-mails point at the console it is about to serve
    settings = settings.model_copy(
        update={"notify": settings.notify.model_copy(update={"base_url": f"http://{host}:{web_port}"})}
    )
    report = run_demo(settings, info)
    if json_out:
        emit_json(asdict(report))
        return
    tz = ZoneInfo(settings.timezone)
    w = report.writer
    print(f"\nElasticsearch {report.es_version} at {report.es_url}")
    print(f"templates: {report.templates_written} written, {report.templates_current} already current")
    print(
        f"bundled logs: {report.events_in_sample} records ({report.parse_failures} unparsed, kept) -> "
        f"sent {w['sent']}, already stored {w['duplicates']}, "
        f"dead-lettered {w['dead_lettered']}, spooled {w['spooled']}"
    )
    print("\nevents stored per dataset:")
    emit_table(["dataset", "events"], sorted(report.counts.items()))
    print("\nfailed SSH logins by source (system.auth):")
    emit_table(["source.ip", "failures"], report.ssh_failures_by_source)
    print("\nsqlmap scans of the public-service portal (nginx.access):")
    emit_table(["source.ip", "requests"], report.web_attack_sources)
    if report.network:
        print("\nnetwork records from the bundled capture:")
        emit_table(["dataset", "records"], sorted(report.network.items()))
    print(
        f"\ndetection: {report.rules_loaded} rules run, {report.alerts_created} new alert(s) "
        f"({report.alerts_already_stored} already stored), {report.rules_failed} rule run(s) failed"
    )
    for problem in report.rule_problems:
        print(f"  rule problem: {problem}")
    if report.alerts:
        print(f"\nalerts ({settings.timezone}):")
        emit_table(
            ["first seen", "level", "rule", "who", "alerts", "events"],
            [
                (
                    datetime.fromisoformat(seen).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
                    lvl,
                    rule,
                    who,
                    n,
                    e,
                )
                for seen, lvl, rule, who, n, e in report.alerts
            ],
        )
    resp = report.response
    if resp is not None:
        print(
            f"\nplaybooks: {resp.playbooks} loaded; {resp.alerts_handled} alert(s) handled -> "
            f"{resp.opened} incident(s) opened, {resp.joined} joined an open incident, "
            f"{resp.no_playbook} without playbook, {resp.failed} failed"
        )
        for problem in resp.problems:
            print(f"  playbook/inventory problem: {problem}")
        if resp.incidents:
            print("\nincidents (open, by priority):")
            emit_table(
                ["incident", "priority", "status", "title", "system", "department", "owners", "alerts"],
                resp.incidents,
            )
        print(
            f"\nnotices: {resp.notices_sent} delivered to the local mail sink ({resp.smtp}), "
            f"{resp.notices_waiting} waiting for a retry"
        )
        if resp.mails:
            emit_table(["to", "subject"], resp.mails)
    if report.latest_ingested:
        ingested = datetime.fromisoformat(report.latest_ingested.replace("Z", "+00:00")).astimezone(tz)
        print(
            f"\nlatest event.ingested (set by Elasticsearch): {ingested:%Y-%m-%d %H:%M:%S %Z} ({settings.timezone})"
        )

    if serve:
        _serve_console(app_ctx, settings, report, host, web_port)


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _serve_console(app_ctx: AppContext, settings: Settings, report: DemoReport, host: str, port: int) -> None:
    """One user per role, then the console until Ctrl-C / SIGTERM."""
    import threading

    from hcm_soc.cli.engine import _stop_on_signals
    from hcm_soc.demo_console import demo_users, owner_departments
    from hcm_soc.store.names import IndexNames
    from hcm_soc.web.app import create_app
    from hcm_soc.web.server import WebServer

    client = app_ctx.client()
    names = IndexNames.from_settings(settings)
    departments = owner_departments(report.response.incident_departments if report.response else [])
    users = demo_users(settings, client, names, departments)
    server = WebServer(create_app(settings, client), host, port).start()
    print(f"\nweb console: {server.url}/  (Vietnamese; English via the language switch)")
    emit_table(
        ["user", "password", "role", "departments"],
        [(u.username, u.password, u.role, ", ".join(u.departments) or "-") for u in users],
    )
    if report.response and report.response.ack_links:
        to, incident, link = next(
            (x for x in report.response.ack_links if "truc-ban" not in x[0]), report.response.ack_links[0]
        )
        print(f"\nacknowledgement link e-mailed to {to} for {incident}:\n  {link}")
    print("\nCtrl-C stops the console (the local Elasticsearch keeps running: `hcm-soc es stop`).")
    stop: threading.Event = _stop_on_signals()
    stop.wait()
    server.stop()
