"""Recovery in the deployed lab: the db host lost its databases, and `mipo deploy` alone brings back a working,
empty appliance an admin can log in to (and then restore a backup into, README "Recovery from nothing").

The disaster is made the way the backup drill makes it: every database dropped `WITH (FORCE)` as postgres on
`db`. On top of it, `mipo_jobs` is created again the way a restore creates a database that no longer exists
(owner right, but PUBLIC may connect): the deploy must close it to everyone but the appliance's roles. The
manager host is untouched, so nothing there (markers, files) may tell the deploy that work is needed: it has
to read it from the databases themselves.

This test destroys the lab's data. It runs last (file name) and puts the data back in any case from a plain
`pg_dump` taken before, with the databases closed to the services while they are restored, so the lab keeps
its scanners, users and sessions (the `appliance` fixture's admin, the browser test's remembered password).
"""

from __future__ import annotations

import shlex
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from appliance.deploy import lab_appliance_file, run_deploy
from appliance.lab.state import LabState
from provision.app import VENV
from provision.config import CREDENTIALS_DIR, DATABASE_NAMES, OWNER_ROLE, SERVICE_ROLE, load_appliance
from provision.controller import initial_admin_password
from provision.databases import ROLES_SCRIPT
from provision.units import ADMIN_USERNAME
from tests.lab.appliance_support import EDGE
from tests.support.waiting import wait_until

pytestmark = pytest.mark.lab

DATABASES = list(DATABASE_NAMES.values())
SERVICE_ROLES = list(SERVICE_ROLE.values())
SCANNER_AGENTS = ("scanner-a", "scanner-b")
RESCUE_DIR = "/var/lib/postgresql/mipo-recovery-rescue"
PG = "runuser -u postgres --"
RESTORE_WITHIN = 300


def _sql(lab: LabState, database: str, query: str) -> list[list[str]]:
    out = lab.run("db", f"{PG} psql -X -q -At -F '|' -v ON_ERROR_STOP=1 -d {database} -c {shlex.quote(query)}",
                  timeout=120).stdout
    return [line.split("|") for line in out.splitlines() if line]


def _row_counts(lab: LabState) -> dict[str, int]:
    """Rows of every table of schema public in the three databases: what the rescue must bring back."""
    script = ("SELECT format('SELECT %L, count(*) FROM public.%I', current_database() || '.' || c.relname, c.relname)"
              " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
              " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1\n\\gexec\n")
    counts: dict[str, int] = {}
    for database in DATABASES:
        out = lab.run("db", f"printf '%s' {shlex.quote(script)} | {PG} psql -X -q -At -F '|' -v ON_ERROR_STOP=1 "
                            f"-d {database} -f -", timeout=120).stdout
        counts.update({k: int(v) for k, v in (line.split("|") for line in out.splitlines() if line)})
    return counts


def _oids(lab: LabState) -> dict[str, str]:
    names = ", ".join(f"'{n}'" for n in DATABASES)
    rows = _sql(lab, "postgres", f"SELECT datname, oid FROM pg_database WHERE datname IN ({names})")
    return {r[0]: r[1] for r in rows}


def _drop_all(lab: LabState) -> None:
    drops = " ".join(f"-c {shlex.quote(f'DROP DATABASE IF EXISTS {n} WITH (FORCE)')}" for n in DATABASES)
    lab.run("db", f"{PG} psql -X -q -d postgres -v ON_ERROR_STOP=1 {drops}")


def _take_rescue_copy(lab: LabState) -> None:
    dumps = " && ".join(f"{PG} pg_dump -Fc -d {n} -f {RESCUE_DIR}/{n}.dump" for n in DATABASES)
    lab.run("db", f"rm -rf {RESCUE_DIR} && install -d -m 700 -o postgres {RESCUE_DIR} && {dumps}", timeout=300)


