"""Reading one capture file into network records: the analyzer over `iter_pcap`, with its
counters, used by `hcm-soc pcap` and the demo.

A damaged file ends with `FileResult.error` set; what was read before the damage is emitted
(open flows and transactions included), never lost.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcm_soc.errors import HcmSocError

if TYPE_CHECKING:
    from hcm_soc.collectors.network.writer import NetworkRecordWriter
    from hcm_soc.config import NetworkSettings


@dataclass
class FileResult:
    path: str
    packets: int = 0
    records: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    analyzer: dict[str, Any] = field(default_factory=dict)


def read_capture(
    path: Path,
    sink: NetworkRecordWriter,
    network: NetworkSettings,
    *,
    progress: Callable[[int, int, int], None] | None = None,
) -> FileResult:
    """Analyse one capture into `sink`. A damaged file ends with `error` set, never raises
    for the file's own problems (what was read before them is emitted)."""
    from hcm_soc.collectors.network.analyzer import NetworkAnalyzer
    from hcm_soc.collectors.network.packets import iter_pcap

    result = FileResult(str(path))
    before = Counter(sink.records)
    analyzer = NetworkAnalyzer(
        sink,
        internal_networks=network.internal_networks,
        max_flows=network.max_flows,
        active_timeout=network.active_timeout,
        idle_timeout=network.idle_timeout,
    )
    packets = 0

    def tracker(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total, packets)

    sink.file_path = str(path.resolve())
    t0 = time.perf_counter()
    try:
        for packet in iter_pcap(path, on_progress=tracker, decoder=analyzer.decoder):
            analyzer.add(packet)
            packets += 1
    except HcmSocError as e:
        result.error = str(e)
    except OSError as e:  # unreadable midway (I/O error, file removed on a network share)
        result.error = f"{path}: read failed: {e.strerror or e}"
    finally:
        analyzer.finish()  # a damaged file still yields the flows and transactions read so far
        sink.file_path = None
    result.seconds = time.perf_counter() - t0
    result.packets = packets
    result.records = dict(Counter(sink.records) - before)
    result.analyzer = dict(analyzer.stats())
    return result
