"""A large export streams: the serving manager process's peak memory does not grow with the result set."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from app.db.connect import conninfo
from tests.conftest import SettingsFactory
from tests.support.manager import http_client
from tests.support.postgres import PostgresServer
from tests.support.services import serve_role, write_toml
from tests.support.settings import settings_document

ROWS = 400_000
BASE = int(ipaddress.IPv4Address("198.18.0.0"))
BANNER = "HTTP/1.1 200 OK\\r\\nServer: nginx/1.26.0\\r\\nContent-Type: text/html; charset=utf-8\\r\\nX-Pad: " + "x" * 60


def _peak_rss_kib(config: Path) -> int:
    """VmHWM of the `serve manager` process started for this config (found by its command line)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmdline and any(config.stem.encode() in part for part in cmdline):
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    raise AssertionError(f"no serve process for {config}")


def _load(dsn: str) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY observations (time, run_id, job_id, scanner_id, ip, port, service, banner, tls_sha256)"
                      " FROM STDIN") as copy:
            buf: list[str] = []
            for i in range(ROWS):
                ip = str(ipaddress.IPv4Address(BASE + i // 4))  # 100,000 hosts in 198.18.0.0/15
                at = (start + timedelta(seconds=i)).isoformat()
                buf.append(f"{at}\t7\t{i // 1000}\t1\t{ip}\t{8000 + i % 4}\thttp\t{BANNER}\t{'ab' * 32}\n")
                if len(buf) == 10_000:
                    copy.write("".join(buf))
                    buf.clear()
            copy.write("".join(buf))


def test_large_exports_stream_with_bounded_memory(pg: PostgresServer, databases: dict[str, str],
                                                  credentials_dir: Path, migrated: SettingsFactory,
                                                  tmp_path: Path) -> None:
    """~100 MB of CSV and of JSON leave the real manager process's peak RSS within a fixed bound."""
    settings = migrated()
    _load(conninfo(settings, "results", as_owner=True))
    config = write_toml(settings_document(pg, databases, "mipo_manager"), tmp_path / "export-mem.toml")
    with serve_role(config, "manager", credentials_dir, tmp_path / "manager.log") as url, \
            http_client(url, settings, role="viewer") as api:
        # Warm up every code path (and the pool) on a small export, then take the baseline peak.
        small = api.get("/api/exports/results.csv", params={"port": 8000, "subnet": "198.18.0.0/28"})
        assert small.status_code == 200
        rows = list(csv.DictReader(io.StringIO(small.text)))
        assert len(rows) == 16 and rows[0]["banner"].startswith("HTTP/1.1 200 OK\r\nServer:")
        api.get("/api/exports/results.json", params={"subnet": "198.18.0.0/28"})
        baseline = _peak_rss_kib(config)

        sizes: dict[str, int] = {}
        for fmt in ("csv", "json"):
            total, rows_seen = 0, 0
            # Every row ends with its certificate hash: count them across chunk boundaries.
            end = b"ab" * 32 + (b",\n" if fmt == "csv" else b'","rtt_ms"')
            with api.stream("GET", f"/api/exports/results.{fmt}", params={"run_id": 7}) as response:
                assert response.status_code == 200
                tail = b""
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    window = tail[-(len(end) - 1):] + chunk
                    rows_seen += window.count(end)
                    tail = (tail + chunk)[-2000:]
            sizes[fmt] = total
            assert rows_seen == ROWS
            if fmt == "json":
                assert tail.endswith(b"]\n") and json.loads(tail[tail.rindex(b"{"):-2])["run_id"] == 7
        peak = _peak_rss_kib(config)

    print(f"export sizes {sizes}, manager peak RSS {baseline // 1024} -> {peak // 1024} MiB")
    assert min(sizes.values()) > 100 * 1024 * 1024, sizes  # each export well above the bound below
    # Holding the rows (or the body) would add hundreds of MB; streaming adds at most a few batches.
    assert peak - baseline < 40 * 1024, f"peak RSS grew {(peak - baseline) // 1024} MiB for {sizes} bytes"
