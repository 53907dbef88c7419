"""Helpers for the backup tests: settings with age keys and a signing key, table fingerprints, data to back up."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pyrage
from psycopg import sql

from app.config import Settings
from app.domain.backups.signing import generate_signing_key_pem
from tests.support.postgres import SUPERUSER_PASSWORD, PostgresServer

SIGNING_KEY = "backup-signing-key"
API_TOKEN = "backup-api-token"
ADMIN_PASSWORD = "postgres-superuser-password"


@dataclass
class BackupKit:
    """What an operator holds (identity) and what the backup host holds (recipient, signing key, token)."""

    identity: str
    recipient: str
    directory: Path
    token: str
    overrides: dict[str, object]


def tool_prefix(server: PostgresServer, directory: Path) -> list[str]:
    # The host has PostgreSQL 15 tools only: run the image's 17 tools, seeing the backup directory.
    return ["systemd-nspawn", "-q", "-D", str(server.image), "--register=no", "--keep-unit",
            "--volatile=overlay", "--pipe", f"--bind={directory}", "--"]


def make_kit(server: PostgresServer, credentials: Path, tmp: Path, **backup: object) -> BackupKit:
    identity = pyrage.x25519.Identity.generate()
    directory = tmp / "backups"
    if not (credentials / SIGNING_KEY).exists():
        (credentials / SIGNING_KEY).write_bytes(generate_signing_key_pem())
        (credentials / API_TOKEN).write_text(secrets.token_urlsafe(32) + "\n")
        (credentials / ADMIN_PASSWORD).write_text(SUPERUSER_PASSWORD + "\n")
    settings: dict[str, object] = {
        "recipient": str(identity.to_public()),
        "directory": str(directory),
        "tool_prefix": tool_prefix(server, directory),
        "signing_key_credential": SIGNING_KEY,
        "api_token_credential": API_TOKEN,
        "admin_user": "postgres",
        "admin_password_credential": ADMIN_PASSWORD,
        **backup,
    }
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = (credentials / API_TOKEN).read_text().strip()
    return BackupKit(str(identity), str(identity.to_public()), directory, token, {"backup": settings})


def admin_dsn(server: PostgresServer, dbname: str) -> str:
    return server.dsn(dbname)


def table_fingerprints(server: PostgresServer, dbname: str) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent checksum of every table of schema public."""
    out: dict[str, tuple[int, str]] = {}
    with psycopg.connect(admin_dsn(server, dbname)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1").fetchall()]
        for table in tables:
            row = conn.execute(sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '')"
                " FROM public.{} t").format(sql.Identifier(table))).fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
        for seq, last in conn.execute(
                "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'").fetchall():
            out[f"sequence:{seq}"] = (int(last or 0), "")
    return out


def set_aside_restore_event(server: PostgresServer, config_db: str, backup_id: str,
                            before: dict[str, tuple[int, str]]) -> None:
    """A restore records its own `backup_restored` event in the restored config database: check it names the
    backup, then remove it and set the events sequence back, so the rest compares exactly with `before`
    (the config database's fingerprints at backup time)."""
    with psycopg.connect(server.dsn(config_db), autocommit=True) as conn:
        own = conn.execute("DELETE FROM events WHERE class = 'backup_restored' RETURNING details->>'backup_id'"
                           ).fetchall()
        last_id = before["sequence:events_id_seq"][0]
        if last_id > 0:
            conn.execute("SELECT setval('events_id_seq', %s)", (last_id,))
        else:  # never used at backup time
            conn.execute("SELECT setval('events_id_seq', 1, false)")
    assert own == [(backup_id,)], own


def database_identity(server: PostgresServer, names: dict[str, str]) -> dict[str, int]:
    """pg_database oids: a database that was dropped and recreated gets a new one."""
    with psycopg.connect(server.dsn()) as conn:
        return {k: int(conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (v,)).fetchone()[0])  # type: ignore[index]
                for k, v in names.items()}


def fill_jobs_and_results(owner_dsn: dict[str, str], runs: int = 3) -> None:
    """Runs, jobs, attempts, observations over several chunks, coverage, changes, summaries.

    Inserted as the schema owner: building them through the dispatcher and ingest would need
    scanners actually scanning; the restore does not care how the rows got there.
    """
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with psycopg.connect(owner_dsn["jobs"]) as jobs, psycopg.connect(owner_dsn["results"]) as results:
        for r in range(runs):
            run_id = jobs.execute(
                "INSERT INTO scan_runs (template_id, template_name, status, mode, total_cost, done_cost)"
                " VALUES (1, 'lab', 'completed', 'mirror', 512, 512) RETURNING id").fetchone()[0]  # type: ignore[index]
            job_id = jobs.execute(
                "INSERT INTO jobs (run_id, scanner_id, status, targets, ports, cost, done_cost, attempts)"
                " VALUES (%s, 1, 'completed', '[[\"198.18.0.0\", \"198.18.0.255\"]]', '22,80', 512, 512, 1)"
                " RETURNING id", (run_id,)).fetchone()[0]  # type: ignore[index]
            jobs.execute("INSERT INTO job_attempts (job_id, attempt, scanner_id, lease_token, outcome)"
                         " VALUES (%s, 1, 1, 1, 'completed')", (job_id,))
            at = start + timedelta(days=r * 2)
            with results.cursor().copy(
                    "COPY observations (time, run_id, job_id, scanner_id, ip, port, state, service, banner, rtt_ms)"
                    " FROM STDIN") as copy:
                for host in range(1, 120):
                    for port in (22, 80):
                        copy.write_row((at + timedelta(seconds=host), run_id, job_id, 1, f"198.18.0.{host}", port,
                                        "open", "ssh" if port == 22 else "http", f"banner {r} {host} é", 0.5))
            results.execute("INSERT INTO ingested_batches (job_id, batch_seq, lease_token, scanner_id, rows)"
                            " VALUES (%s, 1, 1, 1, 238)", (job_id,))
            results.execute("INSERT INTO run_coverage (run_id, job_id, scanner_id, targets, ports, complete)"
                            " VALUES (%s, %s, 1, '[[\"198.18.0.0\", \"198.18.0.255\"]]', '22,80', true)",
                            (run_id, job_id))
            results.execute("INSERT INTO port_changes (run_id, scanner_id, ip, port, change, after)"
                            " VALUES (%s, 1, '198.18.0.7', 80, 'opened', '{\"service\": \"http\"}')", (run_id,))
            results.execute("INSERT INTO run_summaries (run_id, scanner_id, open_ports, hosts_up, changes)"
                            " VALUES (%s, 1, 238, 119, 1)", (run_id,))


def settings_db_names(settings: Settings) -> dict[str, str]:
    return {k: getattr(settings.databases, k).name for k in ("config", "jobs", "results")}
