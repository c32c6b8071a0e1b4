"""Syslog: one line of RFC 5424 or RFC 3164 (with or without `<PRI>`) -> ECS fields.

Responsible for the syslog header only — priority, time, host, program, pid,
RFC 5424 structured data — and for handing the message to the parser of its
program (`linux_auth` for sshd/sudo/su/useradd/… and PAM, `netfilter` for kernel
iptables/UFW lines), which adds what it recognises. `message` is always the
program's text exactly as sent, because Sigma's linux rules are keyword
searches in it.

Accepted headers:

    <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD [MSG]        RFC 5424 (BOM before MSG stripped)
    [<PRI>]Mmm dd hh:mm:ss [HOST] TAG[PID]: MSG            RFC 3164 / traditional files
    [<PRI>]2024-01-15T10:30:45.123456+07:00 [HOST] TAG: MSG  rsyslog high-precision files

Speed matters (one core should keep up with a city's auth and firewall logs): a
cheap pattern for the common RFC 3164 shape is tried before the full one, and
timestamps are read by hand (no strptime), each distinct timestamp text once per
zone, with the UTC offset of each local hour cached below that.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from hcm_soc.parsers.base import Event, ParseContext, ParseError
from hcm_soc.parsers.linux_auth import AUTH_PROGRAMS, enrich_auth
from hcm_soc.parsers.netfilter import enrich_netfilter

#: longer lines are refused outright: no syslog transport carries them, and the
#: failure envelope still keeps the text (collectors truncate far earlier)
MAX_LINE_CHARS = 1024 * 1024
#: sshd, sudo and the kernel cut their own messages near 1 KiB; a longer "sshd" line is forged or
#: garbage and keeps its header fields only, so no program pattern ever runs on megabytes
MAX_PROGRAM_MESSAGE = 16 * 1024

FACILITY_NAMES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITY_NAMES = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug")

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}  # fmt: skip

# RFC 3164 header after the PRI: the time — BSD (optionally with a year, as appliances add, and
# fractions) or ISO 8601 (rsyslog's RSYSLOG_FileFormat, journald's short-iso) — then either
# TAG[PID]: right away (the sender left the host out) or HOST and an optional TAG[PID]:.
# A tag has no space, '[' or ':', so an IPv6 host such as fe80::1 is never taken for one.
_RFC3164 = re.compile(
    r"([A-Za-z]{3} +\d{1,2}(?: \d{4})? \d\d:\d\d:\d\d(?:\.\d{1,9})?"
    r"|\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:[Zz]|[+-]\d\d:?\d\d)?)"
    r"(?: +|$)"
    r"(?:([^\s\[\]:]+)(?:\[([^\]\s]*)\])?:(?: |$)"
    r"|(\S+)(?: +|$)(?:([^\s\[\]:]+)(?:\[([^\]\s]*)\])?:(?: |$))?)?"
)
# The common shape of the above, tried first because it is three times cheaper: the host may not
# end with ':' (that would be a tag), so it never disagrees with the full pattern.
_RFC3164_COMMON = re.compile(
    r"([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S*[^\s:]) ([^\s\[\]:]+)(?:\[(\d*)\])?: "
)
_TIME_PARTS = re.compile(
    r"(?:([A-Za-z]{3}) +(\d{1,2})(?: (\d{4}))? (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r"|(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?([Zz]|[+-]\d\d:?\d\d)?)$"
)
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)?$")
_SD_ID = re.compile(r'\[([^\s=\]"]+)')
_SD_PARAM = re.compile(r' ([^\s=\]"]+)="((?:[^"\\]|\\.)*)"', re.DOTALL)
_SD_UNESCAPE = re.compile(r'\\([\\"\]])')

#: (pri) -> (facility code, facility name, severity code, severity name)
_PRIORITIES = [(p >> 3, FACILITY_NAMES[p >> 3], p & 7, SEVERITY_NAMES[p & 7]) for p in range(192)]

# -- time ---------------------------------------------------------------------------------------------
# Reading a time costs more than the rest of the header, and a busy source writes many lines per
# second, so three caches, each cleared when it reaches _CACHE_LIMIT entries:
# _TIMES       (text, zone) -> (@timestamp, event.timezone or None, valid from, valid until): "valid"
#              is the span of receive times for which the inferred year holds (always, with a year);
# _YEAR_HOURS  (zone, month, day, hour) -> (epoch of that local hour in the inferred year, valid
#              from, valid until), so a file replay with a new second on every line stays cheap;
# _HOUR_EPOCH  (zone, y, m, d, h) -> epoch of the local hour: zones change offset on hour
#              boundaries, so this is right for all but a few historical transitions.
_TimeInfo = tuple[str, str | None, datetime, datetime]
_TIMES: dict[tuple[str, tzinfo], _TimeInfo] = {}
_HOUR_EPOCH: dict[tuple[tzinfo | None, int, int, int, int], int] = {}
_CACHE_LIMIT = 20_000
_YEAR_HOURS: dict[tuple[tzinfo, int, int, int], tuple[int, datetime, datetime]] = {}
_ALWAYS = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
_INSTANT = timedelta(microseconds=1)
_DAY = 86_400


def _hour_epoch(zone: tzinfo | None, y: int, mo: int, d: int, h: int) -> int:
    key = (zone, y, mo, d, h)
    epoch = _HOUR_EPOCH.get(key)
    if epoch is None:
        # raises ValueError for dates that do not exist (Feb 30, month 13, hour 24)
        epoch = int(datetime(y, mo, d, h, tzinfo=zone or UTC).timestamp())
        if len(_HOUR_EPOCH) >= _CACHE_LIMIT:
            _HOUR_EPOCH.clear()
        _HOUR_EPOCH[key] = epoch
    return epoch


def _epoch(zone: tzinfo | None, y: int, mo: int, d: int, h: int, mi: int, s: int, offset: int = 0) -> int:
    if mi > 59 or s > 60:  # 60: a leap second, which lands on the next minute
        raise ValueError(f"time {h:02d}:{mi:02d}:{s:02d} does not exist")
    return _hour_epoch(zone, y, mo, d, h) + mi * 60 + s - offset


def _offset_seconds(text: str) -> int:
    """`Z`, `+07:00` or `+0700` -> seconds east of UTC."""
    if text in ("Z", "z"):
        return 0
    hours, minutes = int(text[1:3]), int(text[-2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"UTC offset {text} is out of range")
    seconds = hours * 3600 + minutes * 60
    return -seconds if text[0] == "-" else seconds


def _infer_year(zone: tzinfo, mo: int, d: int, h: int, limit: float) -> tuple[int, int | None]:
    """RFC 3164 has no year: the latest year whose (mo, d, h) local hour starts no later than
    `limit` (received + a day - mm:ss), as the epoch of that hour and of the same hour in the next
    year that has the date (None if it was not looked at). So a December line read in January is
    last year's, and a January line from a UTC+7 device read on 31 December UTC is next year's."""
    year = datetime.fromtimestamp(limit, UTC).year
    later: int | None = None
    for y in range(year + 1, year - 8, -1):  # Feb 29 may need to go back to the last leap year
        try:
            hour = _hour_epoch(zone, y, mo, d, h)
        except ValueError:
            if mo == 2 and d == 29:
                continue
            raise
        if hour <= limit:
            return hour, later
        later = hour
    raise ValueError(f"no year near {year} has {mo:02d}-{d:02d}")


def _utc_text(epoch: int, frac: str | None) -> str:
    text = datetime.fromtimestamp(epoch, UTC).isoformat()[:19]
    # the fraction is carried as written: offsets are whole minutes, so it never changes
    return f"{text}.{frac}Z" if frac else f"{text}Z"


def _zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


def _read_time(text: str, zone: tzinfo, received: datetime) -> _TimeInfo:
    m = _TIME_PARTS.match(text)
    if m is None:
        raise ValueError("not a timestamp")
    mon, day, year, h, mi, s, frac, iy, imo, iday, ih, imi, isec, ifrac, off = m.groups()
    if mon is not None:
        mo = _MONTHS.get(mon) or _MONTHS.get(mon.title())
        if mo is None:
            raise ValueError(f"unknown month {mon!r}")
        if year is not None:
            epoch = _epoch(zone, int(year), mo, int(day), int(h), int(mi), int(s))
            return _utc_text(epoch, frac), _zone_name(zone), *_ALWAYS
        d, hh, mm, ss = int(day), int(h), int(mi), int(s)
        if mm > 59 or ss > 60:
            raise ValueError(f"time {h}:{mi}:{s} does not exist")
        # the year is worked out per local hour and kept for the span of receive times in which
        # every second of that hour gets the same year: [hour + 1h - 1 day, next year's hour - 1 day)
        key = (zone, mo, d, hh)
        known = _YEAR_HOURS.get(key)
        if known is not None and known[1] <= received < known[2]:
            return _utc_text(known[0] + mm * 60 + ss, frac), _zone_name(zone), known[1], known[2]
        r = received.timestamp()
        hour, later = _infer_year(zone, mo, d, hh, r + _DAY - (mm * 60 + ss))
        start, until = hour + 3600 - _DAY, (later - _DAY if later is not None else r)
        if start <= r < until:
            known = (hour, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(until, UTC))
            if len(_YEAR_HOURS) >= _CACHE_LIMIT:
                _YEAR_HOURS.clear()
            _YEAR_HOURS[key] = known
            window = known[1], known[2]
        else:  # near the one-day limit each second decides alone: cache this answer for this instant
            window = received, received + _INSTANT
        return _utc_text(hour + mm * 60 + ss, frac), _zone_name(zone), *window
    if off is None:  # no zone written: the source's zone
        epoch = _epoch(zone, int(iy), int(imo), int(iday), int(ih), int(imi), int(isec))
        return _utc_text(epoch, ifrac), _zone_name(zone), *_ALWAYS
    epoch = _epoch(None, int(iy), int(imo), int(iday), int(ih), int(imi), int(isec), _offset_seconds(off))
    return _utc_text(epoch, ifrac), None, *_ALWAYS


def _time(text: str, ctx: ParseContext) -> _TimeInfo:
    """@timestamp and event.timezone (when the zone was assumed) of a header's time `text`."""
    received = ctx.received
    if received.tzinfo is None:  # a naive receive time is UTC, as everything inside hcm-soc
        received = received.replace(tzinfo=UTC)
    key = (text, ctx.timezone)
    info = _TIMES.get(key)
    if info is None or not info[2] <= received < info[3]:
        try:
            info = _read_time(text, ctx.timezone, received)
        except (ValueError, OverflowError) as e:  # dates that do not exist or cannot be stored
            raise ParseError(f"bad timestamp {_show(text)}: {e}") from None
        if len(_TIMES) >= _CACHE_LIMIT:
            _TIMES.clear()
        _TIMES[key] = info
    return info


