"""The durable notice outbox: queue notices in Elasticsearch, deliver the due ones, retry with backoff.

A notice is never lost: it is stored before anything is sent, and every attempt ends in a
recorded outcome. A transient failure (server down, timeout, SMTP 4xx, HTTP 408/429/5xx) puts it
back as pending with `next_attempt` = now + backoff (`notify.retry_base` doubling up to
`notify.retry_max`, ±10 % jitter so a crowd of notices does not retry in lockstep); a permanent
failure, or `notify.max_attempts` attempts, marks it failed (kept, visible). Before sending,
a worker claims the notice with a conditional write (see store/notices.py), so two outboxes
on the same index never both send it. Each outcome is passed to `on_result`, which the runner
uses to put the delivery status on the incident timeline.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hcm_soc.errors import HcmSocError
from hcm_soc.notify.model import DeliveryError, Notice, Notifier, Outcome, RenderedMessage, utcnow
from hcm_soc.notify.render import render_notice

if TYPE_CHECKING:
    from hcm_soc.config import Settings
    from hcm_soc.store.notices import NoticeStore

log = logging.getLogger(__name__)

OnResult = Callable[[Notice, str, str | None], None]


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one `deliver_due` pass did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0  # due notices another worker claimed first

    @property
    def attempted(self) -> int:
        return self.sent + self.retried + self.failed


def backoff_delay(attempts: int, *, base: float, cap: float, rng: random.Random) -> timedelta:
    """Wait before attempt `attempts + 1`: base · 2^(attempts-1), at most `cap`, jittered ±10 %."""
    exp = min(max(attempts - 1, 0), 62)  # 2**62 s is far past any cap; avoids huge floats
    delay = min(cap, base * (2.0**exp))
    return timedelta(seconds=delay * rng.uniform(0.9, 1.1))


def notifiers_from_settings(settings: Settings) -> dict[str, Notifier]:
    """The built-in notifiers, one per channel, configured from settings (nothing is contacted)."""
    from hcm_soc.notify.email import EmailNotifier
    from hcm_soc.notify.tokens import webhook_secret
    from hcm_soc.notify.webhook import WebhookNotifier

    return {
        "email": EmailNotifier(
            settings.smtp, ca_cert=settings.smtp.ca_cert, verify_tls=settings.smtp.verify_tls
        ),
        "webhook": WebhookNotifier(webhook_secret(settings), settings.webhook.timeout),
    }


class NoticeOutbox:
    def __init__(
        self,
        store: NoticeStore,
        notifiers: Mapping[str, Notifier],
        *,
        settings: Settings,
        on_result: OnResult | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        claim_for: timedelta | None = None,
        worker: str | None = None,
    ) -> None:
        self.store = store
        self.notifiers = dict(notifiers)
        self.settings = settings
        self.on_result = on_result
        self.clock = clock
        self.rng = rng or random.Random()
        # a claim must outlast one send (connect + TLS + DATA); a worker that dies mid-send
        # leaves the notice to others after this long
        timeout = max(settings.smtp.timeout, settings.webhook.timeout)
        self.claim_for = claim_for or timedelta(seconds=max(60.0, 6 * timeout))
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"

    def enqueue(self, notice: Notice) -> bool:
        """Store a notice for delivery; False when the same notice (same id) was queued before."""
        return self.store.create(notice)

    def deliver_due(self, *, limit: int = 100) -> DeliveryReport:
        """Attempt every notice due now (at most `limit`). Raises DependencyUnavailable when
        Elasticsearch cannot be read; a single notice's trouble never stops the others."""
        counts: dict[str, int] = {"sent": 0, "retry": 0, "failed": 0, "skipped": 0}
        self.store.refresh()  # notices queued a moment ago (the playbook pass just before) are due too
        for notice in self.store.due(self.clock(), limit):
            counts[self._deliver_one(notice)] += 1
        return DeliveryReport(
            sent=counts["sent"], retried=counts["retry"], failed=counts["failed"], skipped=counts["skipped"]
        )

    def _deliver_one(self, due: Notice) -> str:
        now = self.clock()
        notice = self.store.claim(due, now=now, until=now + self.claim_for, worker=self.worker)
        if notice is None:
            return "skipped"
        subject: str | None = None
        try:
            message = render_notice(notice, timezone=self.settings.timezone)
            subject = message.subject
            self._send(notice, message)
        except DeliveryError as e:
            return self._record_failure(notice, str(e), transient=e.transient, subject=subject)
        except HcmSocError as e:  # a template or kind that does not exist: retrying cannot fix it
            return self._record_failure(notice, str(e), transient=False, subject=subject)
        except Exception as e:  # isolation boundary: one notice's surprise must not stop the pass
            log.exception("notice %s: unexpected error while sending", notice.id)
            return self._record_failure(notice, f"{type(e).__name__}: {e}", transient=True, subject=subject)
        at = self.clock()
        try:
            saved = self.store.mark_sent(notice, at=at, subject=subject)
        except HcmSocError as e:
            # sent, but not recorded: once the claim lapses it may be sent again (same Message-ID /
            # Idempotency-Key, so receivers can tell); nothing else can be done here
            log.error("notice %s was sent but its status could not be recorded: %s", notice.id, e)
            saved = notice.model_copy(update={"status": "sent", "sent_at": at, "subject": subject})
        self._report(saved, "sent", None)
        return "sent"

    def _send(self, notice: Notice, message: RenderedMessage) -> None:
        notifier = self.notifiers.get(notice.channel)
        if notifier is None:
            raise DeliveryError(
                f"no notifier for channel {notice.channel!r} is configured "
                f"(configured: {', '.join(sorted(self.notifiers)) or 'none'})",
                transient=True,
            )
        notifier.send(notice, message)

    def _record_failure(self, notice: Notice, error: str, *, transient: bool, subject: str | None) -> str:
        at = self.clock()
        max_attempts = self.settings.notify.max_attempts
        outcome: Outcome
        try:
            if transient and notice.attempts < max_attempts:
                delay = backoff_delay(
                    notice.attempts,
                    base=self.settings.notify.retry_base,
                    cap=self.settings.notify.retry_max,
                    rng=self.rng,
                )
                saved = self.store.mark_retry(
                    notice, at=at, error=error, next_attempt=at + delay, subject=subject
                )
                outcome = "retry"
            else:
                if transient:
                    error = f"gave up after {notice.attempts} attempt(s): {error}"
                saved = self.store.mark_failed(notice, at=at, error=error, subject=subject)
                outcome = "failed"
        except HcmSocError as e:
            # the claim lapses on its own and the notice becomes due again: still not lost
            log.error("notice %s: could not record the failed attempt (%s): %s", notice.id, error, e)
            return "skipped"
        log.info("notice %s to %s: %s (%s)", notice.id, notice.recipient, outcome, error)
        self._report(saved, outcome, error)
        return outcome

    def _report(self, notice: Notice, outcome: str, error: str | None) -> None:
        if self.on_result is None:
            return
        try:
            self.on_result(notice, outcome, error)
        except Exception:  # isolation boundary: the delivery is recorded on the notice either way
            log.exception("notice %s: the on_result callback failed for outcome %s", notice.id, outcome)
