"""Parse CIDRs and addresses into per-family interval sets and format them back as compact ranges."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from app.domain.targets.intervals import Interval, IntervalSet


class TargetSyntaxError(ValueError):
    """A target that is not an IPv4/IPv6 address, CIDR or first-last range."""


def parse_target(text: str) -> tuple[int, Interval]:
    """'198.18.0.0/24', '2001:db8::1', '10.0.0.5-10.0.0.9' → (family, (first, last))."""
    value = text.strip()
    if not value:
        raise TargetSyntaxError("empty target")
    try:
        if "-" in value and "/" not in value:
            first_s, _, last_s = value.partition("-")
            first, last = ipaddress.ip_address(first_s.strip()), ipaddress.ip_address(last_s.strip())
            if first.version != last.version:
                raise TargetSyntaxError(f"{value!r}: both ends of a range must be the same address family")
            if int(first) > int(last):
                raise TargetSyntaxError(f"{value!r}: the range's first address is after its last")
            return first.version, (int(first), int(last))
        # strict=False: "10.0.0.7/24" means the /24 it lies in, as operators expect.
        net = ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        if isinstance(exc, TargetSyntaxError):
            raise
        raise TargetSyntaxError(
            f"{value!r} is not an IPv4/IPv6 address, CIDR (198.18.0.0/24) or range (a.b.c.d-e.f.g.h)"
        ) from None
    return net.version, (int(net.network_address), int(net.broadcast_address))


def format_address(family: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value))


@dataclass(frozen=True)
class TargetSet:
    """IPv4 and IPv6 addresses as two interval sets."""

    v4: IntervalSet = field(default_factory=IntervalSet)
    v6: IntervalSet = field(default_factory=IntervalSet)

    @classmethod
    def parse(cls, targets: Iterable[str]) -> TargetSet:
        v4: list[Interval] = []
        v6: list[Interval] = []
        for text in targets:
            family, interval = parse_target(text)
            (v4 if family == 4 else v6).append(interval)
        return cls(IntervalSet.of(v4), IntervalSet.of(v6))

    def __bool__(self) -> bool:
        return bool(self.v4) or bool(self.v6)

    def count(self) -> int:
        return self.v4.count() + self.v6.count()

    def union(self, other: TargetSet) -> TargetSet:
        return TargetSet(self.v4.union(other.v4), self.v6.union(other.v6))

    def subtract(self, other: TargetSet) -> TargetSet:
        return TargetSet(self.v4.subtract(other.v4), self.v6.subtract(other.v6))

    def intersect(self, other: TargetSet) -> TargetSet:
        return TargetSet(self.v4.intersect(other.v4), self.v6.intersect(other.v6))

    def ranges(self) -> list[list[str]]:
        """All intervals as [first, last] address strings (IPv4 first)."""
        return format_ranges(4, self.v4.intervals) + format_ranges(6, self.v6.intervals)

    def chunks(self, max_count: int) -> Iterator[tuple[int, tuple[Interval, ...]]]:
        """(family, intervals) pieces of at most max_count addresses; families never mix in a piece."""
        for family, iset in ((4, self.v4), (6, self.v6)):
            for piece in iset.chunks(max_count):
                yield family, piece


def format_ranges(family: int, intervals: Iterable[Interval]) -> list[list[str]]:
    return [[format_address(family, lo), format_address(family, hi)] for lo, hi in intervals]


def parse_ranges(ranges: Iterable[Iterable[str]]) -> TargetSet:
    """The inverse of TargetSet.ranges(): a job's jsonb targets back into a set."""
    return TargetSet.parse(f"{a}-{b}" for a, b in ranges)
