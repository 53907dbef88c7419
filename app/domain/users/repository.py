"""SQL for the users table."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row

from app.domain.users.schemas import UserRead

_COLUMNS = "id, username, role, must_change_password, disabled, created_at, updated_at"


async def list_users(conn: AsyncConnection, *, query: str | None, limit: int, offset: int) -> list[UserRead]:
    async with conn.cursor(row_factory=class_row(UserRead)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM users WHERE (%(q)s::text IS NULL OR username ILIKE '%%' || %(q)s || '%%')"
            " ORDER BY username LIMIT %(l)s OFFSET %(o)s",
            {"q": query, "l": limit, "o": offset},
        )
        return await cur.fetchall()


async def count_users(conn: AsyncConnection, *, query: str | None) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM users WHERE (%(q)s::text IS NULL OR username ILIKE '%%' || %(q)s || '%%')",
        {"q": query},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def get_user(conn: AsyncConnection, user_id: int) -> UserRead | None:
    async with conn.cursor(row_factory=class_row(UserRead)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM users WHERE id = %s", (user_id,))
        return await cur.fetchone()


async def get_credentials(conn: AsyncConnection, username: str) -> dict[str, Any] | None:
    """The row login needs, including the hash; never returned to a client."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id, username, role, password_hash, must_change_password, disabled FROM users"
            " WHERE username = %s",
            (username,),
        )
        return await cur.fetchone()


async def password_hash(conn: AsyncConnection, user_id: int) -> str | None:
    cur = await conn.execute("SELECT password_hash FROM users WHERE id = %s", (user_id,))
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def insert_user(conn: AsyncConnection, username: str, password_hash: str, role: str,
                      must_change_password: bool) -> int | None:
    """Returns the new id, or None when the username is taken."""
    cur = await conn.execute(
        "INSERT INTO users (username, password_hash, role, must_change_password) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (username) DO NOTHING RETURNING id",
        (username, password_hash, role, must_change_password),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def update_user(conn: AsyncConnection, user_id: int, changes: dict[str, Any]) -> None:
    allowed = {"role", "disabled", "password_hash", "must_change_password"}
    sets = [f"{column} = %({column})s" for column in changes if column in allowed]
    if not sets:
        return
    await conn.execute(
        f"UPDATE users SET {', '.join(sets)}, updated_at = now() WHERE id = %(id)s",
        {**changes, "id": user_id},
    )


async def delete_user(conn: AsyncConnection, user_id: int) -> None:
    await conn.execute("DELETE FROM users WHERE id = %s", (user_id,))


async def count_active_admins(conn: AsyncConnection) -> int:
    cur = await conn.execute("SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled")
    row = await cur.fetchone()
    return int(row[0]) if row else 0
