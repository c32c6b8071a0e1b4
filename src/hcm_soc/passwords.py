"""Password hashing (argon2id) and the password policy, for the user store, the CLI and the console.

Hashes are argon2id in PHC string form (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), so the
parameters travel with each hash: raising them later needs no migration, because a hash made
with older parameters is re-made at the next successful login (`PasswordHashing.verify` says
when). It sits outside `web` and `store` (argon2-cffi only) because both use it: the user store
hashes and verifies, the CLI and the console check the policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import DEFAULT_MEMORY_COST, DEFAULT_TIME_COST, PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hcm_soc.errors import HcmSocError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 takes any length; a bound keeps a login form from being a CPU sink


class WeakPassword(HcmSocError):
    """A new password does not meet the policy; the message says which rule and what to do."""

    exit_code = 2


def password_problems(password: str, *, username: str) -> list[str]:
    """Every rule of the policy the password breaks (empty: acceptable)."""
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"it has {len(password)} characters; use at least {MIN_LENGTH}")
    if len(password) > MAX_LENGTH:
        problems.append(f"it has {len(password)} characters; use at most {MAX_LENGTH}")
    if password.strip().casefold() == username.casefold():
        problems.append("it is the user name")
    elif password and len(set(password)) == 1:
        problems.append("it repeats one character")
    return problems


def check_password(password: str, *, username: str) -> None:
    """Raise `WeakPassword` naming every broken rule (≥ 12 characters, not the user name)."""
    problems = password_problems(password, username=username)
    if problems:
        raise WeakPassword(
            f"password for {username!r} refused: {'; '.join(problems)}. "
            "Choose a passphrase of several words, e.g. four unrelated words."
        )


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    needs_rehash: bool = False


class PasswordHashing:
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile: t=3, m=64 MiB, p=4).

    Tests pass cheaper parameters; production keeps the defaults.
    """

    def __init__(self, *, time_cost: int | None = None, memory_cost: int | None = None) -> None:
        self._hasher = PasswordHasher(  # argon2id is its default variant
            time_cost=time_cost or DEFAULT_TIME_COST,
            memory_cost=memory_cost or DEFAULT_MEMORY_COST,
        )
        # verifying against this when the user does not exist costs what a real check costs, so
        # the answer time does not tell whether a user name exists
        self._dummy = self._hasher.hash("not a password: timing equaliser")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> Verification:
        """Check `password`; with no stored hash, spend the same time and answer no."""
        if len(password) > MAX_LENGTH:
            return Verification(False)
        target = stored_hash or self._dummy
        try:
            self._hasher.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return Verification(False)
        if stored_hash is None:
            return Verification(False)
        return Verification(True, needs_rehash=self._hasher.check_needs_rehash(stored_hash))
