"""Request-level rules that need no store: CSRF check, bearer parsing, the `next` target, redirects."""

from __future__ import annotations

import subprocess
import sys

import pytest
from starlette.requests import Request

from hcm_soc.web.auth import AuthError, LoginRedirect, Principal, api_user, check_csrf, page_user
from hcm_soc.web.auth.deps import bearer_token
from hcm_soc.web.auth.routes import safe_next

CSRF = "k3y-of-the-session"


def request(method: str = "POST", headers: dict[str, str] | None = None, query: str = "") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request(
        {"type": "http", "method": method, "path": "/x", "headers": raw, "query_string": query.encode()}
    )


def session_user(csrf: str | None = CSRF) -> Principal:
    return Principal("alice", "analyst", (), None, "session", csrf)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post"])
def test_state_changing_session_request_needs_the_token(method: str) -> None:
    with pytest.raises(AuthError) as err:
        check_csrf(request(method), session_user())
    assert (err.value.status, err.value.code) == (403, "csrf")
    with pytest.raises(AuthError):
        check_csrf(request(method, {"X-CSRF-Token": CSRF + "x"}), session_user())
    with pytest.raises(AuthError):
        check_csrf(request(method, {"X-CSRF-Token": CSRF}), session_user(csrf=None))
    check_csrf(request(method, {"X-CSRF-Token": CSRF}), session_user())
    check_csrf(request(method), session_user(), form_token=CSRF)


def test_safe_methods_and_token_callers_are_exempt() -> None:
    for method in ("GET", "HEAD", "OPTIONS"):
        check_csrf(request(method), session_user())
    check_csrf(request("POST"), Principal("bot", "analyst", (), None, "token", None))


def test_bearer_token_parsing() -> None:
    assert bearer_token(request(headers={})) is None
    assert bearer_token(request(headers={"Authorization": "Bearer hcm_abc"})) == "hcm_abc"
    assert bearer_token(request(headers={"Authorization": "bearer  hcm_abc "})) == "hcm_abc"
    assert bearer_token(request(headers={"Authorization": "Basic YWxpY2U6cHc="})) == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/incidents/INC-1?tab=alerts", "/incidents/INC-1?tab=alerts"),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("incidents", "/"),
        ("/a\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_next_is_a_same_site_path(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_login_redirect_keeps_the_page_and_its_query() -> None:
    r = LoginRedirect("/incidents?status=new&p=2")
    assert r.status_code == 303
    assert r.headers == {"Location": "/login?next=/incidents%3Fstatus%3Dnew%26p%3D2"}


def test_unknown_roles_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="root"):
        api_user("root")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="root"):
        page_user("analyst", "root")  # type: ignore[arg-type]


@pytest.mark.parametrize("first", ["hcm_soc.store.users", "hcm_soc.web.auth", "hcm_soc.web.auth.routes"])
def test_modules_import_in_any_order(first: str) -> None:
    # store.users uses hcm_soc.passwords and web.auth uses store.users types: no import cycle
    code = f"import {first}; import hcm_soc.store.users, hcm_soc.web.auth.routes, hcm_soc.cli.users"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
