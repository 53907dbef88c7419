"""Shared helpers for the scanner/ingest integration tests (no tests here): a real ingest process on
loopback, scanners and jobs arranged as the manager and dispatcher would, and the real agent zipapp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.config import Settings
from app.db.connect import conninfo
from app.db.migrate import migrate_all
from app.domain.scanners import service as scanner_service
from app.domain.scanners.schemas import Enrolment, ScannerCreate, TokenCreate
from tests.support.postgres import PostgresServer, free_port
from tests.support.services import stop_process, write_toml
from tests.support.settings import make_settings, settings_document, write_credentials
from tests.support.waiting import wait_until

FAST_SCANNER = {"heartbeat_interval": 1.0, "offline_after": 3.0, "claim_long_poll": 5.0, "lease_seconds": 30.0}


@dataclass
class IngestEnv:
    url: str
    owner: Settings
    tmp: Path
    log: Path
    process: IngestProcess

    def dsn(self, which: str) -> str:
        return conninfo(self.owner, which, as_owner=True)  # type: ignore[arg-type]

    def query(self, which: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn(which), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def new_scanner(self, name: str | None = None, bind_network: str | None = None) -> Enrolment:
        data = ScannerCreate(name=name or f"scn-{secrets.token_hex(4)}", bind_network=bind_network)
        return self._with_config(lambda c: scanner_service.create_scanner(c, self.owner, "test", data))

    def new_token(self, scanner_id: int, ttl: float | None = None, bind_network: str | None = None) -> Enrolment:
        data = TokenCreate(ttl_seconds=ttl, bind_network=bind_network)
        return self._with_config(lambda c: scanner_service.issue_token(c, self.owner, "test", scanner_id, data))

    def _with_config(self, fn: Callable[[psycopg.AsyncConnection], Any]) -> Any:
        async def go() -> Any:
            async with await psycopg.AsyncConnection.connect(self.dsn("config")) as conn, conn.transaction():
                return await fn(conn)
        return asyncio.run(go())

    def enrol(self, token: str, host_id: str | None = None) -> httpx.Response:
        return httpx.post(self.url + "/scanner/v1/enrol", timeout=30,
                          json={"token": token, "host_id": host_id or secrets.token_hex(32), "hostname": "t"})

    def enrolled_key(self, name: str | None = None) -> tuple[int, str]:
        enrolment = self.new_scanner(name)
        answer = self.enrol(enrolment.token)
        assert answer.status_code == 200, answer.text
        return enrolment.scanner.id, answer.json()["key"]

    def new_job(self, scanner_id: int, targets: list[list[str]], ports: str, options: dict[str, Any] | None = None,
                cost: int = 1) -> tuple[int, int]:
        """(run_id, job_id) of a pending job, created and announced as the dispatcher does."""
        with psycopg.connect(self.dsn("jobs"), autocommit=True) as conn:
            run = conn.execute("INSERT INTO scan_runs (template_id, template_name, mode, total_cost)"
                               " VALUES (1, 'test', 'mirror', %s) RETURNING id", (cost,)).fetchone()
            assert run is not None
            job = conn.execute(
                "INSERT INTO jobs (run_id, scanner_id, targets, ports, options, cost) VALUES (%s, %s, %s, %s, %s, %s)"
                " RETURNING id",
                (run[0], scanner_id, json.dumps(targets), ports,
                 json.dumps(options or {"rate": 20000, "timeout_ms": 500, "banner": True, "tls": True}), cost),
            ).fetchone()
            assert job is not None
            conn.execute("SELECT pg_notify('mipo_jobs', %s)", (str(scanner_id),))
        return int(run[0]), int(job[0])

    def wait_job(self, job_id: int, statuses: tuple[str, ...] = ("completed", "failed"),
                 timeout: float = 120) -> tuple[Any, ...]:
        def rows() -> list[tuple[Any, ...]]:
            return self.query("jobs", "SELECT status, error_class, last_error, lease_token FROM jobs WHERE id = %s",
                              (job_id,))

        def ended() -> tuple[Any, ...] | None:
            found = rows()
            return found[0] if found and found[0][0] in statuses else None

        return wait_until(ended, timeout, f"job {job_id} {statuses}", detail=lambda: f"{rows()}; see {self.log}")


class IngestProcess:
    """`python -m app serve ingest` on a fixed loopback port, so it can be killed and restarted in place."""

    def __init__(self, config: Path, creds: Path, log: Path) -> None:
        self.port = free_port()
        self.config = config.with_name(f"{config.stem}-ingest-{self.port}.toml")
        self.config.write_text(config.read_text() + f'\n[ingest]\nlisten = "127.0.0.1:{self.port}"\n')
        self.creds, self.log = creds, log
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {"CREDENTIALS_DIRECTORY": str(self.creds), "PATH": "/usr/bin:/bin"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "app", "--config", str(self.config), "serve",
                                          "ingest"], stdout=out, stderr=subprocess.STDOUT, env=env)
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest exited with {proc.returncode}; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(self.url + "/health", timeout=1).status_code == 200
            return False

        wait_until(healthy, 30, "ingest healthy", detail=lambda: f"see {self.log}")

    def kill(self) -> None:
        """SIGKILL: a crash, not a clean shutdown (in-flight requests get no answer)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class AcceptAll:
    """Wildcard listeners on ports of our own that accept and drop: every loopback address answers on them
    (0.0.0.0, so one socket serves all the addresses a test scans; deep backlogs for fast scans)."""

    def __init__(self, count: int, backlog: int = 4096) -> None:
        self.socks = [socket.create_server(("0.0.0.0", 0), backlog=backlog) for _ in range(count)]
        for s in self.socks:
            threading.Thread(target=self._loop, args=(s,), daemon=True).start()
        self.ports = sorted(s.getsockname()[1] for s in self.socks)

    @staticmethod
    def _loop(sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        for s in self.socks:
            s.close()


@contextlib.contextmanager
def ingest_env(pg: PostgresServer, tmp: Path, **overrides: object) -> Iterator[IngestEnv]:
    """Fresh migrated databases and a real ingest process (`python -m app serve ingest`) on loopback."""
    creds = tmp / "creds"
    write_credentials(creds)
    dbs = pg.create_appliance_databases(prefix=f"s{secrets.token_hex(3)}_")
    owner = make_settings(pg, dbs, creds, "mipo_owner", **{"scanner": FAST_SCANNER, **overrides})
    migrate_all(owner)
    doc = settings_document(pg, dbs, "mipo_ingest", **{"scanner": FAST_SCANNER, **overrides})
    config = write_toml(doc, tmp / "mipo.toml")
    log = tmp / "ingest.log"
    process = IngestProcess(config, creds, log)
    process.start()
    try:
        yield IngestEnv(url=process.url, owner=owner, tmp=tmp, log=log, process=process)
    finally:
        process.stop()


def fetch_agent(env: IngestEnv) -> Path:
    path = env.tmp / "agent.pyz"
    if not path.exists():
        blob = httpx.get(env.url + "/scanner/agent.pyz", timeout=30).content
        path.write_bytes(blob)
    return path


def agent_config(env: IngestEnv, name: str, server_url: str | None = None, **extra: object) -> Path:
    home = env.tmp / name
    home.mkdir(exist_ok=True)
    machine_id = home / "machine-id"
    if not machine_id.exists():
        machine_id.write_text(secrets.token_hex(16) + "\n")
    lines = [f'server_url = "{server_url or env.url}"', f'key_file = "{home / "key"}"',
             f'spool_dir = "{home / "spool"}"', f'machine_id_file = "{machine_id}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    config = home / "agent.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def agent_enrol(env: IngestEnv, config: Path, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["python3", str(fetch_agent(env)), "--config", str(config), "enrol", "--token-file", "-"],
                          input=token + "\n", capture_output=True, text=True, timeout=60, check=False)


@contextlib.contextmanager
def running_agent(env: IngestEnv, config: Path, argv_prefix: tuple[str, ...] = ()) -> Iterator[subprocess.Popen[bytes]]:
    """The real agent zipapp under the system python3 (stdlib only), logging next to its config."""
    log = config.with_name("agent.log").open("ab")
    proc = subprocess.Popen([*argv_prefix, "python3", str(fetch_agent(env)), "--config", str(config), "run"],
                            stdout=log, stderr=subprocess.STDOUT, env={"PATH": os.environ.get("PATH", "/usr/bin")})
    try:
        yield proc
    finally:
        stop_process(proc)
        log.close()


__all__ = ["FAST_SCANNER", "AcceptAll", "IngestEnv", "agent_config", "agent_enrol", "ingest_env", "running_agent",
           "sys"]
