"""The operator's appliance config (hosts by group + app settings), validated before any host is touched."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from app.config import ConfigError, Settings, parse_settings

GROUPS = ("edge", "manager", "ingest", "dispatcher", "backup", "db")
# How many hosts each group must have: the dispatcher and manager are single instances by design.
GROUP_SIZES = {"edge": (1, 1), "manager": (1, 1), "ingest": (1, 16), "dispatcher": (1, 1), "backup": (1, 1),
               "db": (1, 1)}
APP_GROUPS = ("manager", "ingest", "dispatcher", "backup")
# The service role each app group logs in to the databases as.
SERVICE_ROLE = {"manager": "mipo_manager", "ingest": "mipo_ingest", "dispatcher": "mipo_dispatcher",
                "backup": "mipo_backup"}
OWNER_ROLE = "mipo_owner"
SUPERUSER = "postgres"
BACKUP_SIGNING_KEY = "backup-signing-key"
BACKUP_API_TOKEN = "backup-api-token"  # noqa: S105 - the name of a credential file, not a secret
DATABASE_NAMES = {"config": "mipo_config", "jobs": "mipo_jobs", "results": "mipo_results"}
PG_PORT = 5432
MANAGER_PORT = 8001
INGEST_PORT = 8002
BACKUP_PORT = 8003
CA_PATH = "/etc/mipo/ca.crt"
EDGE_CA_PATH = "/etc/mipo/edge-ca.crt"
CREDENTIALS_DIR = "/etc/mipo/credentials"


class Host(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One appliance host: its groups and the addresses the deploy and the other hosts use."""

    name: str
    groups: list[str]
    address: str  # on the internal network: what other appliance hosts connect to
    external_address: str = ""  # edge only: where operators and scanners reach Traefik
    ssh_address: str = ""  # where the deployer connects; the internal address when empty

    @property
    def ssh(self) -> str:
        return self.ssh_address or self.address


