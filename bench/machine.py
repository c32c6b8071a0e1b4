"""What every benchmark prints first: the machine it ran on."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any


def machine_info() -> dict[str, Any]:
    cpu, mem_kb = "unknown", 0
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem_kb = next((int(line.split()[1]) for line in f if line.startswith("MemTotal:")), 0)
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def machine_line() -> str:
    m = machine_info()
    return f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, Python {m['python']}, {m['platform']}"
