"""FileTailCollector on real files in tmp_path, with a list Sink and a fake clock.

Each test drives the collector round by round with `poll()` (no threads, no sleeps)
and checks what reached the sink and what was saved in the offsets file.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from hcm_soc.collectors.base import RawRecord
from hcm_soc.collectors.definition import FileInput, MultilineSpec, SourceDefinition
from hcm_soc.collectors.filetail import FileTailCollector
from hcm_soc.collectors.lines import MAX_LINE
from hcm_soc.errors import HcmSocError

VI = "Đăng nhập thất bại cho người dùng Nguyễn Văn Bình từ 10.0.0.5"


class ListSink:
    """The Sink seam: keeps records; `flushed` is how many were durable at the last flush."""

    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self.flushed = 0
        self.fail_flush = False

    def handle(self, record: RawRecord) -> None:
        self.records.append(record)

    def flush(self) -> None:
        if self.fail_flush:
            raise ConnectionError("sink unreachable")
        self.flushed = len(self.records)

    @property
    def texts(self) -> list[str]:
        return [str(r.data) for r in self.records]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def definition(*paths: Path | str, **file_kw: Any) -> SourceDefinition:
    return SourceDefinition(
        name="web-portal", type="file", format="raw", file=FileInput(paths=[str(p) for p in paths], **file_kw)
    )


def make(tmp_path: Path, d: SourceDefinition, sink: ListSink, **kw: Any) -> FileTailCollector:
    kw.setdefault("clock", FakeClock())
    kw.setdefault("checkpoint_interval", 0.0)  # save at the end of every round that read something
    return FileTailCollector(d, sink, state_dir=tmp_path / "state", **kw)


def saved(tmp_path: Path, name: str = "web-portal") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "state" / "offsets" / f"{name}.json").read_text())
    return data


def saved_offsets(tmp_path: Path) -> dict[str, int]:
    return {s["path"]: s["offset"] for s in saved(tmp_path)["streams"].values() if s["dev"] is not None}


def one_shot(tmp_path: Path, d: SourceDefinition, **kw: Any) -> tuple[ListSink, dict[str, int]]:
    sink = ListSink()
    c = make(tmp_path, d, sink, follow=False, **kw)
    c.run(threading.Event())
    return sink, c.stats()


def append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def test_lines_carry_path_offset_read_time_and_stable_ids(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("alpha\nbeta\n\ngamma\n")
    sink, stats = one_shot(tmp_path, definition(log))
    assert sink.texts == ["alpha", "beta", "gamma"]  # the empty line is not a record
    assert [r.fields for r in sink.records] == [
        {"log": {"file": {"path": str(log)}, "offset": off}} for off in (0, 6, 12)
    ]
    st = os.stat(log)
    assert all(r.id_key.startswith("file:web-portal:") for r in sink.records)
    assert [r.id_key.rsplit(":", 4)[1:] for r in sink.records] == [
        [str(st.st_dev), str(st.st_ino), "0", str(off)] for off in (0, 6, 12)
    ]
    assert all(r.received.tzinfo is UTC for r in sink.records)
    assert stats["lines"] == 4 and stats["records"] == 3 and stats["files"] == 1
    assert stats["bytes"] == log.stat().st_size
    assert saved_offsets(tmp_path) == {str(log): log.stat().st_size}


def test_restart_resumes_exactly_at_the_saved_offset(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    first, _ = one_shot(tmp_path, definition(log))
    append(log, "".join(f"line {i}\n" for i in range(100, 150)))
    second, stats = one_shot(tmp_path, definition(log))
    assert first.texts == [f"line {i}" for i in range(100)]
    assert second.texts == [f"line {i}" for i in range(100, 150)]
    assert not {r.id_key for r in first.records} & {r.id_key for r in second.records}
    assert stats["bytes"] == log.stat().st_size - len("".join(f"line {i}\n" for i in range(100)))


def test_a_crash_between_flush_and_save_rereads_under_the_same_ids(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"event {i}\n" for i in range(50)))
    one_shot(tmp_path, definition(log))
    offsets = tmp_path / "state" / "offsets" / "web-portal.json"
    before = offsets.read_bytes()  # what a crash right after the next flush would leave behind
    append(log, "".join(f"event {i}\n" for i in range(50, 80)))
    flushed, _ = one_shot(tmp_path, definition(log))
    offsets.write_bytes(before)
    reread, _ = one_shot(tmp_path, definition(log))
    assert [(r.id_key, r.data, r.fields) for r in reread.records] == [
        (r.id_key, r.data, r.fields) for r in flushed.records
    ]


def test_offsets_are_saved_only_after_the_sink_flushed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a1\na2\na3\n")
    sink = ListSink()
    c = make(tmp_path, definition(log), sink)
    c.poll()
    assert saved_offsets(tmp_path) == {str(log): 9}
    append(log, "b1\nb2\n")
    sink.fail_flush = True
    with pytest.raises(ConnectionError):
        c.poll()
    assert sink.texts[-2:] == ["b1", "b2"]  # handed over, not durable
    assert saved_offsets(tmp_path) == {str(log): 9}
    with pytest.raises(ConnectionError):
        c.close()  # the final flush fails too: nothing more is saved, the lock is released
    assert saved_offsets(tmp_path) == {str(log): 9}
    again = ListSink()
    c2 = make(tmp_path, definition(log), again)
    c2.poll()
    c2.close()
    assert again.texts == ["b1", "b2"]
    assert [r.id_key for r in again.records] == [r.id_key for r in sink.records[-2:]]
    assert saved_offsets(tmp_path) == {str(log): 15}


def test_follow_rewinds_to_the_saved_offset_after_a_failed_round(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("x1\nx2\n")
    sink = ListSink()
    stop = threading.Event()
    calls = {"n": 0}
    real_flush = sink.flush

    def flaky_flush() -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the checkpoint after the first lines fails once
            raise ConnectionError("sink unreachable")
        real_flush()
        if len(sink.records) >= 4:
            stop.set()

    sink.flush = flaky_flush  # type: ignore[method-assign]
    d = definition(log, poll_interval=0.01)
    c = FileTailCollector(d, sink, state_dir=tmp_path / "state")
    worker = threading.Thread(target=c.run, args=(stop,))
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive()
    # read, flush failed, read again from the saved offset under the same ids
    assert sink.texts == ["x1", "x2", "x1", "x2"]
    assert sink.records[0].id_key == sink.records[2].id_key
    assert c.stats()["errors"] == 1
    assert saved_offsets(tmp_path) == {str(log): 6}


def test_partial_last_line_waits_when_following_and_is_emitted_by_a_one_shot_read(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntw")
    sink = ListSink()
    c = make(tmp_path, definition(log), sink)
    c.poll()
    assert sink.texts == ["one"]
    append(log, "o\nthr")
    c.poll()
    assert sink.texts == ["one", "two"]
    assert [r.fields["log"]["offset"] for r in sink.records] == [0, 4]
    c.close()
    assert saved_offsets(tmp_path) == {str(log): 8}  # "thr" is not durable yet
    rest, _ = one_shot(tmp_path, definition(log))
    assert rest.texts == ["thr"]
    assert rest.records[0].fields["log"]["offset"] == 8
    assert saved_offsets(tmp_path) == {str(log): 11}


def test_crlf_and_byte_order_mark(tmp_path: Path) -> None:
    log = tmp_path / "win.log"
    log.write_bytes(b"\xef\xbb\xbffirst\r\nsecond\r\n")
    sink, _ = one_shot(tmp_path, definition(log))
    assert sink.texts == ["first", "second"]


def test_invalid_utf8_is_replaced_and_counted_and_vietnamese_stays_intact(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"user=\xff\xfe bad\n" + VI.encode() + b"\n" + b"\xc3\n")
    sink, stats = one_shot(tmp_path, definition(log))
    assert sink.texts == ["user=\ufffd\ufffd bad", VI, "\ufffd"]
    assert stats["decode_errors"] == 2


def test_other_ascii_compatible_encodings_and_utf16_refused(tmp_path: Path) -> None:
    log = tmp_path / "legacy.log"
    log.write_bytes("café olé\n".encode("latin-1"))
    sink, stats = one_shot(tmp_path, definition(log, encoding="latin-1"))
    assert sink.texts == ["café olé"] and stats["decode_errors"] == 0
    with pytest.raises(HcmSocError, match="newline"):
        make(tmp_path, definition(log, encoding="utf-16"), ListSink())
    with pytest.raises(HcmSocError, match=r"unknown file\.encoding"):
        make(tmp_path, definition(log, encoding="no-such-codec"), ListSink())


def test_over_long_lines_are_cut_tagged_and_never_split_a_character(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    long_line = b"a" * (MAX_LINE - 1) + "ắ".encode() + b"tail"  # the 3-byte character straddles the cut
    log.write_bytes(long_line + b"\nnext\n")
    sink, stats = one_shot(tmp_path, definition(log))
    assert [len(t) for t in sink.texts] == [MAX_LINE - 1, 4]
    assert sink.records[0].tags == ("_truncated",) and sink.records[1].tags == ()
    assert sink.records[1].fields["log"]["offset"] == len(long_line) + 1
    assert stats["long_lines"] == 1 and stats["decode_errors"] == 0


def test_an_over_long_line_still_being_written_is_cut_once_and_skipped(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_bytes(b"start\n" + b"b" * (MAX_LINE + 500_000))
    sink = ListSink()
    c = make(tmp_path, definition(log), sink)
    c.poll()
    assert [len(t) for t in sink.texts] == [5, MAX_LINE]
    c.close()
    assert saved_offsets(tmp_path) == {str(log): 6}  # a restart re-emits the cut line under the same id
    c = make(tmp_path, definition(log), sink)
    c.poll()
    append(log, b"b" * 1000 + b"\nafter\n")
    c.poll()
    c.close()
    assert [len(t) for t in sink.texts] == [5, MAX_LINE, MAX_LINE, 5]
    assert sink.records[1].id_key == sink.records[2].id_key
    assert sink.texts[-1] == "after"
    assert saved_offsets(tmp_path) == {str(log): log.stat().st_size}


MULTI = (
    "2026-11-25 10:00:01 ERROR failed\n"
    "Traceback (most recent call last):\n"
    '  File "app.py", line 3\n'
    "2026-11-25 10:00:02 INFO ok\n"
    "2026-11-25 10:00:03 ERROR Lỗi kết nối\n"
    "  at db.connect\n"
)


def test_multiline_records_join_continuation_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(MULTI)
    d = definition(log, multiline=MultilineSpec(start=r"^\d{4}-\d{2}-\d{2} "))
    sink, stats = one_shot(tmp_path, d)
    lines = MULTI.splitlines()
    assert sink.texts == ["\n".join(lines[0:3]), lines[3], "\n".join(lines[4:6])]
    assert [r.fields["log"]["offset"] for r in sink.records] == [
        0,
        MULTI.encode().index(b"2026-11-25 10:00:02"),
        MULTI.encode().index(b"2026-11-25 10:00:03"),
    ]
    assert stats["multiline_records"] == 2 and stats["records"] == 3 and stats["lines"] == 6


def test_multiline_max_lines_starts_a_new_record(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("BEGIN x\n a\n b\n c\nBEGIN y\n")
    d = definition(log, multiline=MultilineSpec(start="^BEGIN", max_lines=2))
    sink, _ = one_shot(tmp_path, d)
    assert sink.texts == ["BEGIN x\n a", " b\n c", "BEGIN y"]


def test_multiline_timeout_emits_and_saves_the_record(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("2026 start\n  more\n")
    clock = FakeClock()
    sink = ListSink()
    d = definition(log, multiline=MultilineSpec(start=r"^\d{4} ", timeout=2.0))
    c = make(tmp_path, d, sink, clock=clock)
    c.poll()
    assert sink.texts == []
    assert saved_offsets(tmp_path) == {str(log): 0}  # the pending record is not durable
    clock.now += 1.5
    append(log, "  again\n")
    c.poll()
    clock.now += 1.5  # 3 s after the first line but only 1.5 s after the last one
    c.poll()
    assert sink.texts == []
    clock.now += 0.6
    c.poll()
    assert sink.texts == ["2026 start\n  more\n  again"]
    assert saved_offsets(tmp_path) == {str(log): log.stat().st_size}
    c.close()


def test_truncation_starts_a_new_generation_with_new_ids(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"old {i}\n" for i in range(5)))
    sink = ListSink()
    c = make(tmp_path, definition(log), sink)
    c.poll()
    with open(log, "w") as f:  # truncated (size < offset)
        f.write("new 0\nnew 1\n")
    c.poll()
    assert sink.texts == [*(f"old {i}" for i in range(5)), "new 0", "new 1"]
    old_ids, new_ids = {r.id_key for r in sink.records[:5]}, {r.id_key for r in sink.records[5:]}
    assert sink.records[5].fields["log"]["offset"] == 0
    assert not old_ids & new_ids
    assert sink.records[5].id_key.split(":")[-2] == "1"  # generation 1 of the same inode
    assert c.stats()["truncations"] == 1
    c.close()


def test_truncation_hidden_by_faster_regrowth_is_caught_by_the_fingerprint(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"first {i}\n" for i in range(3)))
    sink = ListSink()
    c = make(tmp_path, definition(log), sink)
    c.poll()
    with open(log, "w") as f:  # truncated and already bigger than the old offset
        f.write("".join(f"second generation {i}\n" for i in range(10)))
    c.poll()
    assert sink.texts[3:] == [f"second generation {i}" for i in range(10)]
    assert sink.records[3].fields["log"]["offset"] == 0
    assert c.stats()["truncations"] == 1
    c.close()


def test_truncation_while_stopped_is_detected_on_restart(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"before {i}\n" for i in range(20)))
    one_shot(tmp_path, definition(log))
    log.write_text("after 0\n")
    sink, stats = one_shot(tmp_path, definition(log))
    assert sink.texts == ["after 0"] and stats["truncations"] == 1


def test_copytruncate_copy_is_read_on_under_the_original_ids(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"request {i:04d} GET /dich-vu-cong\n" for i in range(100)))
    sink = ListSink()
    c = make(tmp_path, definition(str(log) + "*"), sink)
    c.poll()
    append(log, "".join(f"request {i:04d} GET /dich-vu-cong\n" for i in range(100, 120)))  # not read yet
    shutil.copyfile(log, tmp_path / "app.log.1")
    c.poll()  # the copy shows up before the truncation: it must not be read as a new file
    assert len(sink.records) == 120
    with open(log, "r+") as f:
        f.truncate(0)
    append(log, "".join(f"request {i:04d} GET /dich-vu-cong\n" for i in range(120, 125)))
    c.poll()
    c.close()
    texts = sink.texts
    assert sorted(texts) == [f"request {i:04d} GET /dich-vu-cong" for i in range(125)]
    assert len({r.id_key for r in sink.records}) == 125
    stats = c.stats()
    assert stats["truncations"] == 1 and stats["copies"] == 1  # adopted, with nothing left to read
    assert not [r for r in sink.records if r.fields["log"]["file"]["path"].endswith(".1")]


def test_copytruncate_copy_supplies_lines_not_read_before_the_truncation(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"request {i:04d}\n" for i in range(100)))
    sink = ListSink()
    c = make(tmp_path, definition(str(log) + "*"), sink)
    c.poll()
    origin_ids = [r.id_key for r in sink.records]
    append(log, "".join(f"request {i:04d}\n" for i in range(100, 130)))
    shutil.copyfile(log, tmp_path / "app.log.1")
    with open(log, "r+") as f:
        f.truncate(0)
    append(log, "request 0130\n")
    c.poll()
    c.close()
    assert sorted(sink.texts) == [f"request {i:04d}" for i in range(131)]
    from_copy = [r for r in sink.records if r.fields["log"]["file"]["path"].endswith(".1")]
    assert [r.data for r in from_copy] == [f"request {i:04d}" for i in range(100, 130)]
    # the copy continues the original stream: same origin, offsets continue
    assert from_copy[0].id_key.rsplit(":", 1)[0] == origin_ids[0].rsplit(":", 1)[0]
    assert from_copy[0].fields["log"]["offset"] == len("request 0000\n") * 100
    assert c.stats()["copies"] == 1 and c.stats()["truncations"] == 1


def test_rename_rotation_finishes_the_old_file_then_reads_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    clock = FakeClock()
    sink = ListSink()
    c = make(tmp_path, definition(log), sink, clock=clock)
    with open(log, "a") as old:
        old.write("old 0\nold 1\n")
        old.flush()
        c.poll()
        os.rename(log, tmp_path / "access.log.1")
        old.write("old 2\n")  # the writer has not reopened yet
        old.flush()
        log.write_text("new 0\n")
        c.poll()
    assert sink.texts == ["old 0", "old 1", "old 2", "new 0"]
    assert sink.records[2].fields["log"]["file"]["path"] == str(log)  # the name it was read under
    assert c.stats()["rotations"] == 1 and c.stats()["open_files"] == 2
    clock.now += 11  # the renamed file is let go after a grace period without new lines
    c.poll()
    assert c.stats()["open_files"] == 1
    c.close()


def test_file_rotated_while_stopped_is_finished_by_inode(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("a 0\n")
    one_shot(tmp_path, definition(log))
    append(log, "a 1\n")
    os.rename(log, tmp_path / "access.log.1")
    log.write_text("b 0\n")
    sink, stats = one_shot(tmp_path, definition(log))
    assert sink.texts == ["a 1", "b 0"] and stats["rotations"] == 1


def test_deleted_files_are_read_to_the_end_then_forgotten(tmp_path: Path) -> None:
    log = tmp_path / "tmp.log"
    log.write_text("x 0\n")
    sink = ListSink()
    c = make(tmp_path, definition(log), sink)
    c.poll()
    append(log, "x 1\n")
    log.unlink()
    c.poll()
    assert sink.texts == ["x 0", "x 1"]
    assert saved(tmp_path)["streams"] == {}
    assert c.stats()["open_files"] == 0
    c.close()


def test_globs_pick_up_files_that_appear_later(tmp_path: Path) -> None:
    (tmp_path / "logs" / "sub").mkdir(parents=True)
    (tmp_path / "logs" / "a.log").write_text("a 0\n")
    (tmp_path / "logs" / "ignored.txt").write_text("nope\n")
    (tmp_path / "logs" / "c.log.gz").write_bytes(b"\x1f\x8b\x08\x00 not text\n")
    sink = ListSink()
    c = make(tmp_path, definition(tmp_path / "logs" / "**" / "*.log*"), sink)
    c.poll()
    assert sink.texts == ["a 0"]
    (tmp_path / "logs" / "b.log").write_text("b 0\nb 1\n")
    (tmp_path / "logs" / "sub" / "d.log").write_text("d 0\n")
    c.poll()
    c.close()
    assert sorted(sink.texts) == ["a 0", "b 0", "b 1", "d 0"]
    assert c.stats()["files"] == 3


def test_start_at_end_skips_existing_content_but_not_later_files(tmp_path: Path) -> None:
    (tmp_path / "old.log").write_text("old 0\nold 1\nhalf")
    sink = ListSink()
    c = make(tmp_path, definition(tmp_path / "*.log", start_at="end"), sink)
    c.poll()
    assert sink.texts == []
    append(tmp_path / "old.log", " line\nold 2\n")
    (tmp_path / "new.log").write_text("new 0\n")
    c.poll()
    c.close()
    # a line being written when the collector started is read whole
    assert sink.texts == ["half line", "old 2", "new 0"]


def test_large_files_report_progress(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    line = ("2026-11-25T10:00:00+07:00 dvc-portal-01 nginx: " + "x" * 60 + "\n").encode()
    log.write_bytes(line * (9 * (1 << 20) // len(line) + 1))
    messages: list[str] = []
    sink, stats = one_shot(tmp_path, definition(log), progress=messages.append)
    assert stats["records"] == len(sink.records) == log.stat().st_size // len(line)
    assert len(messages) >= 5
    assert "%" in messages[0] and "lines/s" in messages[0]
    assert messages[-1].startswith(f"{log}: done") and f"{stats['records']:,} lines" in messages[-1]


def test_one_offsets_file_is_used_by_one_collector_at_a_time(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("x\n")
    first = make(tmp_path, definition(log), ListSink())
    first.poll()
    second = make(tmp_path, definition(log), ListSink())
    with pytest.raises(HcmSocError, match="already reading"):
        second.poll()
    with pytest.raises(HcmSocError, match="already reading"):
        make(tmp_path, definition(log), ListSink()).run(threading.Event())
    first.close()
    second.poll()
    second.close()


def test_offsets_file_option_and_a_damaged_file_is_set_aside(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("x 0\n")
    offsets = tmp_path / "custom" / "pos.json"
    one_shot(tmp_path, definition(log, offsets_file=offsets))
    assert json.loads(offsets.read_text())["streams"]
    offsets.write_text("{not json")
    sink, _ = one_shot(tmp_path, definition(log, offsets_file=offsets))
    assert sink.texts == ["x 0"]  # read again, under a new epoch: duplicates possible, loss not
    assert len(list((tmp_path / "custom").glob("pos.json.corrupt-*"))) == 1


def test_a_definition_without_a_file_section_is_refused(tmp_path: Path) -> None:
    d = SourceDefinition(name="fw", type="syslog", format="syslog")
    with pytest.raises(HcmSocError, match="no 'file:' section"):
        FileTailCollector(d, ListSink(), state_dir=tmp_path)
