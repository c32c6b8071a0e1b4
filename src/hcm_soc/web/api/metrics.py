"""`GET /metrics` (at the root, not under /api): Prometheus text exposition format 0.0.4.

Access: an admin's API token (what a Prometheus scraper uses) or a console session of an analyst
or admin; everyone else gets 401/403 — the numbers say how busy and how exposed the city is.

Everything is read from Elasticsearch at scrape time (the counts are the stored truth, shared by
every engine and collector), plus this process's own figures:

    hcm_incidents_open{priority}        open incidents (not resolved / false positive)
    hcm_alerts_total{level}             alerts of the last 24 hours
    hcm_notices{status}                 notices in the outbox by status
    hcm_rules{state}                    rules: disabled, or the health of an enabled one
    hcm_rule_failures_total             failed rule runs, all rules, since their state began
    hcm_events_ingested_total{dataset}  stored events per dataset
    hcm_build_info{version}, process_start_time_seconds, process_cpu_seconds_total,
    process_resident_memory_bytes
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from hcm_soc import __version__
from hcm_soc.web.api.deps import get_services, reader
from hcm_soc.web.api.queries import (
    alerts_by_level,
    events_by_dataset,
    notices_by_status,
    open_incidents_by_priority,
)
from hcm_soc.web.api.schemas import ERRORS
from hcm_soc.web.auth import Principal
from hcm_soc.web.errors import ApiError
from hcm_soc.web.services import WebServices

router = APIRouter(tags=["metrics"], responses=ERRORS)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Exposition:
    """Builds the text format: HELP and TYPE once per family, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[dict[str, str], float]],
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if labels:
                inner = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items()))
                self.lines.append(f"{name}{{{inner}}} {_number(value)}")
            else:
                self.lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _by(label: str, counts: dict[str, int], always: Iterable[str] = ()) -> list[tuple[dict[str, str], float]]:
    """Samples of a labelled count; `always` values appear with 0 (a series that vanishes when it
    drops to zero breaks rate() and alerts on it)."""
    merged = {k: 0 for k in always}
    merged.update(counts)
    return [({label: k}, float(v)) for k, v in sorted(merged.items())]


def rule_states(services: WebServices) -> tuple[dict[str, int], int]:
    """(rules per state, failed runs of all rules) from the rule catalog."""
    states: Counter[str] = Counter()
    failures = 0
    for rule in services.rules.catalog():
        states["disabled" if not rule.enabled else rule.health.status] += 1
        failures += rule.health.failures
    return dict(states), failures


def _process(started: float) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = float(usage.ru_maxrss) * 1024  # peak, in KiB on Linux: the fallback
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            rss = float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        pass
    return {"start": started, "cpu": usage.ru_utime + usage.ru_stime, "rss": rss}


def render_metrics(services: WebServices, started: float) -> str:
    out = Exposition()
    now = services.clock()
    out.family(
        "hcm_incidents_open",
        "gauge",
        "Open incidents (not resolved or false positive) by priority.",
        _by("priority", open_incidents_by_priority(services), ("P1", "P2", "P3", "P4")),
    )
    out.family(
        "hcm_alerts_total",
        "gauge",
        "Alerts raised in the last 24 hours by rule level.",
        _by(
            "level",
            alerts_by_level(services, now - timedelta(hours=24)),
            ("informational", "low", "medium", "high", "critical"),
        ),
    )
    out.family(
        "hcm_notices",
        "gauge",
        "Notices in the outbox by delivery status.",
        _by("status", notices_by_status(services), ("pending", "sending", "sent", "failed")),
    )
    states, failures = rule_states(services)
    out.family(
        "hcm_rules",
        "gauge",
        "Rules by state (disabled, or the health of an enabled rule).",
        _by("state", states),
    )
    out.family(
        "hcm_rule_failures_total", "counter", "Failed rule runs of all rules.", [({}, float(failures))]
    )
    out.family(
        "hcm_events_ingested_total",
        "counter",
        "Events stored per dataset.",
        _by("dataset", events_by_dataset(services)),
    )
    proc = _process(started)
    out.family("hcm_build_info", "gauge", "The running hcm-soc version.", [({"version": __version__}, 1.0)])
    out.family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process (Unix seconds).",
        [({}, proc["start"])],
    )
    out.family("process_cpu_seconds_total", "counter", "CPU time used by the process.", [({}, proc["cpu"])])
    out.family(
        "process_resident_memory_bytes", "gauge", "Resident memory of the process.", [({}, proc["rss"])]
    )
    return out.text()


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format 0.0.4)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "the metrics"}},
)
def metrics(
    request: Request,
    principal: Principal = reader("analyst", "admin"),
    services: WebServices = Depends(get_services),
) -> Response:
    if principal.via == "token" and principal.role != "admin":
        raise ApiError(
            403, "forbidden", "metrics need an admin's API token (or an analyst's or admin's login)"
        )
    started = getattr(request.app.state, "started", None) or time.time()
    return Response(render_metrics(services, started), media_type=CONTENT_TYPE)
