"""`GET /api/health`: is the service and its Elasticsearch up (no login needed; it tells nothing
but up/down and the version), and — for a logged-in analyst or admin — who holds the engine
lease, how the notice outbox stands and which rules are failing.

200 when Elasticsearch answers, 503 when it does not (what a load balancer or `curl -f` checks).
"""

from __future__ import annotations

import logging
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError as EsApiError
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from hcm_soc import __version__
from hcm_soc.errors import HcmSocError
from hcm_soc.web.api.deps import get_services
from hcm_soc.web.api.queries import notices_by_status
from hcm_soc.web.auth import AuthError, Principal, get_principal
from hcm_soc.web.services import WebServices

log = logging.getLogger("hcm_soc.web")

router = APIRouter(tags=["health"])


def elasticsearch_status(services: WebServices) -> dict[str, Any]:
    try:
        info = services.client.info()
    except (TransportError, EsApiError, OSError) as e:
        return {"status": "down", "error": type(e).__name__}
    return {"status": "up", "version": info.get("version", {}).get("number")}


def _caller(request: Request) -> Principal | None:
    try:
        return get_principal(request)
    except AuthError:  # a stale cookie or a bad token still gets the public answer
        return None


def engine_lease(services: WebServices) -> dict[str, Any] | None:
    from hcm_soc.detection.lease import LEASE_NAME
    from hcm_soc.store.lease import LeaseStore

    lease = LeaseStore(services.client, services.names).read(LEASE_NAME)
    if lease is None:
        return None
    return {
        "holder": lease.holder,
        "renewed": lease.renewed.isoformat(),
        "expires": lease.expires.isoformat(),
        "expired": lease.expired(services.clock()),
    }


def failing_rules(services: WebServices) -> list[dict[str, Any]]:
    from hcm_soc.store.detection_state import DetectionStateStore

    return [
        {
            "rule_id": h.rule_id,
            "rule_name": h.rule_name,
            "consecutive_failures": h.consecutive_failures,
            "last_error": h.last_error,
            "last_error_at": h.last_error_at.isoformat() if h.last_error_at else None,
        }
        for h in DetectionStateStore(services.client, services.names).health_all()
        if h.consecutive_failures > 0
    ]


@router.get("/health", summary="Service and Elasticsearch status (details when logged in)")
def health(request: Request, services: WebServices = Depends(get_services)) -> JSONResponse:
    es = elasticsearch_status(services)
    up = es["status"] == "up"
    body: dict[str, Any] = {"status": "ok" if up else "down", "version": __version__, "elasticsearch": es}
    # who is asking is looked up in Elasticsearch: only when it answers
    principal = _caller(request) if up else None
    if principal is not None and principal.role in ("analyst", "admin"):
        try:
            notices = notices_by_status(services)
            rules = failing_rules(services)
            body["engine"] = {"lease": engine_lease(services)}
            body["outbox"] = {"pending": notices.get("pending", 0), "failed": notices.get("failed", 0)}
            body["rules"] = {"failing": len(rules), "failures": rules}
        except HcmSocError as e:
            body["status"] = "degraded"
            body["error"] = str(e)
    return JSONResponse(body, status_code=200 if up else 503)
