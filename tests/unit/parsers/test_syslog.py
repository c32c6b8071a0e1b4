"""The syslog header parser: RFC 3164/5424 golden files, time and year inference, bad input."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hcm_soc.parsers import syslog
from hcm_soc.parsers.base import ParseContext, ParseError
from hcm_soc.parsers.registry import get_parser
from hcm_soc.parsers.syslog import MAX_LINE_CHARS, parse_syslog
from tests.unit.parsers import DATA, GoldenCase, field_diff, load_golden

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
CASES = [*load_golden("syslog", "rfc3164"), *load_golden("syslog", "rfc5424")]
MALFORMED = load_golden("syslog", "malformed")
ALL_SAMPLES = [
    case
    for name in ("rfc3164", "rfc5424", "auth", "accounts", "netfilter")
    for case in load_golden("syslog", name)
]


def ctx_at(received: str, zone: str = "Asia/Ho_Chi_Minh") -> ParseContext:
    return ParseContext(dataset="syslog", timezone=ZoneInfo(zone), received=datetime.fromisoformat(received))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_golden_headers(case: GoldenCase) -> None:
    assert case.fields is not None, f"{case.id} is expected to parse"
    problems = field_diff(parse_syslog(case.raw, case.ctx), case.fields)
    assert not problems, f"{case.id}: {case.raw!r}\n" + "\n".join(problems)


@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: c.id)
def test_golden_malformed_lines_raise_parse_error_with_reason(case: GoldenCase) -> None:
    assert case.error, f"{case.id} is expected to fail"
    with pytest.raises(ParseError) as info:
        parse_syslog(case.raw, case.ctx)
    assert str(info.value) == case.error


def test_every_sample_line_is_in_a_golden_file() -> None:
    logs = {p.stem for p in (DATA / "syslog").glob("*.log")}
    goldens = {p.name.removesuffix(".golden.json") for p in (DATA / "syslog").glob("*.golden.json")}
    assert logs == goldens


@pytest.mark.parametrize("case", ALL_SAMPLES, ids=lambda c: c.id)
def test_message_is_the_programs_text_unchanged(case: GoldenCase) -> None:
    """Sigma's linux rules search keywords in `message`: it must be the exact tail of the line."""
    message = parse_syslog(case.raw, case.ctx)["message"]
    assert case.raw.replace("\ufeff", "").endswith(message)
    if message:
        assert message == case.raw.replace("\ufeff", "")[-len(message) :]


def test_vietnamese_text_survives_in_every_field() -> None:
    line = (
        "<13>1 2026-11-25T10:00:00+07:00 sở-tư-pháp ứng-dụng 12 ID1 "
        '[nguồn tên="Nguyễn Văn An"] \ufeffHồ sơ số 123 đã được phê duyệt — Phòng Tư pháp Quận 1'
    )
    event = parse_syslog(line, ctx_at("2026-11-25T04:00:00+00:00"))
    assert event["host"]["name"] == "sở-tư-pháp"
    assert event["process"]["name"] == "ứng-dụng"
    assert event["log"]["syslog"]["structured_data"] == {"nguồn": {"tên": "Nguyễn Văn An"}}
    assert event["message"] == "Hồ sơ số 123 đã được phê duyệt — Phòng Tư pháp Quận 1"


def test_registry_serves_this_parser() -> None:
    assert get_parser("syslog").parse is parse_syslog


# -- time -------------------------------------------------------------------------------------------
def test_rfc3164_local_time_is_ho_chi_minh_and_stored_in_utc() -> None:
    event = parse_syslog("<13>Nov 25 10:15:01 host app: x", ctx_at("2026-11-25T04:00:00+00:00"))
    assert event["@timestamp"] == "2026-11-25T03:15:01Z"  # 10:15:01 at +07:00
    assert event["event"]["timezone"] == "Asia/Ho_Chi_Minh"


