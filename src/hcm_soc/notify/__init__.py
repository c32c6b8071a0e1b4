"""Notices to system owners and analysts: e-mail and signed webhooks, delivered through a durable
outbox in Elasticsearch, with signed acknowledgement links. See docs/notices.md.

Names are imported lazily: `hcm_soc.store.notices` imports `hcm_soc.notify.model`, and the
outbox imports the store, so importing everything here eagerly would be circular.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real names for type checkers; at run time they load on first use
    from hcm_soc.notify.email import EmailNotifier
    from hcm_soc.notify.model import DeliveryError, Notice, Notifier, RenderedMessage, notice_id
    from hcm_soc.notify.outbox import DeliveryReport, NoticeOutbox, backoff_delay, notifiers_from_settings
    from hcm_soc.notify.render import NoticeTemplateError, notice_context, render_notice
    from hcm_soc.notify.tokens import (
        AckClaim,
        InvalidToken,
        ack_url,
        load_secret,
        make_ack_token,
        verify_ack_token,
        webhook_secret,
    )
    from hcm_soc.notify.webhook import WebhookNotifier

_EXPORTS = {
    "Notice": "model",
    "RenderedMessage": "model",
    "DeliveryError": "model",
    "Notifier": "model",
    "notice_id": "model",
    "notice_context": "render",
    "render_notice": "render",
    "NoticeTemplateError": "render",
    "EmailNotifier": "email",
    "WebhookNotifier": "webhook",
    "make_ack_token": "tokens",
    "verify_ack_token": "tokens",
    "AckClaim": "tokens",
    "InvalidToken": "tokens",
    "ack_url": "tokens",
    "load_secret": "tokens",
    "webhook_secret": "tokens",
    "NoticeOutbox": "outbox",
    "DeliveryReport": "outbox",
    "backoff_delay": "outbox",
    "notifiers_from_settings": "outbox",
}

__all__ = [
    "AckClaim",
    "DeliveryError",
    "DeliveryReport",
    "EmailNotifier",
    "InvalidToken",
    "Notice",
    "NoticeOutbox",
    "NoticeTemplateError",
    "Notifier",
    "RenderedMessage",
    "WebhookNotifier",
    "ack_url",
    "backoff_delay",
    "load_secret",
    "make_ack_token",
    "notice_context",
    "notice_id",
    "notifiers_from_settings",
    "render_notice",
    "verify_ack_token",
    "webhook_secret",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hcm_soc.notify' has no attribute {name!r}")
    return getattr(import_module(f"hcm_soc.notify.{module}"), name)