# -- helpers ------------------------------------------------------------------------------------------
def _show(text: str, limit: int = 60) -> str:
    """A short, quoted excerpt of `text` for an error message."""
    return repr(text[:limit] + "…") if len(text) > limit else repr(text)


def _by_program(event: Event, program: str | None, message: str) -> None:
    """Hand the message to the parser of its program, which adds what it recognises."""
    if program and message and len(message) <= MAX_PROGRAM_MESSAGE:
        if program in AUTH_PROGRAMS or message.startswith("pam_"):
            enrich_auth(event, message)
        elif "SRC=" in message:  # iptables/UFW LOG lines come from the kernel, or through ulogd
            enrich_netfilter(event, message)


# -- RFC 5424 -----------------------------------------------------------------------------------------
def _parse_sd(line: str, i: int) -> tuple[dict[str, Any], int]:
    """Structured data starting at `line[i]`: `-` or `[id k="v" …]…` with \\" \\\\ \\] escapes."""
    if line.startswith("-", i):
        return {}, i + 1
    sd: dict[str, Any] = {}
    n = len(line)
    while i < n and line[i] == "[":
        m = _SD_ID.match(line, i)
        if m is None:
            raise ParseError(f"RFC 5424 structured data at character {i + 1}: expected an SD-ID after '['")
        params: dict[str, Any] = sd.setdefault(m.group(1), {})
        i = m.end()
        while True:
            p = _SD_PARAM.match(line, i)
            if p is None:
                break
            name, value = p.group(1), p.group(2)
            if "\\" in value:
                value = _SD_UNESCAPE.sub(r"\1", value)
            old = params.get(name)
            if old is None:
                params[name] = value
            elif isinstance(old, list):
                old.append(value)
            else:
                params[name] = [old, value]
            i = p.end()
        if i >= n:
            raise ParseError(
                f"RFC 5424 structured data [{m.group(1)} …] is not closed: the line ends before ']'"
            )
        if line[i] != "]":
            raise ParseError(
                f"RFC 5424 structured data [{m.group(1)} …] at character {i + 1}: expected "
                f'name="value" or \']\', got {_show(line[i : i + 30])} (escape ", \\ and ] with \\)'
            )
        i += 1
    if not sd:
        raise ParseError(f"RFC 5424: expected structured data '-' or '[…]', got {_show(line[i : i + 30])}")
    return sd, i


