"""The whole scanner path on loopback: admin-created scanner, real agent zipapp enrolled with its token,
heartbeats, a long-poll claim, the scan of small local services, batches through a real ingest process,
completion and coverage — then the exact open ports, banners and certificate fields in the results DB."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.test_scanner_support import (
    IngestEnv,
    agent_config,
    agent_enrol,
    ingest_env,
    running_agent,
)
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until

HOST = "127.77.0.1"  # a loopback address of our own: nothing else binds it


def self_signed(tmp: Path) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "target.mipo.test"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mipo test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now.replace(microsecond=0) + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("target.mipo.test"),
                                                        x509.DNSName("www.mipo.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


class Service:
    """A tiny TCP service on HOST: `greet` is sent on connect; `http` answers one request; `tls` wraps first."""

    def __init__(self, port: int, greet: bytes = b"", http: bool = False, tls: ssl.SSLContext | None = None):
        self.sock = socket.create_server((HOST, port), backlog=256)
        self.port = port
        self.greet, self.http, self.tls = greet, http, tls
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), conn:
            conn.settimeout(5)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            if self.greet:
                conn.sendall(self.greet)
            if self.http:
                if conn.recv(1024):
                    conn.sendall(b"HTTP/1.0 200 OK\r\nServer: mipo-test-http/1.0\r\nContent-Length: 0\r\n\r\n")
            else:
                conn.recv(1024)

    def close(self) -> None:
        self.sock.close()


def _window() -> tuple[int, list[socket.socket]]:
    """A 200-port window on HOST, every port bound by us (no listen) except the three services' ports:
    no wildcard listener of another process can answer inside it while the test runs."""
    for _ in range(50):
        base = random.randrange(20000, 30000)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + 200):
                if port - base in (11, 80, 143):
                    continue
                s = socket.socket()
                held.append(s)
                s.bind((HOST, port))
            return base, held
        except OSError:
            for s in held:
                s.close()
    raise RuntimeError("no free port window on loopback")


@pytest.fixture()
def env(pg: PostgresServer, tmp_path: Path) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path) as e:
        yield e


def test_agent_finds_exact_open_ports_with_banners_and_certificate(env: IngestEnv, tmp_path: Path) -> None:
    """Enrol → heartbeat → claim → scan → batches → complete through real processes; stored results are exact."""
    base, held = _window()
    cert, key, der = self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    services = [Service(base + 11, greet=b"SSH-2.0-OpenSSH_9.9 mipo-test\r\n"),
                Service(base + 80, http=True),
                Service(base + 143, tls=tls)]
    try:
        enrolment = env.new_scanner("scanner-a")
        config = agent_config(env, "agent-a", batch_size=2)
        done = agent_enrol(env, config, enrolment.token)
        assert done.returncode == 0, done.stderr
        assert "scanner-a" in done.stdout
        with running_agent(env, config):
            # Online within one heartbeat (plus the coalescing flush).
            online = wait_until(lambda: env.query("config", "SELECT status, version FROM scanners WHERE id = %s"
                                                  " AND last_heartbeat_at > now() - interval '3 seconds'",
                                                  (enrolment.scanner.id,)), 20, "scanner-a online", interval=0.3)
            assert online == [("active", "0.1.0")]
            run_id, job_id = env.new_job(enrolment.scanner.id, [[HOST, HOST]], f"{base}-{base + 199}", cost=200)
            status = env.wait_job(job_id)
            assert status[0] == "completed", status
    finally:
        for s in services + held:
            s.close()
    rows = env.query("results", "SELECT port, service, banner, tls_subject, tls_issuer, tls_sans, tls_not_after,"
                     " tls_sha256, host(ip), run_id, scanner_id FROM observations WHERE job_id = %s ORDER BY port",
                     (job_id,))
    assert [r[0] for r in rows] == [base + 11, base + 80, base + 143]
    assert all(r[8] == HOST and r[9] == run_id and r[10] == enrolment.scanner.id for r in rows)
    ssh, http, tls_row = rows
    assert ssh[1] == "ssh" and ssh[2] == "SSH-2.0-OpenSSH_9.9 mipo-test"
    assert http[1] == "http" and "Server: mipo-test-http/1.0" in http[2]
    parsed = x509.load_der_x509_certificate(der)
    assert tls_row[1] == "tls"
    assert tls_row[3] == "O=mipo test,CN=target.mipo.test" == tls_row[4]
    assert sorted(tls_row[5]) == ["target.mipo.test", "www.mipo.test"]
    assert tls_row[6] == parsed.not_valid_after_utc
    assert tls_row[7] == parsed.fingerprint(hashes.SHA256()).hex()
    coverage = env.query("results", "SELECT run_id, ports, complete FROM run_coverage WHERE job_id = %s", (job_id,))
    assert coverage == [(run_id, f"{base}-{base + 199}", True)]
    # Three results in batches of two: two ledger rows, and the job's progress reached its cost.
    assert env.query("results", "SELECT count(*), sum(rows) FROM ingested_batches WHERE job_id = %s",
                     (job_id,)) == [(2, 3)]
    assert env.query("jobs", "SELECT done_cost, attempts FROM jobs WHERE id = %s", (job_id,)) == [(200, 1)]
