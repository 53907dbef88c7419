"""Every appliance host: the golden firewall, units where they belong, hardened units, secrets root-only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from appliance.lab.state import LabState
from tests.lab.deploy_support import APPLIANCE_HOSTS, UNIT_HOSTS

pytestmark = pytest.mark.lab
GOLDEN = Path(__file__).resolve().parent.parent / "unit" / "golden"
ROLE_OF = {"edge": "edge", "manager": "manager", "ingest-1": "ingest", "ingest-2": "ingest",
           "dispatcher": "dispatcher", "backup": "backup", "db": "db"}
TIMER_HOSTS = {"mipo-backup.timer": "backup", "mipo-retention.timer": "manager"}
HARDENED = [("mipo-manager.service", "manager"), ("mipo-migrate.service", "manager"),
            ("mipo-retention.service", "manager"), ("mipo-ingest.service", "ingest-1"),
            ("mipo-dispatcher.service", "dispatcher"), ("mipo-backup.service", "backup"),
            ("mipo-backup-run.service", "backup"), ("traefik.service", "edge")]


@pytest.mark.parametrize("host", APPLIANCE_HOSTS)
def test_firewall_file_is_the_golden_ruleset(deployed_lab: LabState, host: str) -> None:
    """The ruleset on the host is the reviewed golden file of its role, byte for byte."""
    on_host = deployed_lab.run(host, "cat /etc/nftables.conf").stdout
    assert on_host == (GOLDEN / f"nftables-{ROLE_OF[host]}.conf").read_text()


@pytest.mark.parametrize("host", APPLIANCE_HOSTS)
def test_firewall_is_loaded_with_default_drop(deployed_lab: LabState, host: str) -> None:
    """The loaded ruleset (not just the file) drops inbound traffic by default."""
    ruleset = deployed_lab.run(host, "nft list chain inet mipo input").stdout
    assert "policy drop;" in ruleset


@pytest.mark.parametrize(("unit", "host"), [(u, h) for u in UNIT_HOSTS for h in APPLIANCE_HOSTS])
def test_each_unit_is_active_on_exactly_its_hosts(deployed_lab: LabState, lab_host: Any, unit: str,
                                                  host: str) -> None:
    """Each role runs where the inventory puts it and nowhere else (one dispatcher in the whole appliance)."""
    service = lab_host(host).service(unit)
    expected = host in UNIT_HOSTS[unit]
    assert service.is_running == expected
    if expected:  # testinfra cannot ask whether a unit that does not exist is enabled
        assert service.is_enabled


@pytest.mark.parametrize(("timer", "host"), [(t, h) for t in TIMER_HOSTS for h in APPLIANCE_HOSTS])
def test_timers_are_active_on_exactly_their_hosts(deployed_lab: LabState, lab_host: Any, timer: str,
                                                  host: str) -> None:
    """The nightly backup runs on the backup host, the daily retention on the manager, nowhere else."""
    assert lab_host(host).service(timer).is_running == (host == TIMER_HOSTS[timer])


@pytest.mark.parametrize(("unit", "host"), HARDENED)
def test_units_are_hardened(deployed_lab: LabState, unit: str, host: str) -> None:
    """systemd-analyze security rates every mipo unit (and Traefik) at an exposure of 2.5 or better."""
    out = deployed_lab.run(host, f"systemd-analyze security --no-pager {unit} | tail -1").stdout
    match = re.search(r"exposure level for \S+: (\d+\.\d+)", out)
    assert match, out
    assert float(match.group(1)) <= 2.5, out


@pytest.mark.parametrize(("host", "path"), [(h, f"/etc/mipo/credentials/{c}") for h, c in (
    ("manager", "db-mipo_manager"), ("manager", "db-mipo_owner"), ("manager", "backup-api-token"),
    ("ingest-1", "db-mipo_ingest"), ("dispatcher", "db-mipo_dispatcher"), ("backup", "db-postgres"),
    ("backup", "backup-signing-key"), ("edge", "edge-tls.key"))] + [
    ("manager", "/root/mipo-initial-admin-password"), ("db", "/etc/postgresql/17/main/mipo-server.key")])
def test_secret_files_are_private(deployed_lab: LabState, lab_host: Any, host: str, path: str) -> None:
    """Each secret file exists with its owner alone allowed to read it (mode 0600)."""
    secret = lab_host(host).file(path)
    assert secret.is_file
    assert secret.mode == 0o600
    assert secret.user in ("root", "postgres")


@pytest.mark.parametrize("host", APPLIANCE_HOSTS)
def test_no_secret_is_readable_by_a_non_root_user(deployed_lab: LabState, host: str) -> None:
    """Credentials, keys and the roles script cannot be read by mipo or nobody (root-only, 0600)."""
    paths = "/etc/mipo/credentials /root /var/lib/postgresql/mipo-roles.sql /etc/postgresql/17/main/mipo-server.key"
    for user in ("nobody", "mipo"):
        readable = deployed_lab.run(
            host, f"for p in $(find {paths} -type f 2>/dev/null); do runuser -u {user} -- test -r $p && echo $p; "
                  "done; true").stdout.split()
        assert readable == [], f"{user} can read {readable} on {host}"


@pytest.mark.parametrize("host", ["manager", "ingest-1", "dispatcher", "backup"])
def test_settings_file_holds_no_password(deployed_lab: LabState, host: str) -> None:
    """mipo.toml names credential files and never contains a secret (it is readable by the mipo group)."""
    text = deployed_lab.run(host, "cat /etc/mipo/mipo.toml").stdout
    secrets = deployed_lab.run(host, "cat /etc/mipo/credentials/db-*").stdout.split()
    assert secrets and not any(s in text for s in secrets)