def _parse_5424(line: str, pos: int, pri: int, version: str, ctx: ParseContext) -> Event:
    parts = line[pos:].split(" ", 5)
    if len(parts) < 6:
        names = ("TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID", "STRUCTURED-DATA")
        raise ParseError(
            f"truncated RFC 5424 header: {names[len(parts)]} is missing in {_show(line, 80)}; "
            "expected <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]"
        )
    ts, host, app, procid, msgid, rest = parts
    if not (ts and host and app and procid and msgid):
        raise ParseError(
            f"RFC 5424 header {_show(line, 80)} has an empty field (two spaces in a row); '-' is no value"
        )
    if ts == "-":  # NILVALUE: the sender does not know the time; when we got it is the best there is
        stamp, zone_name = _utc_text(int(ctx.received.timestamp()), None), None
    else:
        if _RFC3339.match(ts) is None:
            raise ParseError(
                f"RFC 5424 TIMESTAMP {_show(ts)} is not RFC 3339 (e.g. 2024-01-15T10:30:45.123+07:00)"
            )
        stamp, zone_name, _, _ = _time(ts, ctx)
    sd, i = _parse_sd(line, len(line) - len(rest))
    if i < len(line):
        if line[i] != " ":
            raise ParseError(
                f"RFC 5424 at character {i + 1}: expected a space between structured data and MSG, "
                f"got {_show(line[i : i + 30])}"
            )
        message = line[i + 1 :]
        if message.startswith("\ufeff"):  # RFC 5424 marks UTF-8 MSG with a BOM; it is not text
            message = message[1:]
    else:
        message = ""

    fcode, fname, scode, sname = _PRIORITIES[pri]
    syslog: dict[str, Any] = {
        "priority": pri,
        "facility": {"code": fcode, "name": fname},
        "severity": {"code": scode, "name": sname},
        "version": version,
    }
    event: Event = {"@timestamp": stamp, "log": {"level": sname, "syslog": syslog}}
    if zone_name:
        event["event"] = {"timezone": zone_name}
    if sd:
        syslog["structured_data"] = sd
    if host != "-":
        syslog["hostname"] = host
        event["host"] = {"hostname": host, "name": host}
    program = None
    if app != "-":
        syslog["appname"] = program = app
        event["process"] = {"name": app}
    if procid != "-":
        syslog["procid"] = procid
        if procid.isdigit() and procid.isascii():
            event.setdefault("process", {})["pid"] = int(procid)
    if msgid != "-":
        syslog["msgid"] = msgid
    event["message"] = message
    _by_program(event, program, message)
    return event