@pytest.mark.parametrize(
    ("line", "received", "expected"),
    [
        # a December line read just after New Year (UTC) belongs to the old year
        ("Dec 31 23:59:00 host app: x", "2027-01-01T00:30:00+00:00", "2026-12-31T16:59:00Z"),
        # and read a week into January, too
        ("Dec 28 09:00:00 host app: x", "2027-01-05T02:00:00+00:00", "2026-12-28T02:00:00Z"),
        # a January 1st line at +07:00 read while UTC is still on 31 December is next year's
        ("Jan  1 06:00:00 host app: x", "2026-12-31T23:00:00+00:00", "2026-12-31T23:00:00Z"),
        ("Jan  1 00:00:05 host app: x", "2026-12-31T17:00:10+00:00", "2026-12-31T17:00:05Z"),
        # up to a day ahead of the receiver's clock is this year (a fast clock on the sender)
        ("Nov 26 10:00:00 host app: x", "2026-11-25T04:00:00+00:00", "2026-11-26T03:00:00Z"),
        # more than a day ahead cannot be the future: it is last year's
        ("Nov 27 10:00:00 host app: x", "2026-11-25T04:00:00+00:00", "2025-11-27T03:00:00Z"),
        # Feb 29 read in a year without one is the last leap year's
        ("Feb 29 12:00:00 host app: x", "2026-03-01T00:00:00+00:00", "2024-02-29T05:00:00Z"),
        # a written year is taken as written
        ("Dec 31 2019 23:00:00 host app: x", "2026-11-25T04:00:00+00:00", "2019-12-31T16:00:00Z"),
    ],
)
def test_year_inference(line: str, received: str, expected: str) -> None:
    assert parse_syslog(line, ctx_at(received))["@timestamp"] == expected


def test_never_more_than_a_day_in_the_future() -> None:
    received = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    for month in ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"):
        for day in (1, 11, 28):
            stamp = parse_syslog(f"{month} {day:2d} 23:59:59 h a: x", ParseContext("syslog", HCM, received))
            when = datetime.fromisoformat(stamp["@timestamp"])
            assert (when - received).total_seconds() <= 86_400, stamp["@timestamp"]
            assert (received - when).days < 366


def reference_time(mon: int, day: int, hms: tuple[int, int, int], zone: ZoneInfo, received: datetime) -> str:
    """The rule, spelled out: the latest year in which the local time is at most a day after receipt."""
    for year in range(received.year + 1, received.year - 9, -1):
        try:
            local = datetime(year, mon, day, *hms, tzinfo=zone)
        except ValueError:  # Feb 29 of a common year
            continue
        if local.timestamp() <= received.timestamp() + 86_400:
            return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise AssertionError("no year")


@pytest.mark.parametrize(
    "zone", ["Asia/Ho_Chi_Minh", "Pacific/Kiritimati", "America/St_Johns", "Europe/Berlin"]
)
def test_year_inference_agrees_with_the_rule_around_new_year(zone: str) -> None:
    """Random receive times near year ends, the same texts read again and again (the caches)."""
    rng = random.Random(zone)
    tz = ZoneInfo(zone)
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    texts = [(m, d, (h, mi, s)) for m, d in ((12, 31), (1, 1), (12, 30), (1, 2), (2, 29), (6, 15))
             for h, mi, s in ((0, 0, 0), (0, 59, 59), (12, 30, 0), (23, 59, 59))]  # fmt: skip
    for _ in range(4000):
        year = rng.choice((2023, 2024, 2026, 2027))
        received = datetime(year, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(-3 * 86_400, 3 * 86_400))
        mon, day, hms = rng.choice(texts)
        line = f"{months[mon - 1]} {day:2d} {hms[0]:02d}:{hms[1]:02d}:{hms[2]:02d} h a: x"
        got = parse_syslog(line, ParseContext("syslog", tz, received))["@timestamp"]
        assert got == reference_time(mon, day, hms, tz, received), (line, received)


def test_cached_time_follows_the_received_clock_across_a_year() -> None:
    line = "Dec 31 23:00:00 host app: x"
    assert parse_syslog(line, ctx_at("2026-12-31T17:00:00+00:00"))["@timestamp"] == "2026-12-31T16:00:00Z"
    assert parse_syslog(line, ctx_at("2027-06-01T00:00:00+00:00"))["@timestamp"] == "2026-12-31T16:00:00Z"
    assert parse_syslog(line, ctx_at("2026-06-01T00:00:00+00:00"))["@timestamp"] == "2025-12-31T16:00:00Z"
    assert parse_syslog(line, ctx_at("2027-12-30T17:00:00+00:00"))["@timestamp"] == "2027-12-31T16:00:00Z"


