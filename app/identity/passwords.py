"""Passwords: argon2id through argon2-cffi, never stored or logged in clear.

argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): ~0.2 s of one core per hash on
this two-core machine, where RFC 9106's "low memory" profile (64 MiB, 3 passes, 4 lanes) took 1.7 s and
every core, a sign-in page's worth of denial of service. Hashes carry their parameters, so raising these
later rehashes each password at its next sign-in. Page handlers hash and verify in a worker thread
(anyio.to_thread, two at a time: app/identity/people.py), never on the event loop.
"""

from __future__ import annotations

import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
MIN_LENGTH = 10
MAX_LENGTH = 1024  # argon2 takes any length; a bound keeps a megabyte "password" from costing a request


class WeakPassword(ValueError):
    pass


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_strength(password)
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


@cache
def _unknown_person_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def spend_verification_time(password: str) -> None:
    """Verify against a throwaway hash when the email names nobody: an unknown email then takes as long
    as a wrong password, and the timing does not tell who has an account."""
    verify_password(_unknown_person_hash(), password)


def one_time_password() -> str:
    """A password handed to a new person once (on a page or a terminal): 16 characters, ~95 bits."""
    return secrets.token_urlsafe(12)
