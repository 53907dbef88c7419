"""The multi-process scan: chunks cover every probe exactly once and merge into one result."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.scanner.engine import OpenPort
from app.scanner.parallel import ParallelScanner
from app.scanner.ports import ProbeSpace, iter_addresses, iter_ports, parse_ports, parse_targets

HOST = "127.83.0.1"


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_workers_together_find_exactly_the_listening_ports_once(start: str) -> None:
    """Forked workers (a single-threaded scan) and spawned ones (the agent, which has threads) alike."""
    listeners = [socket.create_server((HOST, 0)) for _ in range(9)]
    # Bound but not listening: surely closed, and no wildcard listener of another process can hold them.
    closed = [socket.socket() for _ in range(300)]
    for s in closed:
        s.bind((HOST, 0))
    ports = sorted(s.getsockname()[1] for s in listeners)
    probed = sorted(ports + [s.getsockname()[1] for s in closed])
    found: list[OpenPort] = []
    try:
        scanner = ParallelScanner(rate=50000, concurrency=400, timeout=5.0, workers=3, start=start)
        stats = asyncio.run(scanner.run([[HOST, HOST]], ",".join(map(str, probed)), found.append))
    finally:
        for s in listeners + closed:
            s.close()
    assert sorted(f.port for f in found) == ports  # each open port reported once, by one process
    assert stats.attempts == len(probed) == scanner.done
    assert stats.open == len(ports) and stats.closed == len(probed) - len(ports)


_THREAD_CHECK = """
import threading
from app.scanner.parallel import _single_threaded
alone = _single_threaded()
started, done = threading.Event(), threading.Event()
thread = threading.Thread(target=lambda: (started.set(), done.wait(10)))
thread.start()
started.wait(5)
print(alone, _single_threaded())
done.set()
thread.join()
"""


def test_a_process_with_threads_spawns_its_workers_and_a_single_threaded_one_forks_them() -> None:
    """fork() is only safe without other threads (one may hold a lock the child would need).

    Checked in a fresh interpreter: this pytest process may have threads of its own (fixtures, earlier tests)."""
    out = subprocess.run([sys.executable, "-c", _THREAD_CHECK], capture_output=True, text=True, check=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.split() == ["True", "False"]


def _port_on_both(hosts: list[str], listen_on: int | None) -> list[socket.socket]:
    """One port held on every host: listening on hosts[listen_on] (first in the list), bound elsewhere."""
    while True:
        first = socket.create_server((hosts[listen_on or 0], 0)) if listen_on is not None else socket.socket()
        if listen_on is None:
            first.bind((hosts[0], 0))
        port, held = first.getsockname()[1], [first]
        try:
            for host in hosts:
                if host != first.getsockname()[0]:
                    held.append(socket.socket())
                    held[-1].bind((host, port))
        except OSError:  # taken there: try another port
            for s in held:
                s.close()
            continue
        return held


def test_blocking_run_over_two_hosts_hands_out_every_probe_exactly_once() -> None:
    """The command line's path: chunks on demand (this process scans too), worker pipes on the scan's epoll."""
    hosts = [HOST, "127.83.0.2"]
    # Every probed port is held on both hosts (listening, or bound only: surely closed), so no wildcard
    # listener of another process can answer any probe.
    with_listener = [_port_on_both(hosts, listen_on=i % 2) for i in range(6)]
    listeners = [group[0] for group in with_listener]
    held = [s for group in with_listener for s in group[1:]]
    held += [s for _ in range(100) for s in _port_on_both(hosts, listen_on=None)]
    ports = sorted({s.getsockname()[1] for s in listeners + held})
    expected = sorted(s.getsockname() for s in listeners)
    found: list[OpenPort] = []
    try:
        scanner = ParallelScanner(rate=100000, concurrency=300, timeout=5.0, workers=3)
        stats = scanner.run_blocking([hosts], ",".join(map(str, ports)), found.append)
    finally:
        for s in listeners + held:
            s.close()
    assert sorted((f.ip, f.port) for f in found) == expected
    assert stats.attempts == stats.done == scanner.done == 2 * len(ports)
    assert stats.open == len(expected) and stats.errors == 0


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_stop_ends_the_workers_too(start: str) -> None:
    scanner = ParallelScanner(rate=400, concurrency=40, timeout=1.0, workers=2, start=start)

    async def go() -> int:
        task = asyncio.create_task(scanner.run([[HOST, HOST]], "1-65535", lambda o: None))
        await asyncio.sleep(0.5)
        scanner.stop()
        return (await task).attempts

    assert 0 < asyncio.run(go()) < 65535
    for worker in scanner._workers:  # reaped: no process of the scan is left behind
        assert worker.code is not None
        with pytest.raises(ChildProcessError):
            os.waitpid(worker.pid, os.WNOHANG)


@settings(deadline=None)  # a shared, busy machine: no per-example time limit
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 5)), min_size=1, max_size=3),
       st.sets(st.integers(1, 65535), min_size=1, max_size=20), st.integers(0, 2000), st.integers(0, 2000))
def test_probe_space_slices_are_the_scan_order(spans: list[tuple[int, int]], ports: set[int], a: int,
                                               b: int) -> None:
    ranges = [[str(ipaddress.ip_address(0xC6120000 + start)), str(ipaddress.ip_address(0xC6120000 + start + n))]
              for start, n in spans]
    parsed, intervals = parse_targets(ranges), parse_ports(",".join(map(str, ports)))
    order = [(ip, p) for ip in iter_addresses(parsed) for p in iter_ports(intervals)]
    space = ProbeSpace(parsed, intervals)
    assert space.total == len(order)
    assert list(space.between(a, b)) == order[a:b]