def test_zone_with_daylight_saving_time() -> None:
    berlin = "Europe/Berlin"
    summer = parse_syslog("Jul 15 12:00:00 h a: x", ctx_at("2026-07-15T12:00:00+00:00", berlin))
    winter = parse_syslog("Jan 15 12:00:00 h a: x", ctx_at("2026-01-15T12:00:00+00:00", berlin))
    assert (summer["@timestamp"], winter["@timestamp"]) == ("2026-07-15T10:00:00Z", "2026-01-15T11:00:00Z")
    # the same text in two zones is two different times (the cache is per zone)
    assert parse_syslog("Jul 15 12:00:00 h a: x", ctx_at("2026-07-15T12:00:00+00:00"))["@timestamp"] == (
        "2026-07-15T05:00:00Z"
    )


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-25T10:22:33+07:00", "2026-11-25T03:22:33Z"),
        ("2026-11-25T10:22:33.1+0700", "2026-11-25T03:22:33.1Z"),
        ("2026-11-25T03:22:33.123456789Z", "2026-11-25T03:22:33.123456789Z"),
        ("2026-11-24T22:22:33-05:00", "2026-11-25T03:22:33Z"),
        ("2026-11-25 10:22:33", "2026-11-25T03:22:33Z"),  # no zone written: the source's
    ],
)
def test_iso_timestamps_in_file_lines(stamp: str, expected: str) -> None:
    event = parse_syslog(f"{stamp} so-yte-app02 app[1]: x", ctx_at("2026-11-25T04:00:00+00:00"))
    assert event["@timestamp"] == expected
    assert event["host"]["name"] == "so-yte-app02"


def test_rfc5424_nil_timestamp_is_the_receive_time() -> None:
    event = parse_syslog("<14>1 - host app - - - x", ctx_at("2026-11-25T04:05:06.789+00:00"))
    assert event["@timestamp"] == "2026-11-25T04:05:06Z"


# -- header shapes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "host", "program", "pid", "message"),
    [
        ("Nov 25 10:00:00 host sshd[12]: hi", "host", "sshd", 12, "hi"),
        ("Nov 25 10:00:00 sshd[12]: hi", None, "sshd", 12, "hi"),
        ("Nov 25 10:00:00 kernel: foo: bar", None, "kernel", None, "foo: bar"),
        ("Nov 25 10:00:00 fe80::1 app: hi", "fe80::1", "app", None, "hi"),
        ("Nov 25 10:00:00 host app:", "host", "app", None, ""),
        ("Nov 25 10:00:00 host -- MARK --", "host", None, None, "-- MARK --"),
        ("Nov 25 10:00:00 host", "host", None, None, ""),
        ("Nov 25 10:00:00", None, None, None, ""),
        ("Nov 25 10:00:00  host  app[]: two spaces", "host", "app", None, "two spaces"),
        ("nov 25 10:00:00 host app: lower-case month", "host", "app", None, "lower-case month"),
    ],
)
def test_rfc3164_host_and_tag(line: str, host: str | None, program: str | None, pid: int | None,
                              message: str) -> None:  # fmt: skip
    event = parse_syslog(line, ctx_at("2026-11-25T04:00:00+00:00"))
    assert event.get("host", {}).get("name") == host
    assert event.get("process", {}).get("name") == program
    assert event.get("process", {}).get("pid") == pid
    assert event["message"] == message


def test_common_shape_shortcut_agrees_with_the_full_header_pattern() -> None:
    """The fast pattern may only ever give what the full pattern gives."""
    checked = 0
    for case in ALL_SAMPLES:
        pos = case.raw.index(">") + 1 if case.raw.startswith("<") else 0
        fast = syslog._RFC3164_COMMON.match(case.raw, pos)
        if fast is None:
            continue
        full = syslog._RFC3164.match(case.raw, pos)
        assert full is not None
        text, program, procid, host, program2, procid2 = full.groups()
        want = (text, host, program or program2, (procid or procid2) or None, full.end())
        got = (fast.group(1), fast.group(2), fast.group(3), fast.group(4) or None, fast.end())
        assert got == want, case.id
        checked += 1
    assert checked > 50


