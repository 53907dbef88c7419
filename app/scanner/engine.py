"""TCP connect scan engine: non-blocking connects on the asyncio loop, token-bucket rate, bounded concurrency."""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import errno
import resource
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# l_onoff=1, l_linger=0: close() sends RST instead of FIN, so no TIME-WAIT entry throttles the scan.
_LINGER_ABORT = struct.pack("ii", 1, 0)
_STREAM_NONBLOCK = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)
_NEEDS_SETBLOCKING = not getattr(socket, "SOCK_NONBLOCK", 0)
_EPOLLOUT_ONCE = getattr(select, "EPOLLOUT", 0) | getattr(select, "EPOLLONESHOT", 0)
_RETRY_LATER = {errno.EAGAIN, errno.EADDRNOTAVAIL, errno.ENOBUFS, errno.EMFILE, errno.ENFILE}


@dataclass(slots=True)
class OpenPort:
    ip: str
    port: int
    rtt_ms: float
    at: float


@dataclass(slots=True)
class ScanStats:
    attempts: int = 0
    open: int = 0
    closed: int = 0
    filtered: int = 0
    errors: int = 0
    seconds: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.open + self.closed + self.filtered + self.errors


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted` (bounded by the hard limit); return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):  # sandboxed (the unit sets LimitNOFILE= instead): live with the limit
            return soft
        return target
    return soft


class ConnectScanner:
    """One scan: `await run(probes, on_open)`; `stop()` aborts it (e.g. when the lease is lost)."""

    def __init__(self, rate: float, concurrency: int, timeout: float) -> None:
        self.rate = max(1.0, float(rate))
        limit = raise_fd_limit(concurrency + 256)
        self.concurrency = max(1, min(concurrency, limit - 128))
        self.timeout = timeout
        self.stats = ScanStats()
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    async def run(self, probes: Iterable[tuple[str, int]], on_open: Callable[[OpenPort], None]) -> ScanStats:
        loop = asyncio.get_running_loop()
        stats = self.stats
        pending: dict[int, tuple[_socket.socket, str, int, float]] = {}
        # All probes share one timeout, so start order is deadline order: a FIFO is a timer wheel.
        deadlines: deque[tuple[float, int, _socket.socket]] = deque()
        slot = asyncio.Event()
        concurrency = self.concurrency

        # Linux: one epoll set for all probes, drained in batches from a single asyncio reader callback
        # (far fewer Python objects and syscalls per probe than add_writer/remove_writer for each socket).
        poller = select.epoll() if hasattr(select, "epoll") else None

        def finish(fd: int) -> None:
            entry = pending.pop(fd, None)
            if entry is None:
                return
            sock, ip, port, started = entry
            if poller is None:
                loop.remove_writer(fd)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                stats.open += 1
                on_open(OpenPort(ip, port, (time.monotonic() - started) * 1000.0, time.time()))
            elif err == errno.ECONNREFUSED:
                stats.closed += 1
            elif err in (errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH):
                stats.filtered += 1
            else:
                stats.errors += 1
            sock.close()  # closing also drops the fd from the epoll set
            if poller is None:
                slot.set()

        def drain() -> None:
            assert poller is not None
            while True:
                events = poller.poll(0, 4096)
                for fd, _mask in events:
                    finish(fd)
                if len(events) < 4096:
                    slot.set()
                    return

        if poller is not None:
            loop.add_reader(poller.fileno(), drain)

        def sweep() -> None:
            if poller is not None:
                drain()  # after a stall, connects that did complete must not be judged timed out
            now = time.monotonic()
            while deadlines and deadlines[0][0] <= now:
                _, fd, sock = deadlines.popleft()
                entry = pending.get(fd)
                if entry is not None and entry[0] is sock:  # fds are reused: only the probe it was
                    del pending[fd]
                    if poller is None:
                        loop.remove_writer(fd)
                    sock.close()
                    stats.filtered += 1
                    slot.set()

        def launch(ip: str, port: int) -> bool:
            """Start one connect; False when the system is out of sockets/ports (retry after a sweep)."""
            try:
                # The C-level socket type: no Python __init__/close wrappers on the hot path.
                sock = _socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, _STREAM_NONBLOCK)
            except OSError as exc:
                if exc.errno in _RETRY_LATER:
                    return False
                raise
            if _NEEDS_SETBLOCKING:
                sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
            started = time.monotonic()
            err = sock.connect_ex((ip, port))
            if err == errno.EINPROGRESS:
                fd = sock.fileno()
                pending[fd] = (sock, ip, port, started)
                deadlines.append((started + self.timeout, fd, sock))
                if poller is not None:
                    poller.register(fd, _EPOLLOUT_ONCE)
                else:
                    loop.add_writer(fd, finish, fd)
            elif err == 0:
                stats.open += 1
                on_open(OpenPort(ip, port, (time.monotonic() - started) * 1000.0, time.time()))
                sock.close()
            elif err == errno.ECONNREFUSED:
                stats.closed += 1
                sock.close()
            elif err in _RETRY_LATER:
                sock.close()
                return False
            else:
                stats.errors += 1
                sock.close()
            stats.attempts += 1
            return True

        begin = loop.time()
        tokens = 0.0
        last = begin
        burst = max(1.0, self.rate / 50)  # at most 20 ms worth of probes in one go
        it = iter(probes)
        backlog: tuple[str, int] | None = None
        try:
            while not self._stopped:
                sweep()
                now = loop.time()
                tokens = min(burst, tokens + (now - last) * self.rate)
                last = now
                room = concurrency - len(pending)
                if room <= 0:
                    slot.clear()
                    await _wait(slot, 0.01)
                    continue
                n = int(min(tokens, room))
                if n <= 0:
                    await asyncio.sleep(max(0.001, (1 - tokens) / self.rate))
                    continue
                exhausted = False
                for _ in range(n):
                    probe = backlog if backlog is not None else next(it, None)
                    backlog = None
                    if probe is None:
                        exhausted = True
                        break
                    if not launch(*probe):
                        backlog = probe
                        break
                    tokens -= 1
                if exhausted:
                    break
                if backlog is not None:
                    slot.clear()
                    await _wait(slot, 0.01)
                else:
                    await asyncio.sleep(0)
            while pending and not self._stopped:
                sweep()
                slot.clear()
                await _wait(slot, 0.01)
        finally:
            for fd, (sock, *_rest) in list(pending.items()):
                if poller is None:
                    loop.remove_writer(fd)
                sock.close()
            pending.clear()
            if poller is not None:
                loop.remove_reader(poller.fileno())
                poller.close()
            stats.seconds = loop.time() - begin
        return stats


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
