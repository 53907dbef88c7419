"""The lab itself: hosts booted with their addresses, no way out but the apt proxy, networks kept apart,
and the target's services up (these hold before any appliance deploy)."""

from __future__ import annotations

import shlex
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from appliance.cli import REPO
from appliance.lab.control import start_host, stop_host
from appliance.lab.state import LabState
from appliance.lab.topology import APT_PROXY_PORT, HOSTS, NETWORKS, TARGET_HTTP_UNIT

pytestmark = pytest.mark.lab

ALL = [h.name for h in HOSTS]
EXTERNAL_ONLY = [h.name for h in HOSTS if set(h.octets) == {"external"}]
INTERNAL_ONLY = [h.name for h in HOSTS if set(h.octets) == {"internal"}]
DB = "198.18.1.20"
TARGET = "198.18.0.30"


def connects(lab: LabState, host: str, address: str, port: int) -> bool:
    """Whether `host` can open a TCP connection to address:port (5 s at most)."""
    return probe(lab, host, address, port) == ""


def probe(lab: LabState, host: str, address: str, port: int) -> str:
    """"" when `host` connects to address:port, else why not (bash's error, or "timeout")."""
    result = lab.run(host, f"timeout 5 bash -c {shlex.quote(f'</dev/tcp/{address}/{port}')}", check=False)
    if result.returncode == 0:
        return ""
    return "timeout" if result.returncode == 124 else result.stderr.strip()


class Sniffer:
    """Counts, by IPv4 source address, the packets that cross one of this machine's bridges."""

    def __init__(self, bridge: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))  # ETH_P_ALL
        self.sock.bind((bridge, 0))
        self.sock.settimeout(0.2)
        self.sources: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                frame = self.sock.recv(65535)
            except TimeoutError:
                continue
            if len(frame) >= 34 and frame[12:14] == b"\x08\x00":  # Ethernet carrying IPv4
                self.sources[socket.inet_ntoa(frame[26:30])] += 1

    def __enter__(self) -> Sniffer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.mark.parametrize("name", ALL)
def test_host_is_booted_with_its_addresses(lab: LabState, name: str) -> None:
    """Every lab host has booted (its own hostname; networkd and sshd active) with exactly the static
    addresses the topology gives it. Units the appliance deploy adds are judged by their own tests."""
    out = lab.run(
        name, "hostname; systemctl is-system-running; systemctl is-active systemd-networkd ssh; "
        "ip -4 -o addr show scope global", check=False,
    ).stdout.split("\n")
    assert out[0] == name
    assert out[1] in ("running", "degraded")
    assert out[2:4] == ["active", "active"]
    found = sorted(line.split()[3] for line in out[4:] if line.strip())
    assert found == sorted(f"{a}/24" for a in lab.host(name).addresses.values())


def test_every_host_has_its_own_machine_id(lab: LabState) -> None:
    """Journals and the scanner agent's host identity tell hosts apart by /etc/machine-id: no two share one."""
    ids = {name: lab.run(name, "cat /etc/machine-id").stdout.strip() for name in ALL}
    assert all(len(value) == 32 for value in ids.values()), ids
    assert len(set(ids.values())) == len(ALL), ids


@pytest.mark.parametrize("name", ALL)
def test_host_runs_the_unified_cgroup_hierarchy(lab: LabState, name: str) -> None:
    """Hosts run cgroup v2 as a real Debian 13 machine does, so unit sandboxing behaves as in production."""
    assert lab.run(name, "stat -fc %T /sys/fs/cgroup").stdout.strip() == "cgroup2fs"


@pytest.mark.parametrize("name", ALL)
def test_host_has_no_default_route(lab: LabState, name: str) -> None:
    """No lab host has a default route (IPv4 or IPv6): nothing in the lab can reach the internet directly."""
    out = lab.run(name, "ip -4 route show default; ip -6 route show default").stdout
    assert out.strip() == ""


@pytest.mark.parametrize("name", EXTERNAL_ONLY)
def test_external_host_has_no_path_to_the_internal_network(lab: LabState, name: str) -> None:
    """Hosts on the external network (all but edge) have no route to internal hosts."""
    assert "Network is unreachable" in probe(lab, name, DB, 22)


@pytest.mark.parametrize("name", INTERNAL_ONLY)
def test_internal_host_has_no_path_to_the_external_network(lab: LabState, name: str) -> None:
    """Internal hosts (all but edge) have no route to the external network."""
    assert "Network is unreachable" in probe(lab, name, TARGET, 22)


@pytest.mark.parametrize(("name", "peer"), [("scanner-a", "db"), ("manager", "target")])
def test_this_machine_does_not_route_between_lab_networks(lab: LabState, name: str, peer: str) -> None:
    """Even when a host routes the other lab network through its gateway (this machine), not one of its
    packets comes out on the other bridge: this machine neither forwards nor lets lab traffic through."""
    own = "internal" if "internal" in lab.host(name).addresses else "external"
    other = "external" if own == "internal" else "internal"
    route = f"{NETWORKS[other].cidr} via {NETWORKS[own].gateway} dev {NETWORKS[own].interface}"
    source = lab.host(name).addresses[own]
    peer_address = lab.host(peer).addresses[other]
    lab.run(name, f"ip route replace {route}")
    try:
        with Sniffer(NETWORKS[other].bridge) as sniffer:
            probe(lab, name, peer_address, 22)
            lab.run(peer, "true")  # control: our own SSH session to the peer does cross that bridge
    finally:
        lab.run(name, f"ip route del {route}", check=False)
    assert sniffer.sources[peer_address] > 0
    assert sniffer.sources[source] == 0


