"""Webhook notices to a real HTTP receiver on loopback: signature, timestamp, idempotency key, and
how each answer is classified."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hcm_soc.config import load_settings
from hcm_soc.notify.model import DeliveryError, Notice
from hcm_soc.notify.render import notice_context, render_notice
from hcm_soc.notify.webhook import WebhookNotifier, verify_signature
from tests.conftest import free_port
from tests.integration.notify.conftest import HttpReceiver
from tests.unit.notify.conftest import incident_doc

pytestmark = pytest.mark.integration

SECRET = b"webhook-secret-for-tests"
NOW = datetime(2026, 11, 26, 7, 6, tzinfo=UTC)


def webhook_notice(url: str) -> Notice:
    ctx = notice_context(
        incident_doc(), settings=load_settings(env={}), recipient=url, actions=["Chặn IP"], ack_url=None
    )
    return Notice.new(
        incident_id="INC-2026-000123",
        kind="incident_opened",
        step="webhook-5",
        channel="webhook",
        recipient=url,
        context=ctx,
        now=NOW,
    )


def send(url: str) -> Notice:
    notice = webhook_notice(url)
    WebhookNotifier(SECRET, timeout=5, clock=lambda: NOW).send(notice, render_notice(notice, timezone="UTC"))
    return notice


def test_signed_json_post(http_receiver: HttpReceiver) -> None:
    notice = send(http_receiver.url)
    [req] = http_receiver.requests
    h = req["headers"]
    assert req["path"] == "/hooks/soc"
    assert h["Content-Type"] == "application/json; charset=utf-8"
    assert h["X-HCM-Timestamp"] == str(int(NOW.timestamp()))
    assert h["Idempotency-Key"] == notice.id
    assert h["X-HCM-Incident"] == "INC-2026-000123"
    assert verify_signature(
        SECRET, timestamp=h["X-HCM-Timestamp"], body=req["body"], signature=h["X-HCM-Signature"], now=NOW
    )
    assert not verify_signature(
        b"other", timestamp=h["X-HCM-Timestamp"], body=req["body"], signature=h["X-HCM-Signature"], now=NOW
    )
    body = json.loads(req["body"].decode("utf-8"))
    assert body["notice"]["id"] == notice.id and body["notice"]["kind"] == "incident_opened"
    assert body["incident"]["title"] == "Dò mật khẩu SSH vào máy chủ cổng dịch vụ công"
    assert body["actions"] == ["Chặn IP"]
    assert "Dò mật khẩu".encode() in req["body"]  # UTF-8, not \\u escapes


@pytest.mark.parametrize(
    ("status", "transient"), [(500, True), (503, True), (408, True), (429, True), (400, False), (404, False)]
)
def test_status_classification(http_receiver: HttpReceiver, status: int, transient: bool) -> None:
    http_receiver.statuses.append(status)
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as info:
        send(http_receiver.url)
    assert info.value.transient is transient


def test_redirect_is_not_followed(http_receiver: HttpReceiver) -> None:
    http_receiver.statuses.append(307)
    http_receiver.headers_out[307] = {"Location": "http://127.0.0.1:1/elsewhere"}
    with pytest.raises(DeliveryError, match="HTTP 307") as info:
        send(http_receiver.url)
    assert not info.value.transient
    assert len(http_receiver.requests) == 1


def test_nothing_listening_is_transient() -> None:
    with pytest.raises(DeliveryError, match="could not be reached") as info:
        send(f"http://127.0.0.1:{free_port()}/hook")
    assert info.value.transient


def test_non_http_recipient_is_permanent() -> None:
    with pytest.raises(DeliveryError, match="not an http") as info:
        send("file:///etc/passwd")
    assert not info.value.transient


def test_a_step_secret_from_the_environment_signs_instead(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HCM_SOC_TEST_FIREWALL_KEY", "firewall-api-key")
    notice = webhook_notice(http_receiver.url).model_copy(update={"secret_env": "HCM_SOC_TEST_FIREWALL_KEY"})
    WebhookNotifier(SECRET, timeout=5, clock=lambda: NOW).send(notice, render_notice(notice, timezone="UTC"))
    [req] = http_receiver.requests
    h = req["headers"]
    args = {
        "timestamp": h["X-HCM-Timestamp"],
        "body": req["body"],
        "signature": h["X-HCM-Signature"],
        "now": NOW,
    }
    assert verify_signature(b"firewall-api-key", **args)
    assert not verify_signature(SECRET, **args)

    monkeypatch.delenv("HCM_SOC_TEST_FIREWALL_KEY")
    with pytest.raises(DeliveryError, match="HCM_SOC_TEST_FIREWALL_KEY is not set") as err:
        WebhookNotifier(SECRET, timeout=5, clock=lambda: NOW).send(
            notice, render_notice(notice, timezone="UTC")
        )
    assert err.value.transient is False
    assert len(http_receiver.requests) == 1  # nothing sent unsigned
