"""Retention of the results database: drop raw observation chunks past the window, prune old changes,
and compress older chunks where the TimescaleDB build allows it. Runs as the schema owner (drop_chunks needs it)."""

from __future__ import annotations

import logging

import msgspec
import psycopg

from app.config import Settings
from app.db.connect import conninfo

log = logging.getLogger("mipo.retention")

# Chunks older than this many days are compressed (community build only); recent ones stay writable.
COMPRESS_AFTER_DAYS = 7


class RetentionReport(msgspec.Struct):
    dropped_chunks: list[str]
    changes_deleted: int
    compression: str  # "skipped (apache license)", "compressed N chunks", …

    def lines(self) -> list[str]:
        dropped = ", ".join(self.dropped_chunks) if self.dropped_chunks else "none"
        return [f"observations: dropped {len(self.dropped_chunks)} chunk(s): {dropped}",
                f"port changes: deleted {self.changes_deleted} older than the changes window",
                f"compression: {self.compression}"]


def _compress(conn: psycopg.Connection) -> str:
    row = conn.execute("SHOW timescaledb.license").fetchone()
    license_ = str(row[0]) if row else "unknown"
    if license_ != "timescale":
        message = (f"skipped: TimescaleDB license is {license_!r}; compression needs the community "
                   "('timescale') build")
        log.info("compression of older observation chunks %s", message)
        return message
    enabled = conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = 'observations'"
    ).fetchone()
    if not (enabled and enabled[0]):
        conn.execute("ALTER TABLE observations SET (timescaledb.compress,"
                     " timescaledb.compress_segmentby = 'scanner_id', timescaledb.compress_orderby = 'ip, port, time')")
    rows = conn.execute(
        "SELECT compress_chunk(c, if_not_compressed => true)"
        " FROM show_chunks('observations', older_than => now() - make_interval(days => %s)) c",
        (COMPRESS_AFTER_DAYS,),
    ).fetchall()
    return f"compressed chunks older than {COMPRESS_AFTER_DAYS} days ({len(rows)} considered)"


def run_retention(settings: Settings) -> RetentionReport:
    """Apply the configured windows once; each step in its own transaction, as the results schema owner."""
    keep = settings.retention
    with psycopg.connect(conninfo(settings, "results", as_owner=True), autocommit=True) as conn:
        with conn.transaction():
            dropped = [str(r[0]) for r in conn.execute(
                "SELECT drop_chunks('observations', older_than => now() - make_interval(days => %s))",
                (keep.observations_days,),
            ).fetchall()]
        with conn.transaction():
            cur = conn.execute("DELETE FROM port_changes WHERE detected_at < now() - make_interval(days => %s)",
                               (keep.changes_days,))
            deleted = cur.rowcount
        with conn.transaction():
            compression = _compress(conn)
    for name in dropped:
        log.info("dropped observation chunk %s (older than %d days)", name, keep.observations_days)
    return RetentionReport(dropped_chunks=dropped, changes_deleted=deleted, compression=compression)
