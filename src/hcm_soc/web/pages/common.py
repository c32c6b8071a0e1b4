"""What the page modules share: the services of the app, form reading, redirects and flash keys."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse

from hcm_soc.web.services import WebServices

#: the flash messages a redirect may ask for (`?msg=`); anything else is ignored, so a crafted
#: link cannot put arbitrary text on the page
FLASH_KEYS = frozenset(
    {
        "acknowledged",
        "assigned",
        "status",
        "commented",
        "false_positive",
        "saved",
        "enabled",
        "disabled",
        "user_added",
        "user_disabled",
        "user_enabled",
        "ack_link",
        "password_changed",
    }
)


def services_of(request: Request) -> WebServices:
    services: WebServices = request.app.state.services
    return services


def flash_of(request: Request) -> str | None:
    """The `flash.<msg>` key for `?msg=`, when it is a known one."""
    msg = request.query_params.get("msg")
    return f"flash.{msg}" if msg in FLASH_KEYS else None


def see_other(path: str, **params: str) -> RedirectResponse:
    """303 to `path` (with query `params`): the browser follows with a GET."""
    query = urlencode(params)
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def form_of(request: Request) -> dict[str, str]:
    """The submitted form's text fields (file uploads are not used by the console)."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
