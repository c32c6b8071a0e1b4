"""Long Vietnamese subjects and display names survive the trip through MIME headers intact."""

from __future__ import annotations

import email
import email.policy

from hcm_soc.notify.email import build_message
from hcm_soc.notify.model import Notice, RenderedMessage

SUBJECT = (
    "[TTATTT-HCM][P3] INC-2026-000003: Port Scan From One Source – Cổng thông tin điện tử Sở Thông tin "
    "và Truyền thông"
)
NAME = "Văn phòng Sở - Bộ phận quản trị mạng"


def test_long_vietnamese_headers_round_trip() -> None:
    notice = Notice.new(
        incident_id="INC-2026-000003",
        kind="incident_opened",
        channel="email",
        recipient="quantrimang@sotaichinh.example.vn",
        recipient_name=NAME,
        context={},
    )
    msg = build_message(
        notice, RenderedMessage(SUBJECT, "Xin chào " * 40, "<p>Xin chào</p>", None), sender="soc@example.vn"
    )
    raw = msg.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == SUBJECT
    assert parsed["To"].addresses[0].display_name == NAME
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert parsed.get_body(("plain",)).get_content().startswith("Xin chào Xin chào")  # type: ignore[union-attr]
