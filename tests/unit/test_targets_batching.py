"""Batching: jobs sized to the effective rate, mirror copies per scanner, split balanced by rate, exact coverage."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.planning.batching import ScannerSlot, batch_addresses, effective_rate, job_count, plan_jobs
from app.domain.targets.addresses import TargetSet

TARGETS = TargetSet.parse(["198.18.0.0/23", "2001:db8::/120"])


def test_template_rate_caps_the_scanner_and_the_scanner_caps_the_template() -> None:
    assert effective_rate(ScannerSlot(1, 20_000), 5_000) == 5_000
    assert effective_rate(ScannerSlot(1, 1_000), 5_000) == 1_000


def test_a_job_lasts_about_the_target_duration() -> None:
    """5,000 probes/s x 300 s over 1,024 ports -> 1,464 addresses: 1,499,136 probes, just under 300 s."""
    n = batch_addresses(5_000, 1_024, 300)
    assert n == 1_464 and n * 1_024 / 5_000 <= 300 < (n + 1) * 1_024 / 5_000
    assert batch_addresses(10, 65_535, 1) == 1  # never an empty job


def test_mirror_gives_every_scanner_the_same_batches() -> None:
    jobs = list(plan_jobs(TARGETS, 100, [ScannerSlot(1, 500), ScannerSlot(2, 20_000)], "mirror", 1_000, 10))
    by_scanner: dict[int, list[tuple[int, tuple[tuple[int, int], ...]]]] = {}
    for job in jobs:
        by_scanner.setdefault(job.scanner_id, []).append((job.family, job.intervals))
    assert by_scanner[1] == by_scanner[2]
    # Batches are sized for the slowest scanner (500/s), each at its own rate.
    assert {j.rate for j in jobs if j.scanner_id == 1} == {500}
    assert {j.rate for j in jobs if j.scanner_id == 2} == {1_000}
    assert all(j.addresses <= 50 for j in jobs)


def test_split_shares_work_in_proportion_to_rate() -> None:
    fast, slow = ScannerSlot(1, 3_000), ScannerSlot(2, 1_000)
    jobs = list(plan_jobs(TargetSet.parse(["198.18.0.0/16"]), 10, [fast, slow], "split", 10_000, 10))
    cost = Counter[int]()
    for job in jobs:
        cost[job.scanner_id] += job.cost
    assert 2.7 < cost[1] / cost[2] < 3.3


@settings(max_examples=60, deadline=None)
@given(prefix=st.integers(20, 30), ports=st.integers(1, 2000), rates=st.lists(st.integers(1, 50_000), min_size=1,
       max_size=4), mode=st.sampled_from(["mirror", "split"]), seconds=st.floats(1, 600))
def test_job_count_predicts_plan_jobs_and_split_covers_once(prefix: int, ports: int, rates: list[int], mode: str,
                                                            seconds: float) -> None:
    targets = TargetSet.parse([f"198.18.0.0/{prefix}", "2001:db8::/124"])
    scanners = [ScannerSlot(i + 1, r) for i, r in enumerate(rates)]
    jobs = list(plan_jobs(targets, ports, scanners, mode, 5_000, seconds))  # type: ignore[arg-type]
    assert len(jobs) == job_count(targets, ports, scanners, mode, 5_000, seconds)  # type: ignore[arg-type]
    copies = len(scanners) if mode == "mirror" else 1
    assert sum(j.addresses for j in jobs) == targets.count() * copies
    assert all(j.cost == j.addresses * ports and j.estimate_seconds == j.cost / j.rate for j in jobs)


def test_an_ipv6_slash_64_is_counted_not_enumerated() -> None:
    huge = TargetSet.parse(["2001:db8::/64"])
    assert job_count(huge, 1_024, [ScannerSlot(1, 20_000)], "split", 5_000, 300) == -(-2**64 // 1_464)
