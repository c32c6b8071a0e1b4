"""Running sources: one definition (`hcm-soc collect`), all enabled ones (`hcm-soc run`),
or files once (`hcm-soc ingest`).

Each source runs in its own thread with its own pipeline; the bulk writer is
shared. A source that fails is logged, counted and restarted with backoff; it
never stops the others (the isolation boundary of STYLE.md).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hcm_soc.collectors.definition import FileInput, SourceDefinition
from hcm_soc.collectors.pipeline import IngestPipeline
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from hcm_soc.config import Settings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class Runnable(Protocol):
    def run(self, stop: threading.Event) -> None: ...

    def stats(self) -> dict[str, Any]: ...


@dataclass
class SourceRun:
    definition: SourceDefinition
    pipeline: IngestPipeline | None = None
    collector: Runnable | None = None
    failures: int = 0
    last_error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.definition.name,
            "type": self.definition.type,
            "failures": self.failures,
            "last_error": self.last_error,
        }
        if self.pipeline is not None:
            out["parsed"] = self.pipeline.parsed
            out["parse_failures"] = self.pipeline.failed
        if self.collector is not None:
            out.update(self.collector.stats())
        return out


def build_collector(
    d: SourceDefinition,
    sink: IngestPipeline,
    state_dir: Path,
    progress: Progress | None,
    *,
    follow: bool = True,
) -> Runnable:
    """The collector of `d`'s type, wired to `sink`."""
    if d.type == "syslog":
        from hcm_soc.collectors.syslog import SyslogCollector

        collector = SyslogCollector(d, sink, progress=progress)
        collector.start()
        return collector
    if d.type == "file":
        from hcm_soc.collectors.filetail import FileTailCollector

        # one-shot reads use throwaway offsets and a fixed epoch: re-ingesting the same
        # file (same device and inode) yields the same ids, so nothing is stored twice
        epoch = None if follow else "ingest"
        return FileTailCollector(d, sink, state_dir=state_dir, follow=follow, progress=progress, epoch=epoch)
    if d.type == "evtx":
        return _EvtxOnce(d, sink, progress)
    raise ValueError(f"source type {d.type} is served by the HTTP ingest server, not by a collector thread")


class _EvtxOnce:
    """EVTX files are read once per run (they are exports handed in by operators)."""

    def __init__(self, d: SourceDefinition, sink: IngestPipeline, progress: Progress | None) -> None:
        self.d, self.sink, self.progress = d, sink, progress
        self._stats: dict[str, Any] = {}

    def run(self, stop: threading.Event) -> None:
        from hcm_soc.collectors.evtx import ingest_paths

        assert self.d.evtx is not None
        self._stats = dict(ingest_paths(self.d.evtx.paths, self.sink, self.progress) or {})
        self.sink.flush()

    def stats(self) -> dict[str, Any]:
        return self._stats


def _network_maker(
    d: SourceDefinition, writer: BulkWriter, names: IndexNames, settings: Settings | None
) -> Callable[[], Runnable]:
    from hcm_soc.collectors.network.live import LiveCollector, LiveParams
    from hcm_soc.config import NetworkSettings

    params = LiveParams.from_definition(d, settings.network if settings else NetworkSettings())
    return lambda: LiveCollector(params, writer, names)


def _supervise(run: SourceRun, make: Callable[[], Runnable], stop: threading.Event) -> None:
    backoff = 1.0
    while not stop.is_set():
        try:
            run.collector = make()
            run.collector.run(stop)
            return
        except Exception as e:  # isolation boundary: one source never stops the others
            run.failures += 1
            run.last_error = f"{type(e).__name__}: {e}"
            log.exception(
                "source failed; restarting", extra={"source": run.definition.name, "backoff": backoff}
            )
            stop.wait(backoff)
            backoff = min(backoff * 2, 60.0)


