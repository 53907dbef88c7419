"""Argon2id password hashing and the password policy."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.errors import Invalid

MIN_LENGTH = 12
MAX_LENGTH = 1024
# argon2-cffi's defaults are RFC 9106's second recommendation (Argon2id, 64 MiB, t=3).
_HASHER = PasswordHasher()
# Verified when the username is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = _HASHER.hash("mipo-no-such-user-dummy-password")


def check_policy(password: str, *, field: str = "password", username: str = "") -> None:
    """Refuse passwords that are too short, too long or equal to the username."""
    if len(password) < MIN_LENGTH:
        raise Invalid(f"the password must have at least {MIN_LENGTH} characters", reason="weak_password",
                      field=field)
    if len(password) > MAX_LENGTH:
        raise Invalid(f"the password must have at most {MAX_LENGTH} characters", reason="invalid", field=field)
    if username and password.lower() == username.lower():
        raise Invalid("the password must differ from the username", reason="weak_password", field=field)


def hash_password_sync(password: str) -> str:
    return _HASHER.hash(password)


async def hash_password(password: str) -> str:
    # Hashing takes tens of milliseconds of CPU: keep it off the event loop.
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`; `stored=None` (unknown user) always False, same cost."""
    return await asyncio.to_thread(_verify, stored, password)
