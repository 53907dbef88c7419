"""Connection strings and pools for the config, jobs and results databases.

Pooled connections are in autocommit mode: a single statement costs one round trip (no BEGIN/COMMIT), and
work of several statements is wrapped in `conn.transaction()`, as every caller does.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from app.config import Database, DatabaseName, Settings

DATABASE_NAMES: tuple[DatabaseName, ...] = ("config", "jobs", "results")


def conninfo(settings: Settings, which: DatabaseName, *, as_owner: bool = False) -> str:
    """libpq connection string for one database, as the service role or as the schema owner."""
    db: Database = getattr(settings.databases, which)
    user = db.owner if as_owner else db.user
    credential = db.owner_password_credential if as_owner else db.password_credential
    params: dict[str, str | int] = {
        "host": db.host,
        "port": db.port,
        "dbname": db.name,
        "user": user,
        "sslmode": db.sslmode,
        "application_name": f"mipo-{which}",
        "connect_timeout": 5,
    }
    if credential:
        params["password"] = settings.credential(credential)
    if db.sslrootcert:
        params["sslrootcert"] = db.sslrootcert
    return make_conninfo("", **params)


@dataclass
class Pools:
    """One async pool per database this process uses; roles open only the ones they need."""

    config: AsyncConnectionPool | None = None
    jobs: AsyncConnectionPool | None = None
    results: AsyncConnectionPool | None = None

    def opened(self) -> dict[str, AsyncConnectionPool]:
        return {n: p for n in DATABASE_NAMES if (p := getattr(self, n)) is not None}

    def get(self, which: DatabaseName) -> AsyncConnectionPool:
        pool = getattr(self, which)
        if pool is None:
            raise RuntimeError(f"this role has no connection to the {which} database")
        return pool

    async def close(self) -> None:
        for pool in self.opened().values():
            await pool.close()


async def check_idle_connection(conn: psycopg.AsyncConnection) -> None:
    """The pool's check on checkout, without a round trip in the usual case.

    An idle connection has nothing to read. When the server ended it (restart, `pg_terminate_backend`) its
    socket holds the FATAL message or EOF: only then is it tested with a real query (which fails, and the
    pool replaces the connection). A healthy connection thus costs one `poll()`, not a round trip per request.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        await AsyncConnectionPool.check_connection(conn)


async def open_pools(settings: Settings, which: tuple[DatabaseName, ...]) -> Pools:
    """Open pools without waiting for the databases: a role starts (and reports 503) while they are down."""
    pools = Pools()
    for name in which:
        db: Database = getattr(settings.databases, name)
        pool = AsyncConnectionPool(
            conninfo(settings, name),
            min_size=db.pool_min,
            max_size=db.pool_max,
            open=False,
            name=f"mipo-{name}",
            timeout=10,
            reconnect_timeout=0,  # keep trying forever: a database restart must not kill the role
            check=check_idle_connection,
            kwargs={"autocommit": True},
        )
        await pool.open(wait=False)
        setattr(pools, name, pool)
    return pools


async def ping(pool: AsyncConnectionPool, timeout: float = 2.0) -> bool:
    """True when a connection from the pool answers a trivial query within the timeout.

    Tried twice: a connection that broke since its checkout is discarded by the pool, and the second try
    gets a fresh one, so a database that is up again is reported up.
    """
    deadline = time.monotonic() + timeout
    for _ in range(2):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            async with pool.connection(timeout=remaining) as conn:
                await conn.execute("SELECT 1")
            return True
        except (psycopg.Error, TimeoutError, OSError):
            continue
    return False
