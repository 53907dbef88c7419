"""Benchmark: the mipo agent's connect scan against `nmap -sT -T4`, side by side on the same targets.

Cases: the full TCP range of one host, and a /24 x nmap's top-100 ports. Default targets are loopback
addresses of this machine with a few listeners the bench opens (so both tools have something to find).
`--lab scanner-a` runs both tools on that booted lab host (over the lab's SSH) against the lab's `target`
(198.18.0.30) and the lab's external /24. Only loopback and the lab range (198.18.0.0/15) are accepted.
Prints wall times, the ratio (target <= 0.5x nmap), whether the open-port sets are equal, and the
agent's connect attempts per second per CPU core (target >= 10,000).

    .venv/bin/python bench/scanner_vs_nmap.py [--rate 200000] [--concurrency 4000]
    .venv/bin/python bench/scanner_vs_nmap.py --lab scanner-a
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from app.scanner.build import build_zipapp

ALLOWED = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.18.0.0/15")]


# Runs one command and reports its wall time and CPU time (children's rusage); stdlib only, so it runs
# unchanged on this machine or on a lab scanner host.
RUNNER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.monotonic()\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "w = time.monotonic() - t\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'wall': w, 'cpu': r.ru_utime + r.ru_stime, 'rc': p.returncode, 'out': p.stdout,"
    " 'err': p.stderr[-500:]}))\n"
)


class Runner:
    """Where both tools run: here, or on a lab host over SSH (`ssh` argv from the lab state)."""

    def __init__(self, lab_host: str | None) -> None:
        self.ssh: list[str] = []
        if lab_host:
            from appliance.lab.state import load_lab_state

            self.ssh = load_lab_state().ssh_command(lab_host)

    def put(self, data: bytes, path: str) -> None:
        if self.ssh:
            subprocess.run([*self.ssh, f"cat > {shlex.quote(path)}"], input=data, check=True)
        else:
            Path(path).write_bytes(data)

    def timed(self, argv: list[str]) -> tuple[float, float, str]:
        cmd = ["python3", "-c", RUNNER, *argv]
        if self.ssh:
            cmd = [*self.ssh, shlex.join(cmd)]
        out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        if out["rc"] != 0:
            raise RuntimeError(f"{argv[0]} failed ({out['rc']}): {out['err']}")
        return float(out["wall"]), float(out["cpu"]), str(out["out"])


def top_ports(count: int = 100) -> str:
    """nmap's own top-N list (its scaninfo element), from a quick scan of a loopback address."""
    out = subprocess.run(["nmap", "-sT", "-Pn", "-n", "--top-ports", str(count), "-oX", "-", "127.0.0.1"],
                         capture_output=True, text=True, check=True).stdout
    info = ET.fromstring(out).find("scaninfo")  # noqa: S314 (nmap output of our own run)
    assert info is not None and info.get("services")
    return str(info.get("services"))


def run_nmap(runner: Runner, targets: str, ports: str) -> tuple[float, set[tuple[str, int]]]:
    seconds, _cpu, out = runner.timed(["nmap", "-sT", "-T4", "-Pn", "-n", "--open", "-p", ports, "-oX", "-",
                                       targets])
    found = set()
    for host in ET.fromstring(out).iter("host"):  # noqa: S314 (nmap output of our own run)
        addr = host.find("address")
        for port in host.iter("port"):
            state = port.find("state")
            if addr is not None and state is not None and state.get("state") == "open":
                found.add((str(addr.get("addr")), int(port.get("portid", "0"))))
    return seconds, found


def run_agent(runner: Runner, agent: str, first: str, last: str, ports: str, rate: int, concurrency: int
              ) -> tuple[float, float, set[tuple[str, int]], int]:
    seconds, cpu, out = runner.timed(["python3", agent, "scan", "--targets", f"{first}-{last}", "--ports", ports,
                                      "--scope", "127.0.0.0/8", "198.18.0.0/15", "--rate", str(rate),
                                      "--concurrency", str(concurrency), "--timeout-ms", "1000"])
    data = json.loads(out)
    return seconds, cpu, {(ip, int(p)) for ip, p in data["open"]}, int(data["attempts"])


def compare(runner: Runner, name: str, agent: str, first: str, last: str, nmap_targets: str, ports: str,
            rate: int, concurrency: int) -> None:
    a_wall, a_cpu, a_open, attempts = run_agent(runner, agent, first, last, ports, rate, concurrency)
    n_wall, n_open = run_nmap(runner, nmap_targets, ports)
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
    parser.add_argument("--lab", metavar="HOST", help="run both tools on this lab host (e.g. scanner-a)")
    parser.add_argument("--host", help="host for the full-range case (default 127.82.0.1, lab: 198.18.0.30)")
    parser.add_argument("--net", help="/24 for the top-100 case (default 127.82.1.0/24, lab: 198.18.0.0/24)")
    parser.add_argument("--rate", type=int, default=200000)
    parser.add_argument("--concurrency", type=int, default=4000)
    args = parser.parse_args()
    args.host = args.host or ("198.18.0.30" if args.lab else "127.82.0.1")
    args.net = args.net or ("198.18.0.0/24" if args.lab else "127.82.1.0/24")
    if shutil.which("nmap") is None:
        print("nmap is not installed here (apt-get install -y nmap): it lists the top-100 ports", file=sys.stderr)
        return 2
    runner = Runner(args.lab)
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
        agent = "/tmp/mipo-bench-agent.pyz" if args.lab else str(Path(tmp) / "agent.pyz")
        runner.put(build_zipapp(), agent)
        top = top_ports(100)
        where = f" (on {args.lab})" if args.lab else ""
        compare(runner, f"full TCP range of {host}{where}", agent, str(host), str(host), str(host), "1-65535",
                args.rate, args.concurrency)
        compare(runner, f"{net} x top-100 ports{where}", agent, str(net[0]), str(net[-1]), str(net), top,
                args.rate, args.concurrency)
    for s in listeners:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
