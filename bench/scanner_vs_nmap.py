"""Benchmark: the mipo agent's connect scan against `nmap -sT -T4`, side by side on the same targets.

Cases: the full TCP range of one host, and a /24 x nmap's own top-100 ports. Both tools get the same
targets and ports, run one after the other (order alternating per round), `--repeat` rounds; the medians
are compared. Where they run (`--where`):

* `netns` (default): two network namespaces this bench creates and removes, joined by a veth pair. The
  "target" namespace holds 198.19.82.1 (listening on 22, 443, 8080, like the lab's `target`) and three
  more hosts of 198.19.82.0/24 (22, 80, 443); the rest of the /24 does not exist (ARP goes unanswered),
  as in the lab. Both tools run inside the "scanner" namespace. Nothing in this machine's own
  namespace changes. `--filtered N` makes the first host drop N ports silently (a firewall).
* `loopback`: 127.82.0.1 and 127.82.1.0/24 with a few listeners this process opens (every port answers
  at once: a pure CPU race). Any other process's wildcard (0.0.0.0) listener answers there too, so on a
  shared machine the open sets can differ between rounds (a test's listeners come and go).
* `--lab scanner-a`: both tools on that booted lab host (over the lab's SSH) against the lab's `target`
  (198.18.0.30) and the lab's external /24.

Only loopback and the lab range 198.18.0.0/15 are ever scanned. Prints both exact command lines (nmap's
as recorded in its own XML), wall and CPU times, the ratio (target <= 0.5x nmap), whether the open-port
sets are equal in every round, and the agent's connect attempts per second per CPU core (target >= 10,000).
nmap -T4 has no rate cap, so the agent's default `--rate` is high enough not to bind either.

    .venv/bin/python bench/scanner_vs_nmap.py [--where netns|loopback] [--repeat 3] [--rate 1000000]
    .venv/bin/python bench/scanner_vs_nmap.py --lab scanner-a
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.scanner.build import build_zipapp

ALLOWED = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.18.0.0/15")]
NETNS_NET = "198.19.82.0/24"
NETNS_SCANNER = "198.19.82.254"
NETNS_HOSTS = {"198.19.82.1": (22, 443, 8080), "198.19.82.5": (22, 80, 443), "198.19.82.77": (22, 80, 443),
               "198.19.82.200": (22, 80, 443)}

# Runs one command and reports its wall time and CPU time (children's rusage: the agent's worker processes
# included); stdlib only, so it runs unchanged here, in a namespace or on a lab scanner host.
RUNNER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.monotonic()\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "w = time.monotonic() - t\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'wall': w, 'cpu': r.ru_utime + r.ru_stime, 'rc': p.returncode, 'out': p.stdout,"
    " 'err': p.stderr[-500:]}))\n"
)


# Asks each disputed port once more with a plain blocking connect (3 s), to tell which tool was wrong.
ARBITER = (
    "import socket, sys\n"
    "for item in sys.argv[1:]:\n"
    "    ip, port = item.rsplit(':', 1)\n"
    "    try:\n"
    "        socket.create_connection((ip, int(port)), timeout=3).close()\n"
    "        verdict = 'open'\n"
    "    except ConnectionRefusedError:\n"
    "        verdict = 'closed (refused)'\n"
    "    except OSError as exc:\n"
    "        verdict = f'no connection ({exc.strerror or exc})'\n"
    "    print(item, verdict)\n"
)


@dataclass
class Run:
    tool: str
    wall: float
    cpu: float
    open: set[tuple[str, int]]
    attempts: int = 0
    scan: float = 0.0  # the agent's own scan phase (its JSON "seconds"): the rest is start-up and exit
    reasons: dict[tuple[str, int], str] = field(default_factory=dict)  # nmap's reason per open port


class Runner:
    """Where both tools run: here, in a namespace (`ip netns exec`), or on a lab host over SSH."""

    def __init__(self, prefix: list[str], remote: bool, python: str) -> None:
        self.prefix, self.remote, self.python = prefix, remote, python

    def put(self, data: bytes, path: str) -> None:
        if self.remote:
            subprocess.run([*self.prefix, f"cat > {shlex.quote(path)}"], input=data, check=True)
        else:
            Path(path).write_bytes(data)

    def timed(self, argv: list[str]) -> tuple[float, float, str]:
        cmd = [self.python, "-c", RUNNER, *argv]
        cmd = [*self.prefix, shlex.join(cmd)] if self.remote else [*self.prefix, *cmd]
        out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        if out["rc"] != 0:
            raise RuntimeError(f"{argv[0]} failed ({out['rc']}): {out['err']}")
        return float(out["wall"]), float(out["cpu"]), str(out["out"])

    def output(self, argv: list[str]) -> str:
        cmd = [*self.prefix, shlex.join(argv)] if self.remote else [*self.prefix, *argv]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextlib.contextmanager
def netns_lab(filtered: int) -> Iterator[str]:
    """Two namespaces joined by a veth pair; yields the scanner namespace's name; removes everything after.
    `filtered` > 0: the first host drops (no answer at all) TCP to ports 10000 .. 10000+filtered-1."""
    tag = f"mipob{os.getpid() % 100000}"
    scanner, target = f"{tag}s", f"{tag}t"
    listener = None
    try:
        run(["ip", "netns", "add", scanner])
        run(["ip", "netns", "add", target])
        run(["ip", "link", "add", f"{tag}s0", "netns", scanner, "type", "veth", "peer", "name", f"{tag}t0",
             "netns", target])
        run(["ip", "-n", scanner, "addr", "add", f"{NETNS_SCANNER}/24", "dev", f"{tag}s0"])
        for host in NETNS_HOSTS:
            run(["ip", "-n", target, "addr", "add", f"{host}/24", "dev", f"{tag}t0"])
        for ns, dev in ((scanner, f"{tag}s0"), (target, f"{tag}t0")):
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        if filtered > 0:
            first = next(iter(NETNS_HOSTS))
            # One statement a line: this nft (1.0.6) refuses a rule followed by "; }" on one line.
            rules = ("table inet bench {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
                     f"  ip daddr {first} tcp dport 10000-{10000 + filtered - 1} drop\n }}\n}}\n")
            subprocess.run(["ip", "netns", "exec", target, "nft", "-f", "-"], input=rules, text=True, check=True)
        serve = ("import socket, sys, time\n"
                 f"held = [socket.create_server((h, p)) for h, ps in {NETNS_HOSTS!r}.items() for p in ps]\n"
                 "print('ready', flush=True)\n"
                 "sys.stdin.read()\n")
        listener = subprocess.Popen(["ip", "netns", "exec", target, sys.executable, "-c", serve],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert listener.stdout is not None
        if listener.stdout.readline().strip() != "ready":
            raise RuntimeError("the target namespace's listeners did not start")
        yield scanner
    finally:
        if listener is not None:
            assert listener.stdin is not None
            listener.stdin.close()  # the listener exits at end of input
            listener.wait(10)
        for ns in (scanner, target):  # deleting a namespace deletes its end of the veth pair too
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def top_ports(count: int = 100) -> str:
    """nmap's own top-N list (its scaninfo element), from a quick scan of a loopback address."""
    out = subprocess.run(["nmap", "-sT", "-Pn", "-n", "--top-ports", str(count), "-oX", "-", "127.0.0.1"],
                         capture_output=True, text=True, check=True).stdout
    info = ET.fromstring(out).find("scaninfo")  # noqa: S314 (nmap output of our own run)
    assert info is not None and info.get("services")
    return str(info.get("services"))


