"""`hcm-soc engine run [--once]`: the scheduled Sigma detection engine, in the foreground.

Exit codes: 0 every rule ran; 1 at least one rule could not be loaded, compiled or run
(each is listed; the other rules ran and their alerts are stored); 2 usage error; 3
Elasticsearch unreachable at start.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info

if TYPE_CHECKING:
    from hcm_soc.detection.engine import RunSummary

app = typer.Typer(help="The scheduled Sigma detection engine.", no_args_is_help=True)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        info(f"received signal {signum}: stopping the engine (running rules finish their chunk)")
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@app.command("run")
def run(
    ctx: typer.Context,
    once: bool = typer.Option(
        False, "--once", help="run every enabled rule over everything since its checkpoint, then exit"
    ),
    rules: list[Path] = typer.Option(
        None, "--rules", "-r", help="rule files or folders (repeatable; default: paths.rules)"
    ),
    json_out: bool = typer.Option(False, "--json", help="with --once: print the summary as JSON"),
) -> None:
    """Run the detection engine: scheduled until Ctrl-C / SIGTERM, or one pass with --once."""
    from hcm_soc.detection.engine import DetectionEngine, RunSummary
    from hcm_soc.detection.scheduler import lint_engine_rules, load_engine_rules, start_engine
    from hcm_soc.store.client import ping
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.templates import build_items, install

    app_ctx: AppContext = ctx.obj
    s = app_ctx.settings
    client = app_ctx.client()
    ping(client)  # unreachable -> DependencyUnavailable -> exit 3, before any rule is touched
    names = IndexNames.from_settings(s)
    install(client, build_items(names, shards=s.index.shards, replicas=s.index.replicas))
    engine_rules, problems = load_engine_rules(s, names, rules or None, client=client)
    for p in problems:
        info(f"rule skipped: {p}")
    lint_problems = lint_engine_rules(client, names, engine_rules)
    for p in lint_problems:
        info(f"rule runs but cannot match yet: {p}")
    runnable = [r for r in engine_rules if r.compiled is not None]
    info(f"{len(runnable)} rule(s) ready, {len(problems)} problem(s)")

    if once:
        # no lease: a one-off pass beside a running engine is kept apart by the conditional state
        # writes (and fills holes of the coverage ledger after its pass)
        engine = DetectionEngine(client, names, s.detection)
        summary = engine.run_all(engine_rules, force=True)
        summary = RunSummary(summary.runs, tuple(problems))
        data = summarize(summary)
        if json_out:
            emit_json(data)
        else:
            emit_table(
                ["rule", "window start", "window end", "chunks", "examined", "matches", "alerts", "result"],
                [
                    (
                        r["rule_id"],
                        r["window_start"],
                        r["window_end"],
                        r["chunks"],
                        r["examined"],
                        r["matches"],
                        r["alerts_created"],
                        r["error"] or r["skipped"] or ("ok; " + "; ".join(r["gaps"]) if r["gaps"] else "ok"),
                    )
                    for r in data["runs"]
                ],
            )
            print(
                f"{data['rules_run']} rule(s) run, {data['alerts_created']} alert(s) created "
                f"({data['duplicates']} already stored), {data['rules_failed']} failed, "
                f"{len(problems)} rule problem(s)"
            )
        if data["rules_failed"] or problems:
            raise typer.Exit(1)
        return

    if not runnable:
        info(f"no rule to run in {', '.join(str(p) for p in (rules or s.paths.rules))}")
        raise typer.Exit(1)
    stop = _stop_on_signals()
    handle = start_engine(s, client, names, stop_event=stop, rules=engine_rules, paths=rules or s.paths.rules)
    lease = handle.engine.lease
    info(
        f"engine running: {len(handle.scheduler.groups)} job(s), alerts -> {names.alerts}, "
        f"state -> {names.state}"
        + (f", engine id {lease.holder} ({'active' if lease.held() else 'standby'})" if lease else "")
        + "; Ctrl-C to stop"
    )
    # join in short steps so the main thread keeps handling SIGINT/SIGTERM
    while not handle.join(timeout=0.5):
        pass
    info(f"engine stopped: {handle.engine.stats()}")


def summarize(summary: RunSummary) -> dict[str, Any]:
    """The `--json` form of a run summary (also what the text form prints)."""
    return {
        "rules_run": sum(1 for r in summary.runs if not r.skipped),
        "rules_failed": len(summary.failed),
        "rules_skipped": sum(1 for r in summary.runs if r.skipped),
        "alerts_created": summary.alerts_created,
        "duplicates": sum(r.duplicates for r in summary.runs),
        "matches": sum(r.matches for r in summary.runs),
        "events_examined": sum(r.examined for r in summary.runs),
        "gaps": sum(len(r.gaps) for r in summary.runs),
        "suppressed": sum(r.suppressed for r in summary.runs),
        "backfilled": sum(r.backfilled for r in summary.runs),
        "problems": [str(p) for p in summary.problems],
        "runs": [
            {
                "rule_id": r.rule_id,
                "window_start": r.window.start.isoformat() if r.window else None,
                "window_end": r.window.end.isoformat() if r.window else None,
                "chunks": r.chunks,
                "examined": r.examined,
                "matches": r.matches,
                "alerts_created": r.alerts_created,
                "duplicates": r.duplicates,
                "duration_ms": r.duration_ms,
                "error": r.error,
                "skipped": r.skipped,
                "gaps": list(r.gaps),
                "suppressed": r.suppressed,
                "backfilled": r.backfilled,
            }
            for r in summary.runs
        ],
    }
