"""Engine failover: which of several engine processes on one cluster evaluates rules.

One lease document (see store/lease.py) names the active engine. `EngineLease.tick` takes
it when it is free or expired and renews it when held; `run` ticks every `lease_renew`
seconds until stopped, so a standby notices an expired lease at most `lease_renew` after
`lease_ttl` ran out: a take-over happens within `lease_ttl + lease_renew` of the last renewal.

Fencing: the holder trusts its lease only until `lease_ttl - lease_renew` after the start of
its last successful renewal, measured on its own monotonic clock. It checks `held()` before
committing any checkpoint (the engine calls `check()`), so an engine that hung, lost
Elasticsearch or lost the lease stops before another could have taken over; the checkpoint
writes are conditional as well (a stale engine's write conflicts).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hcm_soc.store.lease import LeaseLost, LeaseRecord, LeaseStore

log = logging.getLogger("hcm_soc.detection.lease")

LEASE_NAME = "engine"


def default_engine_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class EngineLease:
    """The lease as one engine process sees it; `tick` is safe to call from one thread at a time."""

    def __init__(
        self,
        store: LeaseStore,
        holder: str,
        *,
        ttl: float,
        renew: float,
        name: str = LEASE_NAME,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.holder = holder
        self.ttl = ttl
        self.renew = renew
        self.name = name
        self.now = now
        self.monotonic = monotonic
        self._record: LeaseRecord | None = None
        self._valid_until = 0.0
        self._lock = threading.Lock()
        self.takeovers = 0  # how many times this engine became active

    def held(self) -> bool:
        """True while this engine may evaluate and commit (its lease cannot have lapsed yet)."""
        with self._lock:
            return self._record is not None and self.monotonic() < self._valid_until

    def check(self) -> None:
        """Raise LeaseLost unless `held()`: called before committing each chunk."""
        if not self.held():
            raise LeaseLost(
                f"engine {self.holder} no longer holds the lease {self.name} (not renewed within "
                f"{self.ttl - self.renew:g}s or taken over); the window stays for the active engine"
            )

    def tick(self) -> bool:
        """Acquire or renew once; returns whether the lease is held afterwards."""
        t0 = self.monotonic()
        now = self.now()
        ttl = timedelta(seconds=self.ttl)
        with self._lock:
            record = self._record
        try:
            if record is not None:
                new: LeaseRecord | None = self.store.renew(record, now=now, ttl=ttl)
            else:
                new = self.store.try_acquire(self.name, self.holder, now=now, ttl=ttl)
        except LeaseLost as e:
            log.warning("lease lost", extra={"holder": self.holder, "error": str(e)})
            new = None
        except Exception as e:  # Elasticsearch unreachable: keep what we had; fencing ends it in time
            log.error("lease renewal failed", extra={"holder": self.holder, "error": str(e)})
            return self.held()
        with self._lock:
            if new is None:
                self._record, self._valid_until = None, 0.0
                return False
            if record is None:
                self.takeovers += 1
                log.info("lease acquired: this engine is active", extra={"holder": self.holder})
            self._record = new
            self._valid_until = t0 + self.ttl - self.renew
            return True

    def release(self) -> None:
        """On a clean stop: let a standby take over at its next poll instead of after the ttl."""
        with self._lock:
            record, self._record, self._valid_until = self._record, None, 0.0
        if record is not None:
            try:
                self.store.release(record, now=self.now())
            except Exception as e:  # the standby takes over after the ttl anyway
                log.warning("could not release the lease", extra={"holder": self.holder, "error": str(e)})

    def run(self, stop_event: threading.Event) -> None:
        """Tick every `renew` seconds until `stop_event` is set (the owner releases once its running
        rules have finished)."""
        while not stop_event.is_set():
            self.tick()
            stop_event.wait(self.renew)

    def start(self, stop_event: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop_event,), name="hcm-soc-lease", daemon=True)
        thread.start()
        return thread
