"""Spread one scan over several processes (one per CPU core): this process scans one share, workers the rest.

A connect scan is bound by per-probe CPU, mostly kernel time (about 5-10 µs per probe), so one process
tops out near 100k probes/s. Only a rate above what one process sustains is worth more processes.
Each worker (`worker.py`, started lean: no site, no asyncio) takes every N-th probe of the same
targets x ports at rate/N and concurrency/N and reports open ports as JSON lines on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .engine import ConnectScanner, OpenPort, ScanStats
from .ports import iter_probes, parse_ports, parse_targets

# Below this many probes one process finishes before extra ones would have started.
PARALLEL_MIN_PROBES = 16384
# Probes/s one process sustains with room to spare; above it another process pays for itself.
PER_PROCESS_RATE = 40000
_COUNTED = ("attempts", "open", "closed", "filtered", "errors")


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def plan_workers(probes: int, rate: float, configured: int = 0) -> int:
    """Processes for a scan: as configured, else one per core when the job is big and the rate needs it."""
    if configured > 0:
        return configured
    if probes < PARALLEL_MIN_PROBES:
        return 1
    return max(1, min(default_workers(), math.ceil(rate / PER_PROCESS_RATE)))


def _package_root() -> str:
    package = __package__ or "mipo_scanner"
    # app.scanner → the repository root; mipo_scanner inside agent.pyz → the zip file itself.
    return str(Path(__file__).parents[len(package.split("."))])


def worker_argv() -> list[str]:
    """`-I -S`: no environment, no site-packages (the agent is stdlib only), so a worker starts in ~20 ms."""
    boot = (f"import sys; sys.path.insert(0, sys.argv[1]); from {__package__ or 'mipo_scanner'}.worker import main;"
            " sys.exit(main())")
    return [sys.executable, "-I", "-S", "-c", boot, _package_root()]


class ParallelScanner:
    def __init__(self, rate: float, concurrency: int, timeout: float, workers: int) -> None:
        self.rate, self.concurrency, self.timeout, self.workers = rate, concurrency, timeout, workers
        self.stats = ScanStats()
        self._done: dict[int, int] = {}
        self._procs: list[asyncio.subprocess.Process] = []
        self._local: ConnectScanner | None = None
        self._stopped = False

    @property
    def done(self) -> int:
        """Probes finished so far over all processes (each worker reports about once a second)."""
        return sum(self._done.values()) + (self._local.stats.done if self._local is not None else 0)

    def stop(self) -> None:
        self._stopped = True
        if self._local is not None:
            self._local.stop()
        for proc in self._procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

    async def run(self, targets: Sequence[Sequence[str]], ports: str,
                  on_open: Callable[[OpenPort], None]) -> ScanStats:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        n = self.workers
        share_rate, share_concurrency = self.rate / n, max(1, self.concurrency // n)
        spec = {"targets": [list(t) for t in targets], "ports": ports, "shards": n,
                "rate": share_rate, "concurrency": share_concurrency, "timeout": self.timeout}
        # Parse before starting anything: a bad spec fails here, not in n processes.
        ranges, intervals = parse_targets(targets), parse_ports(ports)
        try:
            for shard in range(1, n):
                proc = await asyncio.create_subprocess_exec(
                    *worker_argv(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20)
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({**spec, "shard": shard}).encode() + b"\n")
                await proc.stdin.drain()
                proc.stdin.close()
                self._procs.append(proc)
            self._local = ConnectScanner(share_rate, share_concurrency, self.timeout)
            if self._stopped:
                self._local.stop()
            tasks = [asyncio.ensure_future(self._local.run(iter_probes(ranges, intervals, 0, n), on_open))]
            tasks += [asyncio.ensure_future(self._collect(i + 1, p, on_open)) for i, p in enumerate(self._procs)]
            try:
                results = await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
            for stats in results:
                for key in _COUNTED:
                    setattr(self.stats, key, getattr(self.stats, key) + getattr(stats, key))
        finally:
            self.stop()
            self.stats.seconds = loop.time() - begin
        return self.stats

    async def _collect(self, shard: int, proc: asyncio.subprocess.Process,
                       on_open: Callable[[OpenPort], None]) -> ScanStats:
        assert proc.stdout is not None
        stats = ScanStats()
        async for line in proc.stdout:
            msg = json.loads(line)
            if "done" in msg:
                self._done[shard] = int(msg["done"])
            elif "open" in msg:
                ip, port, rtt, at = msg["open"]
                on_open(OpenPort(ip, port, rtt, at))
            elif "stats" in msg:
                for key in _COUNTED:
                    setattr(stats, key, int(msg["stats"][key]))
                self._done[shard] = stats.done
        code = await proc.wait()
        if code != 0 and not self._stopped:
            raise RuntimeError(f"scan worker {shard} exited with {code}")
        return stats
