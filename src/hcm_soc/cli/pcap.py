"""`hcm-soc pcap PATH...`: read pcap/pcapng captures once into network records in Elasticsearch.

Each file is analysed on its own (its own flow table and protocol state), so the
records of one capture, and their ids, do not depend on which other files are
named with it: re-reading a capture writes nothing new (`already stored`).

A truncated or corrupt file keeps everything read before the damage (open flows
and transactions are emitted), is reported with its path and the reason, and the
remaining files are still read; the exit code is then 1. Progress of large files
(bytes read of total, packets/s) goes to stderr, the summary to stdout (`--json`
for a JSON object).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, info

if TYPE_CHECKING:
    pass

_PROGRESS_EVERY = 2.0  # seconds between progress lines; small files finish before the first


class _Progress:
    """Throttled progress lines on stderr for one file."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled
        self.start = time.monotonic()
        self.next = self.start + _PROGRESS_EVERY

    def __call__(self, done: int, total: int, packets: int) -> None:
        now = time.monotonic()
        if not self.enabled or now < self.next:
            return
        self.next = now + _PROGRESS_EVERY
        rate = packets / max(now - self.start, 1e-9)
        pct = f" ({100 * done / total:.0f} %)" if total else ""
        info(
            f"{self.path}: {done / 2**20:,.1f} of {total / 2**20:,.1f} MiB read{pct}, "
            f"{packets:,} packets, {rate:,.0f} packets/s"
        )


def _records_text(records: dict[str, int]) -> str:
    if not records:
        return "no records"
    parts = ", ".join(f"{ds.removeprefix('network.')} {n:,}" for ds, n in sorted(records.items()))
    return f"{sum(records.values()):,} records ({parts})"


def pcap(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help="pcap or pcapng files"
    ),
    source: str = typer.Option("pcap", help="source name stored in hcm.source"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress lines on stderr"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Read captures once into flow, DNS, HTTP and TLS records. Safe to repeat."""
    from hcm_soc.cli.collect import open_writer
    from hcm_soc.collectors.network.capture import FileResult, read_capture
    from hcm_soc.collectors.network.writer import NetworkRecordWriter

    app_ctx: AppContext = ctx.obj
    settings = app_ctx.settings
    writer, names = open_writer(app_ctx)
    if not json_out:
        from hcm_soc.collectors.network import implementation

        info(f"network collector: {implementation()}")
    sink = NetworkRecordWriter(writer, names, source=source)
    results: list[FileResult] = []
    t0 = time.perf_counter()
    with writer:
        for path in paths:
            result = read_capture(path, sink, settings.network, progress=_Progress(path, progress))
            results.append(result)
            if result.error:
                info(f"error: {result.error} (records read before it are kept)")
    seconds = time.perf_counter() - t0
    stats = writer.stats()
    errors = sum(1 for r in results if r.error)
    summary: dict[str, Any] = {
        "files": [vars(r) for r in results],
        "packets": sum(r.packets for r in results),
        "records": dict(sink.records),
        "written": stats["sent"],
        "duplicates": stats["duplicates"],
        "dead_lettered": stats["dead_lettered"],
        "spooled": stats["spooled"],
        "file_errors": errors,
        "seconds": round(seconds, 3),
        "indices": {ds: names.events(ds) for ds in sorted(sink.records)},
    }
    if json_out:
        emit_json(summary)
    else:
        for r in results:
            status = f"; ERROR: {r.error}" if r.error else ""
            print(f"{r.path}: {r.packets:,} packets, {_records_text(r.records)} in {r.seconds:.1f} s{status}")
        print(
            f"total: {len(results)} file(s), {summary['packets']:,} packets, {_records_text(summary['records'])}; "
            f"written {stats['sent']:,}, already stored {stats['duplicates']:,}, "
            f"dead-lettered {stats['dead_lettered']:,}, spooled {stats['spooled']:,}; {errors} file error(s)"
        )
    if errors or stats["dead_lettered"]:
        raise typer.Exit(1)
