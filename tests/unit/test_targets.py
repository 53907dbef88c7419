"""Interval arithmetic on addresses agrees with Python's ipaddress, without materialising addresses."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.targets.addresses import TargetSet, TargetSyntaxError, parse_ranges, parse_target
from app.domain.targets.intervals import IntervalSet

# Small universes make overlaps, adjacency and containment frequent.
V4_BASE = int(ipaddress.IPv4Address("198.18.0.0"))
V6_BASE = int(ipaddress.IPv6Address("2001:db8::"))


def _cidr(family: int) -> st.SearchStrategy[str]:
    base, bits = (V4_BASE, 32) if family == 4 else (V6_BASE, 128)
    cls = ipaddress.IPv4Network if family == 4 else ipaddress.IPv6Network

    @st.composite
    def make(draw: st.DrawFn) -> str:
        prefix = draw(st.integers(bits - 8, bits))
        offset = draw(st.integers(0, 511))
        return str(cls((base + offset, prefix), strict=False))
    return make()


def _range(family: int) -> st.SearchStrategy[str]:
    base = V4_BASE if family == 4 else V6_BASE
    addr = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
    return st.tuples(st.integers(0, 600), st.integers(0, 40)).map(
        lambda t: f"{addr(base + t[0])}-{addr(base + t[0] + t[1])}")


def _targets(family: int) -> st.SearchStrategy[list[str]]:
    return st.lists(st.one_of(_cidr(family), _range(family)), max_size=8)


def _naive(items: list[str]) -> set[int]:
    out: set[int] = set()
    for item in items:
        if "-" in item:
            a, b = item.split("-")
            out.update(range(int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b)) + 1))
        else:
            out.update(int(a) for a in ipaddress.ip_network(item))
    return out


def _members(ts: TargetSet) -> set[int]:
    return {a for lo, hi in (*ts.v4.intervals, *ts.v6.intervals) for a in range(lo, hi + 1)}


@pytest.mark.parametrize("family", [4, 6])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_union_minus_exclusions_matches_ipaddress(family: int, data: st.DataObject) -> None:
    """The union of targets minus exclusions has exactly the addresses ipaddress enumerates, and the same count."""
    targets = data.draw(_targets(family))
    exclusions = data.draw(_targets(family))
    result = TargetSet.parse(targets).subtract(TargetSet.parse(exclusions))
    expected = _naive(targets) - _naive(exclusions)
    assert _members(result) == expected
    assert result.count() == len(expected)


@pytest.mark.parametrize("family", [4, 6])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_normal_form_is_sorted_disjoint_and_not_adjacent(family: int, data: st.DataObject) -> None:
    """Equal sets have one representation: overlapping and adjacent ranges are merged."""
    ts = TargetSet.parse(data.draw(_targets(family)))
    intervals = ts.v4.intervals if family == 4 else ts.v6.intervals
    for (_, hi), (lo2, _) in itertools.pairwise(intervals):
        assert lo2 > hi + 1


@pytest.mark.parametrize("family", [4, 6])
@settings(max_examples=100, deadline=None)
@given(data=st.data(), size=st.integers(1, 300))
def test_chunks_cover_the_set_exactly_once_within_the_size(family: int, data: st.DataObject, size: int) -> None:
    """Batching never drops, duplicates or oversizes: the pieces partition the set."""
    ts = TargetSet.parse(data.draw(_targets(family)))
    seen: list[int] = []
    for fam, piece in ts.chunks(size):
        assert fam == family
        n = sum(hi - lo + 1 for lo, hi in piece)
        assert 1 <= n <= size
        seen.extend(a for lo, hi in piece for a in range(lo, hi + 1))
    assert len(seen) == len(set(seen))
    assert set(seen) == _members(ts)


@settings(max_examples=100, deadline=None)
@given(a=_targets(4), b=_targets(4))
def test_intersection_matches_ipaddress(a: list[str], b: list[str]) -> None:
    assert _members(TargetSet.parse(a).intersect(TargetSet.parse(b))) == _naive(a) & _naive(b)


@settings(max_examples=50, deadline=None)
@given(a=_targets(4), b=_targets(6))
def test_ranges_round_trip_through_job_json(a: list[str], b: list[str]) -> None:
    """What a job carries ([first, last] strings) parses back into the same set, both families."""
    ts = TargetSet.parse(a + b)
    assert parse_ranges(ts.ranges()) == ts


def test_adjacent_ranges_merge_and_duplicates_collapse() -> None:
    ts = TargetSet.parse(["198.18.0.0/25", "198.18.0.128/25", "198.18.0.0/24", "198.18.1.0"])
    assert ts.ranges() == [["198.18.0.0", "198.18.1.0"]]


def test_exclusion_of_everything_leaves_nothing() -> None:
    ts = TargetSet.parse(["198.18.0.0/24"]).subtract(TargetSet.parse(["198.18.0.0/16"]))
    assert not ts and ts.count() == 0


def test_ipv6_slash_64_counts_without_materialising() -> None:
    ts = TargetSet.parse(["2001:db8::/64"]).subtract(TargetSet.parse(["2001:db8::/120"]))
    assert ts.count() == 2**64 - 256


def test_a_slash_8_minus_a_thousand_slash_24s_stays_compact() -> None:
    excl = [f"10.{i // 256}.{i % 256}.0/24" for i in range(0, 4000, 4)]
    ts = TargetSet.parse(["10.0.0.0/8"]).subtract(TargetSet.parse(excl))
    assert ts.count() == 2**24 - 1000 * 256
    assert len(ts.v4.intervals) == 1000


@pytest.mark.parametrize("bad", ["", "10.0.0.300", "hello", "10.0.0.9-10.0.0.1", "10.0.0.1-2001:db8::1", "1.2.3.4/33"])
def test_bad_targets_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(TargetSyntaxError):
        parse_target(bad)


def test_interval_membership() -> None:
    s = IntervalSet.of([(1, 3), (10, 12)])
    assert 2 in s and 11 in s and 5 not in s and 13 not in s
