"""Request-scoped database transactions: one per database a handler asks for, committed on success."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from litestar.di import NamedDependency, Provide
from psycopg import AsyncConnection

from app.config import DatabaseName, Settings
from app.db.connect import DATABASE_NAMES, Pools


def _transaction(which: DatabaseName) -> Callable[[Pools], AsyncIterator[AsyncConnection]]:
    async def provide(pools: NamedDependency[Pools]) -> AsyncIterator[AsyncConnection]:
        # Exceptions raised by the handler are thrown in here: the transaction rolls back.
        async with pools.get(which).connection() as conn, conn.transaction():
            yield conn

    provide.__name__ = f"provide_{which}_conn"
    return provide


# Handlers declare `config_conn: ConfigConn` (or `jobs_conn: JobsConn`, `results_conn: ResultsConn`) and get a
# transaction. Litestar injects by parameter name; the marker says so explicitly (inferred injection ends in 3.0).
ConfigConn = NamedDependency[AsyncConnection]
JobsConn = NamedDependency[AsyncConnection]
ResultsConn = NamedDependency[AsyncConnection]
# The role's settings, provided app-wide by build_role_app: `settings: AppSettings`.
AppSettings = NamedDependency[Settings]

TRANSACTION_DEPENDENCIES = {
    f"{name}_conn": Provide(_transaction(name))
    for name in DATABASE_NAMES
}
