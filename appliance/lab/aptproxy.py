"""The lab's only way out: apt-cacher-ng on this machine, listening on both bridge gateways."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from appliance.image import CACHE_ROOT
from appliance.lab import procs
from appliance.lab.state import LabError
from appliance.lab.topology import APT_PROXY_PORT, NETWORKS

BINARY = "/usr/sbin/apt-cacher-ng"
MARKER = "apt-cacher-ng"


def cache_dir() -> Path:
    """Downloaded packages, kept across `mipo lab destroy` so the next lab starts warm."""
    return CACHE_ROOT / "apt-cacher-ng"


def _dir(state_dir: Path) -> Path:
    return state_dir / "apt-cacher-ng"


def answers(address: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, APT_PROXY_PORT), timeout=timeout):
            return True
    except OSError:
        return False


def acng_conf(gateways: list[str], work: Path) -> str:
    """Our own configuration (the system's /etc/apt-cacher-ng may remap Debian to unreachable mirrors):
    every Debian mirror name is fetched from deb.debian.org, the only mirror the image uses."""
    return (
        f"CacheDir: {cache_dir()}\n"
        f"LogDir: {work / 'log'}\n"
        "SupportDir: /usr/lib/apt-cacher-ng\n"
        f"SocketPath: {work / 'socket'}\n"
        f"PidFile: {work / 'acng.pid'}\n"
        f"Port: {APT_PROXY_PORT}\n"
        f"BindAddress: {' '.join(gateways)}\n"
        "Remap-debrep: file:deb_mirror*.gz /debian ; http://deb.debian.org/debian/\n"
        "Remap-secdeb: security.debian.org deb.debian.org/debian-security ; http://deb.debian.org/debian-security/\n"
        "ExThreshold: 4\n"
        "ReportPage: acng-report.html\n"
    )


def running_pid(state_dir: Path) -> int | None:
    return procs.read_pid(_dir(state_dir) / "pid", MARKER)


def ensure_running(state_dir: Path) -> None:
    """Start the proxy unless ours already runs with the current configuration; needs the bridges
    (it binds to their addresses)."""
    work = _dir(state_dir)
    gateways = [net.gateway for net in NETWORKS.values()]
    wanted = acng_conf(gateways, work)
    pid = running_pid(state_dir)
    if pid is not None:
        try:
            current = (work / "conf" / "acng.conf").read_text()
        except FileNotFoundError:
            current = ""
        if current == wanted:
            return
        procs.stop(pid, MARKER, timeout=10)  # configuration changed (e.g. the port): restart it
    if not Path(BINARY).exists():
        raise LabError(f"{BINARY} is missing: install it with `apt-get install apt-cacher-ng` (or run appliance/mipo)")
    taken = [gw for gw in gateways if answers(gw, 0.3)]
    if taken:
        raise LabError(f"something else already listens on {taken[0]}:{APT_PROXY_PORT}: stop it, then run "
                       "`mipo lab up` again")
    (work / "log").mkdir(parents=True, exist_ok=True)
    cache_dir().mkdir(parents=True, exist_ok=True)
    conf = work / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "acng.conf").write_text(wanted)
    (work / "socket").unlink(missing_ok=True)  # left behind when a previous proxy was killed
    argv = [BINARY, "-c", str(conf), "ForeGround=1"]
    proc = procs.start_detached(argv, work / "apt-cacher-ng.out", work / "pid")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(answers(gw, 0.3) for gw in gateways):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    output = (work / "apt-cacher-ng.out").read_text(errors="replace").strip().splitlines()
    raise LabError(f"apt-cacher-ng did not start listening on {', '.join(gateways)}:{APT_PROXY_PORT} "
                   f"({output[-1] if output else 'no output'}); see {work / 'apt-cacher-ng.out'}, then run "
                   "`mipo lab up` again")


def stop(state_dir: Path) -> None:
    pid = running_pid(state_dir)
    if pid is not None:
        procs.stop(pid, MARKER, timeout=10)
