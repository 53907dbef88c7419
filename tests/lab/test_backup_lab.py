"""Backups in the deployed lab: the restore drill through the manager's admin API over the edge, and the
backup API's isolation (firewall, no Traefik route, the nightly timer).

The drill, as an operator would live it:

1. Fill all three databases through the product: a user created through the admin API; scanner-a and
   scanner-b installed with the shown command; a mirror group, port list, subnet and template; "run now"
   on `target` → jobs, observations, coverage, changes and summaries.
2. Back up through `POST /api/backups` on the edge (the manager relays to the internal backup API).
3. Disaster: the database host loses its data. Every database is dropped (`WITH (FORCE)`) and the
   appliance is brought back the way `mipo deploy` brings up a rebuilt database host: the deploy's own
   roles script creates the three databases empty with their owner and grants (and timescaledb), the
   deploy's `mipo-migrate.service` creates the empty schema and its `create-admin` the first admin.
   That is the floor the restore path needs: the manager authenticates the operator against the config
   database, so with no database at all nobody could ask it for a restore (README, "Recovery from
   nothing"); the restore itself drops and recreates each database again, keeping owner, locale and
   privileges.
4. The first admin logs in (initial password, forced change) and restores through
   `POST /api/backups/{id}/restore`, uploading the operator's age identity, which the lab keeps on this
   machine (`<lab state>/deploy/backup-identity.txt`) and never on the backup host.
5. Every table of every database has the row count and order-independent checksum it had in the
   backup; sequences, object owners and privileges, database privileges, TimescaleDB chunks too. Then the
   appliance works: the user logs in, sees the old run's results, and a new "run now" completes.

Exact comparison needs a state nothing else writes to: the writers that run on their own (the scanners'
heartbeats and the dispatcher's passes) are stopped from just before the backup until the restored state
has been measured, and the drill's own API calls in that window carry the GUI's polling header, so they
do not move the admin session's idle timer. The one write left is the manager's audit record of
`backup.create`, which may commit on either side of the dump's snapshot: the state before is measured on
both sides of it, and the manifest's row counts say which one the backup holds. The restore adds one
`backup_restored` event; it is accounted for, not ignored.
"""

from __future__ import annotations

import json
import secrets
import shlex
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.domain.backups.schemas import API_TOKEN_HEADER
from app.roles.manager.auth import POLL_HEADER
from appliance.deploy import LAB_DEPLOY_DIR
from appliance.lab.state import LabState
from provision.app import VENV
from provision.config import BACKUP_API_TOKEN, BACKUP_PORT, CREDENTIALS_DIR
from provision.render import daily_calendar
from provision.units import ADMIN_PASSWORD_FILE, ADMIN_USERNAME
from tests.lab.appliance_support import EDGE, Appliance, get_json, run_now
from tests.lab.deploy_support import BACKUP, connects
from tests.support.waiting import wait_until

pytestmark = pytest.mark.lab

TARGET = "198.18.0.30"
PORTS = "22,443,8080"
DATABASES = {"config": "mipo_config", "jobs": "mipo_jobs", "results": "mipo_results"}
ROLES_SCRIPT = "/var/lib/postgresql/mipo-roles.sql"   # written by the deploy's database step (provision/databases.py)
BACKUP_DIR = "/var/lib/mipo/backups"
RESCUE_DIR = "/var/lib/postgresql/mipo-drill-rescue"
# Writers that act on their own; stopped while the drill measures (see the module docstring).
WRITERS = [("scanner-a", "mipo-scanner.service"), ("scanner-b", "mipo-scanner.service"),
           ("dispatcher", "mipo-dispatcher.service")]
QUIET = {POLL_HEADER: "1"}   # not the user being active: the session row is left as it is
RESTORED_EVENTS = "events:backup_restored"
EVENTS_SEQUENCE = "config/sequence:events_id_seq"
RUN_WITHIN = 180.0
CLAIM_LONG_POLL = 25.0   # app.config: scanner.claim_long_poll (the agent asks for 25 s too)
ONLINE_WITHIN = 180.0

Fingerprint = dict[str, tuple[int, str]]


# --- measuring -----------------------------------------------------------------------------------

