"""Shared data of the notice tests: an incident document as IncidentService stores it."""

from __future__ import annotations

from typing import Any

import pytest

ATTACK_URL = 'https://dichvucong.hcm.gov.vn/login?next="><script>alert(1)</script>'


def incident_doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "INC-2026-000123",
        "title": "Dò mật khẩu SSH vào máy chủ cổng dịch vụ công",
        "description": "Hơn 200 lần đăng nhập SSH thất bại từ một địa chỉ trong 5 phút.",
        "status": "new",
        "priority": "P1",
        "level": "high",
        "created": "2026-11-26T07:06:00+00:00",
        "updated": "2026-11-26T07:06:00+00:00",
        "last_alert_at": "2026-11-26T07:40:00+00:00",
        "alert_count": 2,
        "sla": {"acknowledge_by": "2026-11-26T07:36:00+00:00", "resolve_by": "2026-11-26T11:06:00+00:00"},
        "alerts": [
            {
                "id": "al-1",
                "rule_id": "7b3c-ssh-brute",
                "rule_title": "Dò mật khẩu SSH <script>alert('rule')</script>",
                "level": "high",
                "timestamp": "2026-11-26T07:05:00+00:00",
            },
            {
                "id": "al-2",
                "rule_id": "7b3c-ssh-brute",
                "rule_title": "Dò mật khẩu SSH <script>alert('rule')</script>",
                "level": "high",
                "timestamp": "2026-11-26T07:40:00+00:00",
            },
        ],
        "assets": [
            {
                "id": "dvc-portal",
                "name": "Cổng dịch vụ công trực tuyến",
                "department": "so-tttt",
                "department_name": "Sở Thông tin và Truyền thông",
                "sector": "e_government",
                "criticality": 4,
                "owners": ["quantri@sotttt.hcm.gov.vn"],
            }
        ],
        "entities": {
            "ips": ["203.0.113.45"],
            "users": ["root"],
            "hosts": ["dvc-web-01"],
            "urls": [ATTACK_URL],
        },
        "tags": ["attack.credential_access"],
        "escalation_level": 0,
    }
    doc.update(over)
    return doc


ACTIONS = {
    "vi": ["Chặn địa chỉ 203.0.113.45 trên tường lửa", "Kiểm tra nhật ký đăng nhập của máy chủ"],
    "en": ["Block 203.0.113.45 at the firewall", "Review the server's login logs"],
}


@pytest.fixture
def incident() -> dict[str, Any]:
    return incident_doc()
