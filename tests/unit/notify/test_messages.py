"""The MIME message of an e-mail notice, webhook signatures, notice ids and the retry backoff."""

from __future__ import annotations

import email
import random
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest

from hcm_soc.config import load_settings
from hcm_soc.notify.email import build_message
from hcm_soc.notify.model import Notice, notice_id
from hcm_soc.notify.outbox import backoff_delay
from hcm_soc.notify.render import notice_context, render_notice
from hcm_soc.notify.webhook import encode_body, sign, verify_signature
from tests.unit.notify.conftest import ACTIONS

NOW = datetime(2026, 11, 26, 7, 6, tzinfo=UTC)


def _notice(incident: dict[str, Any]) -> Notice:
    ctx = notice_context(
        incident,
        settings=load_settings(env={}),
        recipient="a@sotttt.hcm.gov.vn",
        actions=ACTIONS,
        ack_url=None,
    )
    return Notice.new(
        incident_id=incident["id"],
        kind="incident_opened",
        channel="email",
        recipient="a@sotttt.hcm.gov.vn",
        recipient_name="Nguyễn Văn A",
        context=ctx,
        now=NOW,
    )


def test_mime_message_round_trips_headers_and_vietnamese_parts(incident: dict[str, Any]) -> None:
    notice = _notice(incident)
    rendered = render_notice(notice, timezone="Asia/Ho_Chi_Minh")
    raw = build_message(notice, rendered, sender="soc@hcm.gov.vn", now=NOW).as_bytes()
    assert raw.isascii()  # 7-bit on the wire: encoded words and base64/quoted-printable bodies
    parsed = email.message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == rendered.subject
    assert parsed["To"].addresses[0].display_name == "Nguyễn Văn A"
    assert parsed["To"].addresses[0].addr_spec == "a@sotttt.hcm.gov.vn"
    assert parsed["Message-ID"] == f"<{notice.id}@hcm.gov.vn>"
    assert parsed["X-HCM-Incident"] == "INC-2026-000123"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Date"].datetime == NOW
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    assert "Dò mật khẩu SSH vào máy chủ cổng dịch vụ công" in html.get_content()


def test_notice_id_is_deterministic_and_distinguishes_what_matters() -> None:
    base = notice_id("INC-1", "incident_opened", "notify-3", "email", "A@B.vn")
    assert base == notice_id("INC-1", "incident_opened", "notify-3", "email", " a@b.vn ")
    others = {
        notice_id("INC-2", "incident_opened", "notify-3", "email", "a@b.vn"),
        notice_id("INC-1", "escalation", "notify-3", "email", "a@b.vn"),
        notice_id("INC-1", "incident_opened", "notify-4", "email", "a@b.vn"),
        notice_id("INC-1", "incident_opened", "notify-3", "webhook", "a@b.vn"),
        notice_id("INC-1", "incident_opened", "notify-3", "email", "c@b.vn"),
    }
    assert base not in others and len(others) == 5


def test_webhook_signature_covers_timestamp_and_body() -> None:
    body = encode_body({"tiêu đề": "Sự cố", "b": 1})
    assert body == '{"b":1,"tiêu đề":"Sự cố"}'.encode()
    sig = sign(b"key", "1795676760", body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    now = datetime.fromtimestamp(1795676760, UTC)
    assert verify_signature(b"key", timestamp="1795676760", body=body, signature=sig, now=now)
    assert not verify_signature(b"key", timestamp="1795676760", body=body + b" ", signature=sig, now=now)
    assert not verify_signature(b"key", timestamp="1795676761", body=body, signature=sig, now=now)
    assert not verify_signature(b"other", timestamp="1795676760", body=body, signature=sig, now=now)
    late = now + timedelta(seconds=301)
    assert not verify_signature(b"key", timestamp="1795676760", body=body, signature=sig, now=late)
    assert not verify_signature(b"key", timestamp="soon", body=body, signature=sig, now=now)


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    rng = random.Random(7)
    for attempts, nominal in [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (60, 3600), (10_000, 3600)]:
        for _ in range(20):
            d = backoff_delay(attempts, base=30, cap=3600, rng=rng).total_seconds()
            assert nominal * 0.9 <= d <= nominal * 1.1, (attempts, d)
    spread = {backoff_delay(3, base=30, cap=3600, rng=rng) for _ in range(20)}
    assert len(spread) > 10  # jittered: notices that failed together do not retry together


@pytest.mark.parametrize("bad", [datetime(2026, 1, 1)])
def test_notice_requires_aware_times(bad: datetime) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Notice.new(incident_id="I", kind="k", channel="email", recipient="a@b", context={}, now=bad)


def test_notifiers_from_settings_cover_both_channels(tmp_path: Any) -> None:
    from hcm_soc.notify.outbox import notifiers_from_settings

    s = load_settings(env={"HCM_SOC_WEBHOOK_SECRET": "w", "HCM_SOC_SMTP_HOST": "mail.hcm.gov.vn"})
    notifiers = notifiers_from_settings(s)
    assert sorted(notifiers) == ["email", "webhook"]
    assert all(name == n.channel for name, n in notifiers.items())


def test_unencodable_address_is_a_permanent_failure_before_any_connection(incident: dict[str, Any]) -> None:
    from hcm_soc.config import SmtpSettings
    from hcm_soc.notify.email import EmailNotifier
    from hcm_soc.notify.model import DeliveryError

    notice = _notice(incident).model_copy(update={"recipient": "nguyễn@sotttt.hcm.gov.vn"})
    # port 9 (discard) is never contacted: the message cannot be built
    notifier = EmailNotifier(SmtpSettings(host="127.0.0.1", port=9, security="none"))
    with pytest.raises(DeliveryError, match="cannot build an e-mail") as info:
        notifier.send(notice, render_notice(notice, timezone="UTC"))
    assert not info.value.transient
