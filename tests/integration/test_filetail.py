"""The file collector into a real Elasticsearch: rotation while writing, crash and
restart, start_at end. Every line carries a sequence number; the stored events
must hold each one exactly once."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from hcm_soc.collectors.definition import FileInput, SourceDefinition
from hcm_soc.collectors.filetail import FileTailCollector
from hcm_soc.collectors.pipeline import IngestPipeline
from hcm_soc.store.bulk import BulkWriter
from hcm_soc.store.names import IndexNames

CHILD = Path(__file__).with_name("filetail_child.py")
REPO = Path(__file__).resolve().parents[2]
SEQ = re.compile(r"seq=(\d+)")


def nginx_line(seq: int) -> str:
    return (
        f"10.20.{seq % 250}.{seq % 200} - - [25/Nov/2026:10:{seq // 60 % 60:02d}:{seq % 60:02d} +0700] "
        f'"GET /dich-vu-cong/tra-cuu-ho-so?seq={seq} HTTP/1.1" 200 {seq % 9000} "-" "Mozilla/5.0 (Cốc Cốc)"\n'
    )


def syslog_line(seq: int) -> str:
    return (
        f"<38>Nov 25 10:{seq // 60 % 60:02d}:{seq % 60:02d} dvc-portal-01 sshd[{2000 + seq % 300}]: "
        f"Failed password for invalid user quantri{seq % 37} from 10.9.{seq % 250}.{seq % 200} port 22 ssh2 seq={seq}\n"
    )


def wait_for(cond: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what()}")
        time.sleep(0.05)


def stored_seqs(es: Elasticsearch, index: str) -> tuple[list[int], int]:
    """Sequence numbers of the stored events (from event.original) and how many failed to parse."""
    es.indices.refresh(index=index)
    seqs: list[int] = []
    failures = 0
    for hit in helpers.scan(es, index=index, query={"_source": ["event.original", "tags"]}, size=5000):
        src = hit["_source"]
        m = SEQ.search(src["event"]["original"])
        assert m, src
        seqs.append(int(m.group(1)))
        failures += "_parse_failure" in src.get("tags", [])
    return seqs, failures


def assert_exactly_once(seqs: list[int], n: int) -> None:
    dupes = [s for s, c in Counter(seqs).items() if c > 1]
    missing = sorted(set(range(n)) - set(seqs))
    assert not dupes, f"{len(dupes)} duplicated, e.g. {dupes[:10]}"
    assert not missing, f"{len(missing)} missing, e.g. {missing[:10]}"
    assert len(seqs) == n


class Following:
    """A collector following in a thread, writing through a real pipeline."""

    def __init__(
        self, es: Elasticsearch, names: IndexNames, definition: SourceDefinition, state: Path
    ) -> None:
        self.writer = BulkWriter(es, names, flush_interval=None, max_docs=1000)
        self.pipeline = IngestPipeline.for_definition(self.writer, names, definition)
        self.index = self.pipeline.index
        self.collector = FileTailCollector(definition, self.pipeline, state_dir=state)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.collector.run, args=(self.stop,), name="filetail-test")

    def __enter__(self) -> Following:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "collector did not stop"
        self.writer.close()

    def records(self) -> int:
        return self.collector.stats()["records"]


def file_definition(name: str, fmt: str, paths: list[str], **file_kw: Any) -> SourceDefinition:
    return SourceDefinition(
        name=name, type="file", format=fmt, file=FileInput(paths=paths, poll_interval=0.05, **file_kw)
    )


TOTAL = 20_000
ROTATE_EVERY = 4_000


def write_with_rotation(log: Path, rotate: Callable[[int], None], *, reopen_lag: int) -> None:
    """Append TOTAL nginx lines in small bursts; call `rotate(k)` every ROTATE_EVERY lines.
    After a rename rotation the writer keeps writing `reopen_lag` lines to the old file
    (as nginx does until it is told to reopen)."""
    f = open(log, "a", encoding="utf-8")  # noqa: SIM115 - reopened on rotation
    try:
        lag = -1
        for seq in range(TOTAL):
            if seq and seq % ROTATE_EVERY == 0:
                rotate(seq // ROTATE_EVERY)
                lag = reopen_lag
            if lag == 0:
                f.close()
                f = open(log, "a", encoding="utf-8")  # noqa: SIM115
            lag -= 1
            f.write(nginx_line(seq))
            if seq % 50 == 49:
                f.flush()
                time.sleep(0.001)  # paces the writer so rotations happen while the collector reads
    finally:
        f.close()


@pytest.mark.parametrize("pattern", ["exact", "glob"])
def test_rename_rotation_while_writing_stores_every_line_once(
    es: Elasticsearch, installed: IndexNames, tmp_path: Path, pattern: str
) -> None:
    log = tmp_path / "access.log"
    log.touch()
    paths = [str(log)] if pattern == "exact" else [str(log) + "*"]
    d = file_definition("portal-nginx", "nginx", paths)

    run = Following(es, installed, d, tmp_path / "state")

    def rename(k: int) -> None:
        if pattern == "glob":  # logrotate: .1 -> .2 -> ..., then the live file -> .1
            for i in range(k - 1, 0, -1):
                os.rename(f"{log}.{i}", f"{log}.{i + 1}")
            os.rename(log, f"{log}.1")
        else:
            # Rotated names are outside the pattern: only the open descriptor reaches them.
            # Like tail -F, a file created and renamed away between two scans is never seen
            # by any name, so (as with real rotation periods) the current file must have been
            # found once; it may still be far from read to its end.
            wait_for(lambda: run.collector.stats()["files"] >= k, 60, lambda: f"file {k} to be found")
            os.rename(log, f"{log}.{k}")

    with run:
        write_with_rotation(log, rename, reopen_lag=300)
        wait_for(
            lambda: run.records() >= TOTAL, 120, lambda: f"{TOTAL} records, have {run.collector.stats()}"
        )
    stats = run.collector.stats()
    assert stats["records"] == TOTAL
    if pattern == "exact":
        assert stats["rotations"] == TOTAL // ROTATE_EVERY - 1
    else:  # renames seen depend on how often the scan ran in between
        assert stats["rotations"] >= 1
    assert stats["truncations"] == 0
    seqs, failures = stored_seqs(es, run.index)
    assert_exactly_once(seqs, TOTAL)
    assert failures == 0
    assert run.writer.stats()["dead_lettered"] == 0


@pytest.mark.parametrize("paced", [False, True])
def test_copytruncate_while_writing_stores_every_line_once(
    es: Elasticsearch, installed: IndexNames, tmp_path: Path, paced: bool
) -> None:
    log = tmp_path / "access.log"
    log.touch()
    d = file_definition("portal-nginx", "nginx", [str(log) + "*"])
    run = Following(es, installed, d, tmp_path / "state")

    def copytruncate(k: int) -> None:
        if paced:
            # the collector is at most 1,000 lines behind: it has seen the previous truncation
            # (it read lines written after it) and is still reading when this one comes
            need = k * ROTATE_EVERY - 1000
            wait_for(lambda: run.records() >= need, 60, lambda: f"{need} records, have {run.records()}")
        # logrotate copytruncate, with the writer paused between copy and truncate (here the
        # writer itself rotates); otherwise logrotate itself loses what is written in between
        for i in range(k - 1, 0, -1):
            os.rename(f"{log}.{i}", f"{log}.{i + 1}")
        shutil.copyfile(log, f"{log}.1")
        os.truncate(log, 0)

    with run:
        write_with_rotation(log, copytruncate, reopen_lag=-1)
        wait_for(
            lambda: run.records() >= TOTAL, 120, lambda: f"{TOTAL} records, have {run.collector.stats()}"
        )
    stats = run.collector.stats()
    assert stats["records"] == TOTAL
    rotations = TOTAL // ROTATE_EVERY - 1
    if paced:  # each truncation seen, and each copy read on from where its original was left
        assert stats["truncations"] == stats["copies"] == rotations
    else:  # truncations in quick succession may be seen as one; the copies hold what was between
        assert 1 <= stats["truncations"] <= rotations
    seqs, failures = stored_seqs(es, run.index)
    assert_exactly_once(seqs, TOTAL)
    assert failures == 0
    # every stored event names the file it was read from
    es.indices.refresh(index=run.index)
    per_file = es.search(
        index=run.index, size=0, aggs={"f": {"terms": {"field": "log.file.path", "size": 20}}}
    )["aggregations"]["f"]["buckets"]
    assert sum(b["doc_count"] for b in per_file) == TOTAL
    assert {b["key"] for b in per_file} <= {str(log), *(f"{log}.{i}" for i in range(1, 6))}


@pytest.fixture
def child_env() -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    yield env


def run_child(
    es_url: str, names: IndexNames, log: Path, state: Path, env: dict[str, str]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), es_url, names.prefix, names.namespace, str(log), str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def saved_offset(state: Path) -> int:
    path = state / "offsets" / "crash-test-syslog.json"
    try:
        streams = json.loads(path.read_text())["streams"]
    except (FileNotFoundError, ValueError):
        return 0
    return max((s["offset"] for s in streams.values()), default=0)


@pytest.mark.slow
def test_kill_9_mid_file_then_restart_stores_every_line_once(
    es: Elasticsearch, es_url: str, installed: IndexNames, tmp_path: Path, child_env: dict[str, str]
) -> None:
    n = 200_000
    log = tmp_path / "auth.log"
    with open(log, "w", encoding="utf-8") as f:
        f.writelines(syslog_line(seq) for seq in range(n))
    size = log.stat().st_size
    state = tmp_path / "state"

    first = run_child(es_url, installed, log, state, child_env)
    try:
        wait_for(  # killed in the middle: a quarter of the file saved, more of it sent
            lambda: saved_offset(state) > size // 4 or first.poll() is not None,
            180,
            lambda: f"a quarter of the file to be saved (saved offset {saved_offset(state)} of {size})",
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL, f"the child ended before the kill: {first.communicate()}"
    at_kill = saved_offset(state)
    assert 0 < at_kill < size, "killed after the whole file was saved: nothing left to resume"
    with open(log, "rb") as f:
        lines_before = f.read(at_kill).count(b"\n")
    index = installed.events("syslog")
    # a bulk request sent just before the kill may still be indexing: wait until the
    # count stops moving (three equal readings), bounded by a deadline
    readings: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(readings) < 3 or len(set(readings[-3:])) > 1):
        es.indices.refresh(index=index)
        readings.append(int(es.count(index=index)["count"]))
        time.sleep(0.5)
    stored_at_kill = readings[-1]
    # everything before the saved offset was flushed before it was saved
    assert stored_at_kill >= lines_before

    second = run_child(es_url, installed, log, state, child_env)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    # the restart read exactly from the saved offset to the end of the file
    assert report["collector"]["records"] == n - lines_before
    # what was sent after the last save is read again under the same ids: duplicates, not new events
    assert report["writer"]["duplicates"] == stored_at_kill - lines_before
    assert report["writer"]["dead_lettered"] == 0
    assert saved_offset(state) == size

    seqs, failures = stored_seqs(es, index)
    assert_exactly_once(seqs, n)
    assert failures == 0


def test_start_at_end_skips_existing_content(
    es: Elasticsearch, installed: IndexNames, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"existing line seq={i}\n" for i in range(100)), encoding="utf-8")
    d = file_definition("app-raw", "raw", [str(log)], start_at="end")
    with Following(es, installed, d, tmp_path / "state") as run:
        wait_for(lambda: run.collector.stats()["files"] == 1, 30, lambda: "the first scan")
        with open(log, "a", encoding="utf-8") as f:
            f.writelines(f"new line seq={i} – Sở Thông tin và Truyền thông\n" for i in range(100, 150))
        wait_for(lambda: run.records() >= 50, 30, lambda: f"50 records, have {run.collector.stats()}")
    assert run.records() == 50
    seqs, _ = stored_seqs(es, run.index)
    assert sorted(seqs) == list(range(100, 150))
    es.indices.refresh(index=run.index)
    hit = es.search(index=run.index, query={"match": {"message": "Truyền"}}, size=1)["hits"]["hits"][0]
    assert hit["_source"]["message"].endswith("Sở Thông tin và Truyền thông")
    assert hit["_source"]["log"]["file"]["path"] == str(log)
