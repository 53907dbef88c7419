"""One share of a parallel scan, in its own process: spec as JSON on stdin, findings as JSON lines on stdout.

Started with `python3 -I -S` and importing only the engine and port parsing (no asyncio): a worker is
scanning a few tens of milliseconds after it was spawned. Lines are written straight to the pipe's fd.
"""

from __future__ import annotations

import json
import os
import sys

from .engine import ConnectScanner, OpenPort, ScanStats
from .ports import iter_probes, parse_ports, parse_targets


def _say(message: object) -> None:
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(1, data):]


def main() -> int:
    spec = json.loads(sys.stdin.readline())
    probes = iter_probes(parse_targets(spec["targets"]), parse_ports(spec["ports"]), int(spec["shard"]),
                         int(spec["shards"]))

    def found(o: OpenPort) -> None:
        _say({"open": [o.ip, o.port, round(o.rtt_ms, 3), o.at]})

    def tick(stats: ScanStats) -> None:
        _say({"done": stats.done})

    engine = ConnectScanner(float(spec["rate"]), int(spec["concurrency"]), float(spec["timeout"]))
    stats = engine.run_blocking(probes, found, tick)
    _say({"stats": {"attempts": stats.attempts, "open": stats.open, "closed": stats.closed,
                    "filtered": stats.filtered, "errors": stats.errors}})
    return 0
