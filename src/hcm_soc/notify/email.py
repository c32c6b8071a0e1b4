"""E-mail notices over SMTP: the message (text + HTML alternatives, UTF-8 headers) and its delivery.

Security follows `smtp.security`: `tls` (implicit TLS, usually port 465), `starttls` (upgrade a
plain connection, refuse to go on in clear text if the server cannot), or `none` (a trusted
relay on the local network). Server certificates are verified against the system store or
`ca_cert`. Failures are sorted into transient (retry later: the server is down, busy, answers
4xx, or the configuration needs fixing) and permanent (the server refuses the recipient or the
message with a 5xx code), which is what the outbox needs to decide between retry and failed.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from collections.abc import Callable
from datetime import datetime
from email.errors import MessageError
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import TYPE_CHECKING

from hcm_soc.notify.model import DeliveryError, Notice, RenderedMessage, utcnow

if TYPE_CHECKING:
    from hcm_soc.config import SmtpSettings


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "hcm-soc.invalid"


HEADER_POLICY = SMTP.clone(max_line_length=998)


def build_message(
    notice: Notice, message: RenderedMessage, *, sender: str, now: datetime | None = None
) -> EmailMessage:
    """The MIME message of a notice. Its Message-ID derives from the notice id, so a copy delivered
    twice (a crash between sending and recording it) is recognisable as the same message."""
    # policy SMTP: CRLF line ends and RFC 2047 encoded words for non-ASCII headers (Vietnamese subjects)
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = message.subject
    msg["From"] = sender
    msg["To"] = formataddr((notice.recipient_name or "", notice.recipient))
    msg["Date"] = format_datetime(now or utcnow())
    msg["Message-ID"] = f"<{notice.id}@{_domain(sender)}>"
    msg["X-HCM-Incident"] = notice.incident_id
    msg["X-HCM-Notice"] = notice.id
    msg["X-HCM-Notice-Kind"] = notice.kind
    # RFC 3834: an automatic message; tells vacation responders and Exchange not to answer it
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["Content-Language"] = notice.language
    msg.set_content(message.text, charset="utf-8")
    if message.html is not None:
        msg.add_alternative(message.html, subtype="html", charset="utf-8")
    # Python's header folder (3.11/3.12) drops or inserts spaces when it splits RFC 2047 encoded
    # words of long Vietnamese subjects and names across lines ("Cổngthông", "m ạng"); the bodies are
    # encoded by now, so serialise with a header line limit that needs no folding (RFC 5322's 998)
    msg.policy = HEADER_POLICY
    return msg


class EmailNotifier:
    """Sends e-mail notices through the SMTP server of `smtp` (one connection per notice).

    `ca_cert` / `verify_tls` stand in for settings `smtp.ca_cert` / `smtp.verify_tls` until
    SmtpSettings has them."""

    channel = "email"

    def __init__(
        self,
        smtp: SmtpSettings,
        *,
        ca_cert: Path | None = None,
        verify_tls: bool = True,
        local_hostname: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.smtp = smtp
        self.ca_cert = ca_cert
        self.verify_tls = verify_tls
        self.local_hostname = local_hostname
        self.clock = clock

    @property
    def where(self) -> str:
        return f"SMTP server {self.smtp.host}:{self.smtp.port} ({self.smtp.security})"

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_cert) if self.ca_cert else None)
        if not self.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _connect(self) -> smtplib.SMTP:
        s = self.smtp
        assert s.host is not None
        if s.security == "tls":
            return smtplib.SMTP_SSL(
                s.host,
                s.port,
                timeout=s.timeout,
                context=self._tls_context(),
                local_hostname=self.local_hostname,
            )
        conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout, local_hostname=self.local_hostname)
        if s.security == "starttls":
            try:
                conn.ehlo()
                if not conn.has_extn("starttls"):
                    raise DeliveryError(
                        f"{self.where} does not offer STARTTLS, and sending in clear text was not allowed; "
                        "enable TLS on the server or set smtp.security (tls, or none for a trusted relay)",
                        transient=True,
                    )
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            except BaseException:
                conn.close()
                raise
        return conn

    def send(self, notice: Notice, message: RenderedMessage) -> None:
        s = self.smtp
        if not s.host:
            # kept for later rather than failed: the notice is sent once smtp.host is configured
            raise DeliveryError(
                "e-mail is not configured: set smtp.host (HCM_SOC_SMTP_HOST) to the city's mail relay",
                transient=True,
            )
        try:
            msg = build_message(notice, message, sender=s.sender, now=self.clock())
            msg.as_bytes()  # a header that cannot be encoded fails here, not halfway through DATA
        except (ValueError, TypeError, MessageError) as e:
            raise DeliveryError(
                f"cannot build an e-mail to {notice.recipient!r}: {e}; "
                "the address must be ASCII (internationalised addresses are not supported)",
                transient=False,
            ) from e
        try:
            conn = self._connect()
            try:
                if s.username:
                    _login(conn, s.username, s.password or "")
                refused = conn.send_message(msg, from_addr=s.sender, to_addrs=[notice.recipient])
            finally:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()
        except DeliveryError:
            raise
        except smtplib.SMTPRecipientsRefused as e:
            code, reply = e.recipients.get(notice.recipient, (550, b""))
            raise DeliveryError(
                f"{self.where} refused recipient {notice.recipient}: {code} {_text(reply)}",
                transient=code < 500,
            ) from e
        except smtplib.SMTPAuthenticationError as e:
            raise DeliveryError(
                f"{self.where} rejected the login of {s.username}: {e.smtp_code} {_text(e.smtp_error)}; "
                "check smtp.username and smtp.password (the notice is kept and retried)",
                transient=True,
            ) from e
        except smtplib.SMTPResponseException as e:
            # 4xx: the server is busy or greylisting; 5xx on sender or data: it will not take it
            raise DeliveryError(
                f"{self.where} answered {e.smtp_code} {_text(e.smtp_error)}", transient=e.smtp_code < 500
            ) from e
        except ssl.SSLCertVerificationError as e:
            raise DeliveryError(
                f"{self.where}: the server's TLS certificate is not trusted ({e.verify_message}); "
                "give its CA certificate (smtp.ca_cert) or fix the server name in smtp.host",
                transient=True,
            ) from e
        except (smtplib.SMTPException, OSError) as e:
            # connection refused or reset, timeout, TLS handshake, server hung up: try again later
            raise DeliveryError(
                f"{self.where} could not be reached: {type(e).__name__}: {e}", transient=True
            ) from e
        if refused:
            code, reply = refused.get(notice.recipient, (550, b""))
            raise DeliveryError(
                f"{self.where} refused recipient {notice.recipient}: {code} {_text(reply)}",
                transient=code < 500,
            )


def _login(conn: smtplib.SMTP, username: str, password: str) -> None:
    """`SMTP.login`, except that non-ASCII credentials (a Vietnamese pass phrase) go as UTF-8 in
    AUTH PLAIN (RFC 4616), which smtplib cannot do: it encodes them as ASCII and crashes."""
    if (username + password).isascii():
        conn.login(username, password)
        return
    conn.ehlo_or_helo_if_needed()
    if "PLAIN" not in conn.esmtp_features.get("auth", "").upper().split():
        raise smtplib.SMTPException(
            "the password is not ASCII and the server does not offer AUTH PLAIN, the only mechanism "
            "that carries it as UTF-8"
        )
    blob = base64.b64encode(b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8"))
    code, reply = conn.docmd("AUTH", "PLAIN " + blob.decode("ascii"))
    if code not in (235, 503):  # 503: already authenticated
        raise smtplib.SMTPAuthenticationError(code, reply)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
