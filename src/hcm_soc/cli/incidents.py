"""`hcm-soc incidents ...`: list, show, ack, assign, comment, status, close.

Data goes to stdout (a table or text, or JSON with `--json`), diagnostics to stderr; times are
shown in `settings.timezone` (Asia/Ho_Chi_Minh). Changes go through `IncidentService` with
`refresh=wait_for`, so a `list` right after a change sees it. `--if-seq N` makes a change
conditional on the version a person looked at (`show` prints it): if the incident changed since,
the command fails with a conflict instead of acting on a state nobody saw. Exit codes: 0 ok,
1 conflict, 2 usage error / unknown incident / transition not allowed, 3 Elasticsearch
unreachable.
"""

from __future__ import annotations

import getpass
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table
from hcm_soc.cli.rules import es_errors

if TYPE_CHECKING:
    from hcm_soc.incidents.service import IncidentService
    from hcm_soc.models.incident import Incident

app = typer.Typer(
    help="Incidents: list, show, acknowledge, assign, comment, change status, close.",
    no_args_is_help=True,
)

JSON_OPT = typer.Option(False, "--json", help="print JSON")
ACTOR_OPT = typer.Option(None, "--actor", help="who acts (default: user:$USER)")
IF_SEQ_OPT = typer.Option(
    None, "--if-seq", help="act only if the incident is still at this seq_no (as `show` printed it)"
)
TITLE_WIDTH = 60


def _service(ctx: typer.Context) -> tuple[IncidentService, ZoneInfo]:
    from hcm_soc.incidents.service import IncidentService
    from hcm_soc.store.names import IndexNames

    app_ctx: AppContext = ctx.obj
    settings = app_ctx.settings
    service = IncidentService(
        app_ctx.client(),
        IndexNames.from_settings(settings),
        id_prefix=settings.response.id_prefix,
        refresh="wait_for",
    )
    return service, ZoneInfo(settings.timezone)


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    return f"user:{os.environ.get('USER') or getpass.getuser()}"


def _local(value: datetime | None, tz: ZoneInfo) -> str:
    if value is None:
        return "-"
    local = value.astimezone(tz)
    offset = local.strftime("%z")  # +0700 -> +07
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (offset[:3] if offset.endswith("00") else offset)


def _doc(incident: Incident) -> dict[str, Any]:
    return {**incident.to_document(), "seq_no": incident.seq_no, "primary_term": incident.primary_term}


