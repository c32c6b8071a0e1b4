"""Reading one capture file into network records: the analyzer over `iter_pcap`, with its
counters, used by `hcm-soc pcap` and the demo; and `fewer_collections`, the garbage
collector setting it reads with.

A damaged file ends with `FileResult.error` set; what was read before the damage is emitted
(open flows and transactions included), never lost.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    implementation: str = ""  # compiled (Cython) or pure-Python collector, see hcm_soc.collectors.network


@contextmanager
def fewer_collections(threshold: int = 100_000) -> Iterator[None]:
    """Raise the cyclic garbage collector's young-generation threshold while a capture is read.

    The analyzer creates no reference cycles (a whole benchmark capture leaves nothing for the
    collector to free), yet each record's dicts and lists count towards the default threshold of
    700 allocations, and every collection walks the young objects and, now and then, all the
    long-lived ones (open flows, connections, caches): about a tenth of the analysis time of a
    record-dense capture. Cyclic garbage from elsewhere in the process waits a little longer
    (at most ``threshold`` allocations). The previous thresholds are restored afterwards."""
    old = gc.get_threshold()
    gc.set_threshold(max(threshold, old[0]), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def read_capture(
    path: Path,
    sink: NetworkRecordWriter,
    network: NetworkSettings,
    *,
    progress: Callable[[int, int, int], None] | None = None,
) -> FileResult:
    """Analyse one capture into `sink`. A damaged file ends with `error` set, never raises
    for the file's own problems (what was read before them is emitted)."""
    from hcm_soc.collectors.network import implementation
    from hcm_soc.collectors.network.analyzer import NetworkAnalyzer
    from hcm_soc.collectors.network.packets import iter_pcap

    result = FileResult(str(path), implementation=implementation())
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
    with fewer_collections():
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
