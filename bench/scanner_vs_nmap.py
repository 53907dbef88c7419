"""Benchmark: the mipo agent's connect scan against `nmap -sT -T4`, side by side on the same targets.

Cases: the full TCP range of one host, and a /24 x nmap's top-100 ports. Default targets are loopback
addresses of this machine with a few listeners the bench opens (so both tools have something to find);
from a lab scanner host pass `--host 198.18.0.20 --net 198.18.0.0/24`. Only loopback and the lab range
(198.18.0.0/15) are accepted. Prints wall times, the ratio (target <= 0.5x nmap), whether the open-port
sets are equal, and the agent's connect attempts per second per CPU core (target >= 10,000).

    .venv/bin/python bench/scanner_vs_nmap.py [--rate 50000] [--concurrency 4000]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from app.scanner.build import build_zipapp

ALLOWED = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.18.0.0/15")]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def top_ports(count: int = 100) -> str:
    """nmap's own top-N list (its scaninfo element), from a quick scan of a loopback address."""
    out = subprocess.run(["nmap", "-sT", "-Pn", "-n", "--top-ports", str(count), "-oX", "-", "127.0.0.1"],
                         capture_output=True, text=True, check=True).stdout
    info = ET.fromstring(out).find("scaninfo")  # noqa: S314 (nmap output of our own run)
    assert info is not None and info.get("services")
    return str(info.get("services"))


def run_nmap(targets: str, ports: str) -> tuple[float, set[tuple[str, int]]]:
    start = time.monotonic()
    out = subprocess.run(["nmap", "-sT", "-T4", "-Pn", "-n", "--open", "-p", ports, "-oX", "-", targets],
                         capture_output=True, text=True, check=True).stdout
    seconds = time.monotonic() - start
    found = set()
    for host in ET.fromstring(out).iter("host"):  # noqa: S314 (nmap output of our own run)
        addr = host.find("address")
        for port in host.iter("port"):
            state = port.find("state")
            if addr is not None and state is not None and state.get("state") == "open":
                found.add((str(addr.get("addr")), int(port.get("portid", "0"))))
    return seconds, found


def run_agent(agent: Path, first: str, last: str, ports: str, rate: int, concurrency: int
              ) -> tuple[float, float, set[tuple[str, int]], int]:
    cpu0 = _children_cpu()
    start = time.monotonic()
    out = subprocess.run(["python3", str(agent), "scan", "--targets", f"{first}-{last}", "--ports", ports,
                          "--scope", "127.0.0.0/8", "198.18.0.0/15", "--rate", str(rate),
                          "--concurrency", str(concurrency), "--timeout-ms", "1000"],
                         capture_output=True, text=True, check=True).stdout
    seconds = time.monotonic() - start
    cpu = _children_cpu() - cpu0
    data = json.loads(out)
    return seconds, cpu, {(ip, int(p)) for ip, p in data["open"]}, int(data["attempts"])


def compare(name: str, agent: Path, first: str, last: str, nmap_targets: str, ports: str, rate: int,
            concurrency: int) -> None:
    a_wall, a_cpu, a_open, attempts = run_agent(agent, first, last, ports, rate, concurrency)
    n_wall, n_open = run_nmap(nmap_targets, ports)
    print(f"{name}:")
    print(f"  agent  {a_wall:7.2f} s  {attempts} connects  {len(a_open)} open  cpu {a_cpu:.2f} s"
          f"  -> {attempts / max(a_cpu, 1e-6):,.0f} connects/s per core")
    print(f"  nmap   {n_wall:7.2f} s  {len(n_open)} open")
    print(f"  ratio  agent/nmap wall time = {a_wall / n_wall:.2f}x (target <= 0.5x)"
          f"   same open ports: {'yes' if a_open == n_open else 'NO'}")
    if a_open != n_open:
        print(f"    only agent: {sorted(a_open - n_open)[:10]}  only nmap: {sorted(n_open - a_open)[:10]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.82.0.1", help="host for the full-range case")
    parser.add_argument("--net", default="127.82.1.0/24", help="/24 for the top-100 case")
    parser.add_argument("--rate", type=int, default=50000)
    parser.add_argument("--concurrency", type=int, default=4000)
    args = parser.parse_args()
    if shutil.which("nmap") is None:
        print("nmap is not installed (apt-get install -y nmap)", file=sys.stderr)
        return 2
    net = ipaddress.ip_network(args.net, strict=False)
    host = ipaddress.ip_address(args.host)
    if not any(host in n for n in ALLOWED) or not any(net.subnet_of(n) for n in ALLOWED):  # type: ignore[arg-type]
        print("refusing: only loopback and the lab range 198.18.0.0/15 may be scanned", file=sys.stderr)
        return 2
    listeners = []
    if host.is_loopback:
        # Something to find: a few listeners on the host, and on some of the /24's addresses (top ports).
        for port in (22, 80, 443, 8080, 31337, 45000):
            with contextlib.suppress(OSError):
                listeners.append(socket.create_server((str(host), port)))
        for i in (5, 77, 200):
            for port in (22, 80, 443):
                with contextlib.suppress(OSError):
                    listeners.append(socket.create_server((str(net[i]), port)))
    with tempfile.TemporaryDirectory() as tmp:
        agent = Path(tmp) / "agent.pyz"
        agent.write_bytes(build_zipapp())
        top = top_ports(100)
        compare(f"full TCP range of {host}", agent, str(host), str(host), str(host), "1-65535", args.rate,
                args.concurrency)
        compare(f"{net} x top-100 ports", agent, str(net[0]), str(net[-1]), str(net), top, args.rate,
                args.concurrency)
    for s in listeners:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
