"""One helper process of a parallel scan: its share arrives on a pipe in chunks, results leave on another.

Either forked from a single-threaded scan (`serve` on the pipes' fds: nothing to import or compile) or
started with `python3 -I -S` importing only the engine and port parsing (no asyncio, no json, no
dataclasses): a few tens of milliseconds after it was spawned it scans. It asks for the next chunk whenever
it starts one, so one is always on its way. The protocol is plain text lines:

    in:  "<rate> <concurrency> <timeout> <retries>", "<ports>", "<first>-<last> …", then "C <start> <stop>" … "E"
    out: "M" (more, please), "O <ip> <port> <rtt_ms> <at>", "D <done>", finally
         "S <attempts> <open> <closed> <filtered> <errors> <retried>"

Lines are read and written straight on the fds (no buffered file objects, no lock).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

from .engine import ConnectScanner, OpenPort, ScanStats
from .ports import ProbeSpace, parse_ports, parse_targets


def _lines(fd: int) -> Iterator[str]:
    """Lines read from fd, without their newline, until its end."""
    buffer = b""
    while True:
        nl = buffer.find(b"\n")
        if nl >= 0:
            line, buffer = buffer[:nl], buffer[nl + 1:]
            yield line.decode()
            continue
        data = os.read(fd, 1 << 16)
        if not data:
            return
        buffer += data


def serve(rfd: int, wfd: int) -> int:
    """Scan the chunks read from rfd; report on wfd. Returns the exit status."""

    def say(line: str) -> None:
        data = line.encode() + b"\n"
        while data:
            data = data[os.write(wfd, data):]

    lines = _lines(rfd)
    rate, concurrency, timeout, retries = next(lines).split()
    ports = next(lines).strip()
    targets = [t.split("-", 1) for t in next(lines).split()]
    space = ProbeSpace(parse_targets(targets), parse_ports(ports))

    def chunks() -> Iterator[Iterator[tuple[str, int]]]:
        for line in lines:
            word = line.split()
            if not word or word[0] != "C":  # "E": nothing left to hand out
                return
            say("M")  # asked when a chunk starts: the next one is on its way while this one runs
            yield space.between(int(word[1]), int(word[2]))

    def found(o: OpenPort) -> None:
        say(f"O {o.ip} {o.port} {o.rtt_ms:.3f} {o.at:.6f}")

    def tick(stats: ScanStats) -> None:
        say(f"D {stats.done}")

    engine = ConnectScanner(float(rate), int(concurrency), float(timeout), int(retries))
    s = engine.run_blocking(itertools.chain.from_iterable(chunks()), found, tick)
    say(f"S {s.attempts} {s.open} {s.closed} {s.filtered} {s.errors} {s.retried}")
    return 0


def main() -> int:
    return serve(0, 1)
