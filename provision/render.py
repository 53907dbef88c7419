"""Render every file the deploy installs from its template, on the controller (pure: unit-testable)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jinja2
import msgspec

from provision.config import (
    APP_GROUPS,
    BACKUP_PORT,
    INGEST_PORT,
    MANAGER_PORT,
    PG_PORT,
    Appliance,
    Host,
)

REPO = Path(__file__).resolve().parent.parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader([REPO / "provision" / "templates", REPO / "systemd", REPO / "traefik"]),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    autoescape=False,  # noqa: S701 - config files, not HTML
)
UNITS = {"manager": "mipo-manager.service", "ingest": "mipo-ingest.service",
         "dispatcher": "mipo-dispatcher.service", "backup": "mipo-backup.service"}


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)


def _hosts_addresses(appliance: Appliance, group: str) -> list[str]:
    return [h.address for h in appliance.group(group)]


def firewall_rules(appliance: Appliance, host: Host) -> dict[str, Any]:
    """What one host's nftables ruleset lets in (and, for db, out)."""
    edge = _hosts_addresses(appliance, "edge")
    accept: list[tuple[str, int, list[str]]] = []  # (comment, port, allowed sources; [] = anyone)
    if "edge" in host.groups:
        accept.append(("HTTPS for operators and scanners", 443, []))
    if "manager" in host.groups:
        accept.append(("manager, only through Traefik", MANAGER_PORT, edge))
    if "ingest" in host.groups:
        accept.append(("ingest, only through Traefik", INGEST_PORT, edge))
    if "backup" in host.groups:
        accept.append(("backup API, only from the manager", BACKUP_PORT, _hosts_addresses(appliance, "manager")))
    if "db" in host.groups:
        app_hosts = sorted({h.address for h in appliance.hosts if appliance.roles_of(h)},
                           key=lambda a: tuple(int(x) for x in a.split(".")) if "." in a else (0,))
        accept.append(("PostgreSQL, only from the app hosts", PG_PORT, app_hosts))
    return {
        "host": host, "admin_networks": appliance.deploy.admin_networks, "accept": accept,
        "drop_outbound": "db" in host.groups, "proxy": appliance.proxy,
    }


def nftables_conf(appliance: Appliance, host: Host) -> str:
    return render("nftables.conf.j2", **firewall_rules(appliance, host))


def mipo_toml(appliance: Appliance, host: Host) -> str:
    """/etc/mipo/mipo.toml of one app host: no secrets, only the names of credential files."""
    doc = appliance.app_settings(host)
    return "# Rendered by the mipo deploy from the appliance config; edits are overwritten.\n" + _toml(doc)


def _toml(doc: dict[str, Any], prefix: str = "") -> str:
    scalars, tables = [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            scalars.append(f"{key} = {_toml_value(value)}\n")
    out = "".join(scalars)
    for key, value in tables:
        name = f"{prefix}{key}"
        inner = _toml(value, f"{name}.")
        if any(not isinstance(v, dict) for v in value.values()):
            out += f"\n[{name}]\n"
        out += inner
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def daily_calendar(host_name: str) -> str:
    """A nightly time between 01:00 and 04:59 derived from the host name: stable across deploys, spread out."""
    digest = int.from_bytes(hashlib.sha256(host_name.encode()).digest()[:4], "big")
    return f"*-*-* {1 + digest % 4:02d}:{(digest // 4) % 60:02d}:00"


def units_of(appliance: Appliance, host: Host) -> list[str]:
    return [UNITS[g] for g in APP_GROUPS if g in host.groups]


def traefik_dynamic(appliance: Appliance) -> str:
    return render("dynamic.yml.j2", manager=appliance.one("manager"), ingest=appliance.group("ingest"),
                  manager_port=MANAGER_PORT, ingest_port=INGEST_PORT)


def traefik_static(appliance: Appliance) -> str:
    return render("traefik.yml.j2")
