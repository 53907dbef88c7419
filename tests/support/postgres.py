"""A real PostgreSQL 17 + TimescaleDB server for tests, run from the Debian 13 image in systemd-nspawn."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from appliance.image import build_image
from tests.support.waiting import wait_until

PG_BIN = "/usr/lib/postgresql/17/bin"
SUPERUSER_PASSWORD = "mipo-test-superuser"
SERVICE_ROLES = ("mipo_manager", "mipo_ingest", "mipo_dispatcher", "mipo_backup")
OWNER_ROLE = "mipo_owner"
DATABASES = {"config": "mipo_config", "jobs": "mipo_jobs", "results": "mipo_results"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_ids(image: Path) -> tuple[int, int]:
    """uid and gid of the image's postgres user (they differ between image builds)."""
    for line in (image / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "postgres":
            return int(fields[2]), int(fields[3])
    raise RuntimeError(f"{image} has no postgres user")


def role_password(role: str) -> str:
    return f"test-{role}-password"


@dataclass
class PostgresServer:
    """One cluster on a loopback port; `stop()` and `start()` keep its data (for outage tests)."""

    image: Path
    datadir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.datadir.parent / "postgres.log"

    def _nspawn(self, *cmd: str) -> list[str]:
        return [
            "systemd-nspawn", "-q", "-D", str(self.image), "--register=no", "--keep-unit",
            "--volatile=overlay", f"--bind={self.datadir.parent}:/pg", "--user=postgres", *cmd,
        ]

    def init(self) -> None:
        pwfile = self.datadir.parent / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        uid, gid = postgres_ids(self.image)
        os.chown(self.datadir.parent, uid, gid)
        os.chmod(pwfile, 0o600)
        os.chown(pwfile, uid, gid)
        subprocess.run(
            self._nspawn(f"{PG_BIN}/initdb", "-D", "/pg/data", "-U", "postgres", "--pwfile=/pg/pwfile",
                         "-A", "scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )

    def start(self) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            self._nspawn(
                f"{PG_BIN}/postgres", "-D", "/pg/data", "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=/tmp",
                "-c", "shared_preload_libraries=timescaledb", "-c", "timescaledb.telemetry_level=off",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=300", "-c", "shared_buffers=256MB",
            ),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        process = self.process

        def accepting() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"postgres exited with {process.returncode}; see {self.log}")
            with contextlib.suppress(psycopg.OperationalError), psycopg.connect(self.dsn(), connect_timeout=1):
                return True
            return False

        wait_until(accepting, 60, "postgres accepting connections", detail=lambda: f"see {self.log}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, which is the container's PID 1)."""
        if self.process is None or self.process.poll() is not None:
            return
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
                                  capture_output=True, text=True, check=False).stdout.split()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str = SUPERUSER_PASSWORD) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} password={password} sslmode=disable"

    def version(self) -> str:
        with psycopg.connect(self.dsn()) as conn:
            row = conn.execute("SELECT version()").fetchone()
            assert row is not None
            return str(row[0])

    def create_appliance_databases(self, prefix: str = "") -> dict[str, str]:
        """Roles and the three databases as provisioning creates them; returns name → database name."""
        names = {k: f"{prefix}{v}" for k, v in DATABASES.items()}
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            for role in (OWNER_ROLE, *SERVICE_ROLES):
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                if not exists:
                    conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role_password(role)}'")
            for kind, db in names.items():
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{db}" OWNER {OWNER_ROLE}')
                if kind == "results":
                    # CREATE EXTENSION timescaledb needs a superuser; provisioning does the same.
                    with psycopg.connect(self.dsn(db), autocommit=True) as dbconn:
                        dbconn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                for role in SERVICE_ROLES:
                    conn.execute(f'GRANT CONNECT ON DATABASE "{db}" TO {role}')
        return names


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    image = build_image()
    with tempfile.TemporaryDirectory(prefix="mipo-pg-") as tmp:
        server = PostgresServer(image=image, datadir=Path(tmp) / "data", port=free_port())
        server.init()
        server.start()
        try:
            yield server
        finally:
            server.stop()
