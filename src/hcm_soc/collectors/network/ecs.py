"""The parts of an ECS network record every analyzer builds the same way: timestamps, the skeleton.

Timestamps are formatted from epoch seconds with the date and time part cached per
second: ``datetime`` formatting was a fifth of the cost of a flow record, and the
records of one capture second share that prefix.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import cython

__all__ = ["fixed6", "iso", "iso_us", "protocol_event"]

_SECONDS: dict[int, str] = {}
# fixed6's 2**-32 arithmetic; C 64-bit constants when compiled (a literal above 2**31 would be a
# Python int there, and every operation with it a Python call)
_LOW32 = 0xFFFFFFFF
_HALF32 = 0x80000000
_gmtime = time.gmtime
_strftime = time.strftime


def _micros(fraction: float) -> int:
    """``round(fraction * 1e6)`` for 0 <= fraction < 1, half-even like ``round`` and ``datetime``,
    in C arithmetic when compiled (``x - int(x)`` is exact, so the ties are found exactly)."""
    x = fraction * 1e6
    us = int(x)
    rest = x - us
    if rest > 0.5 or (rest == 0.5 and us & 1):
        us += 1
    return us


_last_sec = -1  # the second of the last _prefix call and its text: most calls repeat it
_last_prefix = ""


def _prefix(sec: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of an epoch second, cached."""
    global _last_sec, _last_prefix
    if sec == _last_sec:
        return _last_prefix
    cache = _SECONDS  # a typed local when compiled: C dict calls, not a `.get` method call
    prefix = cache.get(sec)
    if prefix is None:
        if len(cache) >= 4096:
            cache.clear()
        prefix = cache[sec] = _strftime("%Y-%m-%dT%H:%M:%S", _gmtime(sec))
    _last_sec = sec
    _last_prefix = prefix
    return prefix


def _stamp(prefix: str, us: int, fraction: bool) -> str:
    """``f"{prefix}.{us:06d}Z"`` (``f"{prefix}Z"`` without ``fraction``) for 0 <= us < 10**6 and
    an ASCII ``prefix``: written into a C buffer and decoded once when compiled, instead of
    formatting the number and joining three strings."""
    n = len(prefix)
    if not cython.compiled or n > 40:
        return f"{prefix}.{us:06d}Z" if fraction else f"{prefix}Z"
    buf = cython.declare(cython.char[48])
    for i in range(n):
        buf[i] = prefix[i]
    if fraction:
        buf[n] = 46  # "."
        for i in range(n + 6, n, -1):
            buf[i] = 48 + us % 10
            us //= 10
        n += 7
    buf[n] = 90  # "Z"
    return buf[: n + 1].decode("ascii")


def iso(ts: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with a Z, as ``datetime.isoformat`` writes it (no fraction
    when the microseconds are zero)."""
    if ts < 0:  # before 1970: int() truncates towards zero, let datetime handle it
        return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")
    sec = int(ts)
    us = _micros(ts - sec)
    if us >= 1_000_000:
        sec += 1
        us -= 1_000_000
    return _stamp(_prefix(sec), us, us != 0)


def iso_us(ts: float) -> str:
    """Epoch seconds -> ISO 8601 UTC, always with six fraction digits (flow records)."""
    if ts < 0:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sec = int(ts)
    us = _micros(ts - sec)
    if us >= 1_000_000:
        sec += 1
        us -= 1_000_000
    return _stamp(_prefix(sec), us, True)


def fixed6(ts: float) -> str:
    """``f"{ts:.6f}"`` (the id keys' start times) without the float formatter, which costs ~3,000
    instructions a call. Exact: from 2**20 s on (every capture after 1970-01-13), a timestamp's
    fraction is a whole number of 2**-32 s, so ``fraction * 10**6`` is an exact ratio of integers
    under 2**52, rounded half-even like ``format`` (correct rounding, ties to even). Anything else
    goes to ``format``."""
    if not 1_048_576.0 <= ts < 9_007_199_254_740_992.0:
        return f"{ts:.6f}"
    sec = int(ts)
    scaled = int((ts - sec) * 4_294_967_296.0)  # exact: the fraction times 2**32 is an integer
    n = scaled * 1_000_000
    us = n >> 32
    rest = n & _LOW32
    if rest > _HALF32 or (rest == _HALF32 and us & 1):
        us += 1
        if us == 1_000_000:
            sec += 1
            us = 0
    if not cython.compiled:
        return f"{sec}.{us:06d}"
    # compiled: the digits written into a C buffer from the right, decoded once
    buf = cython.declare(cython.char[32])
    i = 32
    for _ in range(6):
        i -= 1
        buf[i] = 48 + us % 10
        us //= 10
    i -= 1
    buf[i] = 46  # "."
    while True:
        i -= 1
        buf[i] = 48 + sec % 10
        sec //= 10
        if sec == 0:
            break
    return buf[i:32].decode("ascii")


def protocol_event(
    ts: float,
    dataset: str,
    protocol: str,
    categories: list[str],
    endpoints: tuple[str, int, str, int] | None,
    transport: str = "tcp",
) -> dict[str, Any]:
    """The skeleton of one protocol record; `endpoints` = (client ip, port, server ip, port)."""
    event: dict[str, Any] = {
        "@timestamp": iso(ts),
        "event": {"dataset": dataset, "category": categories, "type": ["protocol"], "kind": "event"},
        "network": {"protocol": protocol, "transport": transport},
    }
    if endpoints is not None:
        event["source"] = {"ip": endpoints[0], "port": endpoints[1]}
        event["destination"] = {"ip": endpoints[2], "port": endpoints[3]}
    return event
