"""`hcm-soc playbooks run [--once]` (playbooks over new alerts, notices, escalations) and
`hcm-soc notices list|deliver` (the outbox).

Exit codes: 0 ok; 1 some alerts failed or some playbook/inventory files have problems (each is
listed; the rest ran); 3 Elasticsearch unreachable.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import typer

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.store.names import IndexNames

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info

notices_app = typer.Typer(
    help="The notice outbox: e-mails and webhooks to owners and analysts.", no_args_is_help=True
)


def _setup(app_ctx: AppContext) -> tuple[Elasticsearch, IndexNames]:
    from hcm_soc.store.client import ping
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.templates import build_items, install

    s = app_ctx.settings
    client = app_ctx.client()
    ping(client)
    names = IndexNames.from_settings(s)
    install(client, build_items(names, shards=s.index.shards, replicas=s.index.replicas))
    return client, names


def run_playbooks(
    ctx: typer.Context,
    once: bool = typer.Option(
        False, "--once", help="one pass over new alerts, the outbox and escalations, then exit"
    ),
    json_out: bool = typer.Option(False, "--json", help="with --once: print the counters as JSON"),
) -> None:
    """Run the playbooks on new alerts (open/join incidents, queue notices), deliver notices, escalate
    unacknowledged incidents and auto-close quiet ones: scheduled until Ctrl-C, or once."""
    from hcm_soc.playbooks.jobs import build_response, start_response

    app_ctx: AppContext = ctx.obj
    client, names = _setup(app_ctx)
    if once:
        response = build_response(app_ctx.settings, client, names)
        for p in response.problems:
            info(f"problem: {p}")
        runner = response.runner
        report = runner.run_once()
        escalated = runner.escalate_due()
        closed = runner.auto_close()
        delivery = runner.outbox.deliver_due()
        data: dict[str, Any] = {
            **report.counters(),
            "escalated": escalated,
            "auto_closed": closed,
            "delivery": asdict(delivery) if delivery is not None else None,
            "failures": [
                {"alert": o.alert_id, "error": o.error} for o in report.outcomes if o.outcome == "failed"
            ],
        }
        if json_out:
            emit_json(data)
        else:
            print(
                f"{report.alerts} alert(s): {report.opened} incident(s) opened, {report.joined} joined, "
                f"{report.no_playbook} without playbook, {report.failed} failed; {report.notices_queued} "
                f"notice(s) queued; {escalated} escalated, {closed} auto-closed; delivery: {data['delivery']}"
            )
            for f in data["failures"]:
                print(f"  failed: alert {f['alert']}: {f['error']}")
        if report.failed or response.problems:
            raise typer.Exit(1)
        return
    from hcm_soc.cli.engine import _stop_on_signals

    stop: threading.Event = _stop_on_signals()
    handle = start_response(app_ctx.settings, client, names, stop_event=stop)
    for p in handle.response.problems:
        info(f"problem: {p}")
    info(f"response running: {len(handle.response.runner.playbooks)} playbook(s); Ctrl-C to stop")
    stop.wait()
    handle.join(timeout=30)


@notices_app.command("list")
def list_notices(
    ctx: typer.Context,
    incident: str | None = typer.Option(None, "--incident", help="only the notices of this incident"),
    status: str | None = typer.Option(None, "--status", help="pending, sent or failed"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The notices in the outbox, newest first."""
    from hcm_soc.store.notices import NoticeStore

    app_ctx: AppContext = ctx.obj
    client, names = _setup(app_ctx)
    store = NoticeStore(client, names)
    items = store.list(incident_id=incident, status=status, size=200)
    if json_out:
        emit_json([n.model_dump(mode="json") for n in items])
        return
    tz = ZoneInfo(app_ctx.settings.timezone)

    def when(d: datetime | None) -> str:
        return d.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if d else "-"

    emit_table(
        ["created", "incident", "kind", "channel", "to", "status", "attempts", "sent", "last error"],
        [
            (
                when(n.created),
                n.incident_id,
                n.kind,
                n.channel,
                n.recipient,
                n.status,
                n.attempts,
                when(n.sent_at),
                (n.last_error or "")[:60],
            )
            for n in items
        ],
    )


@notices_app.command("deliver")
def deliver(ctx: typer.Context) -> None:
    """Send the notices that are due now (normally `hcm-soc run` does this every few seconds)."""
    from hcm_soc.playbooks.jobs import build_response

    app_ctx: AppContext = ctx.obj
    client, names = _setup(app_ctx)
    report = build_response(app_ctx.settings, client, names).runner.outbox.deliver_due()
    print(f"delivery: {asdict(report)}")
