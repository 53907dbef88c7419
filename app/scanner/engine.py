"""TCP connect scan engine: reused non-blocking sockets, one epoll set, a token-bucket rate, bounded concurrency.

Per probe the kernel does the work (SYN out, RST or SYN-ACK in); the engine's job is to add as little as
possible around it. Linux semantics it relies on:

* A non-blocking `connect()` on a socket whose attempt already ended returns that attempt's result
  (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH… via `sock_error`), or 0/EISCONN when it is established, and an
  attempt that ended in an error leaves the socket unconnected, ready for the next `connect()`. So one
  socket serves probe after probe: no socket()/setsockopt()/close()/epoll ADD per closed port.
* Over loopback, veth and bridges the answer is processed before `connect()` returns (the packet path runs
  in the caller's softirq), so asking again right away (one cheap syscall) settles most probes without touching epoll.
  Probes still in flight (EALREADY) wait in one epoll set (EPOLLONESHOT, re-armed per probe).
* An IPv4 socket keeps one explicitly bound source port for all its probes, so connect() does not
  search for (and release) a free port each time, and is bound to the source address the kernel routes
  from (looked up once per target address with a UDP connect(), which sends nothing), so connect() does
  not re-hash it under that address and reset it afterwards.

* A probe that timed out (still in SYN-SENT) is aborted with shutdown(), which disconnects the socket
  without a packet and keeps it for the next probe.
* A timed-out probe is tried again (`retries` times at most, nmap's retransmission) from another socket,
  so another source port: a lost SYN or SYN-ACK must not make an open port read as filtered. The kernel's
  own SYN retransmission (after 1 s) rarely comes in time, as the default timeout is 1 s too; and a new
  connect() from the same port would meet the half-open connection a lost SYN-ACK left on the server
  (a new ISN there is answered with an ACK, which our side resets: no connection). Retries start before
  new probes, at the same rate and concurrency; only timeouts are retried, never an answer (open,
  refused, unreachable).

Open ports are closed with SO_LINGER 0 (set once per socket): an RST, no FIN handshake and no TIME-WAIT.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import itertools
import resource
import select
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

# l_onoff=1, l_linger=0: close() sends RST instead of FIN, so no TIME-WAIT entry throttles the scan.
_LINGER_ABORT = struct.pack("ii", 1, 0)
_STREAM_NONBLOCK = _socket.SOCK_STREAM | getattr(_socket, "SOCK_NONBLOCK", 0)
_NEEDS_SETBLOCKING = not getattr(_socket, "SOCK_NONBLOCK", 0)
_EPOLL_MASK = getattr(select, "EPOLLOUT", 4) | getattr(select, "EPOLLONESHOT", 1 << 30)
_RETRY_LATER = frozenset({errno.EAGAIN, errno.EADDRNOTAVAIL, errno.ENOBUFS, errno.EMFILE, errno.ENFILE})
# No answer, or the network says the host cannot be reached: nmap's "filtered".
_FILTERED = frozenset({errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN})
_REFUSED = errno.ECONNREFUSED
_MSG_ERRQUEUE = getattr(_socket, "MSG_ERRQUEUE", 0x2000)
_IN_FLIGHT = errno.EALREADY
_STARTED = (errno.EINPROGRESS, errno.EINTR)  # a tuple: EINPROGRESS, nearly always, matches first
# Probes started in one go before the loop looks at answers, timeouts and (async) other tasks again.
BATCH = 1024
_MAX_IDLE = 0.1  # longest wait between looks at stop()
DEFAULT_RETRIES, MAX_RETRIES = 1, 3  # probes that timed out are tried again this often (a job's `retries`)

Probe = tuple[str, int]
# Other fds the scan's epoll loop serves (a parallel scan's worker pipes): handler(fd) -> False once done.
Watch = dict[int, Callable[[int], bool]]
# A probe in flight: its socket, (ip, port) and start time; the tuple's identity tells probes on one fd apart.
_Entry = tuple[_socket.socket, Probe, float]


class OpenPort:
    """An open port as found: address, port, connect round trip, wall-clock time."""

    __slots__ = ("at", "ip", "port", "rtt_ms")

    def __init__(self, ip: str, port: int, rtt_ms: float, at: float) -> None:
        self.ip, self.port, self.rtt_ms, self.at = ip, port, rtt_ms, at

    def __repr__(self) -> str:
        return f"OpenPort({self.ip!r}, {self.port}, {self.rtt_ms:.3f}, {self.at:.3f})"


class ScanStats:
    """Counts of one scan. (Plain classes here, not dataclasses: a worker process must not pay for importing
    dataclasses/inspect at start-up.)

    `attempts` counts every connect(), `retried` those that tried a timed-out probe again; open, closed,
    filtered and errors count probes by their final answer (filtered: the last attempt timed out too, or
    the network said unreachable)."""

    __slots__ = ("attempts", "closed", "errors", "extra", "filtered", "open", "retried", "seconds")

    def __init__(self, attempts: int = 0, open: int = 0, closed: int = 0, filtered: int = 0,
                 errors: int = 0, seconds: float = 0.0, retried: int = 0) -> None:
        self.attempts, self.open, self.closed, self.filtered, self.errors = attempts, open, closed, filtered, errors
        self.retried = retried
        self.seconds = seconds
        self.extra: dict[str, int] = {}

    def __repr__(self) -> str:
        return (f"ScanStats(attempts={self.attempts}, open={self.open}, closed={self.closed},"
                f" filtered={self.filtered}, errors={self.errors}, retried={self.retried},"
                f" seconds={self.seconds:.3f})")

    @property
    def done(self) -> int:
        return self.open + self.closed + self.filtered + self.errors


def parse_retries(value: object) -> int | None:
    """A job's `retries` option: an integer 0..MAX_RETRIES, else None (the caller uses the default)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_RETRIES:
        return value
    return None


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


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up: over any span T at most rate*T + burst are spent."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = 1.0
        self.last = now

    def available(self, now: float) -> int:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return int(self.tokens)

    def spend(self, n: int) -> None:
        self.tokens -= n

    def wait(self, need: float = 1.0) -> float:
        """Seconds until `need` tokens are there (at most the burst)."""
        return max(0.0, (min(need, self.burst) - self.tokens) / self.rate)


