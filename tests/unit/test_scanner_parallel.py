"""The multi-process scan: shards cover every probe exactly once and merge into one result."""

from __future__ import annotations

import asyncio
import socket

from app.scanner.engine import OpenPort
from app.scanner.parallel import ParallelScanner

HOST = "127.83.0.1"


def test_workers_together_find_exactly_the_listening_ports_once() -> None:
    listeners = [socket.create_server((HOST, 0)) for _ in range(9)]
    ports = sorted(s.getsockname()[1] for s in listeners)
    low, high = min(ports) - 200, max(ports) + 200
    spec = f"{max(1, low)}-{min(65535, high)}" if high - low < 20000 else ",".join(map(str, ports))
    found: list[OpenPort] = []
    try:
        scanner = ParallelScanner(rate=50000, concurrency=400, timeout=1.0, workers=3)
        stats = asyncio.run(scanner.run([[HOST, HOST]], spec, found.append))
    finally:
        for s in listeners:
            s.close()
    assert sorted(f.port for f in found) == ports  # each open port reported once, by one shard
    expected = sum(int(b) - int(a) + 1 if "-" in item else 1
                   for item in spec.split(",") for a, _, b in [item.partition("-")])
    assert stats.attempts == expected == scanner.done
    assert stats.open == len(ports) and stats.closed == expected - len(ports)
