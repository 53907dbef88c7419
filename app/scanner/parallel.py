"""Spread one scan over several processes (one per CPU core): this process scans too, workers help.

A connect scan is bound by per-probe CPU, mostly kernel time (about 5-10 µs per probe), so one process
tops out near 100-150k probes/s on closed ports, less when probes wait on timeouts.
The probes are numbered (`ProbeSpace`) and handed out in chunks on demand, this process included, so a
process that starts late or gets less CPU simply takes fewer chunks. Each process runs at rate/N and
concurrency/N. A worker (`worker.py`) reads chunks on one pipe and writes requests for more, open ports
and progress as text lines on another; the pipes are served by this process's own scan loop (the engine's
epoll set), so the same code runs inside the agent's asyncio loop and in a plain `scan` command.

How a worker starts: a single-threaded process (the `scan` command) forks it — it has every module
loaded already and scans within a millisecond; a process with other threads (the agent: its HTTP calls
run in threads, any of which may hold a lock at the moment of a fork) starts it with posix_spawn as a
lean `python3 -I -S` (no site, no asyncio: ~30-40 ms to its first probe).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence

from .engine import DEFAULT_RETRIES, ConnectScanner, OpenPort, ScanStats, Watch
from .ports import ProbeSpace, parse_ports, parse_targets

# Below this many probes one process finishes before extra ones would have started.
PARALLEL_MIN_PROBES = 16384
_COUNTED = ("attempts", "open", "closed", "filtered", "errors", "retried")
# Chunks: big enough that asking costs nothing, small enough at the end that the processes finish together.
_CHUNK_MIN, _CHUNK_MAX = 256, 4096


def default_workers() -> int:
    """One process per core this process may run on (its CPU affinity: a cpuset may allow fewer), at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def plan_workers(probes: int, configured: int = 0) -> int:
    """Processes for a scan: as configured, else one per core for a big job (a rate-bound job loses nothing
    by it, and one whose probes wait on timeouts keeps its CPU headroom)."""
    if configured > 0:
        return configured
    return default_workers() if probes >= PARALLEL_MIN_PROBES else 1


def _package_root() -> str:
    package = __package__ or "mipo_scanner"
    # app.scanner → the repository root; mipo_scanner inside agent.pyz → the zip file itself.
    root = os.path.abspath(__file__)
    for _ in range(len(package.split(".")) + 1):
        root = os.path.dirname(root)
    return root


def worker_argv() -> list[str]:
    """`-I -S`: no environment, no site-packages (the agent is stdlib only), so a worker starts in ~20 ms."""
    boot = (f"import sys; sys.path.insert(0, sys.argv[1]); from {__package__ or 'mipo_scanner'}.worker import main;"
            " sys.exit(main())")
    return [sys.executable, "-I", "-S", "-c", boot, _package_root()]


class _Worker:
    """One helper process and our ends of its pipes. (Plain class: `scan` should not import dataclasses.)"""

    def __init__(self, pid: int, stdin: int, stdout: int) -> None:
        self.pid = pid
        self.stdin = stdin          # our end of its stdin (chunks), -1 once closed
        self.stdout = stdout        # our end of its stdout (text lines), -1 once closed
        self.buffer = b""
        self.stats = ScanStats()
        self.done = 0
        self.eof = False            # its stdout ended (it exited, or is about to)
        self.code: int | None = None  # exit status once reaped


