"""Cut a target set into jobs: batch size from the effective rate, mirror or split across scanners."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from app.domain.targets.addresses import TargetSet, format_ranges
from app.domain.targets.intervals import Interval

Mode = Literal["mirror", "split"]


@dataclass(frozen=True)
class ScannerSlot:
    id: int
    rate_limit: int  # the scanner's own probes/s ceiling


@dataclass(frozen=True)
class JobSpec:
    scanner_id: int
    family: int
    intervals: tuple[Interval, ...]
    addresses: int
    cost: int              # addresses * ports
    rate: int              # effective probes/s for this job
    estimate_seconds: float

    def targets(self) -> list[list[str]]:
        return format_ranges(self.family, self.intervals)


def effective_rate(scanner: ScannerSlot, template_rate: int) -> int:
    """A template's rate is a ceiling; a scanner never goes above its own limit."""
    return max(1, min(scanner.rate_limit, template_rate))


def batch_addresses(rate: int, port_count: int, job_seconds: float) -> int:
    """Addresses per job so that addresses * ports ~ rate * job_seconds (at least one address)."""
    return max(1, int(rate * job_seconds) // max(1, port_count))


def job_count(targets: TargetSet, port_count: int, scanners: Sequence[ScannerSlot], mode: Mode,
              template_rate: int, job_seconds: float) -> int:
    """How many jobs plan_jobs would yield, computed without yielding them."""
    if not scanners:
        return 0
    size = batch_addresses(min(effective_rate(s, template_rate) for s in scanners), port_count, job_seconds)
    per_copy = sum(-(-iset.count() // size) for iset in (targets.v4, targets.v6))
    return per_copy * (len(scanners) if mode == "mirror" else 1)


def plan_jobs(targets: TargetSet, port_count: int, scanners: Sequence[ScannerSlot], mode: Mode,
              template_rate: int, job_seconds: float) -> Iterator[JobSpec]:
    """Stream the jobs of one run; memory stays proportional to one batch, not to the targets.

    mirror: every batch once per scanner, the same batches for all (sized for the slowest scanner)
    so vantage points can be compared batch by batch.
    split: each batch once, given to the scanner that would finish its current work first.
    """
    if not scanners:
        return
    rates = {s.id: effective_rate(s, template_rate) for s in scanners}
    size = batch_addresses(min(rates.values()), port_count, job_seconds)
    # (seconds of work assigned so far, scanner id): a heap picks the least-loaded scanner in log n.
    load = [(0.0, s.id) for s in scanners]
    heapq.heapify(load)
    for family, piece in targets.chunks(size):
        addresses = sum(hi - lo + 1 for lo, hi in piece)
        cost = addresses * port_count
        if mode == "mirror":
            for s in scanners:
                rate = rates[s.id]
                yield JobSpec(s.id, family, piece, addresses, cost, rate, cost / rate)
        else:
            busy, sid = heapq.heappop(load)
            rate = rates[sid]
            heapq.heappush(load, (busy + cost / rate, sid))
            yield JobSpec(sid, family, piece, addresses, cost, rate, cost / rate)
