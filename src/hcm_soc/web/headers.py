"""Security headers on every response of the console and the API.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which buffers streaming responses):
it adds the headers to `http.response.start` unless the route set them itself. Responses
built by the 500 handler get the same headers through `security_headers`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: scripts, styles and images from our own origin only (htmx is vendored under /static), no
#: framing, forms post only to us: an injected <script> or <form action=evil> does nothing
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_ALWAYS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
)


def security_headers(path: str) -> dict[str, str]:
    """The headers a response to `path` carries (what the middleware adds)."""
    headers = dict(_ALWAYS)
    if not path.startswith("/static/"):
        # API answers and pages show incident data: never keep them in a browser or proxy cache
        headers["cache-control"] = "no-store"
    return headers


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = security_headers(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                for name, value in wanted.items():
                    key = name.encode("latin-1")
                    if key not in present:
                        raw.append((key, value.encode("latin-1")))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)
