"""install.sh for real on Debian 13 with systemd: a throwaway container booted from the lab image (its own
veth, not the shared lab) runs the script as an operator would; the hardened mipo-scanner.service enrols,
heartbeats, scans, keeps its identity on re-install, and goes offline when stopped."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from appliance.image import build_image
from tests.integration.test_scanner_support import FAST_SCANNER, IngestEnv, ingest_env
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until

HOST_SIDE, GUEST_SIDE, NET = "198.18.254.1", "198.18.254.2", "198.18.254.0/30"


class Forwarder:
    """HOST_SIDE:port → 127.0.0.1:target, so the container reaches the loopback ingest over its veth."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.sock = socket.create_server((HOST_SIDE, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


class Container:
    def __init__(self, tmp: Path) -> None:
        self.name = f"mscn{secrets.token_hex(3)}"
        self.link = self.name  # host side of the veth pair
        self.share = tmp / "share"
        self.share.mkdir()
        network = tmp / "10-mipo-test.network"
        network.write_text(f"[Match]\nName=host0\n\n[Network]\nAddress={GUEST_SIDE}/30\nLinkLocalAddressing=no\n")
        argv = ["systemd-nspawn", "-q", "-D", str(build_image(progress=False)), "--boot", "--volatile=overlay",
                "--register=no", "--keep-unit", f"--machine={self.name}", f"--hostname={self.name}",
                "--resolv-conf=off", "--link-journal=no", "--timezone=off",
                f"--network-veth-extra={self.link}:host0", f"--bind-ro={self.share}:/mnt/mipo",
                f"--bind-ro={network}:/etc/systemd/network/10-mipo-test.network"]
        self.log = tmp / "nspawn.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True,
                                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                              "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"})
        self._wait(lambda: Path(f"/sys/class/net/{self.link}").exists(), "the veth link")
        subprocess.run(["ip", "addr", "add", f"{HOST_SIDE}/30", "dev", self.link], check=True)
        subprocess.run(["ip", "link", "set", self.link, "up"], check=True)
        self._wait(lambda: self.leader() is not None, "the container's init")
        self._wait(lambda: self.run("systemctl is-system-running --wait", check=False).stdout.strip()
                   in ("running", "degraded"), "boot", timeout=120)
        if GUEST_SIDE not in self.run("ip -4 -o addr show dev host0").stdout:
            self.run(f"ip addr add {GUEST_SIDE}/30 dev host0 && ip link set host0 up")

    def _wait(self, predicate: Callable[[], object], what: str, timeout: float = 60) -> None:
        """Wait for `predicate`, failing at once if the container exits meanwhile."""
        def ready() -> object:
            if self.proc.poll() is not None:
                raise RuntimeError(f"container exited while waiting for {what}; see {self.log}")
            return predicate()

        wait_until(ready, timeout, f"container: {what} ready", detail=lambda: f"see {self.log}")

    def leader(self) -> int | None:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True,
                             check=False).stdout.split()
        return int(out[0]) if out else None

    def run(self, command: str, *, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        leader = self.leader()
        assert leader is not None
        done = subprocess.run(["nsenter", "-t", str(leader), "-m", "-u", "-i", "-n", "-p", "-C", "--",
                               "/bin/sh", "-c", command], capture_output=True, text=True, timeout=timeout,
                              check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        if check and done.returncode != 0:
            raise AssertionError(f"{command!r} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: nspawn powers the container off
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if Path(f"/sys/class/net/{self.link}").exists():
            subprocess.run(["ip", "link", "del", self.link], check=False)


@pytest.fixture()
def env(pg: PostgresServer, tmp_path: Path) -> Iterator[IngestEnv]:
    with ingest_env(pg, tmp_path, scope={"authorised": ["127.0.0.0/8", NET]}) as e:
        yield e


@pytest.fixture()
def container(tmp_path: Path) -> Iterator[Container]:
    box = Container(tmp_path)
    try:
        yield box
    finally:
        box.stop()


def _online(env: IngestEnv, scanner_id: int) -> bool:
    return bool(env.query("config", "SELECT 1 FROM scanners WHERE id = %s AND status = 'active'"
                          " AND last_heartbeat_at > now() - interval '3 seconds'", (scanner_id,)))


def test_install_script_runs_the_hardened_unit_on_debian(env: IngestEnv, container: Container) -> None:
    forwarder = Forwarder(env.process.port)
    service = socket.create_server((HOST_SIDE, 0))
    greet_port = service.getsockname()[1]

    def greet() -> None:
        while True:
            try:
                conn, _ = service.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), conn:
                conn.sendall(b"SSH-2.0-mipo-install-test\r\n")

    threading.Thread(target=greet, daemon=True).start()
    try:
        server_url = f"http://{HOST_SIDE}:{forwarder.port}"
        script = httpx.get(env.url + "/scanner/install.sh", timeout=10).text
        (container.share / "install.sh").write_text(
            script.replace("SERVER_URL='https://127.0.0.1'", f"SERVER_URL='{server_url}'"))
        first = env.new_scanner("debian-scanner")
        (container.share / "token").write_text(first.token + "\n")
        done = container.run("sh /mnt/mipo/install.sh --token-file /mnt/mipo/token")
        assert "enrolled as scanner debian-scanner" in done.stdout, done.stdout + done.stderr

        assert container.run("systemctl is-active mipo-scanner").stdout.strip() == "active"
        def agent_users() -> list[str]:
            out = container.run("ps -eo user:20=,args= | grep '[a]gent.pyz --config'", check=False).stdout
            return [line.split()[0] for line in out.splitlines()]

        wait_until(agent_users, 20, "the agent process", interval=0.3)
        assert set(agent_users()) == {"mipo-scanner"}
        # The unit's sandbox as systemd applied it (no capabilities at all, no new privileges).
        props = container.run("systemctl show mipo-scanner -p NoNewPrivileges -p CapabilityBoundingSet"
                              " -p ProtectSystem -p PrivateUsers").stdout.split()
        assert sorted(props) == ["CapabilityBoundingSet=", "NoNewPrivileges=yes", "PrivateUsers=yes",
                                 "ProtectSystem=strict"]
        assert container.run("stat -c '%a %U %G' /etc/mipo-scanner/key").stdout.strip() == "640 root mipo-scanner"
        wait_until(lambda: _online(env, first.scanner.id), 20, "the unit's first heartbeat", interval=0.3)

        # The full TCP range: big enough for the agent to spread it over one process per core, in the sandbox.
        _run, job_id = env.new_job(first.scanner.id, [[HOST_SIDE, HOST_SIDE]], "1-65535", cost=65535)
        status = env.wait_job(job_id, timeout=180)
        journal = container.run("journalctl -u mipo-scanner --no-pager | tail -20", check=False).stdout
        assert status[0] == "completed", (status, journal)
        rows = dict(env.query("results", "SELECT port, banner FROM observations WHERE job_id = %s", (job_id,)))
        # Other wildcard listeners of this machine answer on HOST_SIDE too; ours must be there, exactly so.
        assert rows[greet_port] == "SSH-2.0-mipo-install-test" and forwarder.port in rows
        assert env.query("jobs", "SELECT done_cost FROM jobs WHERE id = %s", (job_id,)) == [(65535,)]
        cores = int(container.run("nproc").stdout)
        assert "65535 probes" in journal and f"{min(cores, 8)} process(es)" in journal, journal

        # Re-install with a token made for a new scanner row: the host keeps its identity and history.
        second = env.new_scanner("debian-scanner-again")
        (container.share / "token").write_text(second.token + "\n")
        again = container.run("sh /mnt/mipo/install.sh --token-file /mnt/mipo/token")
        assert "enrolled as scanner debian-scanner " in again.stdout, again.stdout
        wait_until(lambda: _online(env, first.scanner.id), 20, "heartbeats after the re-install", interval=0.3)
        assert env.query("config", "SELECT status FROM scanners WHERE id = %s", (second.scanner.id,)) == \
            [("disabled",)]

        container.run("systemctl stop mipo-scanner")
        wait_until(lambda: not _online(env, first.scanner.id), 20, "offline after the silence", interval=0.3)
    finally:
        service.close()
        forwarder.close()


class TLSForwarder:
    """HTTPS on HOST_SIDE (a cert from the test appliance CA) → plain HTTP to the loopback ingest: the edge's role."""

    def __init__(self, cert: Path, key: Path) -> None:
        import asyncio
        import ssl

        self.target = 0
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server((HOST_SIDE, 0))
        self.port = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(timeout=10)

    async def _serve(self) -> None:
        import asyncio

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        self.server = await asyncio.start_server(handle, sock=self.sock, ssl=self.context)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


def _ca_and_leaf(tmp: Path) -> tuple[Path, Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mipo test appliance CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST_SIDE))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, leaf_path, key_path = tmp / "ca.pem", tmp / "edge.pem", tmp / "edge.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, leaf_path, key_path


def test_operator_command_pins_the_ca_over_tls(pg: PostgresServer, tmp_path: Path, container: Container) -> None:
    """The exact command the manager shows (CA inline + fingerprint) installs over HTTPS; a wrong pin stops it."""
    from app.domain.scanners.service import install_command

    ca, leaf, key = _ca_and_leaf(tmp_path)
    edge = TLSForwarder(leaf, key)
    public_url = f"https://{HOST_SIDE}:{edge.port}"
    try:
        with ingest_env(pg, tmp_path / "appliance", public_url=public_url,
                        scope={"authorised": ["127.0.0.0/8", NET]},
                        scanner={**FAST_SCANNER, "ca_file": str(ca)}) as env:
            edge.target = env.process.port
            command, fingerprint = install_command(env.owner)
            assert fingerprint and "| sudo sh -s -- --ca-sha256" in command
            # As root in the container (no sudo there); no terminal, so the token comes from a file.
            as_root = command.replace("| sudo sh -s --", "| sh -s --") + " --token-file /mnt/mipo/token"

            enrolment = env.new_scanner("tls-scanner")
            (container.share / "token").write_text(enrolment.token + "\n")
            wrong = as_root.replace(fingerprint, "0" * 64)
            refused = container.run(f"bash -c {_quote(wrong)}", check=False)
            assert refused.returncode != 0 and "CA fingerprint mismatch" in refused.stderr, refused.stderr
            assert container.run("test -e /opt/mipo-scanner/agent.pyz", check=False).returncode != 0

            done = container.run(f"bash -c {_quote(as_root)}")
            assert "enrolled as scanner tls-scanner" in done.stdout, done.stdout + done.stderr
            toml = container.run("cat /etc/mipo-scanner/agent.toml").stdout
            assert f'server_url = "{public_url}"' in toml and 'ca_file = "/etc/mipo-scanner/ca.pem"' in toml
            wait_until(lambda: _online(env, enrolment.scanner.id), 20, "heartbeats over HTTPS", interval=0.3)
    finally:
        edge.close()


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
