"""`/api/inventory`: the asset inventory (assets, departments and the file's problems) and the
lookup of an IP address, host name or URL to the asset and department that own it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from hcm_soc.web.api.deps import get_services, reader
from hcm_soc.web.api.playbooks import problem_out
from hcm_soc.web.api.schemas import ERRORS
from hcm_soc.web.auth import Principal
from hcm_soc.web.services import WebServices

router = APIRouter(prefix="/inventory", tags=["inventory"], responses=ERRORS)


@router.get("", summary="Assets, departments and the inventory file's problems")
def get_inventory(
    principal: Principal = reader("analyst", "admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    inventory, problems = services.inventory_state()
    return {
        "source": str(services.settings.paths.inventory),
        "assets": [a.model_dump(mode="json") for a in inventory.assets],
        "departments": [d.model_dump(mode="json") for d in inventory.departments.values()],
        "total": len(inventory.assets),
        "problems": [problem_out(p).model_dump() for p in problems],
    }


@router.get("/lookup", summary="Which asset an IP address, host name or URL belongs to")
def lookup(
    value: str = Query(min_length=1, max_length=2048, description="an IP address, host name or URL"),
    principal: Principal = reader("analyst", "admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    matches = services.inventory().lookup(value.strip())
    return {
        "value": value,
        "matches": [
            {
                "asset": m.asset.model_dump(mode="json"),
                "department": m.department.model_dump(mode="json"),
                "matched_by": m.matched_by,
                "value": m.value,
            }
            for m in matches
        ],
    }
