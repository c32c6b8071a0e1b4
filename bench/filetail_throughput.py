"""Throughput of FileTailCollector into a Sink that only counts (no parsing, no Elasticsearch).

.venv/bin/python bench/filetail_throughput.py [LINES]   (default 1,000,000)
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from hcm_soc.collectors.definition import FileInput, MultilineSpec, SourceDefinition
from hcm_soc.collectors.filetail import FileTailCollector
from machine import machine_line


class CountSink:
    def __init__(self):
        self.n = 0
        self.bytes = 0

    def handle(self, r):
        self.n += 1

    def flush(self):
        pass


N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
with tempfile.TemporaryDirectory() as tmp:
    log = Path(tmp) / "access.log"
    with open(log, "w", encoding="utf-8") as f:
        for i in range(N):
            f.write(
                f'10.0.{i % 256}.{i % 200} - - [25/Nov/2026:10:{i % 60:02d}:00 +0700] "GET /dich-vu-cong/ho-so?id={i} HTTP/1.1" 200 {i % 5000} "-" "Mozilla/5.0"\n'
            )
    size = log.stat().st_size
    print(f"machine: {machine_line()}")
    print(f"file: {N:,} lines, {size / 2**20:.1f} MiB")
    for label, ml in (("plain", None), ("multiline", MultilineSpec(start=r"^\d"))):
        best = None
        for run in range(3):
            d = SourceDefinition(
                name="bench", type="file", format="raw", file=FileInput(paths=[str(log)], multiline=ml)
            )
            sink = CountSink()
            c = FileTailCollector(d, sink, state_dir=Path(tmp) / f"state-{label}-{run}", follow=False)
            t0 = time.perf_counter()
            c.run(threading.Event())
            dt = time.perf_counter() - t0
            assert sink.n == N, sink.n
            best = dt if best is None else min(best, dt)
        print(f"{label:9s}: best of 3 {best:.2f} s  {N / best:,.0f} lines/s  {size / best / 2**20:.0f} MiB/s")
