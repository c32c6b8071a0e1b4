"""The overview page (`/`): open incidents by priority and by sector, alerts per hour over the last
24 hours (an SVG bar chart drawn on the server: no chart library, nothing for the CSP to allow),
events per second per source over the last 5 and 60 minutes, and rule health at a glance.

Owners land on their incident queue instead: the city-wide picture is for the security center.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from elastic_transport import TransportError
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from hcm_soc.errors import DependencyUnavailable
from hcm_soc.incidents.lifecycle import OPEN
from hcm_soc.models.incident import Incident
from hcm_soc.web.auth import Principal, page_user
from hcm_soc.web.pages.common import services_of
from hcm_soc.web.services import WebServices
from hcm_soc.web.templating import LOCAL_TZ, render

router = APIRouter()

PRIORITIES = ("P1", "P2", "P3", "P4")
#: the overview counts at most this many open incidents (a city SOC has far fewer open at once)
OPEN_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    count: int
    x: float
    y: float
    w: float
    h: float
    cx: float
    tick: str | None


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    total: int
    width: int = 720
    height: int = 180
    base: int = 160


@dataclass(frozen=True, slots=True)
class EpsRow:
    dataset: str
    eps5: float
    eps60: float


@dataclass
class HealthSummary:
    ok: int = 0
    never: int = 0
    failing: list[dict[str, str | None]] = field(default_factory=list)


def hour_chart(counts: list[tuple[datetime, int]]) -> Chart:
    """Bars for (hour start, count) pairs, oldest first; a tick label every 3 hours (local time)."""
    chart = Chart(bars=[], total=sum(c for _, c in counts))
    n = max(1, len(counts))
    slot = chart.width / n
    peak = max((c for _, c in counts), default=0) or 1
    usable = chart.base - 20  # room above the tallest bar for its value
    for i, (start, count) in enumerate(counts):
        h = round(usable * count / peak, 1)
        local = start.astimezone(LOCAL_TZ)
        chart.bars.append(
            Bar(
                label=local.strftime("%d/%m %H:00"),
                count=count,
                x=round(i * slot + 2, 1),
                y=round(chart.base - h, 1),
                w=round(slot - 4, 1),
                h=h,
                cx=round(i * slot + slot / 2, 1),
                tick=local.strftime("%Hh") if i % 3 == 0 else None,
            )
        )
    return chart


def alerts_per_hour(services: WebServices, now: datetime) -> list[tuple[datetime, int]]:
    """Alert counts of the 24 whole hours up to now (the current hour last), zeros included."""
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=24)
    try:
        resp = services.client.search(
            index=services.names.alerts,
            size=0,
            query={"range": {"@timestamp": {"gte": start.isoformat(), "lt": end.isoformat()}}},
            aggs={
                "h": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h", "min_doc_count": 0}}
            },
            ignore_unavailable=True,
            allow_no_indices=True,
        )
    except (TransportError, OSError) as e:
        raise DependencyUnavailable(f"could not count alerts per hour: {e}") from e
    buckets = resp.get("aggregations", {}).get("h", {}).get("buckets", [])
    by_ms = {int(b["key"]): int(b["doc_count"]) for b in buckets}
    out = []
    for i in range(24):
        hour = start + timedelta(hours=i)
        out.append((hour, by_ms.get(int(hour.timestamp() * 1000), 0)))
    return out


def events_per_second(services: WebServices, now: datetime) -> list[EpsRow]:
    """Per `event.dataset`: events ingested in the last 5 and 60 minutes, per second."""
    since60 = now - timedelta(minutes=60)
    since5 = now - timedelta(minutes=5)
    try:
        resp = services.client.search(
            index=services.names.events_pattern,
            size=0,
            query={"range": {"event.ingested": {"gte": since60.isoformat(), "lte": now.isoformat()}}},
            aggs={
                "ds": {
                    "terms": {"field": "event.dataset", "size": 100},
                    "aggs": {
                        "recent": {"filter": {"range": {"event.ingested": {"gte": since5.isoformat()}}}}
                    },
                }
            },
            ignore_unavailable=True,
            allow_no_indices=True,
        )
    except (TransportError, OSError) as e:
        raise DependencyUnavailable(f"could not count events per source: {e}") from e
    rows = [
        EpsRow(
            dataset=str(b["key"]),
            eps5=b["recent"]["doc_count"] / 300,
            eps60=b["doc_count"] / 3600,
        )
        for b in resp.get("aggregations", {}).get("ds", {}).get("buckets", [])
    ]
    return sorted(rows, key=lambda r: (-r.eps5, -r.eps60, r.dataset))


def rule_health(services: WebServices) -> HealthSummary:
    summary = HealthSummary()
    for rule in services.rules.catalog():
        if not rule.enabled:
            continue
        status = rule.health.status
        if status in ("failing", "invalid") or rule.problems:
            error = rule.health.last_error or ("; ".join(rule.problems) or None)
            summary.failing.append({"id": rule.id, "title": rule.title or rule.id, "error": error})
        elif status == "never_run":
            summary.never += 1
        else:
            summary.ok += 1
    return summary


def open_counts(incidents: list[Incident]) -> tuple[list[tuple[str, int]], list[tuple[str | None, int]]]:
    """(priority, count) for P1..P4 and (sector, count), most first; an incident counts once per
    sector it touches."""
    prio: Counter[str] = Counter(i.priority for i in incidents)
    sectors: Counter[str | None] = Counter()
    for inc in incidents:
        touched = {a.sector for a in inc.assets} or {None}
        sectors.update(touched)
    by_sector = sorted(sectors.items(), key=lambda kv: (-kv[1], kv[0] or "~"))
    return [(p, prio.get(p, 0)) for p in PRIORITIES], by_sector


@router.get("/", response_class=HTMLResponse, name="overview")
def overview(request: Request, principal: Annotated[Principal, Depends(page_user())]) -> Any:
    if principal.role == "owner":
        return RedirectResponse("/incidents", status_code=303)
    services = services_of(request)
    now = services.clock()
    page = services.incidents.list(status=list(OPEN), size=OPEN_LIMIT)
    by_priority, by_sector = open_counts(page.items)
    return render(
        request,
        "overview.html",
        {
            "by_priority": by_priority,
            "by_sector": by_sector,
            "open_total": page.total,
            "counted": len(page.items),
            "truncated": page.total > len(page.items),
            "chart": hour_chart(alerts_per_hour(services, now)),
            "eps": events_per_second(services, now),
            "health": rule_health(services),
        },
    )