def _pin_port(sock: _socket.socket, source: str) -> None:
    """Bind an IPv4 socket to the source address the kernel routes from and a source port of its own.

    An unbound socket makes connect() search for a free port and release it again on every probe (about
    a tenth of the kernel's work per probe); a port bound explicitly stays through the disconnects between
    probes. Binding the source address too ("" = any) spares connect() re-hashing the socket under the
    address it picks and its reset afterwards (another ~5-8%). The kernel chooses the port (bind to 0 on a
    scratch socket); losing a race for it only means connect() picks ports itself, as it would anyway.
    """
    scratch = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        scratch.bind(("0.0.0.0", 0))  # noqa: S104 (a source port for probes; nothing listens on it)
        port = scratch.getsockname()[1]
    except OSError:
        return
    finally:
        scratch.close()
    with contextlib.suppress(OSError):
        sock.bind((source or "0.0.0.0", port))  # noqa: S104 (same)


def _connected_to_itself(sock: _socket.socket) -> bool:
    """TCP "simultaneous open" of a socket with itself: a probe of the scanner's own address whose port is
    the probing socket's source port connects without any listener. Only checked for open ports."""
    try:
        return bool(sock.getsockname() == sock.getpeername())
    except OSError:
        return False


def _clear_errors(sock: _socket.socket) -> bool:
    """Empty a socket's pending error and its error queue; False when that fails (do not reuse it then).

    Linux also queues the ICMP error that ended an attempt (host unreachable once ARP gives up…) on the
    socket's error queue. Left there, it makes epoll report EPOLLERR for every later attempt on the socket
    at once and again after each re-arm: a busy loop until that probe's deadline.
    """
    try:
        sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        for _ in range(16):
            sock.recvmsg(1, 512, _MSG_ERRQUEUE)
    except BlockingIOError:
        return True  # the queue is empty
    except OSError:
        return False
    return False


