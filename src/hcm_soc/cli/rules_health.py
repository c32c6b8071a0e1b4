"""`hcm-soc rules status|lint|silent-sources`: what the live cluster says about the rules — the
engine's per-rule health, whether each rule can match the fields actually mapped and filled, and
which sources fell silent (leaving rules blind). Registered on the `rules` command group."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info
from hcm_soc.cli.rules import (
    JSON_OPT,
    _compile_one,
    _load,
    _load_for,
    _names,
    app,
    compile_rules,
    es_errors,
    parse_duration,
)

if TYPE_CHECKING:
    from hcm_soc.detection.model import RuleProblem


@app.command()
def status(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """Per-rule health kept by the engine: last run, duration, examined, matches, errors, gaps."""
    from hcm_soc.store.detection_state import DetectionStateStore

    app_ctx: AppContext = ctx.obj
    with es_errors():
        health = DetectionStateStore(app_ctx.client(), _names(app_ctx)).health_all()
    if json_out:
        emit_json([h.model_dump(mode="json") for h in health])
        return
    if not health:
        info("no rule has run yet (start the engine: `hcm-soc engine run --once`)")
        return

    def when(t: datetime | None) -> str:
        return f"{t:%Y-%m-%d %H:%M:%S}Z" if t else "-"

    emit_table(
        [
            "RULE",
            "NAME",
            "STATUS",
            "LAST RUN",
            "DURATION",
            "EXAMINED",
            "MATCHES",
            "ALERTS",
            "FAILURES",
            "GAPS",
            "CHECKPOINT",
            "LAST ERROR",
        ],
        [
            [
                h.rule_id,
                (h.rule_name or "")[:40],
                h.status,
                when(h.last_run_end),
                f"{h.duration_ms} ms",
                h.events_examined,
                h.matches,
                h.alerts_created,
                f"{h.failures} ({h.consecutive_failures} in a row)" if h.failures else "0",
                h.gaps_detected,
                when(h.checkpoint),
                (h.last_error or "")[:80],
            ]
            for h in health
        ],
    )


# -- lint and silent sources --------------------------------------------------------------------------
@app.command("lint")
def lint_cmd(
    ctx: typer.Context,
    rules: list[str] = typer.Argument(None, help="rule files, ids, names or titles (default: every rule)"),
    since: str = typer.Option("7d", "--since", help="how recent the events and field values must be"),
    json_out: bool = JSON_OPT,
) -> None:
    """Lint rules against the live mappings and recent events before enabling them.

    Every field a rule queries must exist in the indices of its log source with a type its query
    form works on, and should have had values recently. Exit 1 when a rule can never match
    (errors); warnings (no recent values, no events for the log source) do not change it."""
    from hcm_soc.detection.lint import lint_rules

    app_ctx: AppContext = ctx.obj
    names = _names(app_ctx)
    recent = parse_duration(since)
    compiled: list[Any] = []
    problems: list[RuleProblem] = []
    if rules:
        for spec in rules:
            load, loaded = _load_for(app_ctx, spec)
            _, own = _compile_one(load, loaded, names)
            compiled.append(own)
    else:
        cset = compile_rules(_load([p for p in app_ctx.settings.paths.rules if p.exists()]).rules, names)
        compiled = [*cset.detections.values(), *cset.correlations.values()]
        problems = cset.problems
    with es_errors():
        results = lint_rules(app_ctx.client(), names, compiled, recent=recent)
    for p in problems:
        info(f"not linted (does not compile): {p}")
    if json_out:
        emit_json([r.to_json() for r in results])
    else:
        for r in results:
            for f in r.findings:
                print(f"{r.path}: {r.rule_id} '{r.title}': {f}")
        dead = sum(1 for r in results if r.errors)
        warned = sum(1 for r in results if r.warnings and not r.errors)
        print(
            f"{len(results)} rule(s) linted: {dead} can never match, {warned} with warnings, "
            f"{len(results) - dead - warned} clean"
        )
    if any(r.errors for r in results):
        raise typer.Exit(1)


@app.command("silent-sources")
def silent_sources(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """The built-in silent-source check, now: every source (dataset on host) with its usual gap and
    how long it has been quiet; silent ones name the rules now blind. Raises no alert (the engine
    does); exit 1 when a source is silent."""
    from hcm_soc.detection.silence import (
        SilenceParams,
        SilentSourceCheck,
        compile_detection_rules,
        human_duration,
    )

    app_ctx: AppContext = ctx.obj
    names = _names(app_ctx)
    rules = compile_detection_rules(app_ctx.settings, names)
    with es_errors():
        params = SilenceParams.from_settings(app_ctx.settings)
        states = SilentSourceCheck(app_ctx.client(), names, rules, params).assess(datetime.now(UTC))
    if json_out:
        emit_json([s.to_json() for s in states])
    elif not states:
        info("no source has sent enough events in the baseline to be judged")
    else:
        emit_table(
            [
                "STATUS",
                "DATASET",
                "HOST",
                "EVENTS",
                "LAST SEEN",
                "USUAL GAP",
                "SILENT AFTER",
                "QUIET FOR",
                "BLIND",
            ],
            [
                [
                    "SILENT" if s.silent else "ok",
                    s.dataset,
                    s.host or "-",
                    s.events,
                    f"{s.last_seen:%Y-%m-%d %H:%M:%S}Z",
                    human_duration(s.mean_gap),
                    human_duration(s.threshold),
                    human_duration(s.silent_for),
                    len(s.blind_rules) if s.silent else "",
                ]
                for s in states
            ],
        )
    if any(s.silent for s in states):
        raise typer.Exit(1)
