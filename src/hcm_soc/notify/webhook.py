"""Webhook notices: a JSON POST signed with HMAC-SHA256, and the check a receiver runs on it.

The signature covers `"<timestamp>.<body>"` (the `X-HCM-Timestamp` header, a dot, the exact body
bytes), so a receiver can refuse both altered bodies and replays of old requests. The
`Idempotency-Key` is the notice id: a retry after a lost answer carries the same key, and the
receiver can drop the duplicate. Redirects are not followed (a signed POST must not be re-sent
elsewhere) and no proxy is used: webhooks go to systems on the city network.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import ssl
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hcm_soc.notify.model import DeliveryError, Notice, RenderedMessage, utcnow

SIGNATURE_HEADER = "X-HCM-Signature"
TIMESTAMP_HEADER = "X-HCM-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_TRANSIENT_STATUS = frozenset({408, 425, 429})


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `X-HCM-Signature` value: `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`."""
    return "sha256=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes, *, timestamp: str, body: bytes, signature: str, now: datetime, tolerance: float = 300.0
) -> bool:
    """A receiver's check: the signature matches (constant-time) and the timestamp is within
    `tolerance` seconds of `now`."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now.timestamp() - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")


def encode_body(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (Vietnamese stays readable; the signature covers these exact bytes)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


class WebhookNotifier:
    """POSTs notices as signed JSON to the notice's recipient URL (`ca_cert` for https receivers
    whose certificate the system store does not know)."""

    channel = "webhook"

    def __init__(
        self,
        secret: str | bytes,
        timeout: float,
        *,
        ca_cert: Path | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not secret:
            raise ValueError("a webhook signing secret is required (webhook.secret or notify.secret)")
        self.secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self.timeout = timeout
        self.ca_cert = ca_cert
        self.clock = clock

    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeliveryError(f"webhook recipient {url!r} is not an http(s) URL", transient=False)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if parts.scheme == "https":
            ctx = ssl.create_default_context(cafile=str(self.ca_cert) if self.ca_cert else None)
            return http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self.timeout, context=ctx
            ), target
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout), target

    def _secret_for(self, notice: Notice) -> bytes:
        """The notice's own key (a playbook step's `secret_env`), else the notifier's."""
        if not notice.secret_env:
            return self.secret
        value = os.environ.get(notice.secret_env)
        if not value:
            # permanent for this notice until someone sets it; the outbox keeps it (failed, visible)
            raise DeliveryError(
                f"webhook {notice.recipient}: the signing key variable {notice.secret_env} is not set in "
                "the environment of hcm-soc; set it and re-queue, or remove secret_env from the playbook step",
                transient=False,
            )
        return value.encode("utf-8")

    def send(self, notice: Notice, message: RenderedMessage) -> None:
        url = notice.recipient
        conn, target = self._connection(url)
        payload = (
            message.json if message.json is not None else {"subject": message.subject, "text": message.text}
        )
        body = encode_body(payload)
        timestamp = str(int(self.clock().timestamp()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "hcm-soc-webhook/1",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret_for(notice), timestamp, body),
            IDEMPOTENCY_HEADER: notice.id,
            "X-HCM-Incident": notice.incident_id,
            "X-HCM-Notice-Kind": notice.kind,
        }
        try:
            conn.request("POST", target, body=body, headers=headers)
            resp = conn.getresponse()
            status = resp.status
            detail = _snippet(resp.read(300))
        except ssl.SSLCertVerificationError as e:
            raise DeliveryError(
                f"webhook {url}: the receiver's TLS certificate is not trusted ({e.verify_message})",
                transient=True,
            ) from e
        except (http.client.HTTPException, OSError) as e:
            # refused, reset, timeout, TLS handshake, a garbled answer: try again later
            raise DeliveryError(
                f"webhook {url} could not be reached: {type(e).__name__}: {e}", transient=True
            ) from e
        finally:
            conn.close()
        if 200 <= status < 300:
            return
        # 3xx included: a signed POST is not re-sent to wherever a redirect points
        transient = status >= 500 or status in _TRANSIENT_STATUS
        raise DeliveryError(
            f"webhook {url} answered HTTP {status}{detail}"
            + ("" if transient else "; the receiver refused it, retrying will not help"),
            transient=transient,
        )


def _snippet(raw: bytes) -> str:
    text = " ".join(raw.decode("utf-8", "replace").split())
    return f": {text[:200]}" if text else ""
