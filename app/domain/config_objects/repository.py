"""SQL shared by the configuration objects: rows by id, inserts, updates, deletes and membership lists.

Table and column names come from the services' fixed lists (never from a request); values are always bound.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from app.errors import Conflict, Invalid


async def rows(conn: AsyncConnection, query: str, params: Any = None) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def one(conn: AsyncConnection, query: str, params: Any = None) -> dict[str, Any] | None:
    found = await rows(conn, query, params)
    return found[0] if found else None


def _integrity(exc: psycopg.IntegrityError, noun: str) -> Exception:
    """Unique and foreign-key violations become problems a person can act on."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return Conflict(f"a {noun} with this name already exists", reason="duplicate", field="name")
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return Invalid(f"{noun}: a referenced object does not exist ({exc.diag.message_detail})",
                       reason="unknown_reference")
    return Invalid(f"{noun}: {exc.diag.message_primary}", reason="invalid")


async def insert(conn: AsyncConnection, table: str, values: dict[str, Any], noun: str) -> int:
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder(k) for k in values))
    try:
        async with conn.transaction():  # a savepoint: the request transaction survives the refusal
            cur = await conn.execute(query, values)
    except psycopg.IntegrityError as exc:
        raise _integrity(exc, noun) from None
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def update(conn: AsyncConnection, table: str, row_id: int, values: dict[str, Any], noun: str,
                 touch: bool = False) -> None:
    if not values and not touch:
        return
    sets: list[sql.Composable] = [sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values]
    if touch:
        sets.append(sql.SQL("updated_at = now()"))
    query = sql.SQL("UPDATE {} SET {} WHERE id = %(id)s").format(sql.Identifier(table), sql.SQL(", ").join(sets))
    try:
        async with conn.transaction():
            await conn.execute(query, {**values, "id": row_id})
    except psycopg.IntegrityError as exc:
        raise _integrity(exc, noun) from None


async def delete(conn: AsyncConnection, table: str, row_id: int, noun: str) -> None:
    try:
        async with conn.transaction():
            await conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(table)), (row_id,))
    except psycopg.IntegrityError as exc:
        raise Conflict(f"this {noun} is in use by other objects; remove those references first",
                       reason="in_use") from exc


async def set_members(conn: AsyncConnection, table: str, owner_column: str, owner_id: int, member_column: str,
                      member_ids: list[int], noun: str) -> None:
    """Replace a membership list (subnet group members, scanner group members)."""
    await conn.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(
        sql.Identifier(table), sql.Identifier(owner_column)), (owner_id,))
    if not member_ids:
        return
    try:
        async with conn.transaction():
            async with conn.cursor() as cur:
                await cur.executemany(
                    sql.SQL("INSERT INTO {} ({}, {}) VALUES (%s, %s)").format(
                        sql.Identifier(table), sql.Identifier(owner_column), sql.Identifier(member_column)),
                    [(owner_id, m) for m in sorted(set(member_ids))])
    except psycopg.errors.ForeignKeyViolation:
        raise Invalid(f"{noun}: one of the listed {member_column.removesuffix('_id')}s does not exist",
                      reason="unknown_reference", field=member_column.removesuffix("_id") + "_ids") from None


async def member_ids(conn: AsyncConnection, table: str, owner_column: str, owner_id: int,
                     member_column: str) -> list[int]:
    cur = await conn.execute(sql.SQL("SELECT {} FROM {} WHERE {} = %s ORDER BY 1").format(
        sql.Identifier(member_column), sql.Identifier(table), sql.Identifier(owner_column)), (owner_id,))
    return [r[0] for r in await cur.fetchall()]


async def names_using(conn: AsyncConnection, query: str, params: Any) -> list[str]:
    """Names of the objects that reference this one (for an "in use" refusal that says by what)."""
    cur = await conn.execute(query, params)
    return [str(r[0]) for r in await cur.fetchall()]