# -- RFC 3164 and file formats ------------------------------------------------------------------------
def _parse_3164(line: str, pos: int, pri: int | None, ctx: ParseContext) -> Event:
    m = _RFC3164_COMMON.match(line, pos)
    if m is not None:
        text, host, program, procid = m.groups()
    else:
        m = _RFC3164.match(line, pos)
        if m is None:
            expected = "a timestamp such as 'Jan 15 10:30:45' or '2024-01-15T10:30:45+07:00'"
            if pri is None:
                raise ParseError(
                    f"not syslog: expected '<PRI>' or {expected} at the start, got {_show(line[:40])}"
                )
            raise ParseError(
                f"not syslog: after <{pri}> expected an RFC 5424 version ('1 ') or {expected}, "
                f"got {_show(line[pos : pos + 40])}"
            )
        text, program, procid, host, program2, procid2 = m.groups()
        if program is None:
            program, procid = program2, procid2
    stamp, zone_name, _, _ = _time(text, ctx)
    syslog: dict[str, Any] = {}
    event: Event = {"@timestamp": stamp}
    if pri is not None:
        fcode, fname, scode, sname = _PRIORITIES[pri]
        syslog["priority"] = pri
        syslog["facility"] = {"code": fcode, "name": fname}
        syslog["severity"] = {"code": scode, "name": sname}
        event["log"] = {"level": sname, "syslog": syslog}
    if zone_name:
        event["event"] = {"timezone": zone_name}
    if host:
        syslog["hostname"] = host
        event["host"] = {"hostname": host, "name": host}
    if program:
        syslog["appname"] = program
        process: dict[str, Any] = {"name": program}
        if procid:
            syslog["procid"] = procid
            if procid.isdigit() and procid.isascii():
                process["pid"] = int(procid)
        event["process"] = process
    if syslog and pri is None:
        event["log"] = {"syslog": syslog}
    message = line[m.end() :]
    event["message"] = message
    _by_program(event, program, message)
    return event


