"""What the db host's databases really hold, read once before the deploy runs: the deploy decides from it.

Markers on the manager cannot tell that the db host lost its databases; this fact can. It is read in
pyinfra's prepare phase, so a deploy that finds everything in place emits no operation at all (zero
changes), and one that finds a database missing, unmigrated, without a user or with other grants emits
exactly the steps that put it back: the roles script (db), `mipo-migrate` and the first admin (manager).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from gevent.lock import BoundedSemaphore
from pyinfra import inventory
from pyinfra.api import FactBase

from app.db.migrate import checksum
from provision.config import DATABASE_NAMES, OWNER_ROLE, PG_PORT, SERVICE_ROLE, SUPERUSER, Appliance

DATA_DIR = "/var/lib/postgresql/17/main"  # the cluster's data directory (provision/databases.py creates it)
# The database privileges provisioning gives: the owner all of them, each service role these, nobody else any.
SERVICE_PRIVILEGES = frozenset({"CONNECT", "TEMPORARY"})
OWNER_PRIVILEGES = frozenset({"CONNECT", "TEMPORARY", "CREATE"})
_MIGRATION = re.compile(r"app/db/migrations/(config|jobs|results)/([^/]+\.sql)")

# Run as root on the db host; always exits 0 (a failing fact would fail the host): `server|down` when
# PostgreSQL cannot be asked yet (first deploy, stopped server), then one `kind|…` line per fact.
_SCRIPT = r"""
pq() { runuser -u postgres -- psql -X -q -At -F '|' -p {port} -v ON_ERROR_STOP=1 "$@"; }
cd /
if [ ! -f {data_dir}/PG_VERSION ] || ! command -v psql >/dev/null 2>&1 || ! id postgres >/dev/null 2>&1 \
   || ! pq -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
  echo 'server|down'; exit 0
fi
echo 'server|up'
pq -d postgres <<'SQL' || echo 'error|postgres'
SELECT 'role|' || rolname || '|' || rolcanlogin || '|' || rolsuper || '|' || rolcreatedb || '|' || rolcreaterole
       || '|' || coalesce(encode(sha256(convert_to(rolpassword, 'UTF8')), 'hex'), '')
  FROM pg_authid WHERE rolname IN ({roles});
SELECT 'database|' || d.datname || '|' || pg_get_userbyid(d.datdba) || '|'
       || coalesce((SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
                                      || ':' || a.privilege_type, ',')
                      FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a), '')
  FROM pg_database d WHERE d.datname IN ({databases});
