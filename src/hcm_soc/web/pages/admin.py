"""The administrator's pages: rules with their health and the rule editor (validate, test on
sample events, backtest, save, enable/disable, run now), playbooks and inventory with their
validation problems, users (add, disable/enable, API token shown once) and the audit trail.

Rule actions go through the RuleWorkbench (`services.rules`); every change an administrator makes
is written to the audit trail here, next to the change, with who did it. The editor's checks
answer htmx with the result partial and a plain form post with the whole editor page, so the page
works without JavaScript too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from hcm_soc.detection.workbench import RuleInvalid
from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.web.auth import Principal, page_user
from hcm_soc.web.i18n import translator
from hcm_soc.web.pages.common import flash_of, form_of, is_htmx, see_other, services_of
from hcm_soc.web.templating import render, request_lang

router = APIRouter(prefix="/admin")
Admin = Annotated[Principal, Depends(page_user("admin"))]

#: at most this many sample events in one test (the textarea is for a handful, not a log file)
MAX_SAMPLES = 500
MAX_HOURS = 24 * 30

NEW_RULE = """title: Đăng nhập SSH thất bại nhiều lần
status: experimental
description: Nhiều lần đăng nhập SSH thất bại từ một địa chỉ
logsource:
  product: linux
  service: sshd
detection:
  selection:
    event.outcome: failure
  condition: selection