def run_sources(
    definitions: list[SourceDefinition],
    writer: BulkWriter,
    names: IndexNames,
    state_dir: Path,
    stop: threading.Event,
    progress: Progress | None = None,
    http_tokens: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> list[SourceRun]:
    """Start every definition in its own thread; return their SourceRuns (threads running).
    `settings` gives live network captures their defaults (internal networks, flow table)."""
    runs: list[SourceRun] = []
    http_defs = [d for d in definitions if d.type == "http"]
    for d in definitions:
        if d.type == "http":
            continue
        run = SourceRun(d)
        make: Callable[[], Runnable]
        if d.type == "network":
            make = _network_maker(d, writer, names, settings)
        else:
            pipeline = IngestPipeline.for_definition(writer, names, d)
            run.pipeline = pipeline

            def make(d: SourceDefinition = d, pipeline: IngestPipeline = pipeline) -> Runnable:
                return build_collector(d, pipeline, state_dir, progress)

        run.thread = threading.Thread(
            target=_supervise, args=(run, make, stop), name=f"source-{d.name}", daemon=True
        )
        run.thread.start()
        runs.append(run)
    if http_defs:
        from hcm_soc.collectors.http_ingest import HttpIngestServer

        pipelines: dict[tuple[str, str], IngestPipeline] = {}

        def sink_for(d: SourceDefinition, dataset: str) -> IngestPipeline:
            key = (d.name, dataset)
            if key not in pipelines:
                pipelines[key] = IngestPipeline.for_definition(
                    writer, names, d.model_copy(update={"dataset": dataset})
                )
            return pipelines[key]

        run = SourceRun(http_defs[0])

        def make_http() -> Runnable:
            server = HttpIngestServer(http_defs, sink_for, tokens=http_tokens)
            server.start()
            return server

        run.thread = threading.Thread(
            target=_supervise, args=(run, make_http, stop), name="source-http", daemon=True
        )
        run.thread.start()
        runs.append(run)
    return runs


def ingest_files(
    fmt: str,
    paths: list[str],
    writer: BulkWriter,
    names: IndexNames,
    *,
    dataset: str | None,
    name: str,
    timezone: str,
    options: dict[str, Any],
    progress: Progress | None,
    host: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Read `paths` once with format `fmt` (back-filling, the demo). Re-ingesting the same
    files writes nothing new: ids come from file identity and offset (record id for EVTX).
    `host` sets static `host.*` fields (the system the files come from), as a definition's `host:`."""
    if fmt == "evtx":
        d = SourceDefinition.model_validate(
            {
                "name": name,
                "type": "evtx",
                "format": "evtx",
                "dataset": dataset,
                "timezone": timezone,
                "evtx": {"paths": paths},
                "options": options,
                "host": host or {},
            }
        )
        pipeline = IngestPipeline.for_definition(writer, names, d)
        collector: Runnable = _EvtxOnce(d, pipeline, progress)
        collector.run(threading.Event())
    else:
        with tempfile.TemporaryDirectory(prefix="hcm-ingest-") as tmp:
            d = SourceDefinition(
                name=name,
                type="file",
                format=fmt,
                dataset=dataset,
                timezone=timezone,
                options=options,
                host=host or {},
                file=FileInput(
                    paths=[str(Path(p).resolve()) for p in paths], offsets_file=Path(tmp) / "offsets.json"
                ),
            )
            pipeline = IngestPipeline.for_definition(writer, names, d)
            collector = build_collector(d, pipeline, Path(tmp), progress, follow=False)
            collector.run(threading.Event())
    pipeline.flush()
    return {
        "parsed": pipeline.parsed,
        "parse_failures": pipeline.failed,
        "index": pipeline.index,
        **collector.stats(),
        **writer.stats(),
    }


def wait(
    runs: list[SourceRun],
    stop: threading.Event,
    report_every: float,
    report: Callable[[list[SourceRun]], None],
) -> None:
    """Block until `stop` is set (signal handler), reporting counters periodically."""
    next_report = time.monotonic() + report_every
    while not stop.wait(0.5):
        if time.monotonic() >= next_report:
            report(runs)
            next_report = time.monotonic() + report_every
        if runs and all(r.thread is not None and not r.thread.is_alive() for r in runs):
            return
