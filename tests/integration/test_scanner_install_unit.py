"""install.sh for real on Debian 13 with systemd: a throwaway container booted from the lab image (its own
veth, not the shared lab) runs the script as an operator would; the hardened mipo-scanner.service enrols,
heartbeats, scans, keeps its identity on re-install, and goes offline when stopped."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance.image import build_image
from tests.integration.test_scanner_support import IngestEnv, ingest_env
from tests.support.postgres import PostgresServer

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

    def _wait(self, predicate: object, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"container exited while waiting for {what}; see {self.log}")
            if predicate():  # type: ignore[operator]
                return
            time.sleep(0.2)
        raise RuntimeError(f"container: {what} not ready within {timeout} s; see {self.log}")

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


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out: {what}")


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
        assert container.run("ps -o user:20= -C python3").stdout.split() == ["mipo-scanner"]
        # The unit's sandbox as systemd applied it (no capabilities at all, no new privileges).
        props = container.run("systemctl show mipo-scanner -p NoNewPrivileges -p CapabilityBoundingSet"
                              " -p ProtectSystem -p PrivateUsers").stdout.split()
        assert sorted(props) == ["CapabilityBoundingSet=", "NoNewPrivileges=yes", "PrivateUsers=yes",
                                 "ProtectSystem=strict"]
        assert container.run("stat -c '%a %U %G' /etc/mipo-scanner/key").stdout.strip() == "640 root mipo-scanner"
        _wait(lambda: _online(env, first.scanner.id), 20, "the unit's first heartbeat")

        low = greet_port - 20
        _run, job_id = env.new_job(first.scanner.id, [[HOST_SIDE, HOST_SIDE]], f"{low}-{greet_port + 20}",
                                   cost=41)
        status = env.wait_job(job_id, timeout=90)
        assert status[0] == "completed", (status, container.run("journalctl -u mipo-scanner --no-pager | tail -20",
                                                                 check=False).stdout)
        rows = env.query("results", "SELECT port, banner FROM observations WHERE job_id = %s", (job_id,))
        assert rows == [(greet_port, "SSH-2.0-mipo-install-test")]

        # Re-install with a token made for a new scanner row: the host keeps its identity and history.
        second = env.new_scanner("debian-scanner-again")
        (container.share / "token").write_text(second.token + "\n")
        again = container.run("sh /mnt/mipo/install.sh --token-file /mnt/mipo/token")
        assert "enrolled as scanner debian-scanner " in again.stdout, again.stdout
        _wait(lambda: _online(env, first.scanner.id), 20, "heartbeats after the re-install")
        assert env.query("config", "SELECT status FROM scanners WHERE id = %s", (second.scanner.id,)) == \
            [("disabled",)]

        container.run("systemctl stop mipo-scanner")
        _wait(lambda: not _online(env, first.scanner.id), 20, "offline after the silence")
    finally:
        service.close()
        forwarder.close()
