"""SQL of backups and restores: snapshots, versions, row counts, database recreation, TimescaleDB restore mode."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection, sql


async def export_snapshot(conn: AsyncConnection) -> str:
    """Start a repeatable-read transaction and export its snapshot for pg_dump --snapshot.

    Row counts taken in the same transaction describe exactly what the dump holds.
    """
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    cur = await conn.execute("SELECT pg_export_snapshot()")
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def server_version_num(conn: AsyncConnection) -> int:
    cur = await conn.execute("SELECT current_setting('server_version_num')::int")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def installed_timescaledb(conn: AsyncConnection) -> str | None:
    cur = await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def available_timescaledb(conn: AsyncConnection) -> str | None:
    """The version CREATE EXTENSION would install on this server (what a restore gets)."""
    cur = await conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")
    row = await cur.fetchone()
    return str(row[0]) if row and row[0] else None


async def database_size(conn: AsyncConnection) -> int:
    cur = await conn.execute("SELECT pg_database_size(current_database())")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def public_tables(conn: AsyncConnection) -> list[str]:
    """Every ordinary and partitioned table of schema public (a hypertable counts its chunks)."""
    cur = await conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def row_counts(conn: AsyncConnection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in await public_tables(conn):
        cur = await conn.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(table)))
        row = await cur.fetchone()
        assert row is not None
        counts[table] = int(row[0])
    return counts


DATABASE_PRIVILEGES = frozenset({"CONNECT", "CREATE", "TEMPORARY"})


@dataclass(frozen=True)
class DatabaseShape:
    """What provisioning gave a database that a dump does not carry: owner, encoding, locale, ACL."""

    owner: str
    encoding: str
    collate: str
    ctype: str
    acl: list[tuple[str | None, str, bool]] | None  # (grantee or None for PUBLIC, privilege, grantable)


async def database_shape(admin: AsyncConnection, dbname: str) -> DatabaseShape | None:
    cur = await admin.execute(
        "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, datacl IS NULL"
        " FROM pg_database WHERE datname = %s", (dbname,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    acl: list[tuple[str | None, str, bool]] | None = None
    if not row[4]:
        cur = await admin.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,"
            " a.privilege_type, a.is_grantable"
            " FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s", (dbname,),
        )
        acl = [(r[0], str(r[1]), bool(r[2])) for r in await cur.fetchall()]
    return DatabaseShape(str(row[0]), str(row[1]), str(row[2]), str(row[3]), acl)


async def recreate_fenced(admin: AsyncConnection, dbname: str, shape: DatabaseShape) -> None:
    """Drop the database (ending every session in it) and create it empty, closed to everyone
    but its owner and superusers: services cannot write into it while it is restored."""
    db = sql.Identifier(dbname)
    await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(db))
    await admin.execute(
        sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            db, sql.Identifier(shape.owner), sql.Literal(shape.encoding), sql.Literal(shape.collate),
            sql.Literal(shape.ctype),
        )
    )
    await admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))


async def reopen(admin: AsyncConnection, dbname: str, shape: DatabaseShape) -> None:
    """Give the database back the privileges it had before the restore (lifting the fence)."""
    db = sql.Identifier(dbname)
    if shape.acl is None:  # the defaults: PUBLIC may connect and create temporary tables
        await admin.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO PUBLIC").format(db))
        return
    for grantee, privilege, grantable in shape.acl:
        if privilege not in DATABASE_PRIVILEGES:
            continue
        who = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
        option = sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")
        await admin.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
            sql.SQL(privilege), db, who, option))


async def create_timescaledb(conn: AsyncConnection) -> None:
    await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")


async def timescaledb_pre_restore(conn: AsyncConnection) -> None:
    await conn.execute("SELECT timescaledb_pre_restore()")


async def timescaledb_post_restore(conn: AsyncConnection) -> None:
    await conn.execute("SELECT timescaledb_post_restore()")


async def template_shape(admin: AsyncConnection, owner: str) -> DatabaseShape:
    """Encoding and locale of template1, for a database that no longer exists at all."""
    cur = await admin.execute(
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = 'template1'"
    )
    row = await cur.fetchone()
    assert row is not None
    return DatabaseShape(owner, str(row[0]), str(row[1]), str(row[2]), None)


async def existing_roles(admin: AsyncConnection, names: list[str]) -> set[str]:
    """Which of these roles exist on the server (a recorded grant to a vanished role cannot be given back)."""
    cur = await admin.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names,))
    return {str(r[0]) for r in await cur.fetchall()}


async def recent_event_exists(conn: AsyncConnection, event_class: str, since: datetime) -> bool:
    cur = await conn.execute("SELECT 1 FROM events WHERE class = %s AND at >= %s LIMIT 1", (event_class, since))
    return await cur.fetchone() is not None


async def appliance_created_at(conn: AsyncConnection) -> datetime | None:
    """When this appliance's config database was first migrated (a restore keeps the original date)."""
    cur = await conn.execute("SELECT min(applied_at) FROM mipo_schema_migrations")
    row = await cur.fetchone()
    return row[0] if row else None