class DeployOptions(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How the deploy reaches hosts and what it may let through their firewalls."""

    state_dir: str = "/var/lib/mipo-deploy"  # controller side: CA, generated secrets, wheelhouse (root-only)
    ssh_user: str = "root"
    ssh_key: str = ""
    # "no" only for throwaway hosts whose keys change on every boot (the lab).
    strict_host_keys: Literal["yes", "accept-new", "no"] = "accept-new"
    # Networks allowed to SSH into every host (at least the controller running the deploy).
    admin_networks: list[str] = []
    # http://ADDR:PORT of the apt proxy: the only destination a db host may open a connection to.
    package_proxy: str = ""
    # DNS names the edge certificate carries besides the edge's addresses.
    edge_names: list[str] = []
    # An operator-supplied edge certificate (PEM chain), its key and the CA that issued it, as paths on the
    # controller. Empty: the deploy issues the edge certificate from the appliance CA.
    edge_certificate: str = ""
    edge_key: str = ""
    edge_ca: str = ""


class ApplianceDocument(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    deploy: DeployOptions
    hosts: list[Host]
    # App settings as in /etc/mipo/mipo.toml, minus what the deploy derives (databases, listen addresses).
    settings: dict[str, Any] = {}


@dataclass(frozen=True)
class Appliance:
    """A validated appliance config: hosts by group and the settings each host gets."""

    deploy: DeployOptions
    hosts: tuple[Host, ...]
    settings: dict[str, Any]
    source: str  # where it was read from, for messages

    def group(self, group: str) -> list[Host]:
        return [h for h in self.hosts if group in h.groups]

    def one(self, group: str) -> Host:
        return self.group(group)[0]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise ConfigError(f"no host named {name!r} in {self.source}")

    @property
    def state_dir(self) -> Path:
        return Path(self.deploy.state_dir)

    @property
    def public_url(self) -> str:
        edge = self.one("edge")
        return str(self.settings.get("public_url") or f"https://{edge.external_address or edge.address}")

    @property
    def edge_ca_path(self) -> str:
        """Where app hosts find the CA that signed the edge certificate (the operator's, when supplied)."""
        return EDGE_CA_PATH if self.deploy.edge_certificate else CA_PATH

    @property
    def proxy(self) -> tuple[str, int] | None:
        if not self.deploy.package_proxy:
            return None
        rest = self.deploy.package_proxy.split("://", 1)[-1].rstrip("/")
        addr, _, port = rest.rpartition(":")
        return addr, int(port)

    def roles_of(self, host: Host) -> list[str]:
        return [g for g in APP_GROUPS if g in host.groups]

    def app_settings(self, host: Host) -> dict[str, Any]:
        """The mipo.toml document of one app host: operator settings + derived databases and listeners."""
        roles = self.roles_of(host)
        if not roles:
            raise ConfigError(f"host {host.name!r} runs no mipo role")
        role = SERVICE_ROLE[roles[0]]
        db = self.one("db")
        needs_owner = bool({"manager", "backup"} & set(roles))
        databases = {
            key: {
                "name": name, "host": db.address, "port": PG_PORT, "user": role,
                "password_credential": credential_name(role), "sslmode": "verify-full", "sslrootcert": CA_PATH,
                "owner": OWNER_ROLE, "owner_password_credential": credential_name(OWNER_ROLE) if needs_owner else "",
            }
            for key, name in DATABASE_NAMES.items()
        }
        edge = self.one("edge")
        manager, backup = self.one("manager"), self.one("backup")
        doc = dict(self.settings)
        doc["databases"] = databases
        doc["public_url"] = self.public_url
        doc["manager"] = {"listen": f"{manager.address}:{MANAGER_PORT}", "trusted_proxies": [f"{edge.address}/32"]}
        ingest_addr = host.address if "ingest" in roles else self.one("ingest").address
        doc["ingest"] = {"listen": f"{ingest_addr}:{INGEST_PORT}", "trusted_proxies": [f"{edge.address}/32"]}
        doc["backup_api"] = {"listen": f"{backup.address}:{BACKUP_PORT}"}
        # Install commands and install.sh embed the CA that signed the edge certificate, for scanners to pin.
        doc["scanner"] = {**dict(doc.get("scanner", {})), "ca_file": self.edge_ca_path}
        doc["backup"] = {**dict(doc.get("backup", {})), "url": f"http://{backup.address}:{BACKUP_PORT}",
                         "signing_key_credential": BACKUP_SIGNING_KEY, "api_token_credential": BACKUP_API_TOKEN,
                         "admin_user": SUPERUSER,
                         "admin_password_credential": credential_name(SUPERUSER) if "backup" in roles else ""}
        return doc

    def credentials_of(self, host: Host) -> list[str]:
        """Names of the secrets one host receives (each a file under /etc/mipo/credentials)."""
        roles = self.roles_of(host)
        names = [credential_name(SERVICE_ROLE[r]) for r in roles]
        if {"manager", "backup"} & set(roles):
            names += [credential_name(OWNER_ROLE), BACKUP_API_TOKEN]
        if "backup" in roles:
            # Restores recreate databases and the timescaledb extension: that needs the superuser.
            names += [credential_name(SUPERUSER), BACKUP_SIGNING_KEY]
        return sorted(set(names))


def credential_name(role: str) -> str:
    return f"db-{role}"


def _check_address(value: str, key: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{key}: expected an IP address such as 198.18.1.20, got {value!r}") from None


def validate(doc: ApplianceDocument, source: str) -> Appliance:
    """Every check that needs no host: groups complete, addresses valid, settings accepted by the app."""
    names = [h.name for h in doc.hosts]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: hosts: duplicate host name in {names}")
    for i, h in enumerate(doc.hosts):
        _check_address(h.address, f"hosts[{i}].address")
        if h.external_address:
            _check_address(h.external_address, f"hosts[{i}].external_address")
        unknown = set(h.groups) - set(GROUPS)
        if unknown:
            raise ConfigError(f"{source}: hosts[{i}].groups: unknown group {sorted(unknown)[0]!r}; "
                              f"expected some of {', '.join(GROUPS)}")
    for group, (low, high) in GROUP_SIZES.items():
        count = sum(group in h.groups for h in doc.hosts)
        if not low <= count <= high:
            want = f"exactly {low}" if low == high else f"{low} to {high}"
            raise ConfigError(f"{source}: group {group!r} has {count} hosts, expected {want}")
    for i, net in enumerate(doc.deploy.admin_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"{source}: deploy.admin_networks[{i}]: expected a network such as "
                              f"198.18.1.1/32, got {net!r}") from None
    supplied = [bool(doc.deploy.edge_certificate), bool(doc.deploy.edge_key), bool(doc.deploy.edge_ca)]
    if any(supplied) and not all(supplied):
        raise ConfigError(f"{source}: deploy.edge_certificate, deploy.edge_key and deploy.edge_ca: give all three "
                          "(an operator-supplied certificate) or none (the appliance CA issues one)")
    for key in ("edge_certificate", "edge_key", "edge_ca"):
        value = getattr(doc.deploy, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"{source}: deploy.{key}: no such file on this machine: {value}")
    if not doc.deploy.admin_networks:
        raise ConfigError(f"{source}: deploy.admin_networks: list at least the network the deploy runs from, "
                          "or the firewall would lock the deploy out")
    appliance = Appliance(doc.deploy, tuple(doc.hosts), dict(doc.settings), source)
    if doc.deploy.package_proxy:
        try:
            addr, _port = appliance.proxy or ("", 0)
            _check_address(addr, "deploy.package_proxy")
        except (ValueError, ConfigError):
            raise ConfigError(f"{source}: deploy.package_proxy: expected http://ADDRESS:PORT such as "
                              f"http://198.18.1.1:3142, got {doc.deploy.package_proxy!r}") from None
    for key in ("databases", "manager", "ingest", "backup_api", "credentials_directory"):
        if key in doc.settings:
            raise ConfigError(f"{source}: settings.{key}: set by the deploy from the hosts; remove it")
    for h in doc.hosts:
        if appliance.roles_of(h):
            try:
                app_settings_struct(appliance, h)
            except ConfigError as exc:
                raise ConfigError(f"{source}: settings: {exc}") from None
    return appliance


def app_settings_struct(appliance: Appliance, host: Host) -> Settings:
    return parse_settings(appliance.app_settings(host))


def parse_appliance(data: dict[str, Any], source: str) -> Appliance:
    try:
        doc = msgspec.convert(data, ApplianceDocument)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, _, where = text.rpartition(" - at `")
        key = where.rstrip("`").removeprefix("$").lstrip(".") if message else ""
        raise ConfigError(f"{source}: {key + ': ' if key else ''}{message or text}") from None
    return validate(doc, source)


def load_appliance(path: str | Path) -> Appliance:
    """Read and validate an appliance TOML file; ConfigError names the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_appliance(data, str(path))
