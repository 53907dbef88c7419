"""One helper process of a parallel scan: its share arrives on stdin in chunks, results leave on stdout.

Started with `python3 -I -S` and importing only the engine and port parsing (no asyncio, no json, no
dataclasses): a worker is scanning a few tens of milliseconds after it was spawned. It asks for the next
chunk whenever it starts one, so one is always on its way. The protocol is plain text lines:

    in:  "<rate> <concurrency> <timeout>", "<ports>", "<first>-<last> …", then "C <start> <stop>" … "E"
    out: "M" (more, please), "O <ip> <port> <rtt_ms> <at>", "D <done>", finally
         "S <attempts> <open> <closed> <filtered> <errors>"

Lines are written straight to the pipe's fd (no buffer, no lock).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from .engine import ConnectScanner, OpenPort, ScanStats
from .ports import ProbeSpace, parse_ports, parse_targets


def _say(line: str) -> None:
    data = line.encode() + b"\n"
    while data:
        data = data[os.write(1, data):]


def _probes(space: ProbeSpace) -> Iterator[tuple[str, int]]:
    for line in sys.stdin:
        word = line.split()
        if not word or word[0] != "C":  # "E": nothing left to hand out
            return
        _say("M")
        yield from space.between(int(word[1]), int(word[2]))


def main() -> int:
    rate, concurrency, timeout = sys.stdin.readline().split()
    ports = sys.stdin.readline().strip()
    targets = [t.split("-", 1) for t in sys.stdin.readline().split()]
    space = ProbeSpace(parse_targets(targets), parse_ports(ports))

    def found(o: OpenPort) -> None:
        _say(f"O {o.ip} {o.port} {o.rtt_ms:.3f} {o.at:.6f}")

    def tick(stats: ScanStats) -> None:
        _say(f"D {stats.done}")

    engine = ConnectScanner(float(rate), int(concurrency), float(timeout))
    s = engine.run_blocking(_probes(space), found, tick)
    _say(f"S {s.attempts} {s.open} {s.closed} {s.filtered} {s.errors}")
    return 0
