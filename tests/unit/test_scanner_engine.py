"""The connect-scan engine against listeners of its own on a private loopback address."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from app.scanner.engine import ConnectScanner, OpenPort, TokenBucket, _connected_to_itself

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


def test_open_ports_are_reset_and_a_silent_port_times_out_as_filtered() -> None:
    """SO_LINGER 0: the listener's side of each connection reads ECONNRESET, not an orderly end. A port that
    never answers (its accept queue is full, so the kernel drops the SYN) is filtered after the timeout,
    and the few sockets the scan reuses keep working afterwards."""
    listener = socket.create_server((HOST, 0))
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen(0)
    filler = socket.create_connection(silent.getsockname(), timeout=5)  # the queue is now full
    closed = [socket.socket() for _ in range(60)]
    for s in closed:
        s.bind((HOST, 0))
    port, silent_port = listener.getsockname()[1], silent.getsockname()[1]
    probes = [(HOST, silent_port), (HOST, port)] + [(HOST, s.getsockname()[1]) for s in closed] + [(HOST, port)]
    found: list[OpenPort] = []
    try:
        # Longer than the kernel's first SYN retransmission (1 s): a packet lost on a busy loopback is resent
        # in time, so only the silent port can time out (and it is tried once more: the default retries).
        engine = ConnectScanner(rate=20000, concurrency=3, timeout=1.5)
        stats = engine.run_blocking(probes, found.append)
        accepted = [listener.accept()[0] for _ in range(2)]
        for conn in accepted:
            with pytest.raises(ConnectionResetError):
                conn.recv(16)
            conn.close()
    finally:
        for s in [listener, silent, filler, *closed]:
            s.close()
    assert [(f.ip, f.port) for f in found] == [(HOST, port), (HOST, port)]
    assert (stats.attempts, stats.open, stats.closed, stats.filtered, stats.errors) == (len(probes) + 1, 2, 60, 1, 0)
    assert stats.retried == 1


def test_a_timed_out_probe_leaves_its_socket_ready_for_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe still in SYN-SENT at its deadline is aborted (shutdown) and its socket probes on: with one
    probe at a time, one socket serves silent, closed and open ports alike, with the right answers. A retry
    of a timed-out probe takes another socket than its last attempt (a new source port): two in all."""
    import app.scanner.engine as engine_module

    silent, fillers = [], []
    for _ in range(3):
        s = socket.socket()
        s.bind((HOST, 0))
        s.listen(0)
        fillers.append(socket.create_connection(s.getsockname(), timeout=5))  # its queue is now full
        silent.append(s)
    listener = socket.create_server((HOST, 0))
    closed = [socket.socket() for _ in range(5)]
    for s in closed:
        s.bind((HOST, 0))
    probes = [(HOST, s.getsockname()[1]) for s in silent + closed] + [(HOST, listener.getsockname()[1])]
    created = []
    new_socket = engine_module._Scan._new_socket

    def counted(self: engine_module._Scan, source: str | None) -> object:
        created.append(source)
        return new_socket(self, source)

    monkeypatch.setattr(engine_module._Scan, "_new_socket", counted)
    found: list[OpenPort] = []
    try:
        stats = ConnectScanner(rate=1000, concurrency=1, timeout=0.3).run_blocking(probes, found.append)
    finally:
        for s in [listener, *silent, *fillers, *closed]:
            s.close()
    assert [(f.ip, f.port) for f in found] == [probes[-1]]
    assert (stats.attempts, stats.open, stats.closed, stats.filtered, stats.errors) == (12, 1, 5, 3, 0)
    assert stats.retried == 3
    assert len(created) == 2  # not one socket per timed-out probe, nor per retry


def test_ipv6_loopback_is_scanned_too() -> None:
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    closed = socket.socket(socket.AF_INET6)
    closed.bind(("::1", 0))
    port = listener.getsockname()[1]
    try:
        found: list[OpenPort] = []
        stats = asyncio.run(ConnectScanner(1000, 10, 2.0).run([("::1", port), ("::1", closed.getsockname()[1])],
                                                              found.append))
    finally:
        listener.close()
        closed.close()
    assert [(f.ip, f.port) for f in found] == [("::1", port)]
    assert (stats.open, stats.closed) == (1, 1)


def test_token_bucket_never_lends_more_than_rate_times_time_plus_burst() -> None:
    """Any sequence of clock readings: spent <= rate*T + burst, and a greedy taker gets all of it but a token."""
    rng = random.Random(4)
    rate, burst = 1000.0, 20.0
    now = 0.0
    bucket = TokenBucket(rate, burst, now)
    spent = 0
    for _ in range(20000):
        now += rng.choice((0.0, 0.0001, 0.0013, 0.02, 0.5))
        take = bucket.available(now)
        take = rng.choice((take, take // 2, 0))
        bucket.spend(take)
        spent += take
        assert spent <= rate * now + max(burst, 1.0)
    # After a pause it has saved up exactly the burst, no more.
    assert bucket.available(now + 10.0) == int(burst)


def test_configured_rate_holds_in_a_real_scan() -> None:
    """300 probes at 500/s with a 10-probe burst cannot finish before (300 - 10 - 1) / 500 s: a lower bound,
    so a slow machine cannot make this fail, only a limiter that lets probes through too fast."""
    closed = [socket.socket() for _ in range(300)]
    for s in closed:
        s.bind((HOST, 0))
    try:
        engine = ConnectScanner(rate=500, concurrency=50, timeout=2.0)
        stats = engine.run_blocking([(HOST, s.getsockname()[1]) for s in closed], lambda o: None)
    finally:
        for s in closed:
            s.close()
    assert stats.closed == 300
    assert stats.seconds >= (300 - 10 - 1) / 500


def test_a_socket_connected_to_itself_is_told_apart() -> None:
    """Probing the scanner's own address at a probing socket's own source port "connects" without any
    listener (TCP simultaneous open): the engine must not call that port open."""
    me = socket.socket()
    me.bind(("127.0.0.1", 0))
    me.settimeout(5)
    try:
        me.connect(me.getsockname())
        assert _connected_to_itself(me)
    finally:
        me.close()
    listener = socket.create_server((HOST, 0))
    other = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        assert not _connected_to_itself(other)
    finally:
        other.close()
        listener.close()
