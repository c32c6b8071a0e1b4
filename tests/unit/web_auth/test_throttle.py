"""Login throttling with a fake clock: per user name, per address, lockout length, window, memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hcm_soc.web.auth.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def throttle(clock: Clock, **kw: int) -> LoginThrottle:
    return LoginThrottle(max_failures=3, lockout=300, clock=clock, **kw)


def test_user_locked_after_max_failures_from_any_address() -> None:
    clock = Clock()
    t = throttle(clock)
    assert t.failure("alice", "10.0.0.1") is None
    assert t.failure("Alice", "10.0.0.2") is None
    assert t.locked("alice", "10.0.0.9") is None
    started = t.failure("alice ", "10.0.0.3")
    assert started is not None and started.key == "user" and started.seconds_left == 300
    locked = t.locked("alice", "10.0.0.9")
    assert locked is not None and locked.key == "user"
    assert t.locked("bob", "10.0.0.9") is None  # other names are not affected
    clock.advance(299)
    assert t.locked("alice", None) is not None
    clock.advance(1)
    assert t.locked("alice", None) is None


def test_address_locked_after_failures_on_many_names() -> None:
    clock = Clock()
    t = throttle(clock)
    t.failure("a1", "198.51.100.7")
    t.failure("a2", "198.51.100.7")
    started = t.failure("a3", "198.51.100.7")
    assert started is not None and started.key == "address"
    locked = t.locked("someone-else", "198.51.100.7")
    assert locked is not None and locked.key == "address"
    assert t.locked("someone-else", "198.51.100.8") is None


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    t = throttle(clock)
    t.failure("alice", "10.0.0.1")
    t.failure("alice", "10.0.0.1")
    clock.advance(301)
    assert t.failure("alice", "10.0.0.1") is None
    assert t.locked("alice", "10.0.0.1") is None


def test_success_clears_the_name_but_not_the_address() -> None:
    clock = Clock()
    t = throttle(clock)
    t.failure("alice", "10.0.0.1")
    t.failure("alice", "10.0.0.1")
    t.success("ALICE")
    assert t.failure("alice", "10.0.0.2") is None  # the name starts again
    # the address saw 2 failures before the success: one more locks it
    assert t.failure("mallory", "10.0.0.1") is not None
    assert t.locked("alice", "10.0.0.1") is not None


def test_memory_is_bounded() -> None:
    clock = Clock()
    t = throttle(clock, max_keys=100)
    for i in range(1000):
        t.failure(f"user{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(t._entries) <= 100
    # the most recent keys are kept
    t.failure("user999", None)
    assert t.failure("user999", None) is not None
