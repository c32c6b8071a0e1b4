"""`hcm-soc rules coverage RULE --since 7d [--json]`: the ranges a rule has evaluated, and every hole.

Reads the coverage ledger and the rule's state (checkpoint, first window) from
Elasticsearch; shows the evaluated ranges merged, per rule version, and the holes and
overlaps between the rule's first window (or `--since`) and its checkpoint. Exit codes: 0
complete, 1 holes or overlaps found (the engine back-fills holes within
`detection.backfill_horizon`), 2 usage error, 3 Elasticsearch unreachable. Registered on
the `rules` app by cli/main.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info


def _when(t: datetime | None) -> str:
    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3] + "Z" if t else "-"


def coverage(
    ctx: typer.Context,
    rule: str = typer.Argument(..., help="the rule id"),
    since: str = typer.Option("7d", "--since", help="how far back to look (7d, 12h, 30m, 90s)"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Evaluated ranges of RULE (merged, per version) and every hole in them; exit 1 when holes exist."""
    from hcm_soc.cli.rules import es_errors
    from hcm_soc.detection.coverage import parse_since, report
    from hcm_soc.store.detection_state import CoverageLedger, DetectionStateStore
    from hcm_soc.store.names import IndexNames

    try:
        back = parse_since(since)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--since") from None
    app_ctx: AppContext = ctx.obj
    names = IndexNames.from_settings(app_ctx.settings)
    now = datetime.now(UTC)
    with es_errors():
        client = app_ctx.client()
        state = DetectionStateStore(client, names).load(rule)
        entries = CoverageLedger(client, names).entries(rule, since=now - back)
    if state.seq_no is None and not entries:
        info(
            f"rule {rule} has never run (no state and no coverage in {names.state}); "
            "check the id with `hcm-soc rules list` and start the engine with `hcm-soc engine run`"
        )
        raise typer.Exit(1)
    h = state.health
    r = report(rule, entries, since=now - back, until=h.checkpoint, start=h.coverage_start)
    data: dict[str, Any] = {
        "rule_id": rule,
        "since": r.since.isoformat(),
        "until": r.until.isoformat() if r.until else None,
        "entries": r.entries,
        "backfilled": r.backfilled,
        "complete": r.complete and not r.overlaps,
        "evaluated": [{"start": w.start.isoformat(), "end": w.end.isoformat()} for w in r.evaluated],
        "by_version": {
            v: [{"start": w.start.isoformat(), "end": w.end.isoformat()} for w in ws]
            for v, ws in r.by_version.items()
        },
        "holes": [{"start": w.start.isoformat(), "end": w.end.isoformat()} for w in r.holes],
        "overlaps": [{"start": w.start.isoformat(), "end": w.end.isoformat()} for w in r.overlaps],
    }
    if json_out:
        emit_json(data)
    else:
        rows = [("evaluated", v, _when(w.start), _when(w.end)) for v, ws in r.by_version.items() for w in ws]
        rows += [("HOLE", "", _when(w.start), _when(w.end)) for w in r.holes]
        rows += [("OVERLAP", "", _when(w.start), _when(w.end)) for w in r.overlaps]
        emit_table(["KIND", "VERSION", "START", "END"], sorted(rows, key=lambda x: (x[2], x[0])))
        print(
            f"rule {rule}: {r.entries} window(s) since {_when(r.since)} up to the checkpoint {_when(r.until)}, "
            f"{len(r.holes)} hole(s), {len(r.overlaps)} overlap(s), {r.backfilled} back-filled"
        )
    if r.holes or r.overlaps:
        if not json_out:
            info(
                "holes within detection.backfill_horizon are evaluated by the running engine "
                "(or `hcm-soc engine run --once`)"
            )
        raise typer.Exit(1)
