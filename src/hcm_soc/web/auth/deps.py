"""FastAPI dependencies that say who is calling and whether they may: `get_principal`,
`api_user(*roles)`, `page_user(*roles)`, `check_csrf`.

Credentials come from exactly two places: the `hcm_session` cookie (a browser) or an
`Authorization: Bearer hcm_…` header (an integration). Never from the query string: URLs end
up in logs, browser history and Referer headers. A request that presents a bearer token is
judged on that token alone (a bad token is a 401 even with a good cookie), so a script can never
act with a browser's session by accident.

CSRF: a state-changing request (POST/PUT/PATCH/DELETE) authenticated by a session must carry
the session's synchronizer token, in the `X-CSRF-Token` header (htmx, fetch) or the
`csrf_token` form field (plain forms). `api_user` and `page_user` check it themselves for
those methods, so no route can forget; `check_csrf` is there for routes that want to say so.
Token callers are exempt: a browser never attaches a bearer token on its own.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hcm_soc.web.auth.principal import AuthError, Principal

if TYPE_CHECKING:
    from hcm_soc.store.users import Role, UserStore

SESSION_COOKIE = "hcm_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ROLES = ("analyst", "owner", "admin")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_STATE_KEY = "hcm_principal"
_NOBODY = object()  # request.state marker: looked up already, nobody logged in


class LoginRedirect(StarletteHTTPException):
    """A page asked for a login: 303 to /login?next=<the page>. An HTTPException (not an
    HcmSocError) so it works with FastAPI's default handler as well as the app's.

    For an htmx request (a partial such as the queue's auto-refresh) a 303 would be followed by the
    browser and the login page swapped into the table; htmx gets 401 with `HX-Redirect` instead and
    sends the whole window to the login page, back to the page the person was on afterwards."""

    def __init__(self, next_path: str, *, htmx: bool = False) -> None:
        location = f"/login?next={quote(next_path, safe='/')}"
        if htmx:
            super().__init__(status_code=401, detail="login needed", headers={"HX-Redirect": location})
        else:
            super().__init__(status_code=303, headers={"Location": location})


def _users(request: Request) -> UserStore:
    users: UserStore = request.app.state.services.users
    return users


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer …` header ('' when the header is there but empty)."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return value.strip()


def get_principal(request: Request) -> Principal | None:
    """The caller, from a bearer token or the session cookie; None when neither is valid.

    Blocking (reads Elasticsearch); the result is kept on `request.state` for the request.
    """
    cached = getattr(request.state, _STATE_KEY, None)
    if cached is _NOBODY:
        return None
    if isinstance(cached, Principal):
        return cached
    principal: Principal | None = None
    users = _users(request)
    token = bearer_token(request)
    if token is not None:
        user = users.verify_token(token) if token else None
        if user is not None:
            principal = Principal.from_user(user, via="token", csrf=None)
    else:
        session_id = request.cookies.get(SESSION_COOKIE)
        found = users.session_user(session_id) if session_id else None
        if found is not None:
            session, user = found
            principal = Principal.from_user(user, via="session", csrf=session.csrf)
    setattr(request.state, _STATE_KEY, principal if principal is not None else _NOBODY)
    return principal


def _parsed_form_token(request: Request) -> str | None:
    # Starlette keeps the parsed form on the request; FastAPI parses it before the dependencies
    # run when the route declares Form fields, and `_enforce_csrf` parses it otherwise
    form = getattr(request, "_form", None)
    if form is None:
        return None
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) else None


def check_csrf(request: Request, principal: Principal, form_token: str | None = None) -> None:
    """Refuse (403 "csrf") a state-changing session request without the session's CSRF token."""
    if request.method.upper() not in UNSAFE_METHODS or principal.via != "session":
        return
    sent = request.headers.get(CSRF_HEADER) or form_token or _parsed_form_token(request)
    if not sent or not principal.csrf or not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
        raise AuthError(
            403,
            "csrf",
            "missing or wrong CSRF token: reload the page and try again (API clients send the "
            f"{CSRF_HEADER} header from GET /api/me, or use an API token)",
        )


async def _enforce_csrf(request: Request, principal: Principal) -> None:
    if request.method.upper() not in UNSAFE_METHODS or principal.via != "session":
        return
    if not request.headers.get(CSRF_HEADER):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in _FORM_TYPES:
            await request.form()  # parsed once; Starlette and FastAPI reuse it
    check_csrf(request, principal)


def _check_roles(roles: tuple[str, ...]) -> None:
    unknown = [r for r in roles if r not in _ROLES]
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}: expected {', '.join(_ROLES)}")


def _forbidden(principal: Principal, roles: tuple[str, ...]) -> AuthError:
    return AuthError(
        403,
        "forbidden",
        f"user {principal.username!r} (role {principal.role}) may not do this: it needs role "
        f"{' or '.join(roles)}",
    )


def api_user(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency for API routes: the caller (401 if none, 403 if its role is not in `roles`;
    no roles: any logged-in user). State-changing session requests must pass the CSRF check."""
    _check_roles(roles)

    async def dependency(request: Request) -> Principal:
        principal = await run_in_threadpool(get_principal, request)
        if principal is None:
            raise AuthError(
                401,
                "unauthenticated",
                "not logged in: sign in at /login, or send 'Authorization: Bearer hcm_…' with an API "
                "token (`hcm-soc users token USER --name NAME`)",
            )
        if roles and principal.role not in roles:
            raise _forbidden(principal, roles)
        await _enforce_csrf(request, principal)
        return principal

    return dependency


def page_user(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency for console pages: like `api_user`, but nobody logged in → 303 to the login
    page, which brings the person back here afterwards."""
    _check_roles(roles)

    async def dependency(request: Request) -> Principal:
        principal = await run_in_threadpool(get_principal, request)
        if principal is None:
            if request.headers.get("HX-Request") == "true":
                current = urlsplit(request.headers.get("HX-Current-URL", ""))
                # back to the page the person was on (same site only), not to the partial's URL
                back = (current.path or "/") + (f"?{current.query}" if current.query else "")
                raise LoginRedirect(
                    back if back.startswith("/") and not back.startswith("//") else "/", htmx=True
                )
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRedirect(target)
        if roles and principal.role not in roles:
            raise _forbidden(principal, roles)
        await _enforce_csrf(request, principal)
        return principal

    return dependency


def client_address(request: Request) -> str | None:
    """The peer address. Forwarded headers are not trusted: anyone can send them."""
    return request.client.host if request.client else None


def principal_json(principal: Principal) -> dict[str, Any]:
    return {
        "username": principal.username,
        "display_name": principal.display_name,
        "role": principal.role,
        "departments": list(principal.departments),
        "via": principal.via,
        "csrf_token": principal.csrf,
    }
