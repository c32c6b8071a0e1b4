"""The parts of an ECS network record every analyzer builds the same way: timestamps, the skeleton.

Timestamps are formatted from epoch seconds with the date and time part cached per
second: ``datetime`` formatting was a fifth of the cost of a flow record, and the
records of one capture second share that prefix.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

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


def _prefix(sec: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of an epoch second, cached."""
    cache = _SECONDS  # a typed local when compiled: C dict calls, not a `.get` method call
    prefix = cache.get(sec)
    if prefix is None:
        if len(cache) >= 4096:
            cache.clear()
        prefix = cache[sec] = _strftime("%Y-%m-%dT%H:%M:%S", _gmtime(sec))
    return prefix


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
    prefix = _prefix(sec)
    return f"{prefix}.{us:06d}Z" if us else f"{prefix}Z"


def iso_us(ts: float) -> str:
    """Epoch seconds -> ISO 8601 UTC, always with six fraction digits (flow records)."""
    if ts < 0:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sec = int(ts)
    us = _micros(ts - sec)
    if us >= 1_000_000:
        sec += 1
        us -= 1_000_000
    return f"{_prefix(sec)}.{us:06d}Z"


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
    return f"{sec}.{us:06d}"


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
