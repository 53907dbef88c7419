"""Secrets handed to scanners: API keys `mipo_<key_id>_<secret>` and enrolment tokens, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "mipo_"
TOKEN_PREFIX = "mipoenrol_"  # noqa: S105 (a public prefix, not a secret)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_key() -> tuple[str, str]:
    """(key_id, full key): a public lookup id and 256 random bits; only digest(full key) is stored."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def split_key(presented: str) -> str | None:
    """The key_id of a well-formed key, else None (no database lookup for garbage)."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX):].partition("_")
    if not sep or len(key_id) != 16 or len(secret) < 40:
        return None
    return key_id


def key_matches(presented: str, stored_digest: bytes) -> bool:
    return hmac.compare_digest(digest(presented), stored_digest)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)