@pytest.mark.parametrize(("source", "address"), [("edge", TARGET), ("scanner-a", TARGET)])
def test_hosts_reach_their_own_network(lab: LabState, source: str, address: str) -> None:
    """Edge and the scanners reach the target (the control for the isolation tests above)."""
    assert connects(lab, source, address, 22)


@pytest.fixture()
def listener_on_this_machine() -> Iterator[int]:
    """A TCP listener on every address of this machine (as any careless service would be)."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.5)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


# Hosts whose outbound traffic the appliance firewall leaves open, so only this machine can refuse it.
@pytest.mark.parametrize("name", ["scanner-a", "manager"])
def test_lab_hosts_reach_this_machine_only_through_the_apt_proxy(
    lab: LabState, name: str, listener_on_this_machine: int
) -> None:
    """Lab hosts cannot open connections to this machine's services; the apt proxy is the one exception."""
    net = "internal" if "internal" in lab.host(name).addresses else "external"
    gateway = NETWORKS[net].gateway
    with socket.create_connection((gateway, listener_on_this_machine), timeout=5):
        pass  # the listener does answer on the gateway address, from this machine itself
    assert probe(lab, name, gateway, listener_on_this_machine) != ""
    assert connects(lab, name, gateway, APT_PROXY_PORT)


@pytest.mark.parametrize("bridge", [n.bridge for n in NETWORKS.values()])
def test_this_machine_does_not_route_from_lab_bridges(lab: LabState, bridge: str) -> None:
    """IPv4 forwarding is off on each lab bridge (the lab's isolation does not rest on nft rules alone)."""
    with open(f"/proc/sys/net/ipv4/conf/{bridge}/forwarding") as f:
        assert f.read().strip() == "0"


def test_target_answers_ssh(lab: LabState) -> None:
    """`target` runs sshd on 22, seen from a scanner host on the external network."""
    out = lab.run("scanner-a", f"timeout 5 bash -c 'exec 3<>/dev/tcp/{TARGET}/22; head -c 8 <&3'").stdout
    assert out == "SSH-2.0-"


def test_target_serves_https_with_a_self_signed_certificate(lab: LabState) -> None:
    """`target` serves HTTPS on 443 with its own self-signed certificate, which a client does not trust."""
    assert lab.run("scanner-a", f"curl -sk https://{TARGET}/").stdout == "mipo lab target\n"
    untrusted = lab.run("scanner-a", f"curl -s https://{TARGET}/", check=False)
    assert untrusted.returncode == 60  # curl: peer certificate cannot be authenticated
    names = lab.run(
        "scanner-a",
        f"openssl s_client -connect {TARGET}:443 </dev/null 2>/dev/null | openssl x509 -noout -subject -issuer",
    ).stdout.splitlines()
    assert names == ["subject=CN=target", "issuer=CN=target"]


def test_target_http_service_can_be_stopped_and_started(lab: LabState) -> None:
    """`target` answers HTTP on 8080, and tests can stop and start that service."""
    fetch = f"curl -s --max-time 5 http://{TARGET}:8080/"
    assert lab.run("scanner-a", fetch).stdout == "mipo lab target\n"
    lab.run("target", f"systemctl stop {TARGET_HTTP_UNIT}")
    try:
        assert lab.run("scanner-a", fetch, check=False).returncode == 7  # curl: connection refused
    finally:
        lab.run("target", f"systemctl start {TARGET_HTTP_UNIT}")
    lab.run("target", "timeout 30 sh -c 'until ss -Htln sport = :8080 | grep -q .; do sleep 0.2; done'")
    assert lab.run("scanner-a", fetch).stdout == "mipo lab target\n"


@pytest.mark.parametrize("name", ["db", "scanner-a"])
def test_apt_works_through_the_proxy(lab: LabState, name: str) -> None:
    """apt on a lab host fetches Debian's indexes through the proxy on its gateway (the only way out)."""
    out = lab.run(name, "apt-config dump Acquire::http::Proxy; apt-get update -q 2>&1", timeout=300).stdout
    assert f'"{NETWORKS["internal" if name == "db" else "external"].proxy_url}"' in out
    assert "Err:" not in out and "Failed to fetch" not in out
    assert "trixie InRelease" in out


def test_a_host_can_be_powered_off_and_booted_again(lab: LabState) -> None:
    """Tests can take one host away (e.g. an ingest node) and bring it back with its state."""
    scanner_b = lab.host("scanner-b").addresses["external"]
    lab.run("scanner-b", "echo kept > /root/marker")
    stop_host("scanner-b")
    try:
        assert probe(lab, "scanner-a", scanner_b, 22) != ""
    finally:
        start_host("scanner-b")
    assert lab.run("scanner-b", "cat /root/marker").stdout == "kept\n"
    assert connects(lab, "scanner-a", scanner_b, 22)


def test_mipo_lab_status_and_ssh_commands(lab: LabState) -> None:
    """`mipo lab status` lists every host as running; `mipo lab ssh HOST CMD` runs CMD there."""
    mipo = str(REPO / ".venv" / "bin" / "mipo")
    status = subprocess.run([mipo, "lab", "status"], capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line for line in status.splitlines()[1:len(HOSTS) + 1]}
    assert sorted(rows) == sorted(ALL)
    assert all("running" in row for row in rows.values())
    ssh = subprocess.run([mipo, "lab", "ssh", "target", "hostname"], capture_output=True, text=True, check=True)
    assert ssh.stdout == "target\n"