def nmap_argv(targets: str, ports: str) -> list[str]:
    return ["nmap", "-sT", "-T4", "-Pn", "-n", "--open", "-p", ports, "-oX", "-", targets]


def run_nmap(runner: Runner, targets: str, ports: str) -> tuple[Run, str]:
    seconds, cpu, out = runner.timed(nmap_argv(targets, ports))
    root = ET.fromstring(out)  # noqa: S314 (nmap output of our own run)
    reasons = {}
    for host in root.iter("host"):
        addr = host.find("address")
        for port in host.iter("port"):
            state = port.find("state")
            if addr is not None and state is not None and state.get("state") == "open":
                reasons[(str(addr.get("addr")), int(port.get("portid", "0")))] = str(state.get("reason"))
    return Run("nmap", seconds, cpu, set(reasons), reasons=reasons), str(root.get("args", ""))


def agent_argv(python: str, agent: str, first: str, last: str, ports: str, args: argparse.Namespace) -> list[str]:
    argv = [python, agent, "scan", "--targets", f"{first}-{last}", "--ports", ports, "--scope", "127.0.0.0/8",
            "198.18.0.0/15", "--rate", str(args.rate), "--concurrency", str(args.concurrency), "--timeout-ms",
            str(args.timeout_ms)]
    return argv + (["--workers", str(args.workers)] if args.workers else [])