def _psql(lab: LabState, database: str, script: str) -> list[list[str]]:
    """Run a psql script as postgres on the db host; rows of `name|number|text`."""
    out = lab.run("db", f"printf '%s' {shlex.quote(script)} | runuser -u postgres -- psql -X -q -d {database} "
                        "-v ON_ERROR_STOP=1 -AtF '|' -f -", timeout=300).stdout
    return [line.split("|", 2) for line in out.splitlines() if line]


# Every table of schema public: count and an order-independent checksum. Rows of the restore's own
# `backup_restored` events are counted on their own line (both before and after), everything else is in.
_TABLES = (
    "SELECT format('SELECT %L, count(*), coalesce(md5(string_agg(md5(t::text), '''' ORDER BY md5(t::text))), '''')"
    " FROM public.%I t%s', 'table:' || c.relname, c.relname,"
    " CASE WHEN c.relname = 'events' THEN ' WHERE t.class <> ''backup_restored''' ELSE '' END)"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname\n\\gexec\n"
)
_SEQUENCES = ("SELECT 'sequence:' || sequencename, coalesce(last_value, 0), '' FROM pg_sequences"
              " WHERE schemaname = 'public' ORDER BY 1;\n")
# Tables, sequences, indexes, views of schema public with their owner and privileges.
_OBJECTS = ("SELECT 'objects', count(*), md5(coalesce(string_agg(c.relname || ':' || c.relkind::text || ':'"
            " || pg_get_userbyid(c.relowner) || ':' || coalesce(c.relacl::text, ''), ',' ORDER BY c.relname), ''))"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public';\n")
_RESTORED = ("SELECT 'events:backup_restored', count(*), coalesce(max(message), '') FROM public.events"
             " WHERE class = 'backup_restored';\n")
_CHUNKS = "SELECT 'chunks', count(*), '' FROM timescaledb_information.chunks;\n"
_CLUSTER = ("SELECT 'database:' || datname, 0, pg_get_userbyid(datdba) || ' ' || coalesce(datacl::text, 'default')"
            " || ' ' || pg_encoding_to_char(encoding) || ' ' || datcollate FROM pg_database"
            " WHERE datname IN ({names}) ORDER BY 1;\n")


def fingerprint(lab: LabState) -> Fingerprint:
    """The whole measured state: `<db>/table:<name>`, `<db>/sequence:<name>`, `<db>/objects`, …"""
    out: Fingerprint = {}
    for which, name in DATABASES.items():
        script = _TABLES + _SEQUENCES + _OBJECTS + (_RESTORED if which == "config" else "")
        script += _CHUNKS if which == "results" else ""
        for key, number, text in _psql(lab, name, script):
            out[f"{which}/{key}"] = (int(number), text)
    names = ", ".join(f"'{n}'" for n in DATABASES.values())
    for key, number, text in _psql(lab, "postgres", _CLUSTER.format(names=names)):
        out[f"cluster/{key}"] = (int(number), text)
    return out


def _diff(a: Fingerprint, b: Fingerprint) -> list[str]:
    return [f"{k}: {a.get(k)} → {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _wait_quiet(lab: LabState, timeout: float = 90) -> Fingerprint:
    """Two measurements 5 s apart that agree: the writers have stopped and their last writes are in."""
    deadline = time.monotonic() + timeout
    last = fingerprint(lab)
    while True:
        time.sleep(5)
        now = fingerprint(lab)
        if now == last:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"the databases do not come to rest: {_diff(last, now)[:10]}")
        last = now


def _database_oids(lab: LabState) -> dict[str, str]:
    names = ", ".join(f"'{n}'" for n in DATABASES.values())
    rows = _psql(lab, "postgres", f"SELECT datname, oid, '' FROM pg_database WHERE datname IN ({names});")
    return {r[0]: r[1] for r in rows}


# --- the API ---------------------------------------------------------------------------------------

def _client(ca_file: str) -> httpx.Client:
    return httpx.Client(base_url=f"https://{EDGE}", verify=ssl.create_default_context(cafile=ca_file), timeout=60,
                        trust_env=False)


def _login(client: httpx.Client, username: str, password: str) -> dict[str, Any]:
    answer = client.post("/api/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    me = dict(answer.json())
    client.headers["X-CSRF-Token"] = me["csrf_token"]
    return me


def _open_ports(client: httpx.Client, run_id: int) -> set[tuple[int, str, int]]:
    """(scanner, address, port) found open in the run, from the results API (all pages)."""
    found: set[tuple[int, str, int]] = set()
    params: dict[str, Any] = {"run_id": run_id, "limit": 1000}
    while True:
        page = get_json(client, "/api/results", **params)
        found |= {(o["scanner_id"], o["ip"], o["port"]) for o in page["items"] if o["state"] == "open"}
        if page["next"] is None:
            return found
        params.update(page["next"])


def _wait_operation(client: httpx.Client, operation_id: str, timeout: float = 300) -> dict[str, Any]:
    """Poll the backups status (quietly) until this operation ends. While a database is being restored the
    manager cannot read it, so errors in between are expected and waited out."""
    seen = ""

    def ended() -> dict[str, Any] | None:
        nonlocal seen
        answer = client.get("/api/backups/status", headers=QUIET)
        seen = f"{answer.status_code} {answer.text[:300]}"
        if answer.status_code == 200:
            operation = answer.json()["operation"]
            if operation and operation["id"] == operation_id and operation["state"] != "running":
                return dict(operation)
        return None

    return wait_until(ended, timeout, f"backup operation {operation_id} ended", interval=2,
                      detail=lambda: f"last answer: {seen}")


# --- the drill -----------------------------------------------------------------------------------

@dataclass
class Filled:
    """What the drill put in through the product, to find again after the restore."""

    username: str
    password: str
    template_id: int
    run_id: int
    open_ports: set[tuple[int, str, int]]


def _fill(app: Appliance, scanners: dict[str, int], created: list[str]) -> Filled:
    """A user, a mirror group over both scanners, a template on `target` and a completed run, all through the API."""
    for host, scanner_id in scanners.items():
        wait_until(lambda: app.scanner(scanner_id)["online"], ONLINE_WITHIN, f"{host} online",  # noqa: B023 (used at once)
                   interval=1)
    tag = secrets.token_hex(3)
    username, password = f"drill{tag}", secrets.token_urlsafe(18)

    def create(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = app.api.post(path, json=body)
        assert answer.status_code == 201, f"POST {path}: {answer.status_code} {answer.text}"
        made = dict(answer.json())
        created.append(f"{path}/{made['id']}")
        return made

    create("/api/users", {"username": username, "password": password, "role": "operator",
                          "must_change_password": False})
    group = create("/api/scanner-groups", {"name": f"drill-mirror-{tag}", "mode": "mirror",
                                           "scanner_ids": sorted(scanners.values())})
    ports = create("/api/port-lists", {"name": f"drill-ports-{tag}", "spec": PORTS})
    subnet = create("/api/subnets", {"name": f"drill-target-{tag}", "cidr": TARGET})
    template = create("/api/templates", {"name": f"drill-target-{tag}", "port_list_id": ports["id"],
                                         "scanner_group_id": group["id"], "subnet_ids": [subnet["id"]],
                                         "rate": 1000, "timeout_ms": 1000, "banner": True, "tls": True})
    _outlive_orphaned_claims(app.lab)
    run_id = run_now(app.api, template["id"], set(scanners.values()), RUN_WITHIN)
    open_ports = _open_ports(app.api, run_id)
    assert {p for _, _, p in open_ports} >= {22, 443}, open_ports
    return Filled(username, password, template["id"], run_id, open_ports)


def _outlive_orphaned_claims(lab: LabState) -> None:
    """Wait until no long-poll claim of a scanner agent stopped in the last 25 s can still be pending.

    Known product bug (reported, not in this test's scope): ingest does not notice that the agent of a long
    poll went away (a restart, here by the `scanners` fixture's install), so a job appearing in the poll's
    remaining seconds is claimed for nobody and waits for its 5-minute lease to expire.
    """
    ages = [int(lab.run(host, "echo $(( $(date +%s) - $(date -d \"$(systemctl show -P ActiveEnterTimestamp "
                              f"{unit})\" +%s) ))").stdout) for host, unit in WRITERS if host.startswith("scanner")]
    time.sleep(max(0.0, CLAIM_LONG_POLL + 5 - min(ages)))


def _backup(app: Appliance) -> tuple[str, Fingerprint]:
    """Back up through the manager's API; the state measured once the backup is written (quietly)."""
    started = app.api.post("/api/backups", headers=QUIET)
    assert started.status_code == 202, started.text
    operation = _wait_operation(app.api, started.json()["id"])
    assert operation["state"] == "succeeded", operation
    backup_id = str(operation["backup_id"])
    listed = {b["id"]: b for b in get_json(app.api, "/api/backups", headers=QUIET)}
    assert listed[backup_id]["signature_valid"] and sorted(listed[backup_id]["databases"]) == sorted(DATABASES)
    heads = app.lab.run("backup", f"for f in {BACKUP_DIR}/{backup_id}/*.dump.age; do head -c 21 $f; echo; done")
    assert heads.stdout.split() == ["age-encryption.org/v1"] * 3, "the dumps are not age-encrypted at rest"
    return backup_id, fingerprint(app.lab)


def _manifest_counts(lab: LabState, backup_id: str) -> dict[str, int]:
    manifest = json.loads(lab.run("backup", f"cat {BACKUP_DIR}/{backup_id}/manifest.json").stdout)
    return {f"{db['name']}/table:{table}": count for db in manifest["databases"]
            for table, count in db["row_counts"].items()}


def _table_counts(state: Fingerprint) -> dict[str, int]:
    """Row counts as the manifest counts them (the `backup_restored` events back in their table)."""
    counts = {k: v[0] for k, v in state.items() if "/table:" in k}
    counts["config/table:events"] += state[f"config/{RESTORED_EVENTS}"][0]
    return counts


def _counts_diff(a: dict[str, int], b: dict[str, int]) -> list[str]:
    return [f"{k}: {a.get(k)} → {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)][:10]


def _tables(state: Fingerprint) -> Fingerprint:
    """Everything measured but the sequences and the restore's own events (both checked on their own)."""
    return {k: v for k, v in state.items() if "/sequence:" not in k and not k.endswith(RESTORED_EVENTS)}


def _wipe_and_rebuild(lab: LabState) -> None:
    """The database host lost its data; the deploy's own steps bring up empty databases, schema, first admin."""
    drops = " ".join(f"-c {shlex.quote(f'DROP DATABASE {n} WITH (FORCE)')}" for n in DATABASES.values())
    lab.run("db", f"runuser -u postgres -- psql -X -q -d postgres -v ON_ERROR_STOP=1 {drops}")
    lab.run("db", f"runuser -u postgres -- psql -X -q -d postgres -f {ROLES_SCRIPT}")
    lab.run("manager", "systemctl start mipo-migrate.service", timeout=300)
    lab.run("manager", f"CREDENTIALS_DIRECTORY={CREDENTIALS_DIR} {VENV}/bin/python -m app --config "
                       f"/etc/mipo/mipo.toml create-admin --username {ADMIN_USERNAME} "
                       f"--password-file {ADMIN_PASSWORD_FILE}")


def _take_rescue_copy(lab: LabState) -> None:
    """The test's own safety net (plain pg_dump on the db host): if the product's restore fails, the shared
    lab is put back from it so the tests after this one still find their appliance."""
    dumps = " && ".join(f"runuser -u postgres -- pg_dump -Fc -d {n} -f {RESCUE_DIR}/{n}.dump"
                        for n in DATABASES.values())
    lab.run("db", f"rm -rf {RESCUE_DIR} && install -d -m 700 -o postgres {RESCUE_DIR} && {dumps}", timeout=300)


def _rescue(lab: LabState) -> None:
    for name in DATABASES.values():
        pg = "runuser -u postgres --"
        steps = [f"{pg} psql -X -q -d postgres -c {shlex.quote(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')}",
                 f"{pg} psql -X -q -d postgres -f {ROLES_SCRIPT}"]
        if name == DATABASES["results"]:
            steps += [f"{pg} psql -X -q -d {name} -c 'SELECT timescaledb_pre_restore()'",
                      f"{pg} pg_restore -d {name} {RESCUE_DIR}/{name}.dump; "
                      f"{pg} psql -X -q -d {name} -c 'SELECT timescaledb_post_restore()'"]
        else:
            steps.append(f"{pg} pg_restore -d {name} {RESCUE_DIR}/{name}.dump")
        lab.run("db", " && ".join(steps), check=False, timeout=300)


def _identity_file(lab: LabState) -> str:
    return (lab.state_dir / LAB_DEPLOY_DIR / "backup-identity.txt").read_text()


@pytest.fixture(scope="module")
def drill_objects(appliance: Appliance) -> Iterator[list[str]]:
    """API objects the drill creates, deleted at the end (the restore brings them back, so after it)."""
    created: list[str] = []
    yield created
    for url in reversed(created):
        appliance.api.delete(url)


def test_backup_wipe_restore_through_the_manager_api(appliance: Appliance, scanners: dict[str, int],
                                                     drill_objects: list[str]) -> None:
    """Every table of the three databases comes back identical after a total wipe, restored through the
    manager's admin API with the uploaded identity; the appliance then logs in, shows the old results and
    completes a new scan."""
    lab = appliance.lab
    filled = _fill(appliance, scanners, drill_objects)
    identity = _identity_file(lab)
    secret_key = next(line.strip() for line in identity.splitlines() if line.startswith("AGE-SECRET-KEY-1"))
    wiped = restored = False
    try:
        for host, unit in WRITERS:
            lab.run(host, f"systemctl stop {unit}")
        before = _wait_quiet(lab)
        backup_id, after_backup = _backup(appliance)
        # The manifest's row counts (taken in the dump's own snapshot) say which side of the audit record
        # of `backup.create` the backup is on.
        manifest_counts = _manifest_counts(lab, backup_id)
        candidates = [s for s in (before, after_backup) if _table_counts(s) == manifest_counts]
        assert candidates, ("the manifest's row counts match neither state around the backup: "
                            f"{_counts_diff(_table_counts(after_backup), manifest_counts)}")

        oids = _database_oids(lab)
        _take_rescue_copy(lab)
        wiped = True
        _wipe_and_rebuild(lab)
        assert all(oids[n] != o for n, o in _database_oids(lab).items()), "the databases were not recreated"
        emptied = fingerprint(lab)
        assert emptied["config/table:users"][0] == 1 and emptied["results/table:observations"][0] == 0

        # The first admin of the rebuilt appliance restores, uploading the operator's identity.
        with _client(appliance.ca_file) as admin:
            initial = lab.run("manager", f"cat {ADMIN_PASSWORD_FILE}").stdout.strip()
            assert _login(admin, ADMIN_USERNAME, initial)["must_change_password"]
            new_password = secrets.token_urlsafe(18)
            changed = admin.post("/api/auth/password", json={"current_password": initial,
                                                             "new_password": new_password})
            assert changed.status_code == 204, changed.text
            started = admin.post(f"/api/backups/{backup_id}/restore", json={"identity": identity}, headers=QUIET)
            assert started.status_code == 202, started.text
            operation_id = started.json()["id"]
        # The admin session of before the backup comes back with the config database.
        operation = _wait_operation(appliance.api, operation_id)
        assert operation["state"] == "succeeded", operation
        restored = True
        after = fingerprint(lab)
    finally:
        if wiped and not restored:
            _rescue(lab)
        for host, unit in WRITERS:
            lab.run(host, f"systemctl start {unit}", check=False)
        lab.run("db", f"rm -rf {RESCUE_DIR}", check=False)

    # Every table identical to the backup's state; the restore's own event is the one addition.
    assert any(_tables(after) == _tables(c) for c in candidates), (
        f"tables differ after the restore: {_diff(_tables(candidates[-1]), _tables(after))}")
    restored_events = after[f"config/{RESTORED_EVENTS}"]
    assert restored_events[0] == before[f"config/{RESTORED_EVENTS}"][0] + 1
    assert backup_id in restored_events[1]
    sequences = {k for k in after if "/sequence:" in k}
    assert EVENTS_SEQUENCE in sequences and sequences == {k for k in before if "/sequence:" in k}
    for key in sequences:
        # pg_dump reads sequences outside its snapshot: either side of the audit record is right.
        bump = 1 if key == EVENTS_SEQUENCE else 0
        assert after[key][0] - bump in (before[key][0], after_backup[key][0]), f"{key}: {after[key]}"
    assert all(oids[n] != o for n, o in _database_oids(lab).items())

    # The identity was used for this one restore and left nothing behind, on the backup host or the manager.
    for host in ("backup", "manager"):
        found = lab.run(host, "grep -rlsF -D skip -e " + shlex.quote(secret_key)
                        + " /etc /var /root /tmp /run /home /srv", check=False, timeout=300)
        assert found.stdout == "" and found.returncode in (1, 2), f"{host} keeps the age identity in {found.stdout}"

    # The appliance works: the user made before the backup logs in, sees the old run, and a new scan completes.
    audit = get_json(appliance.api, "/api/audit/verify")
    assert audit["ok"], audit
    for host, scanner_id in scanners.items():
        wait_until(lambda: appliance.scanner(scanner_id)["online"], ONLINE_WITHIN, f"{host} online again",  # noqa: B023 (used at once)
                   interval=1)
    with _client(appliance.ca_file) as user:
        assert _login(user, filled.username, filled.password)["role"] == "operator"
        assert _open_ports(user, filled.run_id) == filled.open_ports
        new_run = run_now(user, filled.template_id, set(scanners.values()), RUN_WITHIN)
        assert new_run != filled.run_id
        assert _open_ports(user, new_run) == filled.open_ports


# --- the backup API's isolation ---------------------------------------------------------------------

@pytest.mark.parametrize("host", ["edge", "target"])
def test_backup_api_port_is_unreachable_from_edge_and_target(deployed_lab: LabState, host: str) -> None:
    """Only the manager may open the backup API's port (scanner-a: test_roles_edge; manager: the control there)."""
    assert not connects(deployed_lab, host, BACKUP, BACKUP_PORT)


def test_backup_api_refuses_the_manager_host_without_the_credential(deployed_lab: LabState) -> None:
    """Past the firewall, the backup API still wants the manager's credential on every route."""
    url = f"http://{BACKUP}:{BACKUP_PORT}/backups"
    bare = deployed_lab.run("manager", f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 {url}")
    token = f"$(cat {CREDENTIALS_DIR}/{BACKUP_API_TOKEN})"
    with_token = deployed_lab.run("manager", f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 "
                                             f"-H \"{API_TOKEN_HEADER}: {token}\" {url}")
    assert (bare.stdout, with_token.stdout) == ("401", "200")


def test_edge_has_no_route_to_the_backup_api(deployed_lab: LabState, lab_deploy_result: Any) -> None:
    """Requests for the backup API's paths through the edge — even carrying the real credential — are routed to
    the manager (which has no such API), never to the backup service; Traefik's config does not name it."""
    backup_address = deployed_lab.host("backup").addresses["internal"]
    dynamic = deployed_lab.run("edge", "cat /etc/traefik/dynamic/* /etc/traefik/traefik.yml").stdout
    assert "routers:" in dynamic and backup_address not in dynamic and f":{BACKUP_PORT}" not in dynamic
    token = deployed_lab.run("manager", f"cat {CREDENTIALS_DIR}/{BACKUP_API_TOKEN}").stdout.strip()
    marker = uuid.uuid4().hex
    requests = [("GET", "/backups"), ("GET", "/status"), ("POST", "/backups"),
                ("POST", "/backups/20260101T000000Z-000000/restore"), ("DELETE", "/backups/20260101T000000Z-000000")]
    with _client(lab_deploy_result.ca_file) as client:
        answers = [client.request(method, path, params={"probe": marker},
                                  headers={API_TOKEN_HEADER: token, "User-Agent": f"backup-probe-{marker}"})
                   for method, path in requests]
    # The backup API would have answered these with JSON: a list of backups, a status, an operation.
    for (method, path), answer in zip(requests, answers, strict=True):
        json_success = answer.status_code in (200, 202) and "json" in answer.headers.get("content-type", "")
        assert not json_success, f"{method} {path} through the edge: {answer.status_code} {answer.text[:200]}"
    lines = deployed_lab.run("edge", f"grep -F {marker} /var/log/traefik/access.log", check=False).stdout
    entries = [json.loads(line) for line in lines.splitlines()]
    assert len(entries) == len(requests), lines
    for entry in entries:
        assert entry.get("ServiceName", "").startswith("manager"), entry
        assert backup_address not in json.dumps(entry), entry


def test_backup_timer_is_enabled_at_the_time_derived_from_the_host_name(deployed_lab: LabState,
                                                                        lab_host: Any) -> None:
    """The nightly backup survives a reboot (enabled, not only active) and fires at its derived time."""
    timer = lab_host("backup").service("mipo-backup.timer")
    assert timer.is_enabled
    shown = deployed_lab.run("backup", "systemctl show -P TimersCalendar -P Triggers mipo-backup.timer").stdout
    assert f"OnCalendar={daily_calendar('backup')}" in shown and "mipo-backup-run.service" in shown, shown
