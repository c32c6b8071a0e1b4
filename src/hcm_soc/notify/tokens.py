"""Signed, expiring acknowledgement tokens for the links in notices, and the key that signs them.

A token is `base64url(payload).base64url(HMAC-SHA256(key, "hcm-ack-v1." + base64url(payload)))`
with the payload a compact JSON object: incident id, recipient and expiry (Unix seconds). The
signature is checked (in constant time) before the payload is even parsed, so nothing an
attacker writes into a token is interpreted unless the key signed it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from hcm_soc.errors import HcmSocError

if TYPE_CHECKING:
    from hcm_soc.config import Settings

_DOMAIN = b"hcm-ack-v1."  # binds the signature to this use of the key (webhooks share it)
_MAX_TOKEN = 2048
KEY_FILE = "notify.key"

InvalidReason = Literal["malformed", "bad_signature", "expired"]


class InvalidToken(HcmSocError):
    """An acknowledgement token is malformed, not signed by our key, or expired."""

    def __init__(self, reason: InvalidReason, detail: str) -> None:
        super().__init__(f"invalid acknowledgement token ({reason}): {detail}")
        self.reason: InvalidReason = reason


@dataclass(frozen=True, slots=True)
class AckClaim:
    """What a valid token says: this recipient may acknowledge this incident until `expires`."""

    incident_id: str
    recipient: str
    expires: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in _B64_CHARS for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _sign(secret: bytes, payload_b64: str) -> bytes:
    return hmac.new(secret, _DOMAIN + payload_b64.encode("ascii"), hashlib.sha256).digest()


def make_ack_token(secret: bytes, incident_id: str, recipient: str, expires: datetime) -> str:
    if not secret:
        raise ValueError("the signing key is empty")
    if expires.tzinfo is None:
        raise ValueError("expires must be timezone-aware")
    payload = json.dumps(
        {"i": incident_id, "r": recipient, "e": int(expires.timestamp())},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    payload_b64 = _b64(payload)
    return f"{payload_b64}.{_b64(_sign(secret, payload_b64))}"


def verify_ack_token(secret: bytes, token: str, *, now: datetime) -> AckClaim:
    """The claim of a token signed with `secret` that has not expired at `now`; else InvalidToken."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise InvalidToken("malformed", "expected two base64url parts separated by one '.'")
    payload_b64, sig_b64 = token.split(".")
    try:
        sig = _unb64(sig_b64)
        _unb64(payload_b64)
    except (ValueError, binascii.Error):
        raise InvalidToken("malformed", "a part is not base64url") from None
    if not hmac.compare_digest(sig, _sign(secret, payload_b64)):
        raise InvalidToken(
            "bad_signature", "the signature does not match (altered, or signed with another key)"
        )
    try:
        data = json.loads(_unb64(payload_b64).decode("utf-8"))
        incident_id, recipient, exp = data["i"], data["r"], data["e"]
        if not (isinstance(incident_id, str) and isinstance(recipient, str) and isinstance(exp, int)):
            raise TypeError
        expires = datetime.fromtimestamp(exp, UTC)
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        # only reachable with our own key: a token from an incompatible version
        raise InvalidToken("malformed", "the signed payload is not an acknowledgement claim") from None
    if now >= expires:
        raise InvalidToken("expired", f"the link expired at {expires.isoformat()}; ask for a new notice")
    return AckClaim(incident_id=incident_id, recipient=recipient, expires=expires)


def ack_url(settings: Settings, token: str) -> str:
    """The acknowledgement link of the web console for `token`."""
    return f"{settings.notify.base_url.rstrip('/')}/ack?token={quote(token, safe='')}"


def load_secret(settings: Settings) -> bytes:
    """The key that signs acknowledgement tokens: `notify.secret`, or a random key kept in
    `<state dir>/notify.key` (created once, mode 0600) so links stay valid across restarts."""
    if settings.notify.secret:
        return settings.notify.secret.encode("utf-8")
    return _key_file(settings.state_dir / KEY_FILE)


def webhook_secret(settings: Settings) -> bytes:
    """The key that signs outgoing webhooks: `webhook.secret`, else the notice key."""
    if settings.webhook.secret:
        return settings.webhook.secret.encode("utf-8")
    return load_secret(settings)


def _key_file(path: Path) -> bytes:
    try:
        key = path.read_text("ascii").strip()
    except FileNotFoundError:
        key = ""
    except OSError as e:
        raise HcmSocError(
            f"could not read the notice signing key {path}: {e}; fix its permissions or set notify.secret"
        ) from e
    if key:
        return key.encode("ascii")
    # write to a private temporary file and hard-link it into place: of two processes starting
    # at once exactly one key wins, and nobody ever reads a half-written file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            # another process won the race: its key is the key
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        key = path.read_text("ascii").strip()
    except OSError as e:
        raise HcmSocError(
            f"could not create the notice signing key {path}: {e}; "
            "make the state directory writable or set notify.secret"
        ) from e
    if not key:
        raise HcmSocError(f"the notice signing key {path} is empty; delete it or set notify.secret")
    return key.encode("ascii")