class ConnectScanner:
    """One scan: `await run(probes, on_open)` (or `run_blocking` in a worker); `stop()` aborts it."""

    def __init__(self, rate: float, concurrency: int, timeout: float, retries: int = DEFAULT_RETRIES) -> None:
        self.rate = max(1.0, float(rate))
        limit = raise_fd_limit(concurrency + 256)
        self.concurrency = max(1, min(concurrency, limit - 128))
        self.timeout = timeout
        self.retries = max(0, retries)
        self.stats = ScanStats()
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    async def run(self, probes: Iterable[Probe], on_open: Callable[[OpenPort], None],
                  watch: Watch | None = None) -> ScanStats:
        """Scan on the running asyncio loop, yielding to other tasks after every batch."""
        import asyncio  # here, not at the top: worker processes never load it (tens of ms at start-up)

        loop = asyncio.get_running_loop()
        scan = _Scan(self, probes, on_open, watch)
        try:
            while True:
                wait = scan.step()
                if wait is None:
                    break
                if wait == 0.0:
                    await asyncio.sleep(0)
                    continue
                # Sleep until an answer arrives (the epoll fd turns readable), a timeout is due or a token accrues.
                woken = loop.create_future()

                def wake(fut: asyncio.Future[None] = woken) -> None:
                    if not fut.done():
                        fut.set_result(None)

                loop.add_reader(scan.epoll.fileno(), wake)
                timer = loop.call_later(wait, wake)
                try:
                    await woken
                finally:
                    timer.cancel()
                    loop.remove_reader(scan.epoll.fileno())
        finally:
            scan.close()
        return self.stats

    def run_blocking(self, probes: Iterable[Probe], on_open: Callable[[OpenPort], None],
                     tick: Callable[[ScanStats], None] | None = None, every: float = 1.0,
                     watch: Watch | None = None) -> ScanStats:
        """Scan in this thread without an event loop (nothing else to serve but `watch`)."""
        scan = _Scan(self, probes, on_open, watch)
        next_tick = time.monotonic() + every
        try:
            while True:
                wait = scan.step()
                if wait is None:
                    break
                if wait > 0.0:
                    scan.drain(wait)  # blocks in epoll_wait: answers are handled as soon as they come
                if tick is not None and time.monotonic() >= next_tick:
                    next_tick += every
                    tick(self.stats)
        finally:
            scan.close()
        return self.stats


