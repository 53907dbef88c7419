"""Long-running processes the lab starts itself (nspawn, apt-cacher-ng): start detached, find, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def start_detached(
    argv: list[str], log: Path, pidfile: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start argv in its own session (it outlives the caller), output appended to log, pid written.
    While starting it, ask the returned Popen whether it exited: its /proc command line may still be
    empty for a moment after the start (seen on this kind of machine), so `alive()` can miss it."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    pidfile.write_text(f"{proc.pid}\n")
    return proc


def _reap(pid: int) -> None:
    # Only our own children can be reaped; others are reaped by whoever adopted them.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int, marker: str) -> bool:
    """pid runs and its command line contains marker (guards against a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        _reap(pid)
        return False
    return marker in cmdline


def read_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in pidfile when that process still runs, else None."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid, marker) else None


def stop(pid: int, marker: str, timeout: float) -> bool:
    """SIGTERM, wait up to timeout, then SIGKILL; True when it ended within the timeout."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid, marker):
            return True
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(50):
        if not alive(pid, marker):
            break
        time.sleep(0.1)
    return False
