"""`/api/rules`: the rule catalog with health, one rule, and the administrator's workbench
(validate, test on sample events, backtest, save, enable/disable, run now) — all through RULES'
`RuleWorkbench` on `services.rules`.

Analysts read the catalog and may validate a text; everything that tests, saves, switches or
runs a rule is the administrators'. Owners do not see rules. Saving, switching and running are
written to the audit trail.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.encoders import jsonable_encoder

from hcm_soc.web.api.deps import get_services, reader, writer
from hcm_soc.web.api.schemas import ERRORS, RuleBacktestIn, RuleSaveIn, RuleTestIn, RuleTextIn
from hcm_soc.web.auth import Principal
from hcm_soc.web.services import WebServices

router = APIRouter(prefix="/rules", tags=["rules"], responses=ERRORS)

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such rule"}}


def _json(value: Any) -> Any:
    """Workbench results are pydantic models or dataclasses: plain JSON either way."""
    return jsonable_encoder(value)


def _audit(
    services: WebServices, principal: Principal, action: str, message: str, details: dict[str, Any]
) -> None:
    services.audit.write(
        action, actor=f"user:{principal.username}", outcome="success", message=message, details=details
    )


@router.get("", summary="The rule catalog (file and console rules) with health")
def list_rules(
    principal: Principal = reader("analyst", "admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    items = services.rules.catalog()
    return {"items": _json(items), "total": len(items)}


@router.post("/validate", summary="Validate a Sigma rule text (problems with line numbers)")
def validate_rule(
    body: RuleTextIn,
    principal: Principal = writer("analyst", "admin"),
    services: WebServices = Depends(get_services),
) -> Any:
    return _json(services.rules.validate(body.yaml))


@router.post("/test", summary="Run a rule text on sample events (indexes of the matching ones)")
def test_rule(
    body: RuleTestIn,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> Any:
    return _json(services.rules.test(body.yaml, body.events))


@router.post("/backtest", summary="Run a rule text on the stored events of the last N hours")
def backtest_rule(
    body: RuleBacktestIn,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> Any:
    return _json(services.rules.backtest(body.yaml, hours=body.hours, limit=body.limit))


@router.post("", summary="Create or update a console rule from Sigma YAML", status_code=201)
def save_rule(
    body: RuleSaveIn,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> Any:
    stored = services.rules.save(body.yaml, author=principal.username, enabled=body.enabled)
    out = _json(stored)
    rule_id = out.get("id") if isinstance(out, dict) else None
    _audit(
        services,
        principal,
        "rule.save",
        f"saved rule {rule_id} ({'enabled' if body.enabled else 'disabled'})",
        {
            "rule_id": rule_id,
            "enabled": body.enabled,
            "version": out.get("version") if isinstance(out, dict) else None,
        },
    )
    return out


@router.get("/{rule_id}", summary="One rule: summary, health, YAML text and query", responses=NOT_FOUND)
def get_rule(
    rule_id: str,
    principal: Principal = reader("analyst", "admin"),
    services: WebServices = Depends(get_services),
) -> Any:
    return _json(services.rules.get(rule_id))


def _switch(services: WebServices, principal: Principal, rule_id: str, enabled: bool) -> dict[str, Any]:
    services.rules.set_enabled(rule_id, enabled, author=principal.username)
    word = "enabled" if enabled else "disabled"
    _audit(services, principal, f"rule.{word[:-1]}", f"{word} rule {rule_id}", {"rule_id": rule_id})
    return {"id": rule_id, "enabled": enabled}


@router.post("/{rule_id}/enable", summary="Enable a rule (file or console)", responses=NOT_FOUND)
def enable_rule(
    rule_id: str,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    return _switch(services, principal, rule_id, True)


@router.post("/{rule_id}/disable", summary="Disable a rule (file or console)", responses=NOT_FOUND)
def disable_rule(
    rule_id: str,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    return _switch(services, principal, rule_id, False)


@router.post("/{rule_id}/run", summary="Run one engine pass of a rule now", responses=NOT_FOUND)
def run_rule(
    rule_id: str,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> Any:
    outcome = services.rules.run_now(rule_id)
    out = _json(outcome)
    _audit(services, principal, "rule.run", f"ran rule {rule_id} now", {"rule_id": rule_id, "outcome": out})
    return out