class _Scan:
    """The state of one running scan; `step()` does one round of work and says how long to wait."""

    def __init__(self, owner: ConnectScanner, probes: Iterable[Probe], on_open: Callable[[OpenPort], None],
                 watch: Watch | None) -> None:
        self.owner = owner
        self.stats = owner.stats
        self.on_open = on_open
        self.probes: Iterator[Probe] = iter(probes)
        self.epoll = select.epoll()
        # Level-triggered reads; the scan is not over while any is left.
        self.watch: Watch = watch if watch is not None else {}
        for fd in self.watch:
            self.epoll.register(fd, select.EPOLLIN)
        # Idle IPv4 sockets, unconnected, ready for the next probe, by the source address they are bound to
        # ("" = any); the source of each IPv4 socket by fd.
        self.free: dict[str, list[_socket.socket]] = {}
        self.source_of: dict[int, str] = {}
        self.router: _socket.socket | None = None        # a UDP socket: connect() = a route lookup, no packet
        self.switches = 0                                # target addresses the probes moved to
        self.looked_up = ("", "")                        # the last address _source() looked at, and its answer
        self.pending: dict[int, _Entry] = {}             # fd -> probe in flight
        # Every probe has the same timeout, so start order is deadline order: a FIFO is the timer wheel.
        # (deadline, fd, entry, which attempt of its probe: 1 = the first)
        self.deadlines: deque[tuple[float, int, _Entry, int]] = deque()
        # Timed-out probes to try again, oldest first: (probe, attempts made, fd of the last attempt's socket).
        self.again: deque[tuple[Probe, int, int]] = deque()
        self.blocked = False                             # a retry found no socket or port yet
        self.armed: set[int] = set()                     # fds this epoll set knows (ADD once, MOD afterwards)
        self.backlog: Probe | None = None                # a probe the system had no socket or port for yet
        self.exhausted = False
        self.begin = time.monotonic()
        # At most 20 ms worth of probes at once: the rate holds over any window longer than that.
        self.bucket = TokenBucket(owner.rate, owner.rate / 50, self.begin)

    # -- one round ------------------------------------------------------------------------------------------
    def step(self) -> float | None:
        """Handle answers and timeouts, start what the rate and concurrency allow.

        Returns None when the scan is over, 0.0 when more can start right away, else the seconds to wait.
        """
        if self.owner._stopped:
            return None
        if self.pending or self.watch:
            self.drain(0)
        now = time.monotonic()
        if self.deadlines and self.deadlines[0][0] <= now:
            self.sweep(now)
        room = self.owner.concurrency - len(self.pending)
        if room > 0 and (self.again or not self.exhausted):
            n = min(self.bucket.available(now), room, BATCH)
            if n > 0:
                # Retries first: each waited a timeout already, and their queue stays short.
                started = self.relaunch(n) if self.again else 0
                if started < n and not self.exhausted and not self.blocked:
                    started += self.launch(n - started)
                self.bucket.spend(started)
                if self.backlog is None and not self.blocked and (self.again or not self.exhausted):
                    return 0.0 if self.owner.concurrency > len(self.pending) else self._until_deadline()
        if self.exhausted and not self.pending and not self.again and not self.watch:
            return None
        if self.backlog is not None or self.blocked:
            return 0.01  # out of sockets or local ports: wait for some to be released
        if (self.exhausted and not self.again) or self.owner.concurrency <= len(self.pending):
            return self._until_deadline()
        # Rate-bound: sleep until ~2 ms worth of probes can go at once (not one wake-up per token).
        return min(max(self.bucket.wait(self.owner.rate * 0.002), 0.0005), _MAX_IDLE)

    def _until_deadline(self) -> float:
        if not self.deadlines:
            return _MAX_IDLE  # only watched fds left: epoll wakes us
        return min(max(self.deadlines[0][0] - time.monotonic(), 0.0005), _MAX_IDLE)

    # -- starting probes ------------------------------------------------------------------------------------
    def _new_socket(self, source: str | None) -> _socket.socket | None:
        """A socket for probes from `source` (None: IPv6; "" IPv4 from any address)."""
        try:
            # The C-level socket type: no Python __init__/close wrappers.
            sock = _socket.socket(_socket.AF_INET6 if source is None else _socket.AF_INET, _STREAM_NONBLOCK)
        except OSError as exc:
            if exc.errno in _RETRY_LATER:
                return None
            raise
        if _NEEDS_SETBLOCKING:
            sock.setblocking(False)
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, _LINGER_ABORT)
        if source is not None:
            _pin_port(sock, source)
            self.source_of[sock.fileno()] = source
        return sock

    def _source(self, ip: str) -> str | None:
        """Where probes to ip go from: None for IPv6, else the IPv4 source address the kernel would pick
        ("" = leave it to connect(): the lookup failed, or addresses change too often for it to pay)."""
        if ":" in ip:
            return None
        if ip == self.looked_up[0]:  # the same address as the last lookup (retries interleave, each round looks)
            return self.looked_up[1]
        self.switches += 1
        # A lookup costs about half a probe: worth it while targets get ~8 probes or more each.
        source = ""
        if self.switches * 8 <= self.stats.attempts + 64:
            try:
                if self.router is None:
                    self.router = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
                self.router.connect((ip, 9))  # UDP: the route lookup only, nothing is sent
                source = str(self.router.getsockname()[0])
            except OSError:
                source = ""
        self.looked_up = (ip, source)
        return source

    def launch(self, n: int) -> int:
        """Start up to n probes; returns how many started (fewer when the probes or the sockets ran out).

        The common case, a port answered before connect() returns, keeps one socket in hand for probe after
        probe: two connect() calls and a few comparisons per probe, no pool or epoll traffic.
        """
        free, pending, deadlines, armed = self.free, self.pending, self.deadlines, self.armed
        register, modify = self.epoll.register, self.epoll.modify
        timeout, monotonic = self.owner.timeout, time.monotonic
        free6: list[_socket.socket] = []
        started = closed = 0
        probes: Iterator[Probe] = self.probes
        if self.backlog is not None:
            probes = itertools.chain((self.backlog,), probes)
            self.backlog = None
        sock: _socket.socket | None = None  # in hand: unconnected, bound to `source`
        source: str | None = ""
        pool = free6
        last = ""  # the address probed last (probes come grouped by address: usually the same object)
        try:
            for probe in probes:
                if probe[0] is not last and probe[0] != last:
                    last = probe[0]
                    want = self._source(last)
                    if want != source or sock is None:
                        if sock is not None:
                            pool.append(sock)
                            sock = None
                        source = want
                        pool = free6 if want is None else free.setdefault(want, [])
                if sock is None:
                    sock = pool.pop() if pool else self._new_socket(source)
                    if sock is None:
                        self.backlog = probe
                        break
                t0 = monotonic()
                err = sock.connect_ex(probe)
                if err in _STARTED:
                    err = sock.connect_ex(probe)  # already answered? (loopback, veth, bridge: usually yes)
                    if err == _IN_FLIGHT:
                        fd = sock.fileno()
                        entry = (sock, probe, t0)
                        pending[fd] = entry
                        deadlines.append((t0 + timeout, fd, entry, 1))
                        if fd in armed:
                            modify(fd, _EPOLL_MASK)
                        else:
                            register(fd, _EPOLL_MASK)
                            armed.add(fd)
                        sock = None
                        started += 1
                        if started >= n:
                            break
                        continue
                if err == _REFUSED:
                    closed += 1  # the socket is unconnected again: it stays in hand
                elif err in _RETRY_LATER:
                    self.backlog = probe  # the attempt never started: the socket is still unconnected
                    break
                else:
                    self.settle(sock, probe, t0, err, pool)
                    sock = None
                started += 1
                if started >= n:
                    break
            else:
                self.exhausted = True
        finally:
            if sock is not None:
                pool.append(sock)
            self.stats.attempts += started
            self.stats.closed += closed
            for sock in free6:  # IPv6 is rare: do not keep a second idle pool
                self._drop(sock)
        return started

    def relaunch(self, n: int) -> int:
        """Start up to n timed-out probes again (oldest first); returns how many started.

        Each from another socket than its last attempt: a new source port (see the module docstring). Off the
        hot path (only timeouts come here), so plainer than `launch`: a socket from the pool per probe.
        """
        again, pending, deadlines, armed = self.again, self.pending, self.deadlines, self.armed
        timeout, monotonic = self.owner.timeout, time.monotonic
        free6: list[_socket.socket] = []
        pool = free6
        started = closed = 0
        last = ""
        self.blocked = False
        try:
            while again and started < n:
                probe, tried, before = again[0]
                if probe[0] != last:
                    last = probe[0]
                    source = self._source(last)
                    pool = free6 if source is None else self.free.setdefault(source, [])
                sock = pool.pop() if pool else self._new_socket(source)
                if sock is not None and sock.fileno() == before:  # the very socket that timed out: not this one
                    other = pool.pop() if pool else self._new_socket(source)
                    pool.append(sock)
                    sock = other
                if sock is None:
                    self.blocked = True
                    break
                t0 = monotonic()
                err = sock.connect_ex(probe)
                if err in _STARTED:
                    err = sock.connect_ex(probe)
                    if err == _IN_FLIGHT:
                        again.popleft()
                        fd = sock.fileno()
                        entry = (sock, probe, t0)
                        pending[fd] = entry
                        deadlines.append((t0 + timeout, fd, entry, tried + 1))
                        if fd in armed:
                            self.epoll.modify(fd, _EPOLL_MASK)
                        else:
                            self.epoll.register(fd, _EPOLL_MASK)
                            armed.add(fd)
                        started += 1
                        continue
                if err in _RETRY_LATER:  # never started: try it again later, the socket is unconnected
                    pool.append(sock)
                    self.blocked = True
                    break
                again.popleft()
                started += 1
                if err == _REFUSED:
                    closed += 1
                    pool.append(sock)
                else:
                    self.settle(sock, probe, t0, err, pool)
        finally:
            self.stats.attempts += started
            self.stats.retried += started
            self.stats.closed += closed
            for sock in free6:
                self._drop(sock)
        return started

    # -- answers and timeouts -------------------------------------------------------------------------------
    def settle(self, sock: _socket.socket, probe: Probe, t0: float, err: int,
               pool: list[_socket.socket] | None) -> None:
        """Record a finished probe; keep its socket for the next one when the attempt left it unconnected."""
        stats = self.stats
        if err == _REFUSED or err in _FILTERED:
            if err == _REFUSED:
                stats.closed += 1
            else:
                stats.filtered += 1
            # An ICMP error (host unreachable…) also leaves its report in the socket's error queue.
            if pool is not None and (err == _REFUSED or _clear_errors(sock)):
                pool.append(sock)
            else:
                self._drop(sock)
            return
        if err == 0 or err == errno.EISCONN:
            if _connected_to_itself(sock):
                stats.closed += 1  # the probed port was this socket's own source port: nothing listens there
                self._drop(sock)
                return
            stats.open += 1
            self._drop(sock)  # SO_LINGER 0: the established connection is reset, not closed
            self.on_open(OpenPort(probe[0], probe[1], (time.monotonic() - t0) * 1000.0, time.time()))
            return
        stats.errors += 1
        self._drop(sock)

    def _drop(self, sock: _socket.socket) -> None:
        fd = sock.fileno()
        self.armed.discard(fd)  # close() takes the fd out of the epoll set; its number may come back
        self.source_of.pop(fd, None)
        sock.close()

    def _abort(self, sock: _socket.socket) -> None:
        """End an attempt still in SYN-SENT (no packet, as close() would) and keep the socket for the next probe.

        shutdown() of a SYN-SENT socket is a disconnect: back to unconnected, bound address and port kept.
        A timed-out probe so costs no close(), socket(), bind() or epoll ADD, which made most of the CPU
        of scans of unanswering hosts.
        """
        pool = self._pool(sock)
        if pool is None:
            self._drop(sock)
            return
        try:
            sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            self._drop(sock)
            return
        # The disconnect leaves ECONNRESET pending: it would make epoll report the next attempt at once.
        if _clear_errors(sock):
            pool.append(sock)
        else:
            self._drop(sock)

    def _pool(self, sock: _socket.socket) -> list[_socket.socket] | None:
        source = self.source_of.get(sock.fileno())
        return None if source is None else self.free.setdefault(source, [])

    def drain(self, timeout: float) -> None:
        """Settle the probes epoll reports (waiting up to `timeout` seconds for the first)."""
        pending, modify, watch = self.pending, self.epoll.modify, self.watch
        for fd, _mask in self.epoll.poll(timeout, BATCH):
            entry = pending.pop(fd, None)
            if entry is None:
                handler = watch.get(fd)
                if handler is not None and not handler(fd):
                    del watch[fd]
                    self.epoll.unregister(fd)
                continue
            sock, probe, t0 = entry
            err = sock.connect_ex(probe)
            if err == _IN_FLIGHT:
                # Woken while still in SYN-SENT: an error report of an earlier attempt left on the socket
                # (EPOLLERR would wake us again at once, until the deadline). Clear it and wait on.
                if not _clear_errors(sock):
                    self.stats.errors += 1
                    self._drop(sock)
                    continue
                pending[fd] = entry
                modify(fd, _EPOLL_MASK)
                continue
            self.settle(sock, probe, t0, err, self._pool(sock))

    def sweep(self, now: float) -> None:
        """Probes past their deadline: one last look at the socket, else tried again or filtered."""
        deadlines, pending, retries = self.deadlines, self.pending, self.owner.retries
        while deadlines and deadlines[0][0] <= now:
            _, fd, entry, tried = deadlines.popleft()
            if pending.get(fd) is not entry:  # answered already (the fd may carry a newer probe)
                continue
            del pending[fd]
            sock, probe, t0 = entry
            err = sock.connect_ex(probe)
            if err == _IN_FLIGHT:
                if tried <= retries:
                    self.again.append((probe, tried, fd))
                else:
                    self.stats.filtered += 1  # its last attempt timed out too
                self._abort(sock)
            else:  # answered while the loop was busy: a completed connect must not be judged timed out
                self.settle(sock, probe, t0, err, self._pool(sock))

    def close(self) -> None:
        for sock, _probe, _t0 in self.pending.values():
            sock.close()
        self.pending.clear()
        for pool in self.free.values():
            for sock in pool:
                sock.close()
        self.free.clear()
        self.source_of.clear()
        if self.router is not None:
            self.router.close()
        self.epoll.close()
        self.stats.seconds = time.monotonic() - self.begin
