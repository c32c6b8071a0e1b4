"""The response stage of the demo: playbooks over the demo's alerts → incidents → notices, delivered
to a local mail sink the demo starts (aiosmtpd on 127.0.0.1), then read back for the summary.

The sink keeps the messages in memory; nothing leaves the machine. Settings are copied with the
sink's address (plain SMTP on loopback), so a user's own `smtp.*` settings are never used by the
demo.
"""

from __future__ import annotations

import email
import email.policy
import re
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from elasticsearch import Elasticsearch

    from hcm_soc.config import Settings
    from hcm_soc.store.names import IndexNames

#: the demo's analyst on duty and escalation list (fictional addresses, delivered to the local sink)
DEMO_ANALYSTS = ["truc-ban@soc.hcm.example.vn"]
DEMO_ESCALATION = ["lanh-dao@soc.hcm.example.vn"]


@dataclass
class ResponseReport:
    playbooks: int = 0
    problems: list[str] = field(default_factory=list)
    alerts_handled: int = 0
    opened: int = 0
    joined: int = 0
    no_playbook: int = 0
    failed: int = 0
    notices_sent: int = 0
    notices_waiting: int = 0
    #: (id, priority, status, title, asset, department, owners, alerts)
    incidents: list[tuple[str, str, str, str, str, str, str, int]] = field(default_factory=list)
    #: (to, subject) of each message the local mail sink received
    mails: list[tuple[str, str]] = field(default_factory=list)
    #: department ids of each listed incident's assets (same order as `incidents`)
    incident_departments: list[list[str]] = field(default_factory=list)
    #: (recipient address, incident id, acknowledgement link) found in the received e-mails
    ack_links: list[tuple[str, str, str]] = field(default_factory=list)
    smtp: str = ""


_ACK_LINK = re.compile(r"https?://\S+/ack\?token=[A-Za-z0-9_.\-]+")


def ack_link(msg: email.message.EmailMessage) -> str | None:
    """The acknowledgement link in a notice e-mail's text part, if there is one."""
    body = msg.get_body(("plain",))
    if body is None:
        return None
    found = _ACK_LINK.search(body.get_content())
    return found.group(0) if found else None


class MailSink:
    """An SMTP server on 127.0.0.1 that keeps what it receives (aiosmtpd)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        self.messages.append(msg)
        return "250 OK"

    def __enter__(self) -> MailSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def respond(
    settings: Settings, client: Elasticsearch, names: IndexNames, progress: Callable[[str], None]
) -> ResponseReport:
    from hcm_soc.playbooks.jobs import build_response

    report = ResponseReport()
    with MailSink() as sink:
        report.smtp = f"127.0.0.1:{sink.port}"
        demo_settings = settings.model_copy(
            update={
                "smtp": settings.smtp.model_copy(
                    update={
                        "host": "127.0.0.1",
                        "port": sink.port,
                        "security": "none",
                        "username": None,
                        "password": None,
                    }
                ),
                "notify": settings.notify.model_copy(
                    update={
                        "analysts": settings.notify.analysts or DEMO_ANALYSTS,
                        "escalation": settings.notify.escalation or DEMO_ESCALATION,
                    }
                ),
            }
        )
        response = build_response(demo_settings, client, names)
        runner = response.runner
        report.playbooks = len(runner.playbooks)
        report.problems = response.problems
        result = runner.run_once(limit=10_000)
        for attr in ("opened", "joined", "no_playbook", "failed"):
            setattr(report, attr, getattr(result, attr))
        report.alerts_handled = result.alerts
        delivery = result.delivery
        report.notices_sent = getattr(delivery, "sent", 0) if delivery else 0
        report.notices_waiting = (
            (getattr(delivery, "retried", 0) + getattr(delivery, "failed", 0)) if delivery else 0
        )
        progress(
            f"      {result.alerts} alert(s) -> {result.opened} incident(s) opened, {result.joined} joined an "
            f"open incident, {result.no_playbook} without playbook, {result.failed} failed; "
            f"{report.notices_sent} notice(s) delivered to the local mail sink {report.smtp}"
        )
        for msg in sink.messages:
            report.mails.append((str(msg.get("To", "")), str(msg.get("Subject", ""))))
            link = ack_link(msg)
            if link is not None:
                to = msg["To"].addresses[0].addr_spec if msg["To"] is not None else ""
                report.ack_links.append((str(to), str(msg.get("X-HCM-Incident", "")), link))
    runner.incidents.store.refresh()  # the last links and priority changes are seconds old
    page = runner.incidents.list(size=100, sort="priority")
    for inc in page.items:
        asset = inc.assets[0] if inc.assets else None
        owners = sorted({o for a in inc.assets for o in a.owners})
        report.incident_departments.append(list(dict.fromkeys(a.department for a in inc.assets)))
        report.incidents.append(
            (
                inc.id,
                inc.priority,
                inc.status,
                inc.title,
                asset.name if asset else "-",
                (asset.department_name or asset.department) if asset else "-",
                ", ".join(owners) or "-",
                inc.alert_count,
            )
        )
    return report