class ParallelScanner:
    """`await run(...)` inside the agent, `run_blocking(...)` from the command line; `stop()` aborts."""

    def __init__(self, rate: float, concurrency: int, timeout: float, workers: int, start: str = "auto",
                 retries: int = DEFAULT_RETRIES) -> None:
        self.rate, self.concurrency, self.timeout, self.workers = rate, concurrency, timeout, workers
        self.retries = retries  # a process retries the timed-out probes of its own chunks
        self.start = start  # "auto" (fork when single-threaded, else spawn), "fork" or "spawn"
        self.stats = ScanStats()
        self._workers: list[_Worker] = []
        self._local: ConnectScanner | None = None
        self._space: ProbeSpace | None = None
        self._next = 0   # first probe not handed out yet
        self._stopped = False

    @property
    def done(self) -> int:
        """Probes finished so far over all processes (each worker reports about once a second)."""
        return sum(w.done for w in self._workers) + (self._local.stats.done if self._local is not None else 0)

    def stop(self) -> None:
        self._stopped = True
        if self._local is not None:
            self._local.stop()
        for w in self._workers:
            if w.code is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGTERM)

    async def run(self, targets: Sequence[Sequence[str]], ports: str,
                  on_open: Callable[[OpenPort], None]) -> ScanStats:
        local, probes, watch = self._start(targets, ports, on_open)
        try:
            await local.run(probes, on_open, watch)
        finally:
            self._finish()
        return self.stats

    def run_blocking(self, targets: Sequence[Sequence[str]], ports: str,
                     on_open: Callable[[OpenPort], None]) -> ScanStats:
        local, probes, watch = self._start(targets, ports, on_open)
        try:
            local.run_blocking(probes, on_open, watch=watch)
        finally:
            self._finish()
        return self.stats

    # -- set-up and tear-down -------------------------------------------------------------------------------
    def _start(self, targets: Sequence[Sequence[str]], ports: str, on_open: Callable[[OpenPort], None]
               ) -> tuple[ConnectScanner, Iterator[tuple[str, int]], Watch]:
        n = self.workers
        share_rate, share_concurrency = self.rate / n, max(1, self.concurrency // n)
        # Parse before starting anything: a bad spec fails here, not in n processes.
        ranges, intervals = parse_targets(targets), parse_ports(ports)
        self._space = ProbeSpace(ranges, intervals)
        # Re-serialised from the parsed forms: canonical, and nothing in them can break a line.
        spec = (f"{share_rate!r} {share_concurrency} {self.timeout!r} {self.retries}\n"
                f"{','.join(f'{lo}-{hi}' for lo, hi in intervals)}\n"
                f"{' '.join(f'{first}-{last}' for first, last in ranges)}\n").encode()
        watch: Watch = {}
        try:
            for _ in range(1, n):
                w = self._spawn()
                _write(w.stdin, spec)
                # Two chunks up front: a worker asks for the next one whenever it starts one.
                self._feed(w)
                self._feed(w)
                watch[w.stdout] = self._reader(w, on_open)
        except BaseException:
            self._finish()
            raise
        self._local = ConnectScanner(share_rate, share_concurrency, self.timeout, self.retries)
        if self._stopped:
            self._local.stop()
        return self._local, self._own_share(), watch

    def _spawn(self) -> _Worker:
        child_in, our_in = os.pipe()
        our_out, child_out = os.pipe()
        try:
            if self.start == "fork" or (self.start == "auto" and _single_threaded()):
                pid = self._fork(child_in, child_out, (our_in, our_out))
            else:
                # posix_spawn: nothing of this (threaded) process runs in the child before exec.
                pid = os.posix_spawn(sys.executable, worker_argv(), os.environ, file_actions=[
                    (os.POSIX_SPAWN_DUP2, child_in, 0), (os.POSIX_SPAWN_DUP2, child_out, 1)])
        except BaseException:
            for fd in (child_in, our_in, our_out, child_out):
                os.close(fd)
            raise
        os.close(child_in)
        os.close(child_out)
        os.set_blocking(our_out, False)
        w = _Worker(pid, our_in, our_out)
        self._workers.append(w)
        return w

    def _fork(self, rfd: int, wfd: int, ours: tuple[int, int]) -> int:
        """Fork a worker that serves the pipes rfd/wfd; returns its pid (in this process only)."""
        from .worker import serve  # before the fork: the child imports nothing

        pid = os.fork()
        if pid:
            return pid
        # The child. It leaves with os._exit: no atexit handler, no flush of the parent's buffered output.
        code = 1
        try:
            # Only its own two pipe ends stay open, so every other worker sees the end of its pipes in time.
            for fd in (*ours, *(fd for w in self._workers for fd in (w.stdin, w.stdout) if fd != -1)):
                os.close(fd)
            signal.set_wakeup_fd(-1)  # a signal here must not wake the parent's event loop
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)  # stop() ends it with SIGTERM, as a spawned worker
            code = serve(rfd, wfd)
        except BaseException:
            with contextlib.suppress(BaseException):
                import traceback

                os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(code)

    def _finish(self) -> None:
        """Stop what still runs, reap every worker, merge the counts; a worker that failed is an error."""
        if any(not w.eof for w in self._workers):  # the scan was interrupted: end the helpers too
            self.stop()
        for w in self._workers:
            for fd in (w.stdin, w.stdout):
                if fd != -1:
                    os.close(fd)
            w.stdin = w.stdout = -1
            if w.code is None:
                w.code = os.waitstatus_to_exitcode(os.waitpid(w.pid, 0)[1])
        parts = [w.stats for w in self._workers] + ([self._local.stats] if self._local is not None else [])
        for key in _COUNTED:
            setattr(self.stats, key, sum(getattr(p, key) for p in parts))
        self.stats.seconds = self._local.stats.seconds if self._local is not None else 0.0
        failed = [w for w in self._workers if w.code != 0]
        if failed and not self._stopped:
            raise RuntimeError(f"scan worker {failed[0].pid} exited with {failed[0].code}")

    # -- handing out chunks ---------------------------------------------------------------------------------
    def _take(self) -> tuple[int, int] | None:
        assert self._space is not None
        if self._next >= self._space.total:
            return None
        # Guided: big chunks while much is left, ever smaller ones towards the end, so the processes finish
        # together (the last chunk of one is at most _CHUNK_MIN probes, ~1-2 ms of work).
        size = max(_CHUNK_MIN, min(_CHUNK_MAX, (self._space.total - self._next) // (self.workers * 4)))
        chunk = (self._next, min(self._next + size, self._space.total))
        self._next = chunk[1]
        return chunk

    def _own_share(self) -> Iterator[tuple[str, int]]:
        assert self._space is not None
        space = self._space
        return itertools.chain.from_iterable(space.between(*chunk) for chunk in iter(self._take, None))

    def _feed(self, w: _Worker) -> None:
        """Send a worker its next chunk, or the end (and close its stdin) when none is left."""
        if w.stdin == -1:
            return
        chunk = self._take()
        try:
            _write(w.stdin, f"C {chunk[0]} {chunk[1]}\n".encode() if chunk else b"E\n")
        except BrokenPipeError:  # it died: _finish reports its exit status
            chunk = None
        if chunk is None:
            os.close(w.stdin)
            w.stdin = -1

    def _reader(self, w: _Worker, on_open: Callable[[OpenPort], None]) -> Callable[[int], bool]:
        return lambda _fd: self._read(w, on_open)

    def _read(self, w: _Worker, on_open: Callable[[OpenPort], None]) -> bool:
        """Serve a worker's output; False at its end (the engine then stops watching the pipe)."""
        try:
            data = os.read(w.stdout, 1 << 16)
        except BlockingIOError:
            return True
        if not data:
            w.eof = True
            return False
        *lines, w.buffer = (w.buffer + data).split(b"\n")
        for line in lines:
            kind, *rest = line.decode().split()
            if kind == "M":
                self._feed(w)
            elif kind == "O":
                on_open(OpenPort(rest[0], int(rest[1]), float(rest[2]), float(rest[3])))
            elif kind == "D":
                w.done = int(rest[0])
            elif kind == "S":
                for key, value in zip(_COUNTED, rest, strict=True):
                    setattr(w.stats, key, int(value))
                w.done = w.stats.done
        return True


def _single_threaded() -> bool:
    """No other thread (of Python or C) in this process: only then is fork() safe."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _write(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