def _rescue(lab: LabState) -> None:
    """Put the data of before the test back: empty databases from the deploy's roles script, closed to the
    services (none can write into a half-restored database), restored, then opened by the script again."""
    _drop_all(lab)
    services = ", ".join(SERVICE_ROLES)
    steps = [f"{PG} psql -X -q -d postgres -v ON_ERROR_STOP=1 -f {ROLES_SCRIPT}"]
    for name in DATABASES:
        fence = (f"REVOKE CONNECT ON DATABASE {name} FROM {services}; SELECT count(pg_terminate_backend(pid))"
                 f" FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        steps.append(f"{PG} psql -X -q -At -d postgres -v ON_ERROR_STOP=1 -c {shlex.quote(fence)}")
    for name in DATABASES:
        restore = f"{PG} pg_restore -d {name} {RESCUE_DIR}/{name}.dump"
        if name == DATABASE_NAMES["results"]:
            # TimescaleDB's own procedure; pg_restore's complaints about the existing extension are expected.
            restore = (f"{PG} psql -X -q -d {name} -c 'SELECT timescaledb_pre_restore()' >/dev/null; {restore}; "
                       f"{PG} psql -X -q -d {name} -c 'SELECT timescaledb_post_restore()' >/dev/null")
        steps.append(f"{{ {restore}; }} 2>>{RESCUE_DIR}/restore.log")
    steps.append(f"{PG} psql -X -q -d postgres -v ON_ERROR_STOP=1 -f {ROLES_SCRIPT}")
    lab.run("db", "; ".join(steps), check=False, timeout=600)


def _edge(ca_file: str) -> httpx.Client:
    return httpx.Client(base_url=f"https://{EDGE}", verify=ssl.create_default_context(cafile=ca_file), timeout=30,
                        trust_env=False)


def _wait_health(ca_file: str, timeout: float = 90) -> None:
    """The appliance's /health through the edge answers 200 within `timeout` s."""
    with _edge(ca_file) as client:
        def status() -> int:
            try:
                return client.get("/health").status_code
            except httpx.HTTPError:
                return 0

        wait_until(lambda: status() == 200, timeout, "the appliance's /health answering 200", interval=2,
                   detail=lambda: f"it answers {status()}")


@pytest.fixture()
def lab_data_put_back(deployed_lab: LabState, lab_deploy_result: Any) -> Iterator[dict[str, int]]:
    """The lab's data before the test (row counts); afterwards restored from a plain pg_dump, scanners back on."""
    lab = deployed_lab
    running = [h for h in SCANNER_AGENTS
               if lab.run(h, "systemctl is-active -q mipo-scanner.service", check=False).returncode == 0]
    for host in running:  # their heartbeats would only meet 401s from an empty config database
        lab.run(host, "systemctl stop mipo-scanner.service")
    try:
        before = _row_counts(lab)
        _take_rescue_copy(lab)
        yield before
        _rescue(lab)
        restored = _row_counts(lab)
        differ = [(k, before.get(k), restored.get(k)) for k in sorted(set(before) | set(restored))
                  if before.get(k) != restored.get(k)]
        assert not differ, f"the rescue copy did not bring the data back: {differ[:10]}; see {RESCUE_DIR}/restore.log"
        _wait_health(lab_deploy_result.ca_file)
        lab.run("db", f"rm -rf {RESCUE_DIR}", check=False)
    finally:
        for host in running:
            lab.run(host, "systemctl start mipo-scanner.service", check=False)


def test_redeploy_recreates_migrates_and_reopens_lost_databases(deployed_lab: LabState, lab_deploy_result: Any,
                                                                lab_data_put_back: dict[str, int]) -> None:
    """With only the db host's databases lost, `mipo deploy` recreates them with their owner and only the
    appliance's roles allowed to connect, applies every migration, creates the first admin (initial password
    from the deploy state, forced change), /health answers 200 through the edge, and a second deploy changes
    nothing."""
    lab = deployed_lab
    path = lab_appliance_file(lab)
    revision = lab_deploy_result.revision or None
    before = _oids(lab)
    assert sorted(before) == sorted(DATABASES) and lab_data_put_back

    _drop_all(lab)
    # What a restore leaves when the database it restores into no longer existed: PUBLIC may connect.
    lab.run("db", f"{PG} psql -X -q -d postgres -v ON_ERROR_STOP=1 -c "
                  + shlex.quote(f"CREATE DATABASE mipo_jobs OWNER {OWNER_ROLE}") + " -c "
                  + shlex.quote("GRANT CONNECT, TEMPORARY ON DATABASE mipo_jobs TO PUBLIC"))

    recovery = run_deploy(path, revision=revision)
    assert recovery.ok, f"the recovery deploy failed; see {recovery.log}"
    log = recovery.log.read_text()
    for step in ("Create the roles, the three databases", "Migrate the databases (mipo-migrate.service)",
                 "Create the first admin: the config database has no user"):
        ran = any(line.startswith("--> Starting operation:") and step in line for line in log.splitlines())
        assert ran, f"the deploy did not run '{step}'; see {recovery.log}"

    # The databases: new ones, owned by the schema owner, with timescaledb, open to the appliance's roles only.
    after = _oids(lab)
    assert sorted(after) == sorted(DATABASES) and all(after[n] != before[n] for n in DATABASES)
    lab.run("db", f"{PG} psql -X -q -d postgres -c 'DROP ROLE IF EXISTS mipo_recovery_probe' "
                  "-c 'CREATE ROLE mipo_recovery_probe NOLOGIN'")
    try:
        for name in DATABASES:
            owner, public, probe, services = _sql(lab, "postgres", (
                f"SELECT pg_get_userbyid(datdba), (SELECT count(*) FROM aclexplode(coalesce(datacl,"
                f" acldefault('d', datdba))) WHERE grantee = 0), has_database_privilege('mipo_recovery_probe',"
                f" datname, 'CONNECT'), bool_and(has_database_privilege(r, datname, 'CONNECT'))"
                f" FROM pg_database, unnest(ARRAY[{', '.join(repr(r) for r in SERVICE_ROLES)}]) r"
                f" WHERE datname = '{name}' GROUP BY datname, datdba, datacl"))[0]
            assert (owner, public, probe, services) == (OWNER_ROLE, "0", "f", "t"), (name, owner, public, probe)
    finally:
        lab.run("db", f"{PG} psql -X -q -d postgres -c 'DROP ROLE IF EXISTS mipo_recovery_probe'", check=False)
    assert _sql(lab, "mipo_results", "SELECT hypertable_name FROM timescaledb_information.hypertables"
                                     " WHERE hypertable_name = 'observations'") == [["observations"]]

    # Every migration of the deployed app applied: the app's own check, on the manager, as the schema owner.
    check = lab.run("manager", f"CREDENTIALS_DIRECTORY={CREDENTIALS_DIR} {VENV}/bin/python -m app "
                               "--config /etc/mipo/mipo.toml migrate --check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.split() == ["config:", "up", "to", "date", "jobs:", "up", "to", "date",
                                    "results:", "up", "to", "date"]

    # The first admin, and no one else, with the deploy's initial password, which must be changed first.
    assert _sql(lab, "mipo_config", "SELECT username, role, must_change_password FROM users") == [
        [ADMIN_USERNAME, "admin", "t"]]
    initial = initial_admin_password(load_appliance(path).state_dir)
    assert lab.run("manager", "cat /root/mipo-initial-admin-password").stdout.strip() == initial
    with _edge(recovery.ca_file) as admin:
        login = admin.post("/api/auth/login", json={"username": ADMIN_USERNAME, "password": initial})
        assert login.status_code == 200, login.text
        assert login.json()["must_change_password"] is True
        admin.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        assert admin.get("/api/audit").status_code == 403  # nothing else until the password is changed
        new_password = "recovered-" + initial[::-1]
        changed = admin.post("/api/auth/password", json={"current_password": initial, "new_password": new_password})
        assert changed.status_code == 204, changed.text
        assert admin.get("/api/audit").status_code == 200
    _wait_health(recovery.ca_file)

    again = run_deploy(path, revision=revision)
    assert again.ok, f"the deploy after the recovery failed; see {again.log}"
    assert again.changed == 0, f"the deploy after the recovery changed {again.changed} operations; see {again.log}"
