"""Benchmark: expand a /8 x 1,024 ports minus 1,000 random /24s into jobs, against naive ipaddress expansion.

Each case runs in its own subprocess (fresh interpreter) and reports wall time, the peak of Python
allocations (tracemalloc, measured in a second pass so it does not slow the timed one) and ru_maxrss.
The naive peer materialises every address of a /16 (ipaddress objects in a set) and is scaled up x256
to the /8; it is linear in addresses, which is the point.

    .venv/bin/python bench/dispatcher_expand.py
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.domain.planning.batching import ScannerSlot, plan_jobs
from app.domain.targets.addresses import TargetSet

PORTS = 1024
SCANNERS = [ScannerSlot(i, 20_000) for i in range(1, 5)]
TEMPLATE_RATE = 5_000
JOB_SECONDS = 300.0


def exclusions(prefix: int, count: int, seed: int = 7) -> list[str]:
    """`count` distinct random /24s inside 10.0.0.0/prefix."""
    rng = random.Random(seed)
    space = 2 ** (24 - prefix)
    picks = rng.sample(range(space), min(count, space))
    return [str(ipaddress.IPv4Network(((10 << 24) + (p << 8), 24))) for p in picks]


def ours(prefix: int, n_excl: int) -> dict[str, float]:
    targets = TargetSet.parse([f"10.0.0.0/{prefix}"]).subtract(TargetSet.parse(exclusions(prefix, n_excl)))
    jobs = cost = 0
    for job in plan_jobs(targets, PORTS, SCANNERS, "split", TEMPLATE_RATE, JOB_SECONDS):
        json.dumps(job.targets())  # what goes into the jobs table
        jobs += 1
        cost += job.cost
    return {"jobs": jobs, "addresses": targets.count(), "cost": cost}


def naive(prefix: int, n_excl: int) -> dict[str, float]:
    addresses = set(ipaddress.ip_network(f"10.0.0.0/{prefix}"))
    for net in exclusions(prefix, n_excl):
        addresses.difference_update(ipaddress.ip_network(net))
    ordered = sorted(addresses)
    batch = max(1, int(TEMPLATE_RATE * JOB_SECONDS) // PORTS)
    jobs = 0
    for i in range(0, len(ordered), batch):
        json.dumps([str(a) for a in ordered[i:i + batch]])
        jobs += 1
    return {"jobs": jobs, "addresses": len(ordered), "cost": len(ordered) * PORTS}


def child(kind: str, prefix: int, n_excl: int) -> None:
    fn = ours if kind == "ours" else naive
    start = time.perf_counter()
    result = fn(prefix, n_excl)
    seconds = time.perf_counter() - start
    tracemalloc.start()
    fn(prefix, n_excl)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({**result, "seconds": seconds, "peak_mb": peak / 2**20, "maxrss_mb": maxrss_kb / 1024}))


def measure(kind: str, prefix: int, n_excl: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(prefix), str(n_excl)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    print("ours: 10.0.0.0/PREFIX x 1,024 ports minus random /24s -> split jobs over 4 scanners")
    print(f"{'case':<28}{'addresses':>12}{'jobs':>8}{'seconds':>10}{'py peak MB':>12}{'maxrss MB':>11}")
    for prefix, n_excl in ((16, 4), (12, 63), (8, 1000)):
        r = measure("ours", prefix, n_excl)
        print(f"{'ours /' + str(prefix) + ' - ' + str(n_excl) + ' /24s':<28}{r['addresses']:>12,}{r['jobs']:>8,}"
              f"{r['seconds']:>10.3f}{r['peak_mb']:>12.2f}{r['maxrss_mb']:>11.1f}")
    big = r
    n = measure("naive", 16, 4)
    scale = 2 ** (16 - 8)
    print(f"{'naive /16 - 4 /24s':<28}{n['addresses']:>12,}{n['jobs']:>8,}{n['seconds']:>10.3f}"
          f"{n['peak_mb']:>12.2f}{n['maxrss_mb']:>11.1f}")
    est_s, est_mb = n["seconds"] * scale, n["peak_mb"] * scale
    print(f"{'naive scaled to /8 (x256)':<28}{'':>12}{'':>8}{est_s:>10.1f}{est_mb:>12.0f}")
    print()
    print(f"/8 x 1,024 - 1,000 /24s: {big['seconds']:.3f} s (target < 2 s), {big['peak_mb']:.1f} MB Python peak,"
          f" {big['maxrss_mb']:.1f} MB max RSS incl. interpreter (target < 50 MB)")
    print(f"ratio naive/ours: time x{est_s / big['seconds']:.0f}, memory x{est_mb / big['peak_mb']:.0f}")
    ok = big["seconds"] < 2 and big["maxrss_mb"] < 50
    print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
