"""Scanners in the deployed lab, as a person would: an admin adds scanner-a and scanner-b through the API
(over TLS through the edge), runs the shown install command on each host, both come online; a job over the
`target` host's full TCP range returns exactly its open ports with banner and certificate; 20,000 results
stream while ingest-1 is SIGKILLed and restarted and scanner-a's link is cut for 30 s — lost 0, doubled 0;
an out-of-scope job is refused with no packet on the wire; a stopped scanner goes offline.

Jobs are placed in the jobs database the way the dispatcher does (insert + NOTIFY), so these tests hold
the scanner path to account and not the scheduling path.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from tests.lab.appliance_support import EDGE, Appliance
from tests.support.waiting import wait_until

pytestmark = pytest.mark.lab

TARGET = "198.18.0.30"
OUTSIDE = "198.18.1.20"        # the internal network: a lab address, outside the authorised scope
REDIRECTED = (20000, 39999)    # ports the target answers on for the streaming test (nft redirect to a sink)
SINK_UNIT = "mipo-scanlab-sink"
HEARTBEAT, OFFLINE_AFTER = 60.0, 120.0   # the appliance defaults (the lab deploy does not shorten them)


def test_both_scanners_come_online_within_one_heartbeat(appliance: Appliance, scanners: dict[str, int]) -> None:
    for host, scanner_id in scanners.items():
        wait_until(lambda: appliance.scanner(scanner_id)["online"], HEARTBEAT, f"{host} online",  # noqa: B023 (used at once)
                   interval=1)
        scanner = appliance.scanner(scanner_id)
        assert scanner["status"] == "active" and scanner["last_address"] == appliance.lab.host(host).addresses[
            "external"]
        unit = appliance.lab.run(host, "systemctl is-active mipo-scanner; stat -c '%a %U %G' /etc/mipo-scanner/key")
        assert unit.stdout.split("\n")[:2] == ["active", "640 root mipo-scanner"]


def test_full_tcp_range_of_target_gives_exactly_its_services(appliance: Appliance, scanners: dict[str, int]) -> None:
    job = appliance.new_job(scanners["scanner-a"], [[TARGET, TARGET]], "1-65535",
                            {"rate": 20000, "timeout_ms": 1000, "banner": True, "tls": True}, cost=65535)
    assert appliance.wait_job(job)[0] == "completed"
    rows = appliance.sql("mipo_results", "SELECT port, coalesce(service, ''),"
                                         " translate(coalesce(banner, ''), E'\\r\\n|', '  /'),"
                                         " coalesce(tls_subject, ''), coalesce(array_to_string(tls_sans, ','), ''),"
                                         " tls_not_after IS NOT NULL, length(coalesce(tls_sha256, ''))"
                                         f" FROM observations WHERE job_id = {job} ORDER BY port")
    assert [int(r[0]) for r in rows] == [22, 443, 8080]
    ssh, https, http = rows
    assert ssh[1] == "ssh" and ssh[2].startswith("SSH-2.0-")
    assert https[3] and https[5] == "t" and https[6] == "64"
    assert http[1] == "http" and http[2].startswith("HTTP/")
    coverage = appliance.sql("mipo_results", f"SELECT complete FROM run_coverage WHERE job_id = {job}")
    assert coverage == [["t"]]


def test_streaming_survives_an_ingest_crash_and_a_30_second_cut(appliance: Appliance,
                                                                scanners: dict[str, int]) -> None:
    """Lost 0, doubled 0: counted row by row against the 20,000 ports the target answers on."""
    lab = appliance.lab
    low, high = REDIRECTED
    # A sink that accepts and drops, with a deep backlog (the lab's own services keep small backlogs), and
    # every port of the range redirected to it: 20,000 open ports on one real host.
    sink = ("import socket\ns = socket.create_server(('0.0.0.0', 9999), backlog=4096)\n"
            "while True:\n    s.accept()[0].close()\n")
    # A sink unit left failed by an interrupted earlier session would block the name: clear it first.
    lab.run("target", f"systemctl stop {SINK_UNIT}; systemctl reset-failed {SINK_UNIT}; "
                      "nft delete table inet mipo_scanlab", check=False)
    lab.run("target", f"systemd-run --unit {SINK_UNIT} python3 -c {shlex.quote(sink)}")
    lab.run("target", "nft add table inet mipo_scanlab && nft add chain inet mipo_scanlab pre "
                      "'{ type nat hook prerouting priority dstnat ; }' && nft add rule inet mipo_scanlab pre "
                      f"tcp dport {low}-{high} redirect to :9999")
    # Probes that arrive before the sink listens would be answered with RST: wait until it does.
    wait_until(lambda: ":9999" in lab.run("target", "ss -Htln sport = :9999", check=False).stdout, 30,
               "the sink listening on target:9999", interval=1)
    try:
        job = appliance.new_job(scanners["scanner-a"], [[TARGET, TARGET]], f"{low}-{high}",
                                {"rate": 2000, "timeout_ms": 2000, "banner": False, "tls": False},
                                cost=high - low + 1)

        def ledger() -> int:
            rows = appliance.sql("mipo_results", f"SELECT count(*) FROM ingested_batches WHERE job_id = {job}")
            return int(rows[0][0])

        try:
            wait_until(lambda: ledger() >= 2, 120, "the first batches", interval=1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {_streaming_diagnosis(appliance, job)}") from None
        lab.run("ingest-1", "systemctl kill -s KILL mipo-ingest.service")
        time.sleep(3)
        lab.run("ingest-1", "systemctl start mipo-ingest.service")
        lab.run("scanner-a", "nft add table inet mipo_cut && nft add chain inet mipo_cut out "
                             "'{ type filter hook output priority 0 ; }' && nft add rule inet mipo_cut out "
                             f"ip daddr {EDGE} tcp dport 443 drop")
        try:
            time.sleep(30)
        finally:
            lab.run("scanner-a", "nft delete table inet mipo_cut")
        status = appliance.wait_job(job, timeout=900)
        assert status[0] == "completed", status
    finally:
        lab.run("target", "nft delete table inet mipo_scanlab", check=False)
        lab.run("target", f"systemctl stop {SINK_UNIT}", check=False)
    counts = appliance.sql("mipo_results", "SELECT count(*), count(DISTINCT port), min(port), max(port)"
                                           f" FROM observations WHERE job_id = {job} AND ip = '{TARGET}'")[0]
    total, distinct = int(counts[0]), int(counts[1])
    expected = high - low + 1
    assert (expected - distinct, total - distinct) == (0, 0), f"lost {expected - distinct}, doubled {total - distinct}"
    assert (int(counts[2]), int(counts[3])) == REDIRECTED


def _streaming_diagnosis(appliance: Appliance, job: int) -> str:
    """What the job, the sink and scanner-a were doing, for a failure message that explains itself."""
    lab = appliance.lab
    row = appliance.sql("mipo_jobs", "SELECT status, coalesce(error_class, ''), coalesce(last_error, ''),"
                                     f" done_cost, attempts FROM jobs WHERE id = {job}")
    sink = lab.run("target", f"systemctl is-active {SINK_UNIT}; ss -Htln sport = :9999; "
                             "nft list table inet mipo_scanlab", check=False).stdout
    agent = lab.run("scanner-a", "nft list tables; journalctl -u mipo-scanner -n 15 --no-pager -o cat",
                    check=False).stdout
    return f"job {job} = {row}; target sink: {sink!r}; scanner-a: {agent[-1500:]!r}"


def test_out_of_scope_job_is_refused_without_a_packet(appliance: Appliance, scanners: dict[str, int]) -> None:
    lab = appliance.lab
    lab.run("scanner-a", "nft add table inet mipo_scope && nft add chain inet mipo_scope out "
                         "'{ type filter hook output priority -10 ; }' && nft add rule inet mipo_scope out "
                         f"ip daddr {OUTSIDE} counter drop")
    try:
        job = appliance.new_job(scanners["scanner-a"], [[OUTSIDE, OUTSIDE]], "1-1024",
                                {"rate": 1000, "timeout_ms": 500, "banner": False, "tls": False}, cost=1024)
        status = appliance.wait_job(job, timeout=180)
        listing = json.loads(lab.run("scanner-a", "nft -j list table inet mipo_scope").stdout)
    finally:
        lab.run("scanner-a", "nft delete table inet mipo_scope", check=False)
    packets = [e["counter"]["packets"] for item in listing["nftables"] if "rule" in item
               for e in item["rule"]["expr"] if "counter" in e]
    assert status[:2] == ["failed", "out_of_scope"], status
    assert packets == [0]


def test_stopped_scanner_goes_offline_after_the_configured_silence(appliance: Appliance,
                                                                   scanners: dict[str, int]) -> None:
    scanner_id = scanners["scanner-b"]
    appliance.lab.run("scanner-b", "systemctl stop mipo-scanner")
    assert appliance.scanner(scanner_id)["online"]  # not before the silence has lasted
    wait_until(lambda: not appliance.scanner(scanner_id)["online"], OFFLINE_AFTER + 30, "scanner-b offline", interval=1)
    appliance.lab.run("scanner-b", "systemctl start mipo-scanner")
    wait_until(lambda: appliance.scanner(scanner_id)["online"], 30, "scanner-b back online", interval=1)

