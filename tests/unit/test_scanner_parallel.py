"""The multi-process scan: shards cover every probe exactly once and merge into one result."""

from __future__ import annotations

import asyncio
import socket

from app.scanner.engine import OpenPort
from app.scanner.parallel import ParallelScanner

HOST = "127.83.0.1"


def test_workers_together_find_exactly_the_listening_ports_once() -> None:
    listeners = [socket.create_server((HOST, 0)) for _ in range(9)]
    # Bound but not listening: surely closed, and no wildcard listener of another process can hold them.
    closed = [socket.socket() for _ in range(300)]
    for s in closed:
        s.bind((HOST, 0))
    ports = sorted(s.getsockname()[1] for s in listeners)
    probed = sorted(ports + [s.getsockname()[1] for s in closed])
    found: list[OpenPort] = []
    try:
        scanner = ParallelScanner(rate=50000, concurrency=400, timeout=5.0, workers=3)
        stats = asyncio.run(scanner.run([[HOST, HOST]], ",".join(map(str, probed)), found.append))
    finally:
        for s in listeners + closed:
            s.close()
    assert sorted(f.port for f in found) == ports  # each open port reported once, by one shard
    assert stats.attempts == len(probed) == scanner.done
    assert stats.open == len(ports) and stats.closed == len(probed) - len(ports)
