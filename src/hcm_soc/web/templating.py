"""Rendering the console's HTML: the Jinja2 environment (autoescape always on), the display
filters (local time in Asia/Ho_Chi_Minh, SLA time left, priority/status labels) and `render`,
which every page and the error handler call.

`render` adds what every template needs: the signed-in `principal`, the language (`?lang=`
switches it and is remembered in the `lang` cookie; Vietnamese by default), `t` bound to that
language, the session's `csrf_token` (forms and htmx send it back) and `now` from the app clock,
so SLA countdowns agree with the services' idea of time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from hcm_soc.errors import HcmSocError
from hcm_soc.incidents.lifecycle import CLOSED
from hcm_soc.models.incident import Incident
from hcm_soc.web.i18n import DEFAULT_LANG, Lang, pick_lang, t, translator

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
LANG_COOKIE = "lang"


def to_datetime(value: datetime | str | None) -> datetime | None:
    """A timezone-aware datetime from a datetime or an ISO string (as stored documents carry)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def local_time(value: datetime | str | None, *, seconds: bool = False) -> str:
    """`26/11/2026 14:05` in Ho Chi Minh City time; "—" for nothing."""
    dt = to_datetime(value)
    if dt is None:
        return "—"
    return dt.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M:%S" if seconds else "%d/%m/%Y %H:%M")


def duration_text(seconds: float, lang: Lang) -> str:
    """A rounded duration a person reads at a glance: "12 phút", "2 giờ 5 phút", "3 ngày"."""
    minutes = max(0, int(abs(seconds) // 60))
    if minutes < 60:
        return t("time.minutes", lang, n=minutes)
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        text = t("time.hours", lang, n=hours)
        return f"{text} {t('time.minutes', lang, n=rest)}" if rest else text
    return t("time.days", lang, n=hours // 24)


def time_left(due: datetime | str | None, now: datetime, lang: Lang) -> str:
    """Time left before `due` ("còn 12 phút"), or how late it is ("quá hạn 5 phút")."""
    dt = to_datetime(due)
    if dt is None:
        return "—"
    delta = (dt - now).total_seconds()
    key = "time.left" if delta >= 0 else "time.overdue"
    return t(key, lang, d=duration_text(delta, lang))


def sla_due(incident: Incident) -> datetime | None:
    """The deadline that matters now: acknowledgement while new, resolution while open, none when closed."""
    if incident.status in CLOSED:
        return None
    if incident.status == "new" and incident.sla.acknowledge_by is not None:
        return incident.sla.acknowledge_by
    return incident.sla.resolve_by


def is_overdue(incident: Incident, now: datetime) -> bool:
    due = sla_due(incident)
    return due is not None and due < now


@jinja2.pass_context
def _localtime_filter(
    ctx: jinja2.runtime.Context, value: datetime | str | None, seconds: bool = False
) -> str:
    return local_time(value, seconds=seconds)


@jinja2.pass_context
def _timeleft_filter(ctx: jinja2.runtime.Context, value: datetime | str | None) -> str:
    return time_left(value, ctx.get("now") or datetime.now(UTC), ctx.get("lang") or DEFAULT_LANG)


@jinja2.pass_context
def _priority_filter(ctx: jinja2.runtime.Context, value: str | None) -> str:
    return t(f"priority.{value}", ctx.get("lang") or DEFAULT_LANG) if value else "—"


@jinja2.pass_context
def _status_filter(ctx: jinja2.runtime.Context, value: str | None) -> str:
    return t(f"status.{value}", ctx.get("lang") or DEFAULT_LANG) if value else "—"


@jinja2.pass_context
def _role_filter(ctx: jinja2.runtime.Context, value: str | None) -> str:
    return t(f"role.{value}", ctx.get("lang") or DEFAULT_LANG) if value else "—"


@jinja2.pass_context
def _sector_filter(ctx: jinja2.runtime.Context, value: str | None) -> str:
    """The sector's name in the page's language; an id the catalogue does not know stays as it is."""
    if not value:
        return "—"
    key = f"sector.{value}"
    label = t(key, ctx.get("lang") or DEFAULT_LANG)
    return value if label == key else label


@jinja2.pass_context
def _overdue_test(ctx: jinja2.runtime.Context, incident: Incident) -> bool:
    return is_overdue(incident, ctx.get("now") or datetime.now(UTC))


def _environment() -> jinja2.Environment:
    # autoescape on for every template (not only *.html): user text must never become markup
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["localtime"] = _localtime_filter
    env.filters["timeleft"] = _timeleft_filter
    env.filters["priority_label"] = _priority_filter
    env.filters["status_label"] = _status_filter
    env.filters["role_label"] = _role_filter
    env.filters["sector_label"] = _sector_filter
    env.tests["overdue"] = _overdue_test
    env.globals["sla_due"] = sla_due
    return env


templates = Jinja2Templates(env=_environment())


def request_lang(request: Request) -> tuple[Lang, bool]:
    """The page language and whether it was just chosen (then the cookie is set)."""
    chosen = pick_lang(request.query_params.get("lang"))
    if chosen is not None:
        return chosen, True
    return pick_lang(request.cookies.get(LANG_COOKIE)) or DEFAULT_LANG, False


def _principal(request: Request) -> Any:
    from hcm_soc.web.auth import get_principal  # the auth package renders pages with `render`

    try:
        return get_principal(request)  # looked up once per request, then kept on request.state
    except HcmSocError:
        # an error page must render even when the session store is unreachable
        log.debug("no principal for the page", exc_info=True)
        return None


def _now(request: Request) -> datetime:
    services = getattr(request.app.state, "services", None)
    clock = getattr(services, "clock", None)
    return clock() if callable(clock) else datetime.now(UTC)


def lang_url(request: Request, lang: str) -> str:
    """The current path with `?lang=` set (other query parameters kept): the language switch."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    params.append(("lang", lang))
    return f"{request.url.path}?{urlencode(params)}"


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The template `name` rendered with `context` plus the common page context."""
    lang, chosen = request_lang(request)
    principal = context["principal"] if "principal" in context else _principal(request)
    full: dict[str, Any] = {
        "request": request,
        "principal": principal,
        "lang": lang,
        "langs": [(code, lang_url(request, code)) for code in ("vi", "en")],
        "t": translator(lang),
        "csrf_token": getattr(principal, "csrf", None) if principal is not None else None,
        "now": _now(request),
        "path": request.url.path,
        **context,
    }
    response = templates.TemplateResponse(request, name, full, status_code=status_code, headers=headers)
    if chosen:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, samesite="lax", httponly=True)
    return response
