"""Per-process ingest state: the LISTEN notifier, the key cache, the heartbeat buffer, the write path, the agent."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
from dataclasses import dataclass, field

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.types import Scope

from app.config import Settings
from app.db.connect import Pools, conninfo
from app.domain.ingest.service import IngestService
from app.domain.jobs.notify import JobNotifier
from app.domain.scanners.auth_cache import ScannerAuthCache
from app.domain.scanners.heartbeats import HeartbeatBuffer
from app.domain.scanners.versions import required_agent_version
from app.scanner.build import build_zipapp, sha256_hex


@dataclass
class IngestRuntime:
    settings: Settings
    notifier: JobNotifier
    auth: ScannerAuthCache
    heartbeats: HeartbeatBuffer = field(default_factory=HeartbeatBuffer)
    agent: bytes = b""
    agent_sha256: str = ""
    service: IngestService | None = None
    pools: Pools = field(default_factory=Pools)  # the app's pools (filled by its lifespan before start)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _trusted_proxies: tuple[str, ...] = field(init=False)
    # The settings' part of every heartbeat and claim answer: interval, lease, minimum agent version, scope.
    limits: tuple[float, float, str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self._trusted_proxies = tuple(self.settings.ingest.trusted_proxies)
        scanner = self.settings.scanner
        self.limits = (scanner.heartbeat_interval, scanner.lease_seconds, required_agent_version(self.settings),
                       list(self.settings.scope.authorised))

    def address_of(self, peer: str, forwarded_for: str) -> str:
        """`client_address` from the peer's address and the first X-Forwarded-For header ("" when none)."""
        return _resolve(peer, forwarded_for if self._trusted_proxies else "", self._trusted_proxies)

    @classmethod
    def create(cls, settings: Settings) -> IngestRuntime:
        agent = build_zipapp()
        return cls(settings=settings, notifier=JobNotifier(conninfo(settings, "jobs")),
                   auth=ScannerAuthCache(conninfo(settings, "config"), settings.scanner.auth_cache_seconds),
                   agent=agent, agent_sha256=sha256_hex(agent))

    async def start(self, app: Litestar) -> None:
        pools: Pools = app.state.pools
        self.pools = pools
        self.service = IngestService(pools.get("jobs"), pools.get("results"), self.settings.scanner.lease_seconds,
                                     pools.get("config"))
        self._tasks = [asyncio.create_task(self.notifier.run()), asyncio.create_task(self.auth.run()),
                       asyncio.create_task(self.heartbeats.run(pools.get("config")))]

    async def stop(self, app: Litestar) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# Handlers declare `ingest_runtime: Runtime`: the app's one IngestRuntime (a dependency provided by create_app).
Runtime = NamedDependency[IngestRuntime]


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parsed once per distinct list (settings are immutable), not on every request."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in cidrs)


@functools.lru_cache(maxsize=16384)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A parsed address, or None; remembered, as the same few proxies and scanners call all day."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(connection: ASGIConnection, settings: Settings) -> str:
    """The peer, or the last X-Forwarded-For hop when the peer is a trusted proxy (Traefik appends it)."""
    return scope_client_address(connection.scope, settings)


FORWARDED_FOR = b"x-forwarded-for"  # the first one counts, as Litestar's `headers.get`


def scope_client_address(scope: Scope, settings: Settings) -> str:
    """`client_address` from the raw ASGI scope: the first X-Forwarded-For header, as Litestar's `headers.get`."""
    client = scope.get("client")
    forwarded = ""
    if settings.ingest.trusted_proxies:  # without trusted proxies the header is never read
        for name, value in scope["headers"]:
            if name == FORWARDED_FOR:
                forwarded = bytes(value).decode("latin-1")
                break
    return _resolve(client[0] if client else "", forwarded, tuple(settings.ingest.trusted_proxies))


@functools.lru_cache(maxsize=16384)
def _resolve(peer: str, forwarded: str, trusted_proxies: tuple[str, ...]) -> str:
    """Remembered per (peer, header): the same proxies and scanners call all day."""
    peer_ip = _address(peer)
    if peer_ip is None:
        return "0.0.0.0"  # noqa: S104 (unknown peer, never bound)
    if trusted_proxies and any(peer_ip in net for net in _networks(trusted_proxies)):
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        forwarded_ip = _address(hops[-1]) if hops else None
        if forwarded_ip is not None:
            return str(forwarded_ip)
    return str(peer_ip)
