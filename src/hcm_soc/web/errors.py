"""Errors → HTTP answers: the one place where hcm-soc exceptions become status codes.

API paths (`/api/…`, `/metrics`, `/openapi.json`) answer JSON
`{"error": {"code": "<stable code>", "message": "<what a person can act on>", …}}`; every other
path answers the console's HTML error page ("error.html" of the UI templates, rendered with
`status`, `code`, `message`). Invalid input is always a 4xx: request validation → 422, an
`HcmSocError` the services raise on purpose → its mapped status (400 when nothing more specific
fits). Only a bug reaches the 500 handler, which logs it and tells nothing internal.

| exception                                   | status | code                    |
| ------------------------------------------- | ------ | ----------------------- |
| ApiError                                    | its own| its own                 |
| AuthError (web.auth)                        | 401/403| its `code`              |
| IncidentNotFound, *NotFound                 | 404    | not_found               |
| IncidentConflict, *Conflict, *Exists, …     | 409    | conflict                |
| TransitionError                             | 409    | transition_not_allowed  |
| RequestValidationError, ValidationError     | 422    | invalid                 |
| ValueError, Invalid*, *Invalid, Weak*       | 422    | invalid                 |
| DependencyUnavailable                       | 503    | unavailable             |
| other HcmSocError                           | 400    | bad_request             |
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.incidents.lifecycle import TransitionError
from hcm_soc.incidents.service import InvalidIncidentChange
from hcm_soc.models.incident import IncidentConflict, IncidentNotFound
from hcm_soc.web.headers import security_headers

log = logging.getLogger("hcm_soc.web")

_JSON_PREFIXES = ("/api/", "/metrics", "/openapi.json")
_PHRASES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "throttled",
    503: "unavailable",
}


class ApiError(HcmSocError):
    """An answer other than 2xx decided by a route: status, stable code, message, extra fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what}: not found")


def wants_json(request: Request) -> bool:
    path = request.url.path
    return path == "/api" or path.startswith(_JSON_PREFIXES)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **(details or {})}}


def _validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Where and why, without echoing the input (it may be a password)."""
    out: list[dict[str, Any]] = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"loc": loc, "message": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    return out


def _summary(details: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(d['loc']) or 'body'}: {d['message']}" for d in details[:5]]
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def classify(exc: BaseException) -> tuple[int, str, str, dict[str, Any]]:
    """(status, code, message, extra fields) for an exception raised while handling a request."""
    # imported here: web.auth belongs to another part and imports this package's siblings
    from hcm_soc.web.auth import AuthError

    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message, exc.details
    if isinstance(exc, AuthError):
        code = getattr(exc, "code", None) or _PHRASES.get(exc.status, "forbidden")
        return exc.status, code, str(exc), {}
    if isinstance(exc, RequestValidationError):
        details = _validation_details(exc.errors())
        return 422, "invalid", _summary(details), {"details": details}
    if isinstance(exc, ValidationError):
        details = _validation_details(exc.errors(include_input=False))
        return 422, "invalid", _summary(details), {"details": details}
    if isinstance(exc, TransitionError):
        return 409, "transition_not_allowed", str(exc), {}
    if isinstance(exc, IncidentNotFound):
        return 404, "not_found", str(exc), {}
    if isinstance(exc, IncidentConflict):
        return 409, "conflict", str(exc), {}
    if isinstance(exc, DependencyUnavailable):
        return 503, "unavailable", str(exc), {}
    if isinstance(exc, InvalidIncidentChange | ValueError):
        return 422, "invalid", str(exc), {}
    if isinstance(exc, HcmSocError):
        name = type(exc).__name__
        extra: dict[str, Any] = {}
        problems = getattr(exc, "problems", None)
        if isinstance(problems, list):
            extra["problems"] = [str(p) for p in problems]
        # other parts' errors, by the naming convention of errors.py (RuleNotFound, UserExists, …)
        if name.endswith("NotFound"):
            return 404, "not_found", str(exc), extra
        if name.endswith(("Conflict", "Exists", "Disabled")):
            return 409, "conflict", str(exc), extra
        if name.endswith("Invalid") or name.startswith(("Invalid", "Weak")):
            return 422, "invalid", str(exc), extra
        return 400, "bad_request", str(exc), extra
    return 500, "internal", "internal error: the server log has the details", {}


def _fallback_page(status: int, message: str) -> HTMLResponse:
    body = (
        '<!doctype html><html lang="vi"><head><meta charset="utf-8"><title>hcm-soc</title></head>'
        f'<body><h1>{status}</h1><p>{html.escape(message)}</p><p><a href="/">hcm-soc</a></p></body></html>'
    )
    return HTMLResponse(body, status_code=status)


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response: Response
    if wants_json(request):
        response = JSONResponse(error_body(code, message, details), status_code=status)
    else:
        try:
            from hcm_soc.web.templating import render

            response = render(
                request,
                "error.html",
                {"status": status, "code": code, "message": message},
                status_code=status,
            )
        except Exception:  # the error page itself failed: still answer, and say why in the log
            log.exception("error page could not be rendered", extra={"path": request.url.path})
            response = _fallback_page(status, message)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status == 401 and wants_json(request) and "www-authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = 'Bearer realm="hcm-soc"'
    return response


async def _handle(request: Request, exc: Exception) -> Response:
    status, code, message, details = classify(exc)
    if status >= 500 and status != 503:
        log.error(
            "request failed",
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"path": request.url.path, "method": request.method},
        )
    elif status == 503:
        log.warning(
            "request failed: dependency unavailable", extra={"path": request.url.path, "error": message}
        )
    headers = exc.headers if isinstance(exc, ApiError) else None
    response = error_response(request, status, code, message, details, headers)
    if status >= 500:
        # the 500 answer is sent by Starlette's outermost middleware, outside our header middleware
        for name, value in security_headers(request.url.path).items():
            response.headers.setdefault(name, value)
    return response


async def _handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if 300 <= exc.status_code < 400:  # a dependency that redirects (a page asking for a login)
        return Response(status_code=exc.status_code, headers=headers)
    code = _PHRASES.get(exc.status_code, "error")
    if exc.status_code == 404:
        message = f"no such resource: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(request, exc.status_code, code, message, None, headers)


def install_error_handlers(app: FastAPI) -> None:
    from hcm_soc.web.auth import AuthError

    for exc_class in (
        ApiError,
        AuthError,
        HcmSocError,
        RequestValidationError,
        ValidationError,
        ValueError,
        Exception,
    ):
        app.add_exception_handler(exc_class, _handle)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
