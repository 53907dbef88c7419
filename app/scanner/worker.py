"""One helper process of a parallel scan: spec and chunks of probe numbers on stdin, JSON lines on stdout.

Started with `python3 -I -S` and importing only the engine and port parsing (no asyncio): a worker is
scanning a few tens of milliseconds after it was spawned. It asks for the next chunk whenever it starts
one, so one is always on its way. Lines are written straight to the pipe's fd (no buffer, no lock).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

from .engine import ConnectScanner, OpenPort, ScanStats
from .ports import ProbeSpace, parse_ports, parse_targets


def _say(message: object) -> None:
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(1, data):]


def _probes(space: ProbeSpace) -> Iterator[tuple[str, int]]:
    for line in sys.stdin:
        chunk = json.loads(line).get("chunk")
        if chunk is None:  # {"end": true}: nothing left to hand out
            return
        _say({"more": 1})
        yield from space.between(int(chunk[0]), int(chunk[1]))


def main() -> int:
    spec = json.loads(sys.stdin.readline())
    space = ProbeSpace(parse_targets(spec["targets"]), parse_ports(spec["ports"]))

    def found(o: OpenPort) -> None:
        _say({"open": [o.ip, o.port, round(o.rtt_ms, 3), o.at]})

    def tick(stats: ScanStats) -> None:
        _say({"done": stats.done})

    engine = ConnectScanner(float(spec["rate"]), int(spec["concurrency"]), float(spec["timeout"]))
    stats = engine.run_blocking(_probes(space), found, tick)
    _say({"stats": {"attempts": stats.attempts, "open": stats.open, "closed": stats.closed,
                    "filtered": stats.filtered, "errors": stats.errors}})
    return 0
