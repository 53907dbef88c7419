"""Sorted, disjoint, non-adjacent integer intervals: union, subtraction, counting, splitting."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

Interval = tuple[int, int]  # inclusive [first, last]


def normalise(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Sort and merge overlapping *and* adjacent intervals, so equal sets have one representation."""
    merged: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if lo > hi:
            raise ValueError(f"empty interval [{lo}, {hi}]")
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1][1] = hi
        else:
            merged.append([lo, hi])
    return tuple((a, b) for a, b in merged)


@dataclass(frozen=True)
class IntervalSet:
    """An immutable set of integers held as normalised inclusive intervals."""

    intervals: tuple[Interval, ...] = ()

    @classmethod
    def of(cls, intervals: Iterable[Interval]) -> IntervalSet:
        return cls(normalise(intervals))

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def __len__(self) -> int:
        # len() must be an int that fits in a machine word; IPv6 sets can exceed that, use count().
        return min(self.count(), 2**63 - 1)

    def count(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.intervals)

    def __contains__(self, value: int) -> bool:
        lo_i, hi_i = 0, len(self.intervals)
        while lo_i < hi_i:
            mid = (lo_i + hi_i) // 2
            lo, hi = self.intervals[mid]
            if value < lo:
                hi_i = mid
            elif value > hi:
                lo_i = mid + 1
            else:
                return True
        return False

    def union(self, other: IntervalSet) -> IntervalSet:
        return IntervalSet(normalise((*self.intervals, *other.intervals)))

    def subtract(self, other: IntervalSet) -> IntervalSet:
        """self minus other in one linear sweep over both sorted lists."""
        out: list[Interval] = []
        cut = other.intervals
        j = 0
        for lo, hi in self.intervals:
            # Skip exclusions entirely left of this interval; they cannot touch later ones either.
            while j < len(cut) and cut[j][1] < lo:
                j += 1
            k = j
            start = lo
            while k < len(cut) and cut[k][0] <= hi:
                c_lo, c_hi = cut[k]
                if c_lo > start:
                    out.append((start, c_lo - 1))
                start = max(start, c_hi + 1)
                if c_hi >= hi:
                    break
                k += 1
            if start <= hi:
                out.append((start, hi))
        return IntervalSet(tuple(out))

    def intersect(self, other: IntervalSet) -> IntervalSet:
        out: list[Interval] = []
        a, b = self.intervals, other.intervals
        i = j = 0
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return IntervalSet(tuple(out))

    def chunks(self, max_count: int) -> Iterator[tuple[Interval, ...]]:
        """Consecutive pieces of at most `max_count` integers each, cutting intervals where needed.

        A generator: the planner streams jobs out of a /8 without holding them all.
        """
        if max_count < 1:
            raise ValueError("max_count must be at least 1")
        piece: list[Interval] = []
        room = max_count
        for lo, hi in self.intervals:
            while lo <= hi:
                take = min(hi - lo + 1, room)
                piece.append((lo, lo + take - 1))
                lo += take
                room -= take
                if room == 0:
                    yield tuple(piece)
                    piece, room = [], max_count
        if piece:
            yield tuple(piece)
