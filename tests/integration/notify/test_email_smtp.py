"""E-mail notices through a real SMTP server on loopback (aiosmtpd): plain, STARTTLS + AUTH,
implicit TLS; the message is parsed back and its acknowledgement link verified."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from hcm_soc.config import SmtpSettings, load_settings
from hcm_soc.notify.email import EmailNotifier
from hcm_soc.notify.model import DeliveryError, Notice
from hcm_soc.notify.render import notice_context, render_notice
from hcm_soc.notify.tokens import ack_url, make_ack_token, verify_ack_token
from tests.conftest import free_port
from tests.integration.notify.conftest import (
    REFUSED,
    SMTP_ASCII_PASSWORD,
    SMTP_PASSWORD,
    SMTP_USER,
    SinkFactory,
    TlsFiles,
)
from tests.unit.notify.conftest import ACTIONS, incident_doc

pytestmark = pytest.mark.integration

SECRET = b"test-ack-secret-0123456789abcdef"
NOW = datetime(2026, 11, 26, 7, 6, tzinfo=UTC)
OWNER = "quantri@sotttt.hcm.gov.vn"
SETTINGS = load_settings(env={"HCM_SOC_NOTIFY_BASE_URL": "https://soc.hcm.gov.vn"})


def make_notice(recipient: str = OWNER, language: str = "vi") -> Notice:
    incident = incident_doc()
    expires = NOW + timedelta(days=7)
    token = make_ack_token(SECRET, incident["id"], recipient, expires)
    ctx = notice_context(
        incident,
        settings=SETTINGS,
        recipient=recipient,
        actions=ACTIONS,
        ack_url=ack_url(SETTINGS, token),
        ack_expires=expires,
    )
    return Notice.new(
        incident_id=incident["id"],
        kind="incident_opened",
        step="notify-4",
        channel="email",
        recipient=recipient,
        recipient_name="Phòng Quản trị hệ thống",
        language=language,  # type: ignore[arg-type]
        context=ctx,
        now=NOW,
    )


def smtp(port: int, **over: Any) -> SmtpSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "soc@hcm.gov.vn",
        "timeout": 5,
    }
    return SmtpSettings(**{**values, **over})


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_plain_smtp_delivers_a_complete_vietnamese_notice(smtp_server: SinkFactory) -> None:
    sink = smtp_server()
    notice = make_notice()
    rendered = render_notice(notice, timezone="Asia/Ho_Chi_Minh")
    EmailNotifier(smtp(sink.port), clock=lambda: NOW).send(notice, rendered)

    assert len(sink.messages) == 1
    got = sink.messages[0]
    assert got.mail_from == "soc@hcm.gov.vn" and got.rcpt_tos == [OWNER]
    msg = parse(got.content)
    assert msg["Subject"] == "[TTATTT-HCM][P1] INC-2026-000123: Dò mật khẩu SSH vào máy chủ cổng dịch vụ công"
    assert "=?utf-8?" in got.content.decode("ascii").split("\r\n\r\n", 1)[0].lower()  # RFC 2047 on the wire
    assert msg["From"] == "soc@hcm.gov.vn"
    assert msg["To"].addresses[0].display_name == "Phòng Quản trị hệ thống"
    assert msg["Message-ID"] == f"<{notice.id}@hcm.gov.vn>"
    assert msg["Date"].datetime == NOW
    assert msg["X-HCM-Incident"] == "INC-2026-000123"
    assert msg["Auto-Submitted"] == "auto-generated"

    text_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    for part in (text, html):
        assert "Dò mật khẩu SSH vào máy chủ cổng dịch vụ công" in part
        assert "Cổng dịch vụ công trực tuyến" in part and "Sở Thông tin và Truyền thông" in part
        assert "26/11/2026 14:05 (giờ Việt Nam)" in part
        assert "Chặn địa chỉ 203.0.113.45 trên tường lửa" in part
        assert "Khẩn cấp" in part
    assert "<script>" not in html

    # the acknowledgement link in the mail carries a token our key signed, for this recipient
    link = re.search(r"https://soc\.hcm\.gov\.vn/ack\?token=\S+", text)
    assert link is not None
    token = parse_qs(urlsplit(link.group(0)).query)["token"][0]
    claim = verify_ack_token(SECRET, token, now=NOW + timedelta(days=1))
    assert (claim.incident_id, claim.recipient) == ("INC-2026-000123", OWNER)
    assert f'href="{link.group(0)}"' in html


@pytest.mark.parametrize("password", [SMTP_PASSWORD, SMTP_ASCII_PASSWORD])
def test_starttls_with_auth(smtp_server: SinkFactory, tls_files: TlsFiles, password: str) -> None:
    sink = smtp_server(security="starttls", auth=True)
    settings = smtp(sink.port, security="starttls", username=SMTP_USER, password=password)
    notice = make_notice(language="en")
    EmailNotifier(settings, ca_cert=tls_files.ca_cert).send(
        notice, render_notice(notice, timezone="Asia/Ho_Chi_Minh")
    )
    assert sink.logins == [SMTP_USER]
    assert len(sink.messages) == 1
    assert parse(sink.messages[0].content)["Subject"].startswith("[TTATTT-HCM][P1] INC-2026-000123")


def test_implicit_tls(smtp_server: SinkFactory, tls_files: TlsFiles) -> None:
    sink = smtp_server(security="tls")
    notice = make_notice()
    EmailNotifier(smtp(sink.port, security="tls"), ca_cert=tls_files.ca_cert).send(
        notice, render_notice(notice, timezone="Asia/Ho_Chi_Minh")
    )
    assert len(sink.messages) == 1


def test_untrusted_certificate_is_refused_and_kept_for_retry(smtp_server: SinkFactory) -> None:
    sink = smtp_server(security="starttls")
    notice = make_notice()
    with pytest.raises(DeliveryError, match="not trusted") as info:
        EmailNotifier(smtp(sink.port, security="starttls")).send(
            notice, render_notice(notice, timezone="Asia/Ho_Chi_Minh")
        )
    assert info.value.transient and sink.messages == []


def test_unverified_tls_when_asked(smtp_server: SinkFactory) -> None:
    sink = smtp_server(security="starttls")
    notice = make_notice()
    EmailNotifier(smtp(sink.port, security="starttls"), verify_tls=False).send(
        notice, render_notice(notice, timezone="Asia/Ho_Chi_Minh")
    )
    assert len(sink.messages) == 1


def test_starttls_required_but_not_offered(smtp_server: SinkFactory) -> None:
    sink = smtp_server()  # plain server
    notice = make_notice()
    with pytest.raises(DeliveryError, match="does not offer STARTTLS") as info:
        EmailNotifier(smtp(sink.port, security="starttls")).send(
            notice, render_notice(notice, timezone="UTC")
        )
    assert info.value.transient and sink.messages == []


def test_wrong_password_is_transient_with_a_hint(smtp_server: SinkFactory, tls_files: TlsFiles) -> None:
    sink = smtp_server(security="starttls", auth=True)
    settings = smtp(sink.port, security="starttls", username=SMTP_USER, password="sai")
    notice = make_notice()
    with pytest.raises(DeliveryError, match=r"smtp\.username and smtp\.password") as info:
        EmailNotifier(settings, ca_cert=tls_files.ca_cert).send(notice, render_notice(notice, timezone="UTC"))
    assert info.value.transient and sink.messages == []


def test_refused_recipient_is_permanent(smtp_server: SinkFactory) -> None:
    sink = smtp_server()
    notice = make_notice(recipient=REFUSED)
    with pytest.raises(DeliveryError, match="refused recipient") as info:
        EmailNotifier(smtp(sink.port)).send(notice, render_notice(notice, timezone="UTC"))
    assert not info.value.transient and "550" in str(info.value)


def test_nothing_listening_is_transient() -> None:
    notice = make_notice()
    with pytest.raises(DeliveryError, match="could not be reached") as info:
        EmailNotifier(smtp(free_port())).send(notice, render_notice(notice, timezone="UTC"))
    assert info.value.transient


def test_no_smtp_host_is_transient() -> None:
    notice = make_notice()
    with pytest.raises(DeliveryError, match=r"smtp\.host") as info:
        EmailNotifier(SmtpSettings()).send(notice, render_notice(notice, timezone="UTC"))
    assert info.value.transient
