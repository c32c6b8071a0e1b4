"""`hcm-soc collect FILE`, `hcm-soc run`, `hcm-soc ingest`, `hcm-soc collectors validate|formats`."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info

if TYPE_CHECKING:
    from hcm_soc.collectors.definition import SourceDefinition
    from hcm_soc.store.bulk import BulkWriter
    from hcm_soc.store.names import IndexNames

log = logging.getLogger("hcm_soc.collect")

collectors_app = typer.Typer(help="Source definitions in collectors/: validate them, list formats.")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        info(f"received signal {signum}: stopping (flushing what was read)")
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def open_writer(app_ctx: AppContext) -> tuple[BulkWriter, IndexNames]:
    from hcm_soc.store.bulk import BulkWriter
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.templates import build_items, install

    s = app_ctx.settings
    client = app_ctx.client()
    names = IndexNames.from_settings(s)
    install(client, build_items(names, shards=s.index.shards, replicas=s.index.replicas))
    return BulkWriter.from_settings(client, s), names


def _serve(
    app_ctx: AppContext,
    definitions: list[SourceDefinition],
    report_every: float,
    *,
    with_engine: bool = False,
) -> None:
    from hcm_soc.collectors.runner import SourceRun, run_sources, wait

    writer, names = open_writer(app_ctx)
    stop = _stop_on_signals()
    handle = None
    response = None
    if with_engine:
        from hcm_soc.detection.scheduler import start_engine

        handle = start_engine(app_ctx.settings, app_ctx.client(), names, stop_event=stop)
        info(
            f"detection engine: {len(handle.rules)} rule(s), {len(handle.problems)} problem(s) -> {names.alerts}"
        )
        if app_ctx.settings.response.enabled:
            from hcm_soc.playbooks.jobs import start_response

            response = start_response(app_ctx.settings, app_ctx.client(), names, stop_event=stop)
            for problem in response.response.problems:
                info(f"response problem: {problem}")
            info(
                f"response: {len(response.response.runner.playbooks)} playbook(s) -> {names.incidents}, "
                f"notices via the outbox {names.notices}"
            )
    web = None
    if with_engine and app_ctx.settings.web.enabled:
        from hcm_soc.web.app import create_app
        from hcm_soc.web.server import WebServer

        s = app_ctx.settings
        web = WebServer(create_app(s, app_ctx.client()), s.web.host, s.web.port).start()
        info(f"web console and API: {web.url}/ (users: `hcm-soc users add`)")
    runs = run_sources(
        definitions, writer, names, app_ctx.settings.state_dir, stop, progress=info, settings=app_ctx.settings
    )
    for d in definitions:
        where = "the network.* data streams" if d.type == "network" else names.events(d.dataset or d.format)
        info(f"source {d.name}: {d.type} {d.format} -> {where}".replace("  ", " "))

    def report(runs: list[SourceRun]) -> None:
        for r in runs:
            log.info("source counters", extra=r.stats())
        log.info("writer counters", extra=writer.stats())

    try:
        wait(runs, stop, report_every, report)
    finally:
        stop.set()
        if handle is not None:
            handle.join(timeout=30)
        if response is not None:
            response.join(timeout=30)
        if web is not None:
            web.stop()
        for r in runs:
            if r.thread is not None:
                r.thread.join(timeout=10)
        writer.close()
        report(runs)


def collect(
    ctx: typer.Context,
    definition: Path = typer.Argument(..., help="a collectors/<file>.yml"),
    report_every: float = typer.Option(30.0, help="seconds between counter log lines"),
) -> None:
    """Run one source until interrupted (Ctrl-C / SIGTERM)."""
    from hcm_soc.collectors.definition import load_definition
    from hcm_soc.parsers.registry import format_names

    d = load_definition(definition, format_names())
    _serve(ctx.obj, [d], report_every)


def run(
    ctx: typer.Context,
    report_every: float = typer.Option(30.0, help="seconds between counter log lines"),
    engine: bool = typer.Option(True, "--engine/--no-engine", help="run the detection engine beside them"),
) -> None:
    """Run every enabled source in paths.collectors, the detection engine, the playbooks (incidents,
    notices, escalations) and the web console; broken definitions are reported and skipped."""
    from hcm_soc.collectors.definition import load_definitions
    from hcm_soc.parsers.registry import format_names

    app_ctx: AppContext = ctx.obj
    good, bad = load_definitions(app_ctx.settings.paths.collectors, format_names())
    for err in bad:
        info(f"skipped: {err}")
    enabled = [d for d in good if d.enabled]
    if not enabled:
        info(f"no enabled source in {app_ctx.settings.paths.collectors}")
        if not engine:
            raise typer.Exit(1)
    _serve(app_ctx, enabled, report_every, with_engine=engine)


def ingest(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(..., help="files or globs"),
    fmt: str = typer.Option(..., "--format", "-f", help="syslog, nginx, apache, evtx, jsonl, raw"),
    dataset: str | None = typer.Option(None, help="event.dataset (default: the format's)"),
    name: str | None = typer.Option(None, help="source name (default: ingest-<format>)"),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="format option key=value (jsonl: field_map as JSON)"
    ),
    json_out: bool = typer.Option(False, "--json", help="print the counters as JSON"),
) -> None:
    """Read files once into Elasticsearch (back-filling, hand-delivered exports). Safe to repeat."""
    import orjson

    from hcm_soc.collectors.runner import ingest_files
    from hcm_soc.parsers.registry import format_names

    if fmt not in format_names():
        raise typer.BadParameter(
            f"expected one of {', '.join(sorted(format_names()))}", param_hint="--format"
        )
    options: dict[str, object] = {}
    for kv in option:
        key, sep, value = kv.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected key=value, got {kv!r}", param_hint="--option")
        try:
            options[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            options[key] = value
    app_ctx: AppContext = ctx.obj
    writer, names = open_writer(app_ctx)
    with writer:
        counters = ingest_files(
            fmt,
            paths,
            writer,
            names,
            dataset=dataset,
            name=name or f"ingest-{fmt}",
            timezone=app_ctx.settings.timezone,
            options=options,
            progress=info,
        )
    counters.update(writer.stats())
    if json_out:
        emit_json(counters)
        return
    print(
        f"{counters['parsed'] + counters['parse_failures']} records from {len(paths)} path(s) -> {counters['index']}: "
        f"parsed {counters['parsed']}, parse failures {counters['parse_failures']} (stored with _parse_failure); "
        f"sent {counters['sent']}, already stored {counters['duplicates']}, dead-lettered {counters['dead_lettered']}, "
        f"spooled {counters['spooled']}"
    )


@collectors_app.command("validate")
def validate(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(None, help="definition files or folders (default: paths.collectors)"),
    skip_path_check: bool = typer.Option(
        False, help="do not require the files' folders to exist on this machine"
    ),
) -> None:
    """Check definitions; print every problem with file:line: key; exit 1 when any is broken."""
    from hcm_soc.collectors.definition import DefinitionError, load_definition, load_definitions
    from hcm_soc.parsers.registry import format_names

    app_ctx: AppContext = ctx.obj
    targets = paths or [app_ctx.settings.paths.collectors]
    ok: list[str] = []
    errors: list[DefinitionError] = []
    for target in targets:
        if target.is_dir():
            good, bad = load_definitions(target, format_names(), check_paths=not skip_path_check)
            ok += [d.name for d in good]
            errors += bad
        else:
            try:
                ok.append(load_definition(target, format_names(), check_paths=not skip_path_check).name)
            except DefinitionError as e:
                errors.append(e)
    for err in errors:
        print(err)
    print(f"{len(ok)} valid, {len(errors)} invalid")
    if errors:
        raise typer.Exit(1)


@collectors_app.command("formats")
def formats() -> None:
    """List the formats (parsers) a definition or `hcm-soc ingest --format` can use."""
    from hcm_soc.parsers.registry import describe

    emit_table(["format", "default dataset", "what it reads"], describe())
