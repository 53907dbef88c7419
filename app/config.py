"""The typed settings schema shared by every mipo role and by provisioning, and its loader."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

DatabaseName = Literal["config", "jobs", "results"]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class ConfigError(ValueError):
    """A settings file or credential that cannot be used; the message names the key."""


def _parse_network(value: str, key: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            f"{key}: expected an IPv4 or IPv6 network such as 198.18.0.0/24 or 2001:db8::/64, got {value!r}"
        ) from None


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8001, got {value!r}")
    return host.strip("[]"), int(port)


class Database(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where one of the three databases lives and how this process logs in to it."""

    name: str
    host: str = "127.0.0.1"
    port: Port = 5432
    user: str = ""
    # Name of the credential file (in $CREDENTIALS_DIRECTORY) holding the password; never the password.
    password_credential: str = ""
    sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = "verify-full"
    sslrootcert: str = ""
    # The schema owner, used only by `python -m app migrate` (and restores).
    owner: str = "mipo_owner"
    owner_password_credential: str = ""
    pool_min: Annotated[int, msgspec.Meta(ge=0)] = 1
    pool_max: Annotated[int, msgspec.Meta(ge=1)] = 10


class Databases(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    config: Database
    jobs: Database
    results: Database


class Listen(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Address an HTTP role binds to (behind Traefik, or internal-only for backup)."""

    listen: str = "127.0.0.1:8000"
    # Addresses whose X-Forwarded-For is believed (Traefik's); everyone else is the peer address.
    trusted_proxies: list[str] = []

    def __post_init__(self) -> None:
        try:
            _parse_listen(self.listen)
        except ValueError as exc:
            raise ValueError(f"listen: {exc}") from None
        for i, net in enumerate(self.trusted_proxies):
            _parse_network(net, f"trusted_proxies[{i}]")

    @property
    def host(self) -> str:
        return _parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _parse_listen(self.listen)[1]


class ScannerTimings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    heartbeat_interval: Seconds = 60.0
    offline_after: Seconds = 120.0
    claim_long_poll: Seconds = 25.0
    lease_seconds: Seconds = 300.0
    enrolment_token_ttl: Seconds = 3600.0
    # PEM file of the appliance CA that signed the edge certificate: embedded in install commands and
    # install.sh so scanners pin it; empty only for plain-HTTP tests on loopback.
    ca_file: str = ""
    # Oldest agent version allowed to take jobs (e.g. "0.2.0" to force upgrades after a fix); an older agent
    # keeps heartbeating but claims nothing. Empty: the oldest agent this appliance's scanner API works with.
    min_agent_version: Annotated[str, msgspec.Meta(pattern=r"^([0-9]+(\.[0-9]+){0,3})?$")] = ""
    # Ingest keeps scanner keys in memory, dropped when the database announces a change; this bounds how long
    # a revoked key, a disabled or draining scanner may still be served if announcements stall. 0: no cache.
    auth_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=10)] = 2.0

    def __post_init__(self) -> None:
        if self.offline_after <= self.heartbeat_interval:
            raise ValueError(
                f"offline_after ({self.offline_after:g}) must be longer than "
                f"heartbeat_interval ({self.heartbeat_interval:g})"
            )


class Scope(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The networks scanners are allowed to probe; anything outside is refused before a packet."""

    authorised: list[str] = []

    def __post_init__(self) -> None:
        for i, net in enumerate(self.authorised):
            _parse_network(net, f"authorised[{i}]")

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.authorised]


class Retention(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    observations_days: Annotated[int, msgspec.Meta(ge=1)] = 90
    changes_days: Annotated[int, msgspec.Meta(ge=1)] = 730


class Backup(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # age recipient public key (age1…); no recipient, no backup — never a clear-text one.
    recipient: str = ""
    directory: str = "/var/lib/mipo/backups"
    keep_count: Annotated[int, msgspec.Meta(ge=1)] = 14
    keep_days: Annotated[int, msgspec.Meta(ge=1)] = 30
    freshness_hours: Annotated[float, msgspec.Meta(gt=0)] = 26.0
    url: str = "http://127.0.0.1:8003"  # where the manager reaches the backup API
    # PostgreSQL client tools (same major as the servers) and an optional command prefix for them
    # (tests run the Debian 13 image's tools through systemd-nspawn; empty on a real backup host).
    pg_bin: str = "/usr/lib/postgresql/17/bin"
    tool_prefix: list[str] = []
    age_bin: str = "age"
    # Credential files (never TOML values): the Ed25519 key signing manifests (PEM, PKCS#8) and the
    # shared secret the manager sends in X-Mipo-Backup-Token (the same file on both hosts).
    signing_key_credential: str = "backup-signing-key"
    api_token_credential: str = "backup-api-token"  # noqa: S105 - a credential file name, not a secret
    # Backups dump as each database's schema owner; restores recreate the databases and the
    # TimescaleDB extension as provisioning does, which needs a superuser on every database server.
    admin_user: str = "postgres"
    admin_password_credential: str = ""

    def __post_init__(self) -> None:
        if self.recipient and not self.recipient.startswith("age1"):
            raise ValueError(f"recipient: expected an age public key starting with 'age1', got {self.recipient!r}")


class Session(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    idle_minutes: Annotated[int, msgspec.Meta(ge=1)] = 30
    absolute_hours: Annotated[int, msgspec.Meta(ge=1)] = 12
    # False only for plain-HTTP tests on loopback; `__Host-` cookies require Secure.
    secure_cookies: bool = True
    # Login throttling: failed attempts counted over a sliding window, per account and per client address.
    login_window_minutes: Annotated[int, msgspec.Meta(ge=1)] = 15
    max_failures_per_account: Annotated[int, msgspec.Meta(ge=1)] = 5
    max_failures_per_address: Annotated[int, msgspec.Meta(ge=1)] = 20


class Dispatcher(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Dispatcher loop intervals and the reconciler's thresholds (tests shorten them)."""

    tick_seconds: Seconds = 5.0             # how often the leader plans, reconciles and finalises
    standby_poll_seconds: Seconds = 5.0     # how often a standby tries to take the lock
    job_target_seconds: Seconds = 300.0     # batches are sized so one job lasts about this long
    missed_run_after_seconds: Seconds = 300.0  # later than due + jitter + this: a missed run, not a late one
    stuck_pending_seconds: Seconds = 900.0
    no_heartbeat_seconds: Seconds = 240.0
    stuck_running_factor: Annotated[float, msgspec.Meta(gt=1)] = 3.0
    # A small job's estimate is seconds; claim latency, banners and TLS timeouts are not in it. Below this
    # floor "3x the estimate" would flag healthy jobs and train operators to ignore the warning.
    stuck_running_min_seconds: Seconds = 300.0
    expired_seconds: Seconds = 86400.0
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    # A run that would need more jobs than this is refused (e.g. an IPv6 /64): it could never finish.
    max_jobs_per_run: Annotated[int, msgspec.Meta(ge=1)] = 200_000


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Everything a mipo process needs; one file shared by all roles of an appliance."""

    databases: Databases
    manager: Listen = Listen(listen="127.0.0.1:8001")
    ingest: Listen = Listen(listen="127.0.0.1:8002")
    backup_api: Listen = Listen(listen="127.0.0.1:8003")
    scanner: ScannerTimings = ScannerTimings()
    dispatcher: Dispatcher = Dispatcher()
    scope: Scope = Scope()
    retention: Retention = Retention()
    backup: Backup = Backup()
    session: Session = Session()
    # Public URL operators and scanners use (the Traefik edge), e.g. https://mipo.example.net
    public_url: str = "https://127.0.0.1"
    credentials_directory: str = ""

    def credential(self, name: str) -> str:
        """Read one credential file (systemd LoadCredential=), stripped of its trailing newline."""
        if not name:
            return ""
        if not self.credentials_directory:
            raise ConfigError(f"credential {name!r} requested but no credentials directory is set")
        path = Path(self.credentials_directory) / name
        try:
            return path.read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError(f"credential {name!r}: cannot read {path}: {exc.strerror}") from None


def _format_validation_error(exc: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.scope.authorised[1]`"; operators think in TOML keys.
    text = str(exc)
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        message, where = text, "$`"
    key = where.rstrip("`").removeprefix("$").lstrip(".")
    message = message.replace("Object contains unknown field", "unknown key")
    if message.startswith("unknown key"):
        return f"{key + '.' if key else ''}{message.split('`')[1]}: unknown key"
    # A __post_init__ message starts with the sub-key it concerns ("authorised[1]: …").
    sub, colon, rest = message.partition(": ")
    if colon and (sub.replace("_", "").replace("[", "").replace("]", "").isalnum()) and " " not in sub:
        parent = key.rsplit(".", 1)[0] if key.endswith(sub) else key
        return f"{parent + '.' if parent else ''}{sub}: {rest}"
    return f"{key}: {message}"


def parse_settings(data: dict[str, object], credentials_directory: str = "") -> Settings:
    """Validate a parsed TOML document; raise ConfigError naming the offending key."""
    if credentials_directory:
        data = {**data, "credentials_directory": credentials_directory}
    try:
        return msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def load_settings(path: str | os.PathLike[str], credentials_directory: str | None = None) -> Settings:
    """Load the settings file; credentials come from the given directory or $CREDENTIALS_DIRECTORY."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    creds = credentials_directory if credentials_directory is not None else os.environ.get(
        "CREDENTIALS_DIRECTORY", ""
    )
    try:
        return parse_settings(data, creds)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