def run_agent(runner: Runner, argv: list[str]) -> Run:
    seconds, cpu, out = runner.timed(argv)
    data = json.loads(out)
    return Run("agent", seconds, cpu, {(ip, int(p)) for ip, p in data["open"]}, int(data["attempts"]),
               scan=float(data.get("seconds", 0.0)))


def short(argv: list[str], limit: int = 160) -> str:
    text = shlex.join(argv)
    return text if len(text) <= limit else text[:limit] + " …"


def compare(runner: Runner, name: str, agent: str, first: str, last: str, nmap_targets: str, ports: str,
            args: argparse.Namespace) -> bool:
    a_argv = agent_argv(runner.python, agent, first, last, ports, args)
    print(f"{name}:")
    print(f"  agent: {short(a_argv)}")
    agents: list[Run] = []
    nmaps: list[Run] = []
    nmap_args = ""
    begin = time.monotonic()
    for i in range(args.repeat):
        if i and time.monotonic() - begin > args.budget:
            print(f"  (no more rounds: past the {args.budget:.0f} s budget of a case)")
            break
        # Alternate who goes first, so neither always meets a warmer (or busier) machine.
        order = ("agent", "nmap") if i % 2 == 0 else ("nmap", "agent")
        for tool in order:
            if tool == "agent":
                agents.append(run_agent(runner, a_argv))
            else:
                result, nmap_args = run_nmap(runner, nmap_targets, ports)
                nmaps.append(result)
        a, n = agents[-1], nmaps[-1]
        print(f"  round {i + 1}: agent {a.wall:6.2f} s (cpu {a.cpu:5.2f} s, {len(a.open)} open, scan {a.scan:.2f} s)   "
              f"nmap {n.wall:6.2f} s (cpu {n.cpu:5.2f} s, {len(n.open)} open)   ratio {a.wall / n.wall:.2f}x",
              flush=True)
    print(f"  nmap:  {short(nmap_args.split())}  (as recorded in nmap's XML)")
    a_wall, n_wall = statistics.median(r.wall for r in agents), statistics.median(r.wall for r in nmaps)
    a_cpu = statistics.median(r.cpu for r in agents)
    attempts = agents[0].attempts
    same = all(r.open == nmaps[0].open for r in agents + nmaps)
    print(f"  median agent {a_wall:.2f} s, nmap {n_wall:.2f} s   ratio agent/nmap wall time = {a_wall / n_wall:.2f}x"
          f" (target <= 0.5x)")
    print(f"  same open ports in every round: {'yes' if same else 'NO'} ({len(nmaps[0].open)} open)")
    if not same:
        everywhere = set.intersection(*(r.open for r in agents + nmaps))
        for i, r in enumerate(agents + nmaps):
            if r.open != everywhere:
                extra = sorted(r.open - everywhere)[:10]
                why = ", ".join(f"{ip}:{port} ({r.reasons[(ip, port)]})" if (ip, port) in r.reasons else f"{ip}:{port}"
                                for ip, port in extra)
                print(f"    {r.tool} round {i % len(agents) + 1} alone reported open: {why}")
        disputed = sorted(set.union(*(r.open for r in agents + nmaps)) - everywhere)[:20]
        print("    a plain connect now says:")
        verdicts = runner.output([runner.python, "-c", ARBITER, *(f"{ip}:{port}" for ip, port in disputed)])
        for line in verdicts.splitlines():
            print(f"      {line}")
    print(f"  agent: {attempts} connect attempts, cpu {a_cpu:.2f} s -> {attempts / max(a_cpu, 1e-6):,.0f} connects/s"
          f" per core (target >= 10,000)")
    return same and a_wall <= 0.5 * n_wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--where", choices=("netns", "loopback"), default="netns")
    parser.add_argument("--lab", metavar="HOST", help="run both tools on this lab host (e.g. scanner-a)")
    parser.add_argument("--host", help="host for the full-range case (default: per --where / --lab)")
    parser.add_argument("--net", help="/24 for the top-100 case (default: per --where / --lab)")
    parser.add_argument("--case", choices=("both", "full", "net"), default="both")
    parser.add_argument("--filtered", type=int, default=0, metavar="N",
                        help="netns: the full-range host silently drops N ports (10000..) (the lab's has none)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per case; medians are compared")
    parser.add_argument("--budget", type=float, default=60.0, help="start no further round of a case after this")
    parser.add_argument("--rate", type=int, default=1000000, help="agent probes/s (nmap -T4 has no rate cap)")
    parser.add_argument("--concurrency", type=int, default=4000)
    parser.add_argument("--timeout-ms", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=0, help="agent processes (default: its own choice)")
    parser.add_argument("--agent-pyz", metavar="FILE", help="bench this agent build (e.g. an older one) instead"
                        " of building one from this tree")
    args = parser.parse_args()
    where = f"lab:{args.lab}" if args.lab else args.where
    defaults = {"netns": ("198.19.82.1", NETNS_NET), "loopback": ("127.82.0.1", "127.82.1.0/24")}
    host_default, net_default = defaults.get(where, ("198.18.0.30", "198.18.0.0/24"))
    host = ipaddress.ip_address(args.host or host_default)
    net = ipaddress.ip_network(args.net or net_default, strict=False)
    if shutil.which("nmap") is None:
        print("nmap is not installed here (apt-get install -y nmap): it lists the top-100 ports", file=sys.stderr)
        return 2
    if not any(host in n for n in ALLOWED) or not any(net.subnet_of(n) for n in ALLOWED):  # type: ignore[arg-type]
        print("refusing: only loopback and the lab range 198.18.0.0/15 may be scanned", file=sys.stderr)
        return 2
    top = top_ports(100)
    # The deployed agent runs under the system interpreter (ExecStart=/usr/bin/python3): so does the bench.
    python = "python3" if args.lab else ("/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable)
    ok = True
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        if args.lab:
            from appliance.lab.state import load_lab_state

            runner = Runner(load_lab_state().ssh_command(args.lab), True, python)
            agent = "/tmp/mipo-bench-agent.pyz"
        else:
            prefix = ["ip", "netns", "exec", stack.enter_context(netns_lab(args.filtered))] if where == "netns" else []
            runner = Runner(prefix, False, python)
            agent = str(Path(tmp) / "agent.pyz")
            if where == "loopback":
                for sock in loopback_listeners(host, net):
                    stack.callback(sock.close)
        runner.put(Path(args.agent_pyz).read_bytes() if args.agent_pyz else build_zipapp(), agent)
        version = "" if args.lab else f"; nmap {nmap_version()}"
        print(f"where: {where}; agent interpreter {python}{version}; {os.cpu_count()} CPUs here,"
              f" load {os.getloadavg()[0]:.2f} at start", flush=True)
        print(f"agent at --rate {args.rate} --concurrency {args.concurrency} --timeout-ms {args.timeout_ms}"
              " (nmap -T4 has no rate cap; a scanner added with the appliance's defaults runs at 20000/s,"
              " concurrency 2000)")
        if args.case in ("both", "full"):
            note = f" ({args.filtered} ports silently dropped)" if args.filtered and where == "netns" else ""
            ok &= compare(runner, f"full TCP range of {host}{note}", agent, str(host), str(host), str(host), "1-65535",
                          args)
        if args.case in ("both", "net"):
            ok &= compare(runner, f"{net} x top-100 ports", agent, str(net[0]), str(net[-1]), str(net), top, args)
    print(f"load {os.getloadavg()[0]:.2f} at the end ({time.strftime('%H:%M:%S')});"
          f" every case within target: {'yes' if ok else 'no'}")
    return 0


def loopback_listeners(host: ipaddress.IPv4Address | ipaddress.IPv6Address,
                       net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[socket.socket]:
    """Something to find: a few listeners on the host, and on some of the /24's addresses (top ports)."""
    held = []
    for port in (22, 80, 443, 8080, 31337, 45000):
        with contextlib.suppress(OSError):
            held.append(socket.create_server((str(host), port)))
    for i in (5, 77, 200):
        for port in (22, 80, 443):
            with contextlib.suppress(OSError):
                held.append(socket.create_server((str(net[i]), port)))
    return held


def nmap_version() -> str:
    out = subprocess.run(["nmap", "--version"], capture_output=True, text=True, check=False).stdout
    return out.split("\n")[0].replace("Nmap version ", "").split(" ")[0] if out else "?"


if __name__ == "__main__":
    sys.exit(main())
