"""The deploy's decisions from the db host's real state: roles script, migrations, first admin."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from app.db.migrate import checksum, migration_files
from provision.config import DATABASE_NAMES, OWNER_ROLE, SERVICE_ROLE, SUPERUSER
from provision.dbstate import (
    ClusterState,
    cluster_drift,
    expected_privileges,
    needs_first_admin,
    parse_state,
    pending_migrations,
    state_script,
    wheel_migrations,
)

REPO = Path(__file__).resolve().parents[2]
VERIFIERS = {r: f"SCRAM-SHA-256$4096:salt-{r}$k:k" for r in (SUPERUSER, OWNER_ROLE, *SERVICE_ROLE.values())}
EXPECTED = {"config": {"0001_initial.sql": "c1", "0300_x.sql": "c3"}, "jobs": {"0001_initial.sql": "j1"},
            "results": {"0001_initial.sql": "r1"}}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def intact_lines(users: int = 2) -> list[str]:
    """What the fact prints for a deployed appliance (shape as seen on the lab's db host)."""
    lines = ["server|up"]
    for role, verifier in VERIFIERS.items():
        flags = "true|true|true|true" if role == SUPERUSER else "true|false|false|false"
        lines.append(f"role|{role}|{flags}|{_sha(verifier)}")
    grants = ",".join(f"{g}:{p}" for g, p in sorted(expected_privileges()))
    for name in DATABASE_NAMES.values():
        lines.append(f"database|{name}|{OWNER_ROLE}|{grants}")
    for key, name in DATABASE_NAMES.items():
        lines.append(f"extension|{name}|plpgsql")
        if key == "results":
            lines.append(f"extension|{name}|timescaledb")
        lines += [f"migration|{name}|{m}|{c}" for m, c in EXPECTED[key].items()]
        if key == "config":
            lines.append(f"users|{name}|{users}")
    return lines


def test_an_intact_appliance_needs_nothing() -> None:
    """The second-deploy case: no roles script, no migration, no first admin (zero changed operations)."""
    state = parse_state(intact_lines())
    assert cluster_drift(state, VERIFIERS) == []
    assert pending_migrations(state, EXPECTED) == []
    assert not needs_first_admin(state)


def test_a_lost_database_brings_back_everything_it_held() -> None:
    """mipo_config dropped on the db host: recreated, migrated, and the first admin made again."""
    lines = [line for line in intact_lines() if "|mipo_config|" not in line]
    state = parse_state(lines)
    assert cluster_drift(state, VERIFIERS) == ["database mipo_config missing"]
    assert pending_migrations(state, EXPECTED) == ["config/0001_initial.sql", "config/0300_x.sql"]
    assert needs_first_admin(state)


@pytest.mark.parametrize("lines", [["server|down"], []], ids=["server-down", "no-output"])
def test_an_unreadable_cluster_runs_every_step(lines: list[str]) -> None:
    """First deploy (no PostgreSQL yet): every step runs; each is idempotent in itself."""
    state = parse_state(lines)
    assert cluster_drift(state, VERIFIERS) and pending_migrations(state, EXPECTED) and needs_first_admin(state)


def test_database_privileges_are_reapplied_when_they_differ() -> None:
    """PUBLIC may connect (a restore into a database it had to create) or a service role lost CONNECT → drift."""
    opened = [line.replace(f"database|mipo_jobs|{OWNER_ROLE}|", f"database|mipo_jobs|{OWNER_ROLE}|PUBLIC:CONNECT,")
              for line in intact_lines()]
    assert cluster_drift(parse_state(opened), VERIFIERS) == [
        "database mipo_jobs: privileges differ (extra ['PUBLIC:CONNECT'], missing [])"]
    closed = [line.replace("mipo_ingest:CONNECT,", "") if line.startswith("database|mipo_results|") else line
              for line in intact_lines()]
    assert cluster_drift(parse_state(closed), VERIFIERS) == [
        "database mipo_results: privileges differ (extra [], missing ['mipo_ingest:CONNECT'])"]
    owned = [line.replace(f"database|mipo_config|{OWNER_ROLE}|", "database|mipo_config|postgres|")
             for line in intact_lines()]
    assert cluster_drift(parse_state(owned), VERIFIERS) == ["database mipo_config: owner postgres"]


def test_roles_passwords_and_timescaledb_are_checked() -> None:
    lines = [line for line in intact_lines() if not line.startswith("role|mipo_ingest|")
             and line != "extension|mipo_results|timescaledb"]
    lines = [line.replace(_sha(VERIFIERS[SUPERUSER]), "0" * 64) for line in lines]
    lines = [line.replace("role|mipo_owner|true|false|false", "role|mipo_owner|true|true|false") for line in lines]
    assert cluster_drift(parse_state(lines), VERIFIERS) == [
        "role postgres: password differs", "role mipo_owner: attributes differ", "role mipo_ingest missing",
        "database mipo_results: timescaledb extension missing"]


def test_migrations_pending_by_name_and_checksum() -> None:
    """An edited migration counts as pending: migrate then fails the deploy loudly instead of it passing."""
    lines = [line.replace("|0300_x.sql|c3", "|0300_x.sql|edited") for line in intact_lines()]
    assert pending_migrations(parse_state(lines), EXPECTED) == ["config/0300_x.sql"]
    newer = {**EXPECTED, "jobs": {**EXPECTED["jobs"], "0510_new.sql": "n"}}
    assert pending_migrations(parse_state(intact_lines()), newer) == ["jobs/0510_new.sql"]


@pytest.mark.parametrize(("line", "needed"), [("users|mipo_config|0", True), ("users|mipo_config|1", False),
                                              (None, True)], ids=["no-user", "one-user", "no-users-table"])
def test_first_admin_only_into_a_config_database_without_users(line: str | None, needed: bool) -> None:
    lines = [x for x in intact_lines() if not x.startswith("users|")] + ([line] if line else [])
    assert needs_first_admin(parse_state(lines)) is needed


def test_a_database_that_could_not_be_read_is_treated_as_lacking_everything() -> None:
    lines = [*intact_lines(), "error|mipo_config"]
    state = parse_state(lines)
    assert needs_first_admin(state)
    assert "config/0001_initial.sql" in pending_migrations(state, EXPECTED)
    assert not ClusterState().up


def test_wheel_migrations_match_what_migrate_applies(tmp_path: Path) -> None:
    """The deploy reads the migrations from the wheel it installs, with the checksums `migrate` records."""
    wheel = tmp_path / "mipo-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in sorted((REPO / "app" / "db" / "migrations").rglob("*.sql")):
            archive.write(path, str(path.relative_to(REPO)))
        archive.writestr("app/db/migrate.py", "# not a migration\n")
    expected = {which: {name: checksum(sql) for name, sql in migration_files(which)}
                for which in ("config", "jobs", "results")}
    assert wheel_migrations(wheel) == expected


def test_the_fact_script_names_every_role_and_database() -> None:
    script = state_script()
    assert "{" + "port}" not in script and "5432" in script
    for name in (*DATABASE_NAMES.values(), OWNER_ROLE, *SERVICE_ROLE.values(), SUPERUSER):
        assert f"'{name}'" in script
