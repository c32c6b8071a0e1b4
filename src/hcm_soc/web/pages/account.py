"""The signed-in person's own account: changing their password (`/account`).

The current password is asked again (a borrowed, unlocked screen must not be enough to take the
account over), the new one must meet the password policy, and every other session of the user ends;
the one in use stays. The change is written to the audit trail.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from hcm_soc.passwords import WeakPassword
from hcm_soc.web.auth import SESSION_COOKIE, Principal, page_user
from hcm_soc.web.pages.common import see_other, services_of
from hcm_soc.web.templating import render

router = APIRouter()


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, principal: Principal = Depends(page_user())) -> Response:
    return render(request, "account.html", {})


@router.post("/account/password", response_class=HTMLResponse)
def change_password(
    request: Request,
    current: str = Form(""),
    new: str = Form(""),
    confirm: str = Form(""),
    principal: Principal = Depends(page_user()),
) -> Response:
    services = services_of(request)
    actor = f"user:{principal.username}"
    problem: str | None = None
    if principal.via != "session" or services.users.verify_password(principal.username, current) is None:
        problem = "account.wrong_current"
    elif new != confirm:
        problem = "account.mismatch"
    if problem is None:
        try:
            services.users.set_password(
                principal.username, new, keep_session=request.cookies.get(SESSION_COOKIE)
            )
        except WeakPassword as e:
            services.audit.write(
                "user.password",
                actor=actor,
                outcome="failure",
                message=f"{principal.username}: password not changed (refused by the policy)",
            )
            return render(request, "account.html", {"problem": str(e)}, status_code=422)
        services.audit.write(
            "user.password",
            actor=actor,
            outcome="success",
            message=f"{principal.username} changed their password",
        )
        return see_other("/account", msg="password_changed")
    services.audit.write(
        "user.password",
        actor=actor,
        outcome="failure",
        message=f"{principal.username}: password not changed ({problem})",
    )
    return render(request, "account.html", {"problem_key": problem}, status_code=400)
