"""Notice texts in Vietnamese and English: content, local times, words, escaping, every template."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import markupsafe
import pytest

from hcm_soc.config import load_settings
from hcm_soc.notify.model import Notice
from hcm_soc.notify.render import KINDS, NoticeTemplateError, notice_context, render_notice
from tests.unit.notify.conftest import ACTIONS, ATTACK_URL

SETTINGS = load_settings(env={})
NOW = datetime(2026, 11, 26, 7, 6, tzinfo=UTC)


def make_notice(
    incident: dict[str, Any], *, kind: str = "incident_opened", language: str = "vi", **kw: Any
) -> Notice:
    ctx = notice_context(
        incident,
        settings=SETTINGS,
        recipient="quantri@sotttt.hcm.gov.vn",
        actions=kw.pop("actions", ACTIONS),
        ack_url="https://soc.hcm.gov.vn/ack?token=abc.def",
        message=kw.pop("message", None),
    )
    return Notice.new(
        incident_id=incident["id"],
        kind=kind,
        channel=kw.pop("channel", "email"),
        recipient="quantri@sotttt.hcm.gov.vn",
        recipient_name="Phòng Quản trị hệ thống",
        language=language,  # type: ignore[arg-type]
        context=ctx,
        now=NOW,
    )


def test_vietnamese_notice_says_what_when_where_how_bad_and_what_to_do(incident: dict[str, Any]) -> None:
    msg = render_notice(make_notice(incident), timezone="Asia/Ho_Chi_Minh")
    assert msg.subject == ("[TTATTT-HCM][P1] INC-2026-000123: Dò mật khẩu SSH vào máy chủ cổng dịch vụ công")
    text = msg.text
    for expected in (
        "Kính gửi Phòng Quản trị hệ thống,",
        "Dò mật khẩu SSH vào máy chủ cổng dịch vụ công",
        "Dò mật khẩu SSH <script>alert('rule')</script>",  # text part: shown as written
        "Hơn 200 lần đăng nhập SSH thất bại",
        "26/11/2026 14:05 (giờ Việt Nam)",  # first alert 07:05 UTC
        "26/11/2026 14:40 (giờ Việt Nam)",  # last alert
        "P1 (Khẩn cấp)",
        "mức độ nghiêm trọng: Cao",
        "Cổng dịch vụ công trực tuyến — Sở Thông tin và Truyền thông",
        "Chính quyền điện tử, cải cách hành chính",
        "cấp độ 4",
        "1. Chặn địa chỉ 203.0.113.45 trên tường lửa",
        "2. Kiểm tra nhật ký đăng nhập của máy chủ",
        "https://soc.hcm.gov.vn/ack?token=abc.def",
        "Đề nghị xác nhận trước 26/11/2026 14:36 (giờ Việt Nam)",
        "Trung tâm An toàn thông tin TP. Hồ Chí Minh",
        "soc@hcm.gov.vn",
        "INC-2026-000123",
    ):
        assert expected in text, expected
    assert "Block 203.0.113.45" not in text  # English actions stay out of the Vietnamese notice


def test_english_notice(incident: dict[str, Any]) -> None:
    msg = render_notice(make_notice(incident, language="en"), timezone="Asia/Ho_Chi_Minh")
    assert msg.subject.startswith("[TTATTT-HCM][P1] INC-2026-000123: ")
    for expected in (
        "Dear Phòng Quản trị hệ thống,",
        "26 Nov 2026 14:05 (Vietnam time)",
        "P1 (Urgent)",
        "severity: High",
        "E-government and administrative reform",
        "1. Block 203.0.113.45 at the firewall",
        "Ho Chi Minh City Information Security Center",
    ):
        assert expected in msg.text, expected
    assert msg.html is not None and "Recommended actions" in msg.html and 'lang="en"' in msg.html


def test_html_escapes_attacker_controlled_text(incident: dict[str, Any]) -> None:
    incident["title"] = "Tấn công <img src=x onerror=alert(1)> vào cổng"
    msg = render_notice(make_notice(incident), timezone="Asia/Ho_Chi_Minh")
    assert msg.html is not None
    assert "<script" not in msg.html
    assert "<img" not in msg.html
    assert "Dò mật khẩu SSH &lt;script&gt;alert(&#39;rule&#39;)&lt;/script&gt;" in msg.html
    assert str(markupsafe.escape(ATTACK_URL)) in msg.html
    assert "Tấn công &lt;img src=x onerror=alert(1)&gt; vào cổng" in msg.html
    # the only links are ours: the acknowledgement link and the contact address
    assert msg.html.count("<a ") == 2
    assert 'href="https://soc.hcm.gov.vn/ack?token=abc.def"' in msg.html


def test_subject_is_one_line_even_if_the_title_is_not(incident: dict[str, Any]) -> None:
    incident["title"] = "Tiêu đề\r\nBcc: attacker@example.com"
    msg = render_notice(make_notice(incident), timezone="Asia/Ho_Chi_Minh")
    assert "\n" not in msg.subject and "\r" not in msg.subject
    assert msg.subject.endswith("Tiêu đề Bcc: attacker@example.com")


def test_other_display_timezone_is_named(incident: dict[str, Any]) -> None:
    msg = render_notice(make_notice(incident), timezone="UTC")
    assert "26/11/2026 07:05 (UTC)" in msg.text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("language", ["vi", "en"])
def test_every_template_renders_in_both_languages(incident: dict[str, Any], kind: str, language: str) -> None:
    incident["escalation_level"] = 2
    incident["status"] = "resolved" if kind == "incident_closed" else "new"
    msg = render_notice(
        make_notice(incident, kind=kind, language=language, message="Thêm 3 cảnh báo mới"),
        timezone="Asia/Ho_Chi_Minh",
    )
    assert "INC-2026-000123" in msg.subject and "INC-2026-000123" in msg.text
    assert msg.html is not None and "INC-2026-000123" in msg.html
    assert "Thêm 3 cảnh báo mới" in msg.text
    if kind == "escalation":
        assert ("NÂNG CẤP MỨC 2" if language == "vi" else "ESCALATED L2") in msg.subject
    if kind == "incident_closed":
        assert ("Đã xử lý xong" if language == "vi" else "Resolved") in msg.text


def test_webhook_notice_renders_json_not_html(incident: dict[str, Any]) -> None:
    notice = make_notice(incident, channel="webhook")
    msg = render_notice(notice, timezone="Asia/Ho_Chi_Minh")
    assert msg.html is None and msg.json is not None
    assert msg.json["notice"] == {
        "id": notice.id,
        "kind": "incident_opened",
        "incident_id": "INC-2026-000123",
        "language": "vi",
        "created": NOW.isoformat(),
        "subject": msg.subject,
    }
    assert msg.json["incident"]["priority"] == "P1"
    assert msg.json["assets"][0]["id"] == "dvc-portal"


def test_unknown_template_is_a_clear_error(incident: dict[str, Any]) -> None:
    notice = make_notice(incident).model_copy(update={"kind": "surprise"})
    with pytest.raises(NoticeTemplateError, match="known templates: incident_opened"):
        render_notice(notice, timezone="Asia/Ho_Chi_Minh")


def test_context_is_bounded_and_cleaned(incident: dict[str, Any]) -> None:
    incident["description"] = "x\x00y" + "z" * 10_000
    incident["entities"]["ips"] = [f"10.0.0.{i}" for i in range(50)]
    ctx = notice_context(incident, settings=SETTINGS, recipient="a@b.vn", actions=None, ack_url=None)
    assert len(ctx["incident"]["description"]) == 2000 and "\x00" not in ctx["incident"]["description"]
    assert len(ctx["entities"]["ips"]) == 10
    assert ctx["incident"]["first_alert_at"] == "2026-11-26T07:05:00+00:00"
    assert ctx["rules"] == [
        {"id": "7b3c-ssh-brute", "title": "Dò mật khẩu SSH <script>alert('rule')</script>", "level": "high"}
    ]


def test_minimal_incident_renders_without_assets_or_alerts() -> None:
    doc = {
        "id": "INC-2026-000001",
        "title": "Quét cổng",
        "status": "new",
        "priority": "P4",
        "created": NOW.isoformat(),
    }
    msg = render_notice(make_notice(doc, actions=None), timezone="Asia/Ho_Chi_Minh")
    assert "chưa xác định được hệ thống" in msg.text
    assert "26/11/2026 14:06 (giờ Việt Nam)" in msg.text  # first alert falls back to created
    assert "Đề nghị đơn vị thực hiện" not in msg.text
