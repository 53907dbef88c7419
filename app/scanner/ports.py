"""Compact port specs ("1-1024,8080") and address ranges ([first, last]) as integer intervals."""

from __future__ import annotations

import bisect
import ipaddress
import itertools
from collections.abc import Iterator, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ports(spec: str) -> list[tuple[int, int]]:
    """"22,80,8000-8100" → merged, sorted inclusive intervals; ValueError names the bad item."""
    intervals: list[tuple[int, int]] = []
    for item in spec.replace(" ", "").split(","):
        if not item:
            continue
        first, sep, last = item.partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise ValueError(f"bad port item {item!r}: expected N or N-M")
        lo, hi = int(first), int(last) if sep else int(first)
        if not 0 <= lo <= hi <= 65535:
            raise ValueError(f"bad port item {item!r}: ports are 0-65535, low before high")
        intervals.append((lo, hi))
    if not intervals:
        raise ValueError("empty port spec")
    intervals.sort()
    merged = [intervals[0]]
    for lo, hi in intervals[1:]:
        if lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def count_ports(intervals: Sequence[tuple[int, int]]) -> int:
    return sum(hi - lo + 1 for lo, hi in intervals)


def iter_ports(intervals: Sequence[tuple[int, int]]) -> Iterator[int]:
    for lo, hi in intervals:
        yield from range(lo, hi + 1)


def parse_targets(targets: Sequence[Sequence[str]]) -> list[tuple[Address, Address]]:
    """[["198.18.0.1", "198.18.0.9"], …] → address pairs; ValueError on bad or reversed ranges."""
    out: list[tuple[Address, Address]] = []
    for pair in targets:
        if len(pair) != 2:
            raise ValueError(f"bad target range {pair!r}: expected [first, last]")
        first, last = ipaddress.ip_address(pair[0]), ipaddress.ip_address(pair[1])
        if first.version != last.version or int(first) > int(last):
            raise ValueError(f"bad target range {pair!r}: first must not follow last")
        out.append((first, last))
    return out


def count_addresses(ranges: Sequence[tuple[Address, Address]]) -> int:
    return sum(int(b) - int(a) + 1 for a, b in ranges)


def iter_addresses(ranges: Sequence[tuple[Address, Address]]) -> Iterator[str]:
    for first, last in ranges:
        cls = type(first)
        for value in range(int(first), int(last) + 1):
            yield str(cls(value))


def iter_probes(ranges: Sequence[tuple[Address, Address]], intervals: Sequence[tuple[int, int]]
                ) -> Iterator[tuple[str, int]]:
    """Every (address, port), addresses outer."""
    return ProbeSpace(ranges, intervals).between(0, None)


class ProbeSpace:
    """The probes of a scan numbered 0..total-1 (addresses outer, ports inner), so processes can split
    it into index ranges without materialising it."""

    def __init__(self, ranges: Sequence[tuple[Address, Address]], intervals: Sequence[tuple[int, int]]) -> None:
        self.ranges = list(ranges)
        self.ports = list(iter_ports(intervals))
        self.firsts: list[int] = []  # index of each range's first address among all addresses
        count = 0
        for first, last in self.ranges:
            self.firsts.append(count)
            count += int(last) - int(first) + 1
        self.total = count * len(self.ports)

    def address(self, k: int) -> str:
        """The k-th address of the ranges."""
        i = bisect.bisect_right(self.firsts, k) - 1
        first = self.ranges[i][0]
        return str(type(first)(int(first) + k - self.firsts[i]))

    def between(self, start: int, stop: int | None) -> Iterator[tuple[str, int]]:
        """Probes start..stop-1 in order (built in C: one Python step per address, not per probe)."""
        return itertools.chain.from_iterable(self._groups(start, stop))

    def _groups(self, start: int, stop: int | None) -> Iterator[Iterator[tuple[str, int]]]:
        ports, m = self.ports, len(self.ports)
        stop = self.total if stop is None else min(stop, self.total)
        for k in range(start // m, (stop - 1) // m + 1 if stop > start else start // m):
            ip, base = self.address(k), k * m
            chunk = ports[max(start - base, 0):min(stop - base, m)]
            yield zip(itertools.repeat(ip), chunk, strict=False)  # as many as the chunk has


def outside_scope(ranges: Sequence[tuple[Address, Address]], scope: Sequence[str]) -> list[str]:
    """Target ranges not wholly inside one authorised network (an empty scope authorises nothing)."""
    networks: list[Network] = [ipaddress.ip_network(n, strict=False) for n in scope]
    bad = []
    for first, last in ranges:
        # A network is contiguous: a range lies inside it iff both ends do.
        if not any(first in net and last in net for net in networks if net.version == first.version):
            bad.append(f"{first}-{last}")
    return bad


def contains(ranges: Sequence[tuple[int, int]], value: int) -> bool:
    """Membership in sorted, merged intervals (binary search)."""
    lo, hi = 0, len(ranges) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        a, b = ranges[mid]
        if value < a:
            hi = mid - 1
        elif value > b:
            lo = mid + 1
        else:
            return True
    return False
