"""Notice texts: the context a notice carries (built from the incident document) and its rendering
through the Jinja2 templates in `notify/templates/` (Vietnamese and English, text and HTML).

The context keeps raw values (ISO times in UTC, level and priority codes); words and local
times are chosen at render time from the notice's language and the display time zone. HTML
templates are autoescaped: alert text can carry attacker input (a URL, a user name, a rule
title), and none of it may become markup in a mail client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import jinja2

from hcm_soc.errors import HcmSocError
from hcm_soc.notify.model import Notice, RenderedMessage

if TYPE_CHECKING:
    from hcm_soc.config import Settings

KINDS = ("incident_opened", "incident_updated", "escalation", "incident_closed")
CENTER = {
    "vi": "Trung tâm An toàn thông tin TP. Hồ Chí Minh",
    "en": "Ho Chi Minh City Information Security Center",
}
SUBJECT_TAG = "TTATTT-HCM"  # the same in both languages so mail filters need one rule
_MAX_DESCRIPTION = 2000  # context is a flattened field: keep every leaf far below Lucene's term limit
_MAX_ITEM = 500
_MAX_LIST = 10
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

WORDS: dict[str, dict[str, dict[str, str]]] = {
    "level": {
        "vi": {
            "critical": "Nghiêm trọng",
            "high": "Cao",
            "medium": "Trung bình",
            "low": "Thấp",
            "informational": "Thông tin",
        },
        "en": {
            "critical": "Critical",
            "high": "High",
            "medium": "Medium",
            "low": "Low",
            "informational": "Informational",
        },
    },
    "priority": {
        "vi": {"P1": "Khẩn cấp", "P2": "Cao", "P3": "Trung bình", "P4": "Thấp"},
        "en": {"P1": "Urgent", "P2": "High", "P3": "Normal", "P4": "Low"},
    },
    "status": {
        "vi": {
            "new": "Mới",
            "acknowledged": "Đã xác nhận",
            "investigating": "Đang điều tra",
            "contained": "Đã ngăn chặn",
            "resolved": "Đã xử lý xong",
            "false_positive": "Cảnh báo nhầm",
        },
        "en": {
            "new": "New",
            "acknowledged": "Acknowledged",
            "investigating": "Investigating",
            "contained": "Contained",
            "resolved": "Resolved",
            "false_positive": "False positive",
        },
    },
    "sector": {
        "vi": {
            "e_government": "Chính quyền điện tử, cải cách hành chính",
            "transport": "Giao thông",
            "flood_control": "Chống ngập",
            "environment": "Môi trường",
            "health_food_safety": "Y tế, an toàn thực phẩm",
            "public_security": "An ninh, trật tự",
            "urban_management": "Quản lý đô thị",
            "other": "Khác",
        },
        "en": {
            "e_government": "E-government and administrative reform",
            "transport": "Transport",
            "flood_control": "Flood control",
            "environment": "Environment",
            "health_food_safety": "Health and food safety",
            "public_security": "Public security and order",
            "urban_management": "Urban management",
            "other": "Other",
        },
    },
}


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class NoticeTemplateError(HcmSocError):
    """A notice names a template (kind) or language that does not exist, or a template failed."""


def _clean(value: Any, limit: int = _MAX_ITEM) -> Any:
    """Strings without control characters (no header injection, no terminal tricks), cut to size."""
    if isinstance(value, str):
        text = _CONTROL.sub(" ", value)
        return text if len(text) <= limit else text[: limit - 1] + "…"
    return value


def _strings(values: Any) -> list[str]:
    if not isinstance(values, list):
        return []
    return [_clean(str(v)) for v in values[:_MAX_LIST]]


def notice_context(
    incident: Mapping[str, Any],
    *,
    settings: Settings,
    recipient: str,
    actions: Sequence[str] | Mapping[str, Sequence[str]] | None,
    ack_url: str | None,
    ack_expires: datetime | None = None,
    message: str | None = None,
    contact: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """What a notice needs to be rendered, from the incident document (`Incident.model_dump(mode=
    "json")`). `actions` is a list, or one list per language ({"vi": […], "en": […]}); `message`
    says what changed (updates, escalations); `contact` overrides the center's contact."""
    alerts = [a for a in incident.get("alerts") or [] if isinstance(a, Mapping)]
    times = sorted(str(a["timestamp"]) for a in alerts if a.get("timestamp"))
    rules: dict[str, dict[str, Any]] = {}
    for a in alerts:
        rid = str(a.get("rule_id") or "")
        if rid and rid not in rules and len(rules) < _MAX_LIST:
            rules[rid] = {"id": rid, "title": _clean(a.get("rule_title") or rid), "level": a.get("level")}
    sla = incident.get("sla") or {}
    entities = incident.get("entities") or {}
    if isinstance(actions, Mapping):
        acts: Any = {lang: [_clean(str(x)) for x in items] for lang, items in actions.items()}
    else:
        acts = [_clean(str(x)) for x in actions or []]
    center_contact = {
        "name": None,  # None: the center's name in the notice's language
        "email": settings.smtp.sender,
        "phone": None,
        **(contact or {}),
    }
    return {
        "incident": {
            "id": incident["id"],
            "title": _clean(incident.get("title") or ""),
            "description": _clean(incident.get("description"), _MAX_DESCRIPTION),
            "status": incident.get("status"),
            "priority": incident.get("priority"),
            "level": incident.get("level") or incident.get("severity"),
            "created": incident.get("created"),
            "first_alert_at": times[0] if times else incident.get("created"),
            "last_alert_at": incident.get("last_alert_at") or (times[-1] if times else None),
            "alert_count": incident.get("alert_count") or len(alerts),
            "escalation_level": incident.get("escalation_level") or 0,
            "acknowledge_by": sla.get("acknowledge_by"),
            "resolve_by": sla.get("resolve_by"),
            "assignee": _clean(incident.get("assignee")),
            "tags": _strings(incident.get("tags")),
        },
        "rules": list(rules.values()),
        "assets": [
            {k: _clean(a.get(k)) for k in _ASSET_KEYS}
            for a in (incident.get("assets") or [])[:_MAX_LIST]
            if isinstance(a, Mapping)
        ],
        "entities": {k: _strings(entities.get(k)) for k in ("ips", "users", "hosts", "urls")},
        "actions": acts,
        "ack_url": ack_url,
        "ack_expires": ack_expires.isoformat() if ack_expires else None,
        "recipient": recipient,
        "contact": center_contact,
        "message": _clean(message, _MAX_DESCRIPTION),
    }


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hcm_soc.notify", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,  # a template typo fails the tests, not a notice in production
    )
    return env


