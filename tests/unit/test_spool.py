"""The disk spool: FIFO, crash-safe, bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from hcm_soc.errors import SpoolFullError
from hcm_soc.store.spool import Spool


def test_first_in_first_out_across_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    for i in range(3):
        spool.append(f"batch {i}\n".encode(), count=i + 1)
    again = Spool(tmp_path, 1 << 20)
    assert again.pending_docs == 6
    first = again.oldest()
    assert first is not None and first.read() == b"batch 0\n"
    again.remove(first)
    # a restart with batches still waiting: new batches queue behind them
    reopened = Spool(tmp_path, 1 << 20)
    reopened.append(b"batch 3\n", 4)
    seen = []
    while (seg := reopened.oldest()) is not None:
        seen.append(seg.read())
        reopened.remove(seg)
    assert seen == [b"batch 1\n", b"batch 2\n", b"batch 3\n"]
    assert reopened.empty and reopened.size_bytes == 0


def test_half_written_segment_is_discarded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.append(b"whole\n", 1)
    (tmp_path / "00000000000000000002-5.tmp").write_bytes(b"half a batch")  # crash during write
    again = Spool(tmp_path, 1 << 20)
    assert len(again) == 1 and again.pending_docs == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    spool.append(b"x" * 60, 1)
    with pytest.raises(SpoolFullError, match="spool_max_bytes=100"):
        spool.append(b"y" * 60, 1)
    assert spool.pending_docs == 1
