"""SQL for sessions and login attempts; only SHA-256 digests of session ids are stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row


async def insert(conn: AsyncConnection, id_hash: bytes, user_id: int, csrf_token: str, expires_at: datetime,
                 client_address: str | None, user_agent: str | None) -> None:
    await conn.execute(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, expires_at, client_address, user_agent)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (id_hash, user_id, csrf_token, expires_at, client_address, user_agent),
    )


async def find_live(conn: AsyncConnection, id_hash: bytes, idle_minutes: int, *,
                    touch: bool = True) -> dict[str, Any] | None:
    """The session and its user when neither timeout has passed and the user is enabled; touches it unless
    `touch` is false (an automatic refresh is not the user being active)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "UPDATE sessions s SET last_seen_at = CASE WHEN %(touch)s THEN now() ELSE s.last_seen_at END FROM users u"
            " WHERE s.id_hash = %(h)s AND u.id = s.user_id AND NOT u.disabled"
            " AND s.expires_at > now() AND s.last_seen_at > now() - make_interval(mins => %(idle)s)"
            " RETURNING u.id AS user_id, u.username, u.role, u.must_change_password, s.csrf_token,"
            " s.expires_at",
            {"h": id_hash, "idle": idle_minutes, "touch": touch},
        )
        return await cur.fetchone()


async def delete(conn: AsyncConnection, id_hash: bytes) -> None:
    await conn.execute("DELETE FROM sessions WHERE id_hash = %s", (id_hash,))


async def delete_for_user(conn: AsyncConnection, user_id: int, *, except_hash: bytes | None = None) -> None:
    await conn.execute(
        "DELETE FROM sessions WHERE user_id = %s AND (%s::bytea IS NULL OR id_hash <> %s::bytea)",
        (user_id, except_hash, except_hash),
    )


async def delete_expired(conn: AsyncConnection, idle_minutes: int, attempts_days: int = 30) -> None:
    """Dead sessions go at once; login attempts are kept long enough to investigate, then dropped."""
    await conn.execute(
        "DELETE FROM sessions WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(mins => %s)",
        (idle_minutes,),
    )
    await conn.execute("DELETE FROM login_attempts WHERE at < now() - make_interval(days => %s)", (attempts_days,))


async def record_attempt(conn: AsyncConnection, username: str, client_address: str | None, success: bool) -> None:
    await conn.execute(
        "INSERT INTO login_attempts (username, client_address, success) VALUES (%s, %s, %s)",
        (username, client_address, success),
    )


async def recent_failures(conn: AsyncConnection, username: str, client_address: str | None,
                          window_minutes: int) -> tuple[int, int]:
    """Failures in the window: for the account since its last success, and from the address."""
    cur = await conn.execute(
        "SELECT"
        " (SELECT count(*) FROM login_attempts a WHERE a.username = %(u)s AND NOT a.success"
        "   AND a.at > now() - make_interval(mins => %(w)s)"
        "   AND a.at > coalesce((SELECT max(at) FROM login_attempts b WHERE b.username = %(u)s AND b.success),"
        "                       '-infinity')),"
        " (SELECT count(*) FROM login_attempts a WHERE a.client_address = %(a)s::inet AND NOT a.success"
        "   AND a.at > now() - make_interval(mins => %(w)s))",
        {"u": username, "a": client_address, "w": window_minutes},
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
