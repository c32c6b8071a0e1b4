"""The REST API: one router per resource, mounted under `/api` by the app factory (`router`);
`/metrics` is mounted at the root (`metrics_router`). Errors are JSON
`{"error": {"code", "message"}}` (see `hcm_soc.web.errors`); docs/api.md describes the whole API."""

from fastapi import APIRouter

from hcm_soc.web.api import alerts, health, incidents, ingest, inventory, playbooks, rules, users
from hcm_soc.web.api.metrics import router as metrics_router

router = APIRouter()
for _module in (incidents, alerts, rules, playbooks, inventory, ingest, health, users):
    router.include_router(_module.router)

__all__ = ["metrics_router", "router"]