SQL
for db in {database_list}; do
  [ "$(pq -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ] || continue
  pq -d "$db" -v db="$db" <<'SQL' || echo "error|$db"
SELECT 'extension|' || :'db' || '|' || extname FROM pg_extension;
SELECT to_regclass('public.mipo_schema_migrations') IS NOT NULL AS has_migrations,
       to_regclass('public.users') IS NOT NULL AS has_users \gset
\if :has_migrations
SELECT 'migration|' || :'db' || '|' || name || '|' || checksum FROM mipo_schema_migrations;
\endif
\if :has_users
SELECT 'users|' || :'db' || '|' || count(*) FROM users;
\endif
SQL
done
"""


def _sql_list(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def state_script() -> str:
    """The shell script the fact runs (names are the deploy's constants, never operator input)."""
    roles = [OWNER_ROLE, *SERVICE_ROLE.values(), SUPERUSER]
    databases = list(DATABASE_NAMES.values())
    return (_SCRIPT.replace("{port}", str(PG_PORT)).replace("{data_dir}", DATA_DIR)
            .replace("{roles}", _sql_list(roles)).replace("{databases}", _sql_list(databases))
            .replace("{database_list}", " ".join(databases)))


@dataclass(frozen=True)
class RoleState:
    login: bool
    superuser: bool
    createdb: bool
    createrole: bool
    password_sha256: str  # of the stored SCRAM verifier: compared, never shown


@dataclass
class DatabaseState:
    owner: str
    privileges: frozenset[tuple[str, str]]  # (grantee or PUBLIC, privilege), the defaults spelled out
    extensions: set[str] = field(default_factory=set)
    migrations: dict[str, str] = field(default_factory=dict)  # name → checksum
    users: int | None = None  # rows of `users`; None when the table does not exist
    readable: bool = True


@dataclass
class ClusterState:
    """The db host's PostgreSQL as the fact found it; `up` False means nothing could be read."""

    up: bool = False
    roles: dict[str, RoleState] = field(default_factory=dict)
    databases: dict[str, DatabaseState] = field(default_factory=dict)
    readable: bool = True


def _flag(text: str) -> bool:
    return text in ("t", "true")


def parse_state(lines: list[str]) -> ClusterState:
    state = ClusterState()
    for line in lines:
        kind, _, rest = line.partition("|")
        parts = rest.split("|")
        if kind == "server":
            state.up = parts[0] == "up"
        elif kind == "error":
            target = state.databases.get(parts[0])
            if target is None:
                state.readable = False
            else:
                target.readable = False
        elif kind == "role" and len(parts) == 6:
            login, superuser, createdb, createrole = (_flag(p) for p in parts[1:5])
            state.roles[parts[0]] = RoleState(login, superuser, createdb, createrole, parts[5])
        elif kind == "database" and len(parts) == 3:
            grants = frozenset((g.partition(":")[0], g.partition(":")[2]) for g in parts[2].split(",") if ":" in g)
            state.databases[parts[0]] = DatabaseState(parts[1], grants)
        elif kind in ("extension", "migration", "users") and parts[0] in state.databases:
            db = state.databases[parts[0]]
            if kind == "extension":
                db.extensions.add(parts[1])
            elif kind == "migration" and len(parts) == 3:
                db.migrations[parts[1]] = parts[2]
            elif kind == "users":
                db.users = int(parts[1])
    return state


class ApplianceDatabases(FactBase[ClusterState]):
    """Roles, databases (owner, privileges, extensions, applied migrations, user count) of the db host."""

    def command(self) -> str:
        encoded = base64.b64encode(state_script().encode()).decode()
        # base64 through bash: the script's quotes and heredocs reach the host untouched.
        return f"echo {encoded} | base64 -d | bash"

    @staticmethod
    def default() -> ClusterState:
        return ClusterState()

    def process(self, output: list[str]) -> ClusterState:
        return parse_state(output)


_cache: dict[str, ClusterState] = {}
# pyinfra prepares the hosts in parallel greenlets: the db host's and the manager's ask at the same time.
_reading = BoundedSemaphore()


def db_state(appliance: Appliance) -> ClusterState:
    """The fact of the appliance's db host, read once per deploy (in the prepare phase, before any change)."""
    name = appliance.one("db").name
    with _reading:
        if name not in _cache:
            _cache[name] = inventory.get_host(name).get_fact(ApplianceDatabases)
    return _cache[name]


# --- decisions (pure) ----------------------------------------------------------------------------------

def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def expected_privileges() -> frozenset[tuple[str, str]]:
    return frozenset({(OWNER_ROLE, p) for p in OWNER_PRIVILEGES}
                     | {(r, p) for r in SERVICE_ROLE.values() for p in SERVICE_PRIVILEGES})


def cluster_drift(state: ClusterState, verifiers: dict[str, str]) -> list[str]:
    """Why the roles script must run (roles, passwords, databases, owner, privileges, timescaledb); [] if not.

    `verifiers`: role → the SCRAM verifier the deploy sets (the superuser's included).
    """
    if not state.up:
        return ["PostgreSQL not answering yet"]
    if not state.readable:
        return ["the roles and databases could not be read"]
    reasons = []
    for role, verifier in verifiers.items():
        found = state.roles.get(role)
        if found is None:
            reasons.append(f"role {role} missing")
        elif found.password_sha256 != _sha256(verifier):
            reasons.append(f"role {role}: password differs")
        elif role != SUPERUSER and (not found.login or found.superuser or found.createdb or found.createrole):
            reasons.append(f"role {role}: attributes differ")
    for key, name in DATABASE_NAMES.items():
        db = state.databases.get(name)
        if db is None:
            reasons.append(f"database {name} missing")
            continue
        if db.owner != OWNER_ROLE:
            reasons.append(f"database {name}: owner {db.owner}")
        if db.privileges != expected_privileges():
            extra = sorted(f"{g}:{p}" for g, p in db.privileges - expected_privileges())
            missing = sorted(f"{g}:{p}" for g, p in expected_privileges() - db.privileges)
            reasons.append(f"database {name}: privileges differ (extra {extra}, missing {missing})")
        if key == "results" and "timescaledb" not in db.extensions:
            reasons.append(f"database {name}: timescaledb extension missing")
    return reasons


def pending_migrations(state: ClusterState, expected: dict[str, dict[str, str]]) -> list[str]:
    """`db/name` of every migration of the wheel that a database lacks (or holds with another checksum)."""
    if not state.up or not state.readable:
        return ["(databases not readable yet)"]
    pending = []
    for key, name in DATABASE_NAMES.items():
        db = state.databases.get(name)
        applied = db.migrations if db is not None and db.readable else {}
        pending += [f"{key}/{m}" for m, digest in sorted(expected.get(key, {}).items()) if applied.get(m) != digest]
    return pending


def needs_first_admin(state: ClusterState) -> bool:
    """True unless the config database is known to hold at least one user."""
    config = state.databases.get(DATABASE_NAMES["config"]) if state.up else None
    return config is None or not config.readable or not config.users


def summary(reasons: list[str], limit: int = 3) -> str:
    """A few reasons for an operation's name, and how many more there are."""
    shown = "; ".join(reasons[:limit])
    return shown + (f"; and {len(reasons) - limit} more" if len(reasons) > limit else "")


@functools.cache
def wheel_migrations(wheel: Path) -> dict[str, dict[str, str]]:
    """{database: {file name: checksum}} of the migrations inside the mipo wheel the deploy installs."""
    found: dict[str, dict[str, str]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            match = _MIGRATION.fullmatch(info.filename)
            if match:
                # As importlib.resources' read_text() gives it to `migrate`: UTF-8, universal newlines.
                sql = archive.read(info).decode().replace("\r\n", "\n").replace("\r", "\n")
                found.setdefault(match.group(1), {})[match.group(2)] = checksum(sql)
    return found


def mipo_wheel(wheelhouse: Path) -> Path:
    wheels = sorted(wheelhouse.glob("mipo-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"{wheelhouse}: expected one mipo wheel, found {len(wheels)}")
    return wheels[0]
