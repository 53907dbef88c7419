"""The db host: PostgreSQL on the internal address only, over TLS, for the app hosts only, and no way out."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from appliance.lab.state import LabState
from appliance.lab.topology import APT_PROXY_PORT
from tests.lab.deploy_support import DB, connects

pytestmark = pytest.mark.lab
APP_HOSTS = ["manager", "ingest-1", "ingest-2", "dispatcher", "backup"]


def test_postgres_listens_on_the_internal_address_only(deployed_lab: LabState, lab_host: Any) -> None:
    """PostgreSQL never listens on 0.0.0.0 or another address: only the db's internal address (and no IPv6)."""
    listening = [s for s in lab_host("db").socket.get_listening_sockets() if s.endswith(":5432")]
    assert listening == [f"tcp://{DB}:5432"]


@pytest.mark.parametrize("host", ["edge", "scanner-a", "target"])
def test_postgres_is_unreachable_from_non_app_hosts(deployed_lab: LabState, host: str) -> None:
    """Port 5432 cannot be reached from the edge, a scanner or the target."""
    assert not connects(deployed_lab, host, DB, 5432)


@pytest.mark.parametrize("host", APP_HOSTS)
def test_postgres_is_reachable_from_app_hosts(deployed_lab: LabState, host: str) -> None:
    """The firewall lets each app host reach 5432 (the control for the refusals above)."""
    assert connects(deployed_lab, host, DB, 5432)


@pytest.mark.parametrize(("address", "port"), [("198.18.1.1", 22), ("198.18.1.11", 22), ("198.18.1.1", 80),
                                               ("198.18.1.10", 443)])
def test_db_cannot_open_connections_outward(deployed_lab: LabState, address: str, port: int) -> None:
    """The database host opens no connection of its own (a compromised db cannot reach anything)."""
    assert not connects(deployed_lab, "db", address, port)


def test_db_reaches_the_package_proxy(deployed_lab: LabState) -> None:
    """The one outbound exception: the apt proxy on the gateway, so the db host still gets updates."""
    assert connects(deployed_lab, "db", "198.18.1.1", APT_PROXY_PORT)


def _psql(lab: LabState, host: str, role: str, credential: str, database: str, sslmode: str) -> int:
    conninfo = (f"host={DB} port=5432 dbname={database} user={role} sslmode={sslmode} "
                f"sslrootcert=/etc/mipo/ca.crt connect_timeout=5")
    command = (f"PGPASSWORD=\"$(cat /etc/mipo/credentials/{credential})\" "
               f"/usr/lib/postgresql/17/bin/psql -X -At {shlex.quote(conninfo)} -c 'SELECT 1'")
    return lab.run(host, command, check=False).returncode


def test_service_role_logs_in_with_verified_tls(deployed_lab: LabState) -> None:
    """An app host logs in as its own role with the certificate verified against the appliance CA."""
    assert _psql(deployed_lab, "ingest-1", "mipo_ingest", "db-mipo_ingest", "mipo_results", "verify-full") == 0


def test_plaintext_logins_are_refused(deployed_lab: LabState) -> None:
    """pg_hba accepts only hostssl: the same login without TLS is refused."""
    assert _psql(deployed_lab, "ingest-1", "mipo_ingest", "db-mipo_ingest", "mipo_results", "disable") != 0


def test_a_role_cannot_log_in_from_another_host(deployed_lab: LabState) -> None:
    """pg_hba ties each role to its hosts: the dispatcher cannot log in as the ingest role."""
    rc = deployed_lab.run("dispatcher", "PGPASSWORD=x /usr/lib/postgresql/17/bin/psql -X -At "
                          f"'host={DB} dbname=mipo_results user=mipo_ingest sslmode=require connect_timeout=5' "
                          "-c 'SELECT 1'", check=False)
    assert rc.returncode != 0
    assert "no pg_hba.conf entry" in rc.stderr


@pytest.mark.parametrize(("setting", "expected"), [("shared_preload_libraries", "timescaledb"),
                                                   ("timescaledb.telemetry_level", "off"),
                                                   ("ssl", "on"), ("password_encryption", "scram-sha-256")])
def test_postgres_settings(deployed_lab: LabState, setting: str, expected: str) -> None:
    """TimescaleDB is preloaded and silent, TLS is on, passwords are stored as SCRAM."""
    out = deployed_lab.run("db", f"runuser -u postgres -- psql -X -At -c 'SHOW {setting}'").stdout.strip()
    assert out == expected


def test_timescaledb_extension_exists_in_the_results_database(deployed_lab: LabState) -> None:
    """The results database has the timescaledb extension the migrations build on."""
    out = deployed_lab.run("db", "runuser -u postgres -- psql -X -At -d mipo_results "
                           "-c \"SELECT extname FROM pg_extension WHERE extname = 'timescaledb'\"").stdout
    assert out.strip() == "timescaledb"


@pytest.mark.parametrize(("host", "allowed"), [("backup", True), ("manager", False), ("dispatcher", False)])
def test_superuser_logs_in_over_the_network_only_from_the_backup_host(deployed_lab: LabState, host: str,
                                                                      allowed: bool) -> None:
    """Restores need the superuser; pg_hba lets it in from the backup host only."""
    conninfo = f"host={DB} dbname=postgres user=postgres sslmode=require connect_timeout=5"
    result = deployed_lab.run(host, "PGPASSWORD=\"$(cat /etc/mipo/credentials/db-postgres 2>/dev/null)\" "
                              f"/usr/lib/postgresql/17/bin/psql -X -At {shlex.quote(conninfo)} -c 'SELECT 1'",
                              check=False)
    assert (result.returncode == 0) == allowed, result.stderr
    if not allowed:
        assert "no pg_hba.conf entry" in result.stderr
