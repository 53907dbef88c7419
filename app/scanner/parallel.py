"""Spread one scan over several worker processes (one event loop per CPU core), merging what they find.

Connect scanning is bound by per-socket CPU (mostly kernel time): one asyncio loop uses one core. Each
worker re-runs this package (`python3 -m <package> worker`), takes every N-th probe of the same
targets x ports, at rate/N and concurrency/N, and reports open ports as JSON lines on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path

from .engine import ConnectScanner, OpenPort, ScanStats
from .ports import iter_addresses, iter_ports, parse_ports, parse_targets

# Below this many probes a single process is faster than starting workers.
PARALLEL_MIN_PROBES = 32768


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _package_root() -> str:
    package = __package__ or "mipo_scanner"
    # app.scanner → the repository root; mipo_scanner inside agent.pyz → the zip file itself.
    return str(Path(__file__).parents[len(package.split("."))])


class ParallelScanner:
    def __init__(self, rate: float, concurrency: int, timeout: float, workers: int) -> None:
        self.rate, self.concurrency, self.timeout, self.workers = rate, concurrency, timeout, workers
        self.stats = ScanStats()
        self._done: dict[int, int] = {}
        self._procs: list[asyncio.subprocess.Process] = []
        self._stopped = False

    @property
    def done(self) -> int:
        """Probes finished so far over all workers (each reports about once a second)."""
        return sum(self._done.values())

    def stop(self) -> None:
        self._stopped = True
        for proc in self._procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

    async def run(self, targets: Sequence[Sequence[str]], ports: str,
                  on_open: Callable[[OpenPort], None]) -> ScanStats:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        env = {**os.environ, "PYTHONPATH": _package_root()}
        n = self.workers
        spec = {"targets": [list(t) for t in targets], "ports": ports, "workers": n,
                "rate": self.rate / n, "concurrency": max(1, self.concurrency // n), "timeout": self.timeout}
        for shard in range(n):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __package__ or "mipo_scanner", "worker", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=env, limit=1 << 20)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({**spec, "shard": shard}).encode() + b"\n")
            await proc.stdin.drain()
            proc.stdin.close()
            self._procs.append(proc)

        async def collect(shard: int, proc: asyncio.subprocess.Process) -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                msg = json.loads(line)
                if "done" in msg:
                    self._done[shard] = int(msg["done"])
                elif "open" in msg:
                    ip, port, rtt, at = msg["open"]
                    on_open(OpenPort(ip, port, rtt, at))
                elif "stats" in msg:
                    for key in ("attempts", "open", "closed", "filtered", "errors"):
                        setattr(self.stats, key, getattr(self.stats, key) + int(msg["stats"][key]))
                    self._done[shard] = int(msg["stats"]["attempts"])
            code = await proc.wait()
            if code != 0 and not self._stopped:
                raise RuntimeError(f"scan worker exited with {code}")

        try:
            await asyncio.gather(*(collect(i, p) for i, p in enumerate(self._procs)))
        finally:
            self.stop()
            self.stats.seconds = loop.time() - begin
        return self.stats


def worker_main() -> int:
    """`python3 -m <package> worker`: one shard, spec as JSON on stdin, findings as JSON lines on stdout."""
    spec = json.loads(sys.stdin.readline())
    ranges, intervals = parse_targets(spec["targets"]), parse_ports(spec["ports"])
    probes = ((ip, p) for ip in iter_addresses(ranges) for p in iter_ports(intervals))
    shard = islice(probes, int(spec["shard"]), None, int(spec["workers"]))
    out = sys.stdout

    def found(o: OpenPort) -> None:
        out.write(json.dumps({"open": [o.ip, o.port, round(o.rtt_ms, 3), o.at]}) + "\n")
        out.flush()

    engine = ConnectScanner(spec["rate"], int(spec["concurrency"]), float(spec["timeout"]))

    async def scan() -> ScanStats:
        async def report() -> None:
            while True:
                await asyncio.sleep(1.0)
                out.write(json.dumps({"done": engine.stats.done}) + "\n")
                out.flush()

        ticker = asyncio.create_task(report())
        try:
            return await engine.run(shard, found)
        finally:
            ticker.cancel()

    stats = asyncio.run(scan())
    out.write(json.dumps({"stats": {"attempts": stats.attempts, "open": stats.open, "closed": stats.closed,
                                    "filtered": stats.filtered, "errors": stats.errors}}) + "\n")
    out.flush()
    return 0
