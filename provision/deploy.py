"""pyinfra entry (`pyinfra inventory.py provision/deploy.py`): validate, then base → firewall → databases →
app → role units → Traefik → backup, each on its host group."""

from __future__ import annotations

import sys
from pathlib import Path

# pyinfra executes this file by path: make the repository importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyinfra import host

from provision.app import deploy_app
from provision.backup import deploy_backup
from provision.base import deploy_base
from provision.controller import appliance_path, prepared
from provision.databases import deploy_databases
from provision.firewall import deploy_firewall
from provision.ops import phase_barrier
from provision.traefik import deploy_traefik
from provision.units import deploy_migrations, deploy_units

# Loading validates the whole appliance config (and builds the controller's artifacts) before any
# operation exists: a bad value stops the deploy here, on every host, before anything is touched.
PREPARED = prepared(str(appliance_path()))
groups = set(PREPARED.appliance.host(host.name).groups)

deploy_base(PREPARED)
deploy_firewall(PREPARED)
if "db" in groups:
    deploy_databases(PREPARED)
phase_barrier("databases ready")
app = deploy_app(PREPARED) if groups & {"edge", "manager", "ingest", "dispatcher", "backup"} else None
phase_barrier("app installed")
if "manager" in groups:
    deploy_migrations(PREPARED)
phase_barrier("databases migrated")
if app is not None and groups & {"manager", "ingest", "dispatcher", "backup"}:
    deploy_units(PREPARED, app)
phase_barrier("role units running")
if app is not None and "edge" in groups:
    deploy_traefik(PREPARED, app)
if "backup" in groups:
    deploy_backup(PREPARED)
