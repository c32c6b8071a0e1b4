"""Login throttling: after N failed logins for one user name, or from one client address, within
the lockout window, further attempts are refused for the lockout time.

Counted in memory per process (fast, no Elasticsearch read on the login path); every failure
and every lockout is also written to the audit trail by the login route, so an attack is
visible after a restart even though the counters start again. Keying on both the user name
and the address stops both one-account guessing from many addresses and one address guessing
many accounts. The user name counts whether or not the account exists, so a lockout tells an
attacker nothing about which names are real. A successful login clears its user name's
counter but not its address's: otherwise an attacker with one valid account could reset the
address counter between guesses. Memory is bounded: old entries are pruned and at most
`max_keys` keys are kept.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

MAX_KEYS = 20_000


@dataclass
class _Entry:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Lockout:
    """Why a login is refused right now and for how long."""

    key: str  # "user" or "address"
    seconds_left: float


class LoginThrottle:
    def __init__(
        self,
        *,
        max_failures: int,
        lockout: float,
        clock: Callable[[], datetime],
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.max_failures = max_failures
        self.lockout = lockout  # also the window in which failures count
        self.clock = clock
        self.max_keys = max_keys
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(username: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("user", username.strip().lower())]
        if address:
            keys.append(("address", address))
        return keys

    def _now(self) -> float:
        return self.clock().timestamp()

    def _prune(self, entry: _Entry, now: float) -> None:
        while entry.failures and entry.failures[0] <= now - self.lockout:
            entry.failures.popleft()

    def locked(self, username: str, address: str | None) -> Lockout | None:
        """The longest running lockout that applies to this attempt, or None."""
        now = self._now()
        worst: Lockout | None = None
        with self._lock:
            for key in self._keys(username, address):
                entry = self._entries.get(key)
                if entry is None or entry.locked_until <= now:
                    continue
                left = entry.locked_until - now
                if worst is None or left > worst.seconds_left:
                    worst = Lockout(key[0], left)
        return worst

    def failure(self, username: str, address: str | None) -> Lockout | None:
        """Count a failed login; the lockout it starts (None while under the limit)."""
        now = self._now()
        started: Lockout | None = None
        with self._lock:
            for key in self._keys(username, address):
                entry = self._entries.pop(key, None) or _Entry()
                self._entries[key] = entry  # re-inserted: dict order is least recently failed first
                self._prune(entry, now)
                entry.failures.append(now)
                if len(entry.failures) >= self.max_failures and entry.locked_until <= now:
                    entry.locked_until = now + self.lockout
                    entry.failures.clear()
                    started = started or Lockout(key[0], self.lockout)
            self._bound(now)
        return started

    def success(self, username: str) -> None:
        with self._lock:
            self._entries.pop(("user", username.strip().lower()), None)

    def _bound(self, now: float) -> None:
        if len(self._entries) <= self.max_keys:
            return
        for key in list(self._entries):
            entry = self._entries[key]
            self._prune(entry, now)
            if not entry.failures and entry.locked_until <= now:
                del self._entries[key]
        while len(self._entries) > self.max_keys:
            # still too many live keys (a flood of addresses): forget the least recent ones
            del self._entries[next(iter(self._entries))]
