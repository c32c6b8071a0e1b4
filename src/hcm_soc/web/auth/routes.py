"""The login, logout and "who am I" routes: GET/POST /login, POST /logout, GET /api/me.

A login either succeeds (a new session, the `hcm_session` cookie, 303 to the page the person
came from) or shows the form again with one generic message and status 401 — the same words
for an unknown name, a wrong password and a disabled account, so the form does not tell which
names exist. Too many failures for a name or from an address pause logins (429, see
throttle.py). Every attempt is audited with the client address; passwords never are.

A login POST sent from another site's page (its `Origin` is not this host) is refused: that is
login CSRF, which would sign the victim into an attacker's account. `next` is only followed when it is a path on this site ("/…" but not "//…" or "/\\…", which
browsers read as another host): anything else goes to "/". The cookie is HttpOnly, SameSite=Lax
(Strict would drop it when a person follows the acknowledgement link of a notice e-mail, a
cross-site top-level GET, and land them on the login page), and Secure when
`settings.web.secure_cookies` is on (behind HTTPS).
"""

from __future__ import annotations

import math
import re
import threading
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from hcm_soc.web.auth.deps import (
    SESSION_COOKIE,
    api_user,
    check_csrf,
    client_address,
    get_principal,
    principal_json,
)
from hcm_soc.web.auth.principal import AuthError, Principal
from hcm_soc.web.auth.throttle import LoginThrottle

if TYPE_CHECKING:
    from hcm_soc.web.services import WebServices

router = APIRouter(tags=["auth"])

_MESSAGES = {
    "vi": {
        "failed": "Tên đăng nhập hoặc mật khẩu không đúng.",
        "throttled": "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {minutes} phút.",
    },
    "en": {
        "failed": "Wrong user name or password.",
        "throttled": "Too many failed sign-ins. Please try again in {minutes} minute(s).",
    },
}
_MAX_FIELD = 1024  # longer names/passwords fail like wrong ones, without hashing megabytes
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_throttle_lock = threading.Lock()


def safe_next(value: str | None) -> str:
    """A same-site path to go to after login; "/" for anything that could leave the site."""
    if not value or not value.startswith("/") or value.startswith("//") or _CONTROL.search(value):
        return "/"
    return value


def _services(request: Request) -> WebServices:
    services: WebServices = request.app.state.services
    return services


def login_throttle(request: Request) -> LoginThrottle:
    """The app's throttle (one per process), made on first use from `settings.web`."""
    state = request.app.state
    throttle = getattr(state, "login_throttle", None)
    if throttle is None:
        with _throttle_lock:
            throttle = getattr(state, "login_throttle", None)
            if throttle is None:
                services = _services(request)
                web = services.settings.web
                throttle = LoginThrottle(
                    max_failures=web.login_max_failures, lockout=web.login_lockout, clock=services.clock
                )
                state.login_throttle = throttle
    assert isinstance(throttle, LoginThrottle)
    return throttle


def _lang(request: Request) -> str:
    lang = request.query_params.get("lang") or request.cookies.get("lang")
    return lang if lang in _MESSAGES else "vi"


def _login_page(request: Request, *, error: str | None, next_path: str, status_code: int) -> Response:
    # imported when used: the templates belong to the console (hcm_soc.web.templating)
    from hcm_soc.web.templating import render

    response: Response = render(
        request, "login.html", {"error": error, "next": next_path}, status_code=status_code
    )
    return response


@router.get("/login", include_in_schema=False)
def login_form(request: Request, next: str | None = None) -> Response:
    target = safe_next(next)
    if get_principal(request) is not None:
        return RedirectResponse(target, status_code=303)
    return _login_page(request, error=None, next_path=target, status_code=200)


def _audit_details(request: Request, username: str, **extra: Any) -> dict[str, Any]:
    return {"client": {"address": client_address(request)}, "username": username[:64], **extra}


def cross_site(request: Request) -> bool:
    """A browser POST sent by a page of another site (login CSRF: logging the victim into the
    attacker's account). Browsers send `Origin` on every POST; clients without it are not browsers."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    services = _services(request)
    throttle = login_throttle(request)
    address = client_address(request)
    name = username.strip().lower()[:_MAX_FIELD]
    target = safe_next(next)
    messages = _MESSAGES[_lang(request)]
    if cross_site(request):
        raise AuthError(
            403, "csrf", "a login form of another site was refused: sign in at this site's /login"
        )

    locked = throttle.locked(name, address)
    if locked is not None:
        services.audit.write(
            "login",
            actor="anonymous",
            outcome="failure",
            message=f"login refused for {name[:64]!r} from {address}: too many failures ({locked.key})",
            details=_audit_details(request, name, reason="throttled", locked_by=locked.key),
        )
        response = _login_page(
            request,
            error=messages["throttled"].format(minutes=max(1, math.ceil(locked.seconds_left / 60))),
            next_path=target,
            status_code=429,
        )
        response.headers["Retry-After"] = str(math.ceil(locked.seconds_left))
        return response

    user = None
    if len(username) <= _MAX_FIELD and len(password) <= _MAX_FIELD:
        user = services.users.verify_password(name, password)
    if user is None:
        started = throttle.failure(name, address)
        services.audit.write(
            "login",
            actor="anonymous",
            outcome="failure",
            message=f"failed login for {name[:64]!r} from {address}",
            details=_audit_details(request, name, reason="bad credentials"),
        )
        if started is not None:
            services.audit.write(
                "login.lockout",
                actor="system",
                outcome="failure",
                message=(
                    f"logins paused for {services.settings.web.login_lockout:.0f} s after "
                    f"{throttle.max_failures} failures ({started.key}: "
                    f"{name[:64] if started.key == 'user' else address})"
                ),
                details=_audit_details(request, name, locked_by=started.key),
            )
        return _login_page(request, error=messages["failed"], next_path=target, status_code=401)

    throttle.success(name)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        # a fresh id at every login: a session id planted before login is worth nothing after it
        services.users.delete_session(old)
    session_id, _ = services.users.create_session(user.username, ttl=services.settings.web.session_ttl)
    services.audit.write(
        "login",
        actor=f"user:{user.username}",
        outcome="success",
        message=f"{user.username} logged in from {address}",
        details=_audit_details(request, user.username, role=user.role),
    )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="lax",
        secure=services.settings.web.secure_cookies,
        path="/",
    )
    return response


@router.post("/logout", include_in_schema=False)
def logout(request: Request, csrf_token: Annotated[str | None, Form()] = None) -> Response:
    services = _services(request)
    principal = get_principal(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    if principal is not None and principal.via == "session" and session_id:
        check_csrf(request, principal, csrf_token)
        services.users.delete_session(session_id)
        services.audit.write(
            "logout",
            actor=f"user:{principal.username}",
            outcome="success",
            message=f"{principal.username} logged out",
            details={"client": {"address": client_address(request)}},
        )
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


@router.get("/api/me", tags=["auth"], summary="The caller: user name, role, departments, CSRF token")
def me(principal: Annotated[Principal, Depends(api_user())]) -> dict[str, Any]:
    return principal_json(principal)
