"""Acknowledgement tokens: valid, tampered, expired, wrong key, malformed; and the key file."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hcm_soc.config import load_settings
from hcm_soc.notify.tokens import (
    InvalidToken,
    ack_url,
    load_secret,
    make_ack_token,
    verify_ack_token,
    webhook_secret,
)

KEY = b"k" * 32
NOW = datetime(2026, 11, 26, 7, 5, tzinfo=UTC)
EXP = NOW + timedelta(days=7)


def test_valid_token_round_trips_with_unicode_recipient() -> None:
    token = make_ack_token(KEY, "INC-2026-000123", "nguyễn.văn.a@sotttt.hcm.gov.vn", EXP)
    claim = verify_ack_token(KEY, token, now=NOW)
    assert claim.incident_id == "INC-2026-000123"
    assert claim.recipient == "nguyễn.văn.a@sotttt.hcm.gov.vn"
    assert claim.expires == EXP
    assert all(c.isalnum() or c in "-_." for c in token)  # safe in a URL without escaping


def _reason(token: str, *, key: bytes = KEY, now: datetime = NOW) -> str:
    with pytest.raises(InvalidToken) as info:
        verify_ack_token(key, token, now=now)
    return info.value.reason


def test_tampered_payload_is_refused() -> None:
    token = make_ack_token(KEY, "INC-2026-000123", "a@b.vn", EXP)
    payload, sig = token.split(".")
    forged = json.dumps({"i": "INC-2026-999999", "r": "a@b.vn", "e": int(EXP.timestamp())}).encode()
    forged_b64 = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    assert _reason(f"{forged_b64}.{sig}") == "bad_signature"
    # one flipped character of the signature
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    assert _reason(f"{payload}.{flipped}") == "bad_signature"


def test_expired_token_is_refused_at_and_after_expiry() -> None:
    token = make_ack_token(KEY, "INC-1", "a@b.vn", EXP)
    verify_ack_token(KEY, token, now=EXP - timedelta(seconds=1))
    assert _reason(token, now=EXP) == "expired"
    assert _reason(token, now=EXP + timedelta(days=1)) == "expired"


def test_wrong_secret_is_refused() -> None:
    token = make_ack_token(KEY, "INC-1", "a@b.vn", EXP)
    assert _reason(token, key=b"another key") == "bad_signature"


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "....", "not base64!.sig", "abc.", ".abc", "x" * 5000, "YWJj.+/+/"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert _reason(token) == "malformed"


def test_signed_garbage_payload_is_malformed_not_a_crash() -> None:
    # only someone with the key could make this; it still must not raise anything but InvalidToken
    import hashlib
    import hmac

    payload_b64 = base64.urlsafe_b64encode(b'{"i": 1}').rstrip(b"=").decode()
    sig = hmac.new(KEY, b"hcm-ack-v1." + payload_b64.encode(), hashlib.sha256).digest()
    token = payload_b64 + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    assert _reason(token) == "malformed"


def test_ack_url_quotes_the_token() -> None:
    settings = load_settings(env={"HCM_SOC_NOTIFY_BASE_URL": "https://soc.hcm.gov.vn/"})
    assert ack_url(settings, "a.b") == "https://soc.hcm.gov.vn/ack?token=a.b"


def test_load_secret_prefers_the_setting(tmp_path: Path) -> None:
    settings = load_settings(
        env={"HCM_SOC_NOTIFY_SECRET": "s3cret", "HCM_SOC_LOCAL_ES_STATE_DIR": str(tmp_path)}
    )
    assert load_secret(settings) == b"s3cret"
    assert not (tmp_path / "notify.key").exists()


def test_load_secret_creates_a_private_key_file_once(tmp_path: Path) -> None:
    settings = load_settings(env={"HCM_SOC_LOCAL_ES_STATE_DIR": str(tmp_path / "state")})
    first = load_secret(settings)
    path = tmp_path / "state" / "notify.key"
    assert len(first) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret(settings) == first  # stable across restarts
    assert [p.name for p in path.parent.iterdir()] == ["notify.key"]  # no temporary file left


def test_concurrent_key_creation_agrees_on_one_key(tmp_path: Path) -> None:
    settings = load_settings(env={"HCM_SOC_LOCAL_ES_STATE_DIR": str(tmp_path)})
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_secret(settings))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_webhook_secret_falls_back_to_the_notice_key() -> None:
    assert webhook_secret(load_settings(env={"HCM_SOC_NOTIFY_SECRET": "n"})) == b"n"
    assert (
        webhook_secret(load_settings(env={"HCM_SOC_NOTIFY_SECRET": "n", "HCM_SOC_WEBHOOK_SECRET": "w"}))
        == b"w"
    )
