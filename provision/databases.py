"""PostgreSQL 17 + TimescaleDB on the db host: one cluster holding the config, jobs and results databases."""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd

from provision.config import (
    DATABASE_NAMES,
    OWNER_ROLE,
    PG_PORT,
    SERVICE_ROLE,
    SUPERUSER,
    Appliance,
)
from provision.controller import DB_ROLES, PASSWORD_ROLES, Prepared
from provision.dbstate import DATA_DIR, cluster_drift, db_state, summary
from provision.ops import changed, deploy, put_text
from provision.render import render

CLUSTER_DIR = "/etc/postgresql/17/main"
PG_UNIT = "postgresql@17-main.service"
ROLES_SCRIPT = "/var/lib/postgresql/mipo-roles.sql"
# Which app groups log in to which database (mirrors the grants in the migrations).
DATABASE_CLIENTS = {
    "config": ("manager", "ingest", "dispatcher", "backup"),
    "jobs": ("manager", "ingest", "dispatcher", "backup"),
    "results": ("manager", "ingest", "dispatcher", "backup"),
}
# The schema owner logs in from the manager (migrate, first admin) and from backup (restore).
OWNER_CLIENTS = ("manager", "backup")


def hba_rules(appliance: Appliance) -> list[tuple[str, str, str]]:
    """(database, role, address) for every login the appliance needs, and no other."""
    rules: list[tuple[str, str, str]] = []
    for key, database in DATABASE_NAMES.items():
        for group in DATABASE_CLIENTS[key]:
            rules += [(database, SERVICE_ROLE[group], h.address) for h in appliance.group(group)]
        for group in OWNER_CLIENTS:
            rules += [(database, OWNER_ROLE, h.address) for h in appliance.group(group)]
    # Restores drop and recreate the databases (and timescaledb), from the backup host only.
    for database in ("postgres", *DATABASE_NAMES.values()):
        rules += [(database, SUPERUSER, h.address) for h in appliance.group("backup")]
    return rules


def roles_sql(prepared: Prepared) -> str:
    return render("db-roles.sql.j2", roles=[(r, prepared.verifier(r)) for r in DB_ROLES],
                  superuser=(SUPERUSER, prepared.verifier(SUPERUSER)),
                  databases=list(DATABASE_NAMES.values()), owner=OWNER_ROLE,
                  service_roles=list(SERVICE_ROLE.values()), results=DATABASE_NAMES["results"])


@deploy("Databases")
def deploy_databases(prepared: Prepared) -> None:
    appliance = prepared.appliance
    me = appliance.host(host.name)
    if not host.get_fact(File, path=f"{DATA_DIR}/PG_VERSION"):
        server.shell(name="Create the PostgreSQL 17 cluster", commands=[
            # Config left from an interrupted first deploy (no data yet) would make pg_createcluster refuse.
            f"rm -rf {CLUSTER_DIR}",
            # UTF8 explicitly: a host without a locale would otherwise get SQL_ASCII databases.
            f"pg_createcluster --start-conf=auto --port={PG_PORT} --encoding=UTF8 --locale=C.UTF-8 17 main "
            "-- --data-checksums"])
    cert = put_text("Ensure the database server certificate (signed by the appliance CA)",
                    f"{CLUSTER_DIR}/mipo-server.crt", prepared.db_cert.read_bytes(), user="postgres",
                    group="postgres")
    key = put_text("Ensure the database server key (postgres only)", f"{CLUSTER_DIR}/mipo-server.key",
                   prepared.db_key.read_bytes(), mode="0600", user="postgres", group="postgres")
    conf = put_text("Ensure PostgreSQL listens on the internal address only, with TLS and TimescaleDB",
                    f"{CLUSTER_DIR}/conf.d/mipo.conf", render("postgresql.conf.j2", address=me.address, port=PG_PORT),
                    user="postgres", group="postgres")
    hba = put_text("Ensure pg_hba allows exactly the app hosts, over TLS with SCRAM",
                   f"{CLUSTER_DIR}/pg_hba.conf", render("pg_hba.conf.j2", rules=hba_rules(appliance)),
                   mode="0640", user="postgres", group="postgres")
    systemd.service(name="Ensure PostgreSQL 17 runs and starts at boot", service=PG_UNIT, running=True,
                    enabled=True)
    # shared_preload_libraries needs a restart, not a reload.
    systemd.service(name="Restart PostgreSQL after its configuration changed", service=PG_UNIT, restarted=True,
                    _if=changed(cert, key, conf, hba))
    put_text("Ensure the roles script (SCRAM verifiers, postgres only)", ROLES_SCRIPT, roles_sql(prepared),
             mode="0600", user="postgres", group="postgres")
    # Decided from what the cluster holds (read before the deploy changed anything), not from a marker: a
    # database dropped or lost, a password, owner or database grant changed since → the script runs again.
    drift = cluster_drift(db_state(appliance), {r: prepared.verifier(r) for r in PASSWORD_ROLES})
    files.file(name="Remove the retired roles marker (the cluster's state decides now)",
               path="/var/lib/postgresql/.mipo-roles-applied", present=False)
    if drift:
        server.shell(name=f"Create the roles, the three databases and timescaledb; (re)apply owners and database "
                          f"privileges ({summary(drift)})",
                     commands=[f"runuser -u postgres -- psql -X -q -p {PG_PORT} -d postgres -f {ROLES_SCRIPT}"])
