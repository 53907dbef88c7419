"""Files the deploy renders: golden firewall rulesets, hardened units, Traefik routes and TLS, stable schedules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from appliance.deploy import lab_appliance_document
from appliance.lab.state import build_state
from appliance.lab.topology import APT_PROXY_PORT
from provision.config import Appliance, parse_appliance
from provision.databases import hba_rules
from provision.render import daily_calendar, nftables_conf, render, traefik_dynamic, traefik_static
from provision.secrets import scram_verifier

GOLDEN = Path(__file__).parent / "golden"
ROLE_HOSTS = {"edge": "edge", "manager": "manager", "ingest": "ingest-1", "dispatcher": "dispatcher",
              "backup": "backup", "db": "db"}
MIPO_UNITS = ["mipo-manager.service", "mipo-ingest.service", "mipo-dispatcher.service", "mipo-backup.service",
              "mipo-migrate.service", "mipo-backup-run.service", "mipo-retention.service"]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Appliance:
    root = tmp_path_factory.mktemp("lab")
    return parse_appliance(lab_appliance_document(build_state(root, Path("/image"), root / "key")), "lab")


@pytest.mark.parametrize("role", sorted(ROLE_HOSTS))
def test_firewall_ruleset_matches_the_golden_file(appliance: Appliance, role: str) -> None:
    """Each role's nftables ruleset is exactly the reviewed one (regenerate with MIPO_UPDATE_GOLDEN=1)."""
    rendered = nftables_conf(appliance, appliance.host(ROLE_HOSTS[role]))
    golden = GOLDEN / f"nftables-{role}.conf"
    if os.environ.get("MIPO_UPDATE_GOLDEN") == "1":
        golden.write_text(rendered)
    assert rendered == golden.read_text()


@pytest.mark.parametrize("role", sorted(ROLE_HOSTS))
def test_every_host_drops_inbound_by_default(appliance: Appliance, role: str) -> None:
    """Default drop inbound everywhere; SSH only from the admin network."""
    text = nftables_conf(appliance, appliance.host(ROLE_HOSTS[role]))
    assert "hook input priority filter; policy drop;" in text
    assert "tcp dport 22 ip saddr { 198.18.1.1/32 } accept" in text


def test_only_the_db_host_drops_outbound_except_the_proxy(appliance: Appliance) -> None:
    """The database host opens no connection but to the package proxy; other hosts are not restricted outward."""
    for role, name in ROLE_HOSTS.items():
        text = nftables_conf(appliance, appliance.host(name))
        assert ("hook output priority filter; policy drop;" in text) == (role == "db")
    assert f"ip daddr 198.18.1.1 tcp dport {APT_PROXY_PORT} accept" in nftables_conf(appliance, appliance.host("db"))


def test_pg_hba_allows_exactly_the_app_hosts(appliance: Appliance) -> None:
    """pg_hba names every app host for its own role only, the owner only from manager and backup, never edge."""
    rules = hba_rules(appliance)
    addresses = {a for _, _, a in rules}
    assert addresses == {"198.18.1.11", "198.18.1.12", "198.18.1.13", "198.18.1.14", "198.18.1.15"}
    assert ("mipo_results", "mipo_ingest", "198.18.1.13") in rules
    assert ("mipo_config", "mipo_ingest", "198.18.1.11") not in rules
    assert {a for _, r, a in rules if r == "mipo_owner"} == {"198.18.1.11", "198.18.1.15"}
    text = render("pg_hba.conf.j2", rules=rules)
    assert all(line.startswith(("#", "local", "hostssl")) for line in text.splitlines() if line)


@pytest.mark.parametrize("unit", MIPO_UNITS)
def test_mipo_units_carry_the_hardening_baseline(unit: str) -> None:
    """Every mipo unit runs as mipo with the hardening baseline, and takes secrets only via LoadCredential."""
    text = render(f"{unit}.j2")
    for line in ("User=mipo", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "SystemCallFilter=@system-service",
                 "CapabilityBoundingSet=", "MemoryDenyWriteExecute=yes"):
        assert line in text.splitlines()
    assert "Environment=" not in text
    assert "LoadCredential=" in text


def test_traefik_refuses_tls_below_1_2_and_sets_hsts(appliance: Appliance) -> None:
    """TLS 1.2 is the floor and every router adds HSTS and the security headers."""
    dynamic = yaml.safe_load(traefik_dynamic(appliance))
    assert dynamic["tls"]["options"]["default"]["minVersion"] == "VersionTLS12"
    assert dynamic["http"]["middlewares"]["security-headers"]["headers"]["stsSeconds"] >= 31536000
    for router in dynamic["http"]["routers"].values():
        assert router["middlewares"][0] == "security-headers"


def test_traefik_routes_scanner_paths_to_both_ingest_nodes(appliance: Appliance) -> None:
    """/scanner → ingest-1 and ingest-2 (health-checked), the rest → manager; login and enrolment rate-limited."""
    http = yaml.safe_load(traefik_dynamic(appliance))["http"]
    assert http["routers"]["scanner"]["service"] == "ingest"
    assert http["routers"]["manager"]["service"] == "manager"
    ingest = http["services"]["ingest"]["loadBalancer"]
    assert [s["url"] for s in ingest["servers"]] == ["http://198.18.1.12:8002", "http://198.18.1.13:8002"]
    assert ingest["healthCheck"]["path"] == "/health"
    assert "login-rate-limit" in http["routers"]["login"]["middlewares"]
    assert "enrol-rate-limit" in http["routers"]["scanner-enrol"]["middlewares"]
    assert "/api/auth/login" in http["routers"]["login"]["rule"]


@pytest.mark.parametrize("header", ["Authorization", "Cookie", "X-Mipo-Key"])
def test_traefik_access_log_never_records_secrets(appliance: Appliance, header: str) -> None:
    """The access log drops every request header by default and names the secret-bearing ones explicitly."""
    log = yaml.safe_load(traefik_static(appliance))["accessLog"]["fields"]["headers"]
    assert log["defaultMode"] == "drop"
    assert log["names"][header] == "drop"


def test_backup_time_is_stable_and_at_night() -> None:
    """The backup timer's time derives from the host name: same every deploy, between 01:00 and 04:59."""
    assert daily_calendar("backup") == daily_calendar("backup")
    hour = int(daily_calendar("backup").split()[1].split(":")[0])
    assert 1 <= hour <= 4


def test_scram_verifier_is_deterministic_and_well_formed() -> None:
    """Same password → same verifier (so a second deploy changes nothing); the password itself is not in it."""
    first = scram_verifier("s3cret", "mipo_ingest:s3cret")
    assert first == scram_verifier("s3cret", "mipo_ingest:s3cret")
    assert first.startswith("SCRAM-SHA-256$4096:") and "s3cret" not in first
    assert first != scram_verifier("s3cret", "mipo_manager:s3cret")
