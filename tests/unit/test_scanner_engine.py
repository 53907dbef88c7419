"""The connect-scan engine against listeners of its own on a private loopback address."""

from __future__ import annotations

import asyncio
import socket

from app.scanner.engine import ConnectScanner, OpenPort

HOST = "127.80.0.1"


def test_engine_reports_exactly_the_listening_ports() -> None:
    listeners = [socket.create_server((HOST, 0)) for _ in range(7)]
    # Bound but not listening: surely closed, and no wildcard listener of another process can hold them.
    closed = [socket.socket() for _ in range(500)]
    for s in closed:
        s.bind((HOST, 0))
    ports = sorted(s.getsockname()[1] for s in listeners)
    probe_ports = sorted(ports + [s.getsockname()[1] for s in closed])
    found: list[OpenPort] = []
    try:
        engine = ConnectScanner(rate=20000, concurrency=500, timeout=5.0)
        stats = asyncio.run(engine.run(((HOST, p) for p in probe_ports), found.append))
    finally:
        for s in listeners + closed:
            s.close()
    assert sorted(f.port for f in found) == ports
    assert all(f.ip == HOST and f.rtt_ms >= 0 for f in found)
    assert stats.attempts == len(probe_ports) == stats.done
    assert stats.closed == len(probe_ports) - len(ports)


def test_stop_aborts_a_scan_early() -> None:
    engine = ConnectScanner(rate=200, concurrency=10, timeout=1.0)

    async def go() -> int:
        task = asyncio.create_task(engine.run(((HOST, p) for p in range(1, 65536)), lambda o: None))
        await asyncio.sleep(0.2)
        engine.stop()
        return (await task).attempts

    assert 0 < asyncio.run(go()) < 65535
