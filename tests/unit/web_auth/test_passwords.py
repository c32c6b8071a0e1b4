"""Password policy and argon2id hashing: what is refused and why, re-hashing when parameters change."""

from __future__ import annotations

import pytest

from hcm_soc.passwords import (
    MIN_LENGTH,
    PasswordHashing,
    WeakPassword,
    check_password,
    password_problems,
)

CHEAP = {"time_cost": 1, "memory_cost": 8192}


@pytest.mark.parametrize(
    ("password", "phrase"),
    [
        ("short-pw", "use at least 12"),
        ("nguyen.van.a", "it is the user name"),
        ("  NGUYEN.VAN.A ", "it is the user name"),
        ("aaaaaaaaaaaaaaaa", "repeats one character"),
        ("x" * 2000, "at most 1024"),
    ],
)
def test_policy_refuses_with_the_reason(password: str, phrase: str) -> None:
    with pytest.raises(WeakPassword) as err:
        check_password(password, username="nguyen.van.a")
    assert phrase in str(err.value)
    assert "nguyen.van.a" in str(err.value)
    assert err.value.exit_code == 2


def test_policy_accepts_a_passphrase() -> None:
    assert password_problems("sông Sài Gòn mùa nước nổi", username="analyst1") == []
    assert password_problems("a" * (MIN_LENGTH - 1) + "b", username="analyst1") == []
    check_password("correct horse battery", username="analyst1")


def test_hash_is_argon2id_and_salted() -> None:
    hashing = PasswordHashing(**CHEAP)
    a, b = hashing.hash("correct horse battery"), hashing.hash("correct horse battery")
    assert a.startswith("$argon2id$") and b.startswith("$argon2id$")
    assert a != b  # a fresh salt each time
    assert "correct horse" not in a


def test_verify_right_wrong_and_missing_hash() -> None:
    hashing = PasswordHashing(**CHEAP)
    stored = hashing.hash("correct horse battery")
    ok = hashing.verify(stored, "correct horse battery")
    assert ok.ok and not ok.needs_rehash
    assert not hashing.verify(stored, "correct horse batterY").ok
    # an unknown user: no hash, same work, always no — even for the dummy's own text
    assert not hashing.verify(None, "not a password: timing equaliser").ok
    assert not hashing.verify("not-a-hash", "correct horse battery").ok
    assert not hashing.verify(stored, "x" * 5000).ok


def test_stronger_parameters_ask_for_a_rehash() -> None:
    old = PasswordHashing(time_cost=1, memory_cost=8192).hash("correct horse battery")
    newer = PasswordHashing(time_cost=2, memory_cost=8192)
    result = newer.verify(old, "correct horse battery")
    assert result.ok and result.needs_rehash
    assert not newer.verify(newer.hash("correct horse battery"), "correct horse battery").needs_rehash


def test_production_defaults_are_rfc9106_low_memory() -> None:
    stored = PasswordHashing().hash("correct horse battery")
    assert "$m=65536,t=3,p=4$" in stored
