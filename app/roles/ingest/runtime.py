"""Per-process ingest state: the LISTEN notifier, the heartbeat buffer, the write path, the agent zipapp."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import dataclass, field

from litestar import Litestar
from litestar.connection import ASGIConnection

from app.config import Settings
from app.db.connect import Pools, conninfo
from app.domain.ingest.service import IngestService
from app.domain.jobs.notify import JobNotifier
from app.domain.scanners.heartbeats import HeartbeatBuffer
from app.scanner.build import build_zipapp, sha256_hex


@dataclass
class IngestRuntime:
    settings: Settings
    notifier: JobNotifier
    heartbeats: HeartbeatBuffer = field(default_factory=HeartbeatBuffer)
    agent: bytes = b""
    agent_sha256: str = ""
    service: IngestService | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings) -> IngestRuntime:
        agent = build_zipapp()
        return cls(settings=settings, notifier=JobNotifier(conninfo(settings, "jobs")), agent=agent,
                   agent_sha256=sha256_hex(agent))

    async def start(self, app: Litestar) -> None:
        pools: Pools = app.state.pools
        self.service = IngestService(pools.get("jobs"), pools.get("results"), self.settings.scanner.lease_seconds,
                                     pools.get("config"))
        self._tasks = [asyncio.create_task(self.notifier.run()),
                       asyncio.create_task(self.heartbeats.run(pools.get("config")))]

    async def stop(self, app: Litestar) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def client_address(connection: ASGIConnection, settings: Settings) -> str:
    """The peer, or the last X-Forwarded-For hop when the peer is a trusted proxy (Traefik appends it)."""
    peer = connection.client.host if connection.client else "0.0.0.0"  # noqa: S104 (unknown peer, never bound)
    try:
        peer_ip = ipaddress.ip_address(peer)
    except ValueError:
        return "0.0.0.0"  # noqa: S104
    trusted = [ipaddress.ip_network(n, strict=False) for n in settings.ingest.trusted_proxies]
    if any(peer_ip in net for net in trusted):
        hops = [h.strip() for h in connection.headers.get("x-forwarded-for", "").split(",") if h.strip()]
        if hops:
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(hops[-1]))
    return str(peer_ip)