@pytest.mark.parametrize("pri", [0, 7, 8, 191])
def test_pri_boundaries(pri: int) -> None:
    event = parse_syslog(f"<{pri}>Nov 25 10:00:00 h a: x", ctx_at("2026-11-25T04:00:00+00:00"))
    sl = event["log"]["syslog"]
    assert (sl["priority"], sl["facility"]["code"], sl["severity"]["code"]) == (pri, pri // 8, pri % 8)
    assert event["log"]["level"] == syslog.SEVERITY_NAMES[pri % 8]


def test_line_endings_and_trailing_nul_are_not_text() -> None:
    event = parse_syslog("<13>Nov 25 10:00:00 h app: thông báo\r\n\x00", ctx_at("2026-11-25T04:00:00+00:00"))
    assert event["message"] == "thông báo"


def test_structured_data_escapes_and_bom() -> None:
    line = '<13>1 2026-11-25T10:00:00+07:00 h a - - [x@1 a="\\"q\\"" b="\\\\" c="\\]" d="\\n" e=""] \ufeff\ufefftext'
    event = parse_syslog(line, ctx_at("2026-11-25T04:00:00+00:00"))
    assert event["log"]["syslog"]["structured_data"] == {
        "x@1": {"a": '"q"', "b": "\\", "c": "]", "d": "\\n", "e": ""}
    }
    assert event["message"] == "\ufefftext"  # only the one BOM RFC 5424 puts there is removed


# -- bad input ---------------------------------------------------------------------------------------
def test_absurdly_long_line_is_refused_with_its_size() -> None:
    with pytest.raises(ParseError, match=r"1,048,577 characters"):
        parse_syslog("A" * (MAX_LINE_CHARS + 1), ctx_at("2026-11-25T04:00:00+00:00"))


def test_long_but_sane_message_is_kept_whole() -> None:
    body = "Người dùng " * 10_000
    event = parse_syslog(f"<13>Nov 25 10:00:00 h app: {body}", ctx_at("2026-11-25T04:00:00+00:00"))
    assert event["message"] == body


def test_long_garbage_fails_fast_without_backtracking() -> None:
    # a header-like prefix repeated: a pattern that backtracks would take minutes here
    line = "Nov 25 10:00:00 " + "a:" * 200_000
    event = parse_syslog(line, ctx_at("2026-11-25T04:00:00+00:00"))
    assert event["host"]["name"].startswith("a:a:")


def test_overlong_program_message_keeps_the_header_only() -> None:
    message = "Failed password for " + "invalid user x from 1.2.3.4 port 1 " * 2000 + "ssh2"
    assert len(message) > syslog.MAX_PROGRAM_MESSAGE
    event = parse_syslog(f"<38>Nov 25 10:00:00 h sshd[1]: {message}", ctx_at("2026-11-25T04:00:00+00:00"))
    assert event["message"] == message
    assert "action" not in event.get("event", {})
    assert "user" not in event and "source" not in event
    sane = "Failed password for invalid user x from 1.2.3.4 port 1 ssh2"
    event = parse_syslog(f"<38>Nov 25 10:00:00 h sshd[1]: {sane}", ctx_at("2026-11-25T04:00:00+00:00"))
    assert event["event"]["action"] == "ssh_login"


@pytest.mark.parametrize(
    "line",
    [
        "<13>1 9999-12-31T23:00:00-05:00 h a - - - year 10000 in UTC",
        "<13>1 0001-01-01T00:00:00+07:00 h a - - - year 0 in UTC",
        "<13>0000-01-01T00:00:00Z h a: year 0",
    ],
)
def test_times_outside_what_can_be_stored_are_parse_errors(line: str) -> None:
    with pytest.raises(ParseError, match="bad timestamp"):
        parse_syslog(line, ctx_at("2026-11-25T04:00:00+00:00"))


@pytest.mark.parametrize("value", [None, b"<13>Nov 25 10:00:00 h a: x", {"message": "x"}])
def test_not_text_is_a_parse_error(value: Any) -> None:
    with pytest.raises(ParseError, match="expected a line of text"):
        parse_syslog(value, ctx_at("2026-11-25T04:00:00+00:00"))


def test_binary_with_nul_bytes_is_a_parse_error() -> None:
    garbage = bytes(range(256)).decode("utf-8", "replace")
    with pytest.raises(ParseError, match="not syslog"):
        parse_syslog(garbage, ctx_at("2026-11-25T04:00:00+00:00"))


def test_random_and_truncated_input_only_ever_raises_parse_error() -> None:
    """Whatever arrives, the result is an event or a ParseError: never another exception."""
    rng = random.Random(20261125)
    ctx = ctx_at("2026-11-25T04:00:00+00:00")
    samples = [case.raw for case in ALL_SAMPLES]
    inputs: list[str] = []
    for raw in samples:
        inputs += [raw[:n] for n in range(0, len(raw), 3)]  # every truncation
    for _ in range(3000):
        raw = rng.choice(samples)
        chars = list(raw)
        for _ in range(rng.randint(1, 6)):  # flip, insert or drop characters
            i = rng.randrange(len(chars) + 1)
            op = rng.random()
            if op < 0.4 and i < len(chars):
                chars[i] = rng.choice('<>[]"\\= :-1\ufffd\x00é')
            elif op < 0.7:
                chars.insert(i, rng.choice('<>[]"\\= :-9\ufffd\ufeffđ'))
            elif i < len(chars):
                del chars[i]
        inputs.append("".join(chars))
    for _ in range(500):
        inputs.append(rng.randbytes(rng.randint(0, 200)).decode("utf-8", "replace"))
    parsed = failed = 0
    for raw in inputs:
        try:
            event = parse_syslog(raw, ctx)
        except ParseError as e:
            assert str(e), raw
            failed += 1
        else:
            assert isinstance(event["message"], str)
            assert event["@timestamp"].endswith("Z")
            parsed += 1
    assert parsed > 1000 and failed > 500