def parse_syslog(raw: str, ctx: ParseContext) -> Event:
    """One syslog line (RFC 5424, RFC 3164, or a syslog file line) -> ECS fields.

    Raises ParseError, saying what is wrong and where, for anything that is not syslog."""
    if not isinstance(raw, str):
        raise ParseError(f"expected a line of text, got {type(raw).__name__}")
    line = raw.rstrip("\r\n\x00")
    if not line or line.isspace():
        raise ParseError("not syslog: the line is empty")
    if len(line) > MAX_LINE_CHARS:
        raise ParseError(
            f"not syslog: the line has {len(line):,} characters, more than the {MAX_LINE_CHARS:,} accepted "
            f"(starts {_show(line, 40)}); check the sender's framing"
        )
    if line[0] != "<":
        return _parse_3164(line, 0, None, ctx)
    close = line.find(">", 1, 5)
    digits = line[1:close] if close > 0 else ""
    if not digits.isdigit() or not digits.isascii():
        raise ParseError(f"not syslog: expected '<PRI>' with PRI a number 0..191, got {_show(line[:8])}")
    pri = int(digits)
    if pri > 191:
        raise ParseError(
            f"not syslog: PRI <{digits}> is out of range; it is facility*8+severity, at most 191 (<191> = local7.debug)"
        )
    pos = close + 1
    if pos == len(line):
        raise ParseError(f"truncated syslog header: nothing follows <{digits}>")
    # RFC 5424 puts VERSION ("1") and a space after the PRI; RFC 3164 puts a month or a year there
    space = line.find(" ", pos, pos + 4)
    if space > pos and line[pos:space].isdigit() and line[pos] != "0":
        return _parse_5424(line, space + 1, pri, line[pos:space], ctx)
    return _parse_3164(line, pos, pri, ctx)
