"""Helpers shared by the deploy's lab tests: probing TCP from a host, which hosts run which unit."""

from __future__ import annotations

import shlex

from appliance.lab.state import LabState

APPLIANCE_HOSTS = ["edge", "manager", "ingest-1", "ingest-2", "dispatcher", "backup", "db"]
# Which hosts run which mipo unit (the whole appliance has exactly one dispatcher).
UNIT_HOSTS = {
    "mipo-manager.service": ["manager"],
    "mipo-ingest.service": ["ingest-1", "ingest-2"],
    "mipo-dispatcher.service": ["dispatcher"],
    "mipo-backup.service": ["backup"],
    "traefik.service": ["edge"],
}
EDGE_EXTERNAL = "198.18.0.10"
DB = "198.18.1.20"
MANAGER = "198.18.1.11"
INGEST_1 = "198.18.1.12"
BACKUP = "198.18.1.15"


def connects(lab: LabState, host: str, address: str, port: int, seconds: int = 3) -> bool:
    """Whether `host` can open a TCP connection to address:port within a few seconds."""
    probe = f"timeout {seconds} bash -c {shlex.quote(f'</dev/tcp/{address}/{port}')}"
    return lab.run(host, probe, check=False).returncode == 0


def put_file(lab: LabState, host: str, path: str, content: str) -> None:
    lab.run(host, f"printf '%s' {shlex.quote(content)} > {shlex.quote(path)}")
