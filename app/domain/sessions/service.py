"""Log in, resolve and end sessions; throttle guessing per account and per client address."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec
from psycopg import AsyncConnection

from app.config import Session as SessionSettings
from app.domain.sessions import repository as repo
from app.domain.users import repository as users
from app.domain.users.passwords import verify_password


class SessionUser(msgspec.Struct, frozen=True):
    """Who is logged in on a request; `id_hash` identifies the session row."""

    user_id: int
    username: str
    role: str
    must_change_password: bool
    csrf_token: str
    id_hash: bytes


class LoginResult(msgspec.Struct):
    outcome: Literal["ok", "bad_credentials", "throttled", "disabled"]
    token: str = ""
    user: SessionUser | None = None


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def login(conn: AsyncConnection, settings: SessionSettings, username: str, password: str,
                client_address: str | None, user_agent: str | None, *, previous_token: str = "") -> LoginResult:
    """Never raises for a refused login: the caller commits so the failed attempt is counted.

    A session the browser still held (`previous_token`) ends when a new one starts."""
    username = username[:64]
    account_failures, address_failures = await repo.recent_failures(
        conn, username, client_address, settings.login_window_minutes)
    if (account_failures >= settings.max_failures_per_account
            or address_failures >= settings.max_failures_per_address):
        # Not recorded: the lock ends one window after the last counted failure, whatever is tried meanwhile.
        return LoginResult("throttled")
    row = await users.get_credentials(conn, username)
    ok = await verify_password(row["password_hash"] if row else None, password)
    await repo.record_attempt(conn, username, client_address, ok)
    if not ok or row is None:
        return LoginResult("bad_credentials")
    if row["disabled"]:
        return LoginResult("disabled")
    # A fresh random id at every login: a session id planted before login is worthless.
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(hours=settings.absolute_hours)
    await repo.delete_expired(conn, settings.idle_minutes)
    if previous_token:
        await repo.delete(conn, digest(previous_token))
    await repo.insert(conn, digest(token), row["id"], csrf, expires, client_address,
                      (user_agent or "")[:256] or None)
    user = SessionUser(row["id"], row["username"], row["role"], row["must_change_password"], csrf, digest(token))
    return LoginResult("ok", token=token, user=user)


async def resolve(conn: AsyncConnection, settings: SessionSettings, token: str, *,
                  activity: bool = True) -> SessionUser | None:
    """The live session of this cookie value; `activity=False` (a page refreshing itself) keeps the idle timer."""
    if not token or len(token) > 128:
        return None
    id_hash = digest(token)
    row = await repo.find_live(conn, id_hash, settings.idle_minutes, touch=activity)
    if row is None:
        return None
    return SessionUser(row["user_id"], row["username"], row["role"], row["must_change_password"],
                       row["csrf_token"], id_hash)


async def logout(conn: AsyncConnection, id_hash: bytes) -> None:
    await repo.delete(conn, id_hash)