class _Display:
    """Words and local times for one language and time zone, handed to the templates as `d`."""

    def __init__(self, language: str, timezone: str) -> None:
        self.language = language
        self.tz = ZoneInfo(timezone)
        if timezone in ("Asia/Ho_Chi_Minh", "Asia/Saigon"):
            self.zone_label = "giờ Việt Nam" if language == "vi" else "Vietnam time"
        else:
            self.zone_label = timezone

    def time(self, value: Any) -> str:
        if not value:
            return "—"
        try:
            t = datetime.fromisoformat(str(value)).astimezone(self.tz)
        except ValueError:
            return str(value)
        if self.language == "vi":
            return f"{t:%d/%m/%Y %H:%M} ({self.zone_label})"
        # month names from our own table: strftime's %b follows the process locale
        return f"{t.day:02d} {_MONTHS[t.month - 1]} {t.year} {t:%H:%M} ({self.zone_label})"

    def word(self, kind: str, code: Any) -> str:
        if code is None:
            return "—"
        return WORDS[kind][self.language].get(str(code), str(code))


_INCIDENT_KEYS = (
    "id", "title", "description", "status", "priority", "level", "created", "first_alert_at",
    "last_alert_at", "alert_count", "escalation_level", "acknowledge_by", "resolve_by", "assignee", "tags",
)  # fmt: skip
_ASSET_KEYS = ("id", "name", "department", "department_name", "sector", "criticality")
_RULE_KEYS = ("id", "title", "level")


def _complete(item: Any, keys: Sequence[str]) -> dict[str, Any]:
    """Every key the templates read, so a context built by an older version still renders."""
    given = item if isinstance(item, Mapping) else {}
    return {**dict.fromkeys(keys), **given}


def _actions_for(actions: Any, language: str) -> list[str]:
    if isinstance(actions, Mapping):
        chosen = actions.get(language) or actions.get("vi") or actions.get("en") or []
        return [str(a) for a in chosen]
    return [str(a) for a in actions or []]


def render_notice(notice: Notice, *, timezone: str) -> RenderedMessage:
    """The subject and bodies of `notice` in its language; for webhooks the JSON body as well."""
    if notice.kind not in KINDS:
        raise NoticeTemplateError(
            f"notice {notice.id}: no template {notice.kind!r}; known templates: {', '.join(KINDS)}"
        )
    ctx = notice.context
    lang = notice.language
    contact = dict(ctx.get("contact") or {})
    contact["name"] = contact.get("name") or CENTER[lang]
    values = {
        **ctx,
        "incident": _complete(ctx.get("incident"), _INCIDENT_KEYS),
        "assets": [_complete(a, _ASSET_KEYS) for a in ctx.get("assets") or []],
        "rules": [_complete(r, _RULE_KEYS) for r in ctx.get("rules") or []],
        "entities": ctx.get("entities") or {},
        "actions": _actions_for(ctx.get("actions"), lang),
        "ack_url": ctx.get("ack_url"),
        "ack_expires": ctx.get("ack_expires"),
        "message": ctx.get("message"),
        "contact": contact,
        "recipient_name": notice.recipient_name,
        "center": CENTER[lang],
        "tag": SUBJECT_TAG,
        "d": _Display(lang, timezone),
    }
    env = _env()
    base = f"{notice.kind}.{lang}"
    try:
        subject = env.get_template(f"{base}.subject.j2").render(values)
        text = env.get_template(f"{base}.txt.j2").render(values)
        html = env.get_template(f"{base}.html.j2").render(values) if notice.channel == "email" else None
    except jinja2.TemplateError as e:
        raise NoticeTemplateError(f"notice {notice.id}: template {base} failed: {e}") from e
    # one line: a subject is a mail header, and the rendered title may have held line breaks
    subject = " ".join(subject.split())
    body = None
    if notice.channel == "webhook":
        body = {
            "notice": {
                "id": notice.id,
                "kind": notice.kind,
                "incident_id": notice.incident_id,
                "language": lang,
                "created": notice.created.isoformat(),
                "subject": subject,
            },
            **{k: v for k, v in ctx.items() if k != "recipient"},
        }
    return RenderedMessage(subject=subject, text=text, html=html, json=body)