level: medium
"""


def parse_samples(text: str, lang: str) -> tuple[list[dict[str, Any]], list[str]]:
    """JSON lines → events, with a problem per line that is not a JSON object."""
    t = translator("en" if lang == "en" else "vi")
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(t("rules.sample_line", n=n, error=e.msg))
            continue
        if not isinstance(value, dict):
            problems.append(t("rules.sample_object", n=n))
            continue
        events.append(value)
        if len(events) > MAX_SAMPLES:
            problems.append(f"> {MAX_SAMPLES}")
            break
    return events, problems


def _audit(request: Request, principal: Principal, action: str, message: str, **details: Any) -> None:
    # refresh: the administrator opens the audit page right after and expects to see the change
    services_of(request).audit.write(
        action,
        actor=principal.username,
        outcome="success",
        message=message,
        details=details or None,
        refresh=True,
    )


# -- rules ------------------------------------------------------------------------------------------
@router.get("/rules", response_class=HTMLResponse)
def rules_page(request: Request, principal: Admin) -> Response:
    rules = sorted(services_of(request).rules.catalog(), key=lambda r: ((r.title or r.id).lower(), r.id))
    return render(request, "admin_rules.html", {"rules": rules, "flash_key": flash_of(request)})


@dataclass(frozen=True, slots=True)
class EditorInput:
    """What the editor form holds: kept across checks so nothing typed is lost."""

    rule_id: str | None
    yaml_text: str
    samples_text: str = ""
    hours: float | None = None


def _editor(
    request: Request, given: EditorInput, *, result: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    services = services_of(request)
    detail = None
    if given.rule_id:
        detail = {r.id: r for r in services.rules.catalog()}.get(given.rule_id)
    context: dict[str, Any] = {
        "detail": detail,
        "yaml_text": given.yaml_text,
        "samples_text": given.samples_text,
        "hours": given.hours,
        "flash_key": flash_of(request),
        **(result or {}),
    }
    if result is not None and is_htmx(request):
        return render(request, "_rule_result.html", context, status_code=status_code)
    return render(request, "rule_editor.html", context, status_code=status_code)


@router.get("/rules/new", response_class=HTMLResponse)
def new_rule(request: Request, principal: Admin) -> Response:
    return _editor(request, EditorInput(rule_id=None, yaml_text=NEW_RULE))


@router.get("/rules/{rule_id}", response_class=HTMLResponse)
def edit_rule(rule_id: str, request: Request, principal: Admin) -> Response:
    detail = services_of(request).rules.get(rule_id)
    return _editor(request, EditorInput(rule_id=detail.summary.id, yaml_text=detail.yaml or ""))


def _hours(value: str | None) -> float:
    try:
        hours = float(value or 24)
    except ValueError:
        return 24.0
    return min(max(hours, 1.0), float(MAX_HOURS))


def _editor_action(request: Request, principal: Principal, action: str, form: dict[str, str]) -> Response:
    services = services_of(request)
    text = form.get("yaml", "")
    hours = _hours(form.get("hours"))
    keep = EditorInput(form.get("rule_id") or None, text, form.get("samples", ""), hours)
    if action == "validate":
        return _editor(request, result={"check": services.rules.validate(text)}, given=keep)
    if action == "test":
        events, problems = parse_samples(keep.samples_text, request_lang(request)[0])
        if problems or not events:
            problems = problems or [translator(request_lang(request)[0])("rules.no_samples")]
            return _editor(request, result={"problems": problems}, status_code=422, given=keep)
        result = services.rules.test(text, events)
        if result.problems:
            return _editor(request, result={"problems": result.problems}, status_code=422, given=keep)
        return _editor(request, result={"test": result, "samples": events}, given=keep)
    if action == "backtest":
        backtest = services.rules.backtest(text, hours=hours)
        if backtest.problems:
            return _editor(request, result={"problems": backtest.problems}, status_code=422, given=keep)
        return _editor(request, result={"backtest": backtest}, given=keep)
    # save
    enable = form.get("enable") == "1"
    try:
        stored = services.rules.save(text, author=principal.username, enabled=enable)
    except RuleInvalid as e:
        return _editor(request, result={"check": e.check}, status_code=422, given=keep)
    _audit(request, principal, "rule.save", f"saved rule {stored.id}", rule=stored.id, enabled=str(enable))
    return see_other(f"/admin/rules/{stored.id}", msg="saved")


async def _editor_post(request: Request, principal: Principal, action: str) -> Response:
    form = await form_of(request)
    response: Response = await run_in_threadpool(_editor_action, request, principal, action, form)
    return response


@router.post("/rules/validate")
async def validate_rule(request: Request, principal: Admin) -> Response:
    return await _editor_post(request, principal, "validate")


@router.post("/rules/test")
async def test_rule(request: Request, principal: Admin) -> Response:
    return await _editor_post(request, principal, "test")


@router.post("/rules/backtest")
async def backtest_rule(request: Request, principal: Admin) -> Response:
    return await _editor_post(request, principal, "backtest")


@router.post("/rules/save")
async def save_rule(request: Request, principal: Admin) -> Response:
    return await _editor_post(request, principal, "save")


def _toggle(
    request: Request, principal: Principal, rule_id: str, enabled: bool, back: str | None
) -> Response:
    services_of(request).rules.set_enabled(rule_id, enabled, author=principal.username)
    action = "rule.enable" if enabled else "rule.disable"
    _audit(request, principal, action, f"{'enabled' if enabled else 'disabled'} rule {rule_id}", rule=rule_id)
    target = f"/admin/rules/{rule_id}" if back == "editor" else "/admin/rules"
    return see_other(target, msg="enabled" if enabled else "disabled")


@router.post("/rules/{rule_id}/enable")
async def enable_rule(rule_id: str, request: Request, principal: Admin) -> Response:
    form = await form_of(request)
    response: Response = await run_in_threadpool(_toggle, request, principal, rule_id, True, form.get("back"))
    return response


@router.post("/rules/{rule_id}/disable")
async def disable_rule(rule_id: str, request: Request, principal: Admin) -> Response:
    form = await form_of(request)
    response: Response = await run_in_threadpool(
        _toggle, request, principal, rule_id, False, form.get("back")
    )
    return response


def _run_now(request: Request, principal: Principal, rule_id: str) -> Response:
    services = services_of(request)
    detail = services.rules.get(rule_id)
    outcome = services.rules.run_now(rule_id)
    _audit(
        request,
        principal,
        "rule.run",
        f"ran rule {rule_id}: {outcome.matches} matches, {outcome.alerts_created} alerts"
        + (f", error: {outcome.error}" if outcome.error else ""),
        rule=rule_id,
    )
    given = EditorInput(rule_id=rule_id, yaml_text=detail.yaml or "")
    return _editor(request, given, result={"outcome": outcome})


@router.post("/rules/{rule_id}/run")
async def run_rule(rule_id: str, request: Request, principal: Admin) -> Response:
    response: Response = await run_in_threadpool(_run_now, request, principal, rule_id)
    return response


# -- playbooks and inventory -------------------------------------------------------------------------
@router.get("/playbooks", response_class=HTMLResponse)
def playbooks_page(request: Request, principal: Admin) -> Response:
    pset = services_of(request).playbooks()
    return render(
        request, "playbooks.html", {"playbooks": pset.playbooks, "problems": [str(p) for p in pset.problems]}
    )


@router.get("/inventory", response_class=HTMLResponse)
def inventory_page(request: Request, principal: Admin) -> Response:
    services = services_of(request)
    inventory, problems = services.inventory_state()
    return render(
        request,
        "inventory.html",
        {
            "source": str(services.settings.paths.inventory),
            "assets": sorted(inventory.assets, key=lambda a: a.id),
            "departments": sorted(inventory.departments.values(), key=lambda d: d.id),
            "problems": [str(p) for p in problems],
        },
    )


# -- users and audit --------------------------------------------------------------------------------
ROLES = ("analyst", "owner", "admin")


def users_page(
    request: Request,
    *,
    new_token: dict[str, str] | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Response:
    users = sorted(services_of(request).users.list(), key=lambda u: u.username)
    return render(
        request,
        "users.html",
        {
            "users": users,
            "roles": ROLES,
            "new_token": new_token,
            "flash_key": flash_of(request),
            "problem": problem,
        },
        status_code=status_code,
    )


@router.get("/users", response_class=HTMLResponse)
def users_list(request: Request, principal: Admin) -> Response:
    return users_page(request)


def _add_user(request: Request, principal: Principal, form: dict[str, str]) -> Response:
    role = form.get("role", "")
    if role not in ROLES:
        return users_page(
            request, problem=f"unknown role {role!r}: expected {', '.join(ROLES)}", status_code=422
        )
    departments = [d.strip() for d in form.get("departments", "").split(",") if d.strip()]
    try:
        user = services_of(request).users.add(
            form.get("username", "").strip(),
            form.get("password", ""),
            role=role,  # type: ignore[arg-type]  # checked against ROLES above
            departments=departments,
            display_name=form.get("display_name", "").strip() or None,
        )
    except (ValueError, HcmSocError) as e:
        # a taken name, a weak password, a malformed name: said on the form, nothing stored
        if isinstance(e, DependencyUnavailable):
            raise
        return users_page(request, problem=str(e), status_code=422)
    _audit(request, principal, "user.add", f"added user {user.username} ({user.role})", user=user.username)
    return see_other("/admin/users", msg="user_added")


@router.post("/users")
async def add_user(request: Request, principal: Admin) -> Response:
    form = await form_of(request)
    response: Response = await run_in_threadpool(_add_user, request, principal, form)
    return response


def _set_disabled(request: Request, principal: Principal, username: str, disabled: bool) -> Response:
    services_of(request).users.set_disabled(username, disabled)
    action = "user.disable" if disabled else "user.enable"
    _audit(
        request, principal, action, f"{'disabled' if disabled else 'enabled'} user {username}", user=username
    )
    return see_other("/admin/users", msg="user_disabled" if disabled else "user_enabled")


@router.post("/users/{username}/disable")
async def disable_user(username: str, request: Request, principal: Admin) -> Response:
    response: Response = await run_in_threadpool(_set_disabled, request, principal, username, True)
    return response


@router.post("/users/{username}/enable")
async def enable_user(username: str, request: Request, principal: Admin) -> Response:
    response: Response = await run_in_threadpool(_set_disabled, request, principal, username, False)
    return response


def _create_token(request: Request, principal: Principal, username: str, name: str) -> Response:
    token = services_of(request).users.create_token(username, name)
    _audit(request, principal, "token.create", f"created API token {name!r} for {username}", user=username)
    # shown once, in this answer only: never redirected to, never stored in clear
    return users_page(request, new_token={"user": username, "token": token})


@router.post("/users/{username}/token")
async def create_token(username: str, request: Request, principal: Admin) -> Response:
    form = await form_of(request)
    name = form.get("name", "").strip()
    response: Response = await run_in_threadpool(_create_token, request, principal, username, name)
    return response


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, principal: Admin) -> Response:
    action = request.query_params.get("action") or None
    entries = services_of(request).audit.list(limit=200, action=action)
    return render(request, "audit.html", {"entries": entries})