def _short(text: str, width: int = TITLE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("list")
def list_incidents(
    ctx: typer.Context,
    status: list[str] | None = typer.Option(None, "--status", help="only this status (repeatable)"),
    priority: list[str] | None = typer.Option(
        None, "--priority", help="only this priority, P1..P4 (repeatable)"
    ),
    assignee: str | None = typer.Option(None, "--assignee", help="only incidents assigned to this person"),
    department: str | None = typer.Option(
        None, "--department", help="only incidents touching this department id"
    ),
    sector: str | None = typer.Option(None, "--sector", help="only incidents touching this sector"),
    query: str | None = typer.Option(None, "--query", "-q", help="words in the title, comments, entities"),
    sort: str = typer.Option("priority", "--sort", help="priority (then SLA, newest), created or updated"),
    page: int = typer.Option(1, "--page", min=1),
    size: int = typer.Option(50, "--size", min=1, max=1000),
    show_all: bool = typer.Option(False, "--all", help="include resolved and false-positive incidents"),
    json_out: bool = JSON_OPT,
) -> None:
    """List incidents, most urgent first (open ones unless --all or --status)."""
    from hcm_soc.incidents.lifecycle import OPEN, check_status

    if sort not in ("priority", "created", "updated"):
        raise typer.BadParameter("expected priority, created or updated", param_hint="--sort")
    for p in priority or []:
        if p not in ("P1", "P2", "P3", "P4"):
            raise typer.BadParameter(f"{p!r}: expected P1, P2, P3 or P4", param_hint="--priority")
    statuses: list[str] | None = [check_status(s) for s in status] if status else None
    if statuses is None and not show_all:
        statuses = list(OPEN)
    service, tz = _service(ctx)
    with es_errors():
        result = service.list(
            status=statuses,
            priority=priority or None,
            assignee=assignee,
            department=department,
            sector=sector,
            query=query,
            sort=sort,  # type: ignore[arg-type]  # checked above
            page=page,
            size=size,
        )
    if json_out:
        emit_json(
            {"total": result.total, "page": page, "size": size, "items": [_doc(i) for i in result.items]}
        )
        return
    rows = [
        (
            i.id,
            i.priority,
            i.status,
            i.level or "-",
            i.alert_count,
            i.assignee or "-",
            _local(i.sla.acknowledge_by, tz) if i.status == "new" else "-",
            _local(i.created, tz),
            _short(i.title),
        )
        for i in result.items
    ]
    emit_table(("ID", "PRI", "STATUS", "LEVEL", "ALERTS", "ASSIGNEE", "ACK BY", "CREATED", "TITLE"), rows)
    shown = len(result.items)
    first = (page - 1) * size + 1 if shown else 0
    typer.echo(f"{first}-{first + shown - 1 if shown else 0} of {result.total} incident(s)", err=True)


@app.command("show")
def show(
    ctx: typer.Context, incident_id: str = typer.Argument(..., metavar="ID"), json_out: bool = JSON_OPT
) -> None:
    """Everything about one incident: summary, assets and owners, alerts, entities, comments, timeline."""
    service, tz = _service(ctx)
    with es_errors():
        inc = service.get(incident_id)
    if json_out:
        emit_json(_doc(inc))
        return
    out: list[str] = [
        f"{inc.id}  [{inc.priority}] {inc.status}  level {inc.level or '-'}",
        f"Title:        {inc.title}",
    ]
    if inc.description:
        out.append(f"Description:  {inc.description}")
    out += [
        f"Created:      {_local(inc.created, tz)}    Updated: {_local(inc.updated, tz)}",
        f"Acknowledged: {_local(inc.acknowledged_at, tz)}    Resolved: {_local(inc.resolved_at, tz)}",
        f"Assignee:     {inc.assignee or '-'}    Queue: {inc.queue or '-'}    Playbook: {inc.playbook or '-'}",
        f"SLA:          acknowledge by {_local(inc.sla.acknowledge_by, tz)}, resolve by {_local(inc.sla.resolve_by, tz)}",
    ]
    if inc.group_key:
        out.append(f"Group:        {inc.group_key} (joins alerts until {_local(inc.group_until, tz)})")
    out += [
        f"Tags:         {', '.join(inc.tags) or '-'}",
        f"Escalation:   level {inc.escalation_level}",
        f"Version:      seq {inc.seq_no} (pass --if-seq {inc.seq_no} to change only this version)",
        "",
        f"Assets ({len(inc.assets)}):",
    ]
    for a in inc.assets:
        dept = f"{a.department} ({a.department_name})" if a.department_name else a.department
        out.append(
            f"  {a.id}  {a.name}  department {dept}  sector {a.sector or '-'}  "
            f"criticality {a.criticality or '-'}  owners {', '.join(a.owners) or '-'}"
        )
    out += ["", f"Alerts ({len(inc.alerts)} shown of {inc.alert_count}):"]
    for r in inc.alerts:
        out.append(f"  {_local(r.timestamp, tz)}  {r.level or '-':<13} {r.rule_title}  [{r.id}]")
    out += ["", "Entities:"]
    for label, values in (
        ("IPs", inc.entities.ips),
        ("Users", inc.entities.users),
        ("Hosts", inc.entities.hosts),
        ("URLs", inc.entities.urls),
    ):
        out.append(f"  {label + ':':<7}{', '.join(values) or '-'}")
    out += ["", f"Comments ({len(inc.comments)}):"]
    for c in inc.comments:
        out.append(f"  {_local(c.at, tz)}  {c.author}: {c.text}")
    out += ["", f"Timeline ({len(inc.timeline)}):"]
    for e in inc.timeline:
        line = f"  {_local(e.at, tz)}  {e.actor:<20} {e.action}"
        if e.step:
            line += f" [{e.step}]"
        if e.message:
            line += f": {e.message}"
        if e.before is not None or e.after is not None:
            line += f"  ({_change(e.before, e.after)})"
        out.append(line)
    typer.echo("\n".join(out))


def _change(before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        keys = list(dict.fromkeys([*before, *after]))
        return "; ".join(f"{k}: {before.get(k)} → {after.get(k)}" for k in keys)
    return f"{before} → {after}"


def _done(inc: Incident, what: str, tz: ZoneInfo, json_out: bool) -> None:
    if json_out:
        emit_json(_doc(inc))
        return
    typer.echo(f"{inc.id}: {what} (status {inc.status}, priority {inc.priority}, seq {inc.seq_no})")


@app.command("ack")
def ack(
    ctx: typer.Context,
    incident_id: str = typer.Argument(..., metavar="ID"),
    actor: str | None = ACTOR_OPT,
    if_seq: int | None = IF_SEQ_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Acknowledge a new incident (stops its acknowledgement SLA). Already acknowledged: no change."""
    service, tz = _service(ctx)
    with es_errors():
        inc = service.acknowledge(incident_id, actor=_actor(actor), expected_seq_no=if_seq)
    _done(inc, f"acknowledged at {_local(inc.acknowledged_at, tz)}", tz, json_out)


@app.command("assign")
def assign(
    ctx: typer.Context,
    incident_id: str = typer.Argument(..., metavar="ID"),
    user: str = typer.Argument(..., help="the assignee; '-' to unassign"),
    actor: str | None = ACTOR_OPT,
    if_seq: int | None = IF_SEQ_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Assign the incident to a person."""
    service, tz = _service(ctx)
    with es_errors():
        inc = service.assign(
            incident_id, None if user == "-" else user, actor=_actor(actor), expected_seq_no=if_seq
        )
    _done(inc, f"assigned to {inc.assignee}" if inc.assignee else "unassigned", tz, json_out)


@app.command("comment")
def comment(
    ctx: typer.Context,
    incident_id: str = typer.Argument(..., metavar="ID"),
    text: str = typer.Argument(...),
    actor: str | None = ACTOR_OPT,
    if_seq: int | None = IF_SEQ_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Add a comment."""
    service, tz = _service(ctx)
    with es_errors():
        inc = service.comment(incident_id, text, actor=_actor(actor), expected_seq_no=if_seq)
    _done(inc, f"comment added ({len(inc.comments)} in all)", tz, json_out)


@app.command("status")
def status(
    ctx: typer.Context,
    incident_id: str = typer.Argument(..., metavar="ID"),
    new_status: str = typer.Argument(
        ..., metavar="STATUS", help="acknowledged, investigating, contained, resolved, false_positive"
    ),
    reason: str | None = typer.Option(None, "--reason", help="why (kept as a comment)"),
    actor: str | None = ACTOR_OPT,
    if_seq: int | None = IF_SEQ_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Change the status; only the lifecycle's transitions are allowed (the error lists them)."""
    service, tz = _service(ctx)
    with es_errors():
        inc = service.set_status(
            incident_id, new_status, actor=_actor(actor), reason=reason, expected_seq_no=if_seq
        )
    _done(inc, f"status set to {inc.status}", tz, json_out)


@app.command("close")
def close(
    ctx: typer.Context,
    incident_id: str = typer.Argument(..., metavar="ID"),
    reason: str = typer.Option(..., "--reason", help="why it is closed (kept as a comment)"),
    false_positive: bool = typer.Option(False, "--false-positive", help="close as a false positive"),
    actor: str | None = ACTOR_OPT,
    if_seq: int | None = IF_SEQ_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Close: resolved, or false_positive with --false-positive; the reason is kept as a comment."""
    service, tz = _service(ctx)
    with es_errors():
        inc = service.close(
            incident_id,
            actor=_actor(actor),
            reason=reason,
            false_positive=false_positive,
            expected_seq_no=if_seq,
        )
    _done(inc, f"closed as {inc.status} at {_local(inc.resolved_at, tz)}", tz, json_out)
