"""The agent's life: heartbeats, long-poll claims, scanning a job into the spool, and draining the spool."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import signal
from collections.abc import Callable
from typing import Any

from . import VERSION
from .client import ApiRefused, Client, TransportError
from .engine import DEFAULT_RETRIES, MAX_RETRIES, ConnectScanner, OpenPort, parse_retries
from .parallel import ParallelScanner, plan_workers
from .ports import count_addresses, count_ports, iter_probes, outside_scope, parse_ports, parse_targets
from .probes import ServiceInfo, identify
from .settings import AgentSettings
from .spool import Spool
from .versions import older_than

log = logging.getLogger("mipo-scanner")

# Refusals that no retry can fix: stop and let an operator re-enrol (systemd does not restart on exit 3).
FATAL_REASONS = {"unknown_key", "revoked_key", "scanner_disabled", "address_not_allowed"}
FATAL_EXIT = 3

# A clean stop (SIGTERM/SIGINT) is bounded well inside systemd's stop timeout (90 s by default): at most
# STOP_SCAN_SECONDS for the scan in progress to wind down and spool what it found, STOP_UPLOAD_SECONDS to send
# the spool, then one release call per held lease of at most RELEASE_SECONDS. What is not sent stays spooled.
STOP_SCAN_SECONDS = 5.0
STOP_UPLOAD_SECONDS = 5.0
RELEASE_SECONDS = 3.0


class Fatal(Exception):
    pass


class Agent:
    def __init__(self, settings: AgentSettings, key: str) -> None:
        self.settings = settings
        self.key = key
        self.spool = Spool(settings.spool_dir)
        self.heartbeat_interval = 60.0
        self.scope: list[str] = []
        self.rate_limit = 1000
        self.concurrency = 500
        self.running_jobs = 0
        self.lease_seconds = 300.0
        self.outdated = False   # the appliance requires a newer agent: claim nothing, keep heartbeating
        self.stopping = False   # SIGTERM/SIGINT: scan nothing more, spool, send, give the leases back, exit
        self._stop_scan: Callable[[], None] | None = None  # ends the scan in progress (it spools what it has)

    def _client(self) -> Client:
        return Client(self.settings.server_url, self.settings.ca_file, self.key)

    def _apply(self, answer: dict[str, Any]) -> None:
        """Heartbeat and claim answers carry the appliance's current limits and authorised scope."""
        self.heartbeat_interval = float(answer.get("heartbeat_interval", self.heartbeat_interval))
        self.scope = list(answer.get("scope", self.scope))
        self.rate_limit = int(answer.get("rate_limit", self.rate_limit))
        self.concurrency = int(answer.get("concurrency", self.concurrency))
        self.lease_seconds = float(answer.get("lease_seconds", self.lease_seconds))
        self._check_version(str(answer.get("min_version", "")))

    def _check_version(self, required: str) -> None:
        """An agent older than the appliance requires stops claiming; one log line says so, and how to upgrade."""
        outdated = older_than(VERSION, required)
        if outdated and not self.outdated:
            log.error("mipo-scanner %s is too old: this appliance requires version %s or newer; claiming no new jobs "
                      "(running jobs finish, spooled results are still sent, heartbeats go on); to upgrade, "
                      "issue a new install token for this scanner in the manager and re-run the install command "
                      "on this host (it keeps the scanner's identity)", VERSION, required)
        elif self.outdated and not outdated:
            log.warning("the appliance accepts mipo-scanner %s again (requires %s): claiming jobs", VERSION, required)
        self.outdated = outdated

    async def run(self) -> None:
        """Serve until a fatal refusal, or until SIGTERM/SIGINT: then stop cleanly (see `_shutdown`)."""
        self._spooled = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._hb = self._client()
        self._claimer = self._client()
        self._uploader = self._client()
        self._progress = self._client()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._request_stop)
        self._claim_task: asyncio.Task[None] | None = None
        main = asyncio.create_task(self._serve())
        stop = asyncio.create_task(self._stop_requested.wait())
        try:
            await asyncio.wait([main, stop], return_when=asyncio.FIRST_COMPLETED)
            if main.done():
                main.result()
                return
            await self._shutdown(main)
        finally:
            stop.cancel()
            main.cancel()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def _serve(self) -> None:
        await self._heartbeat()
        tasks = [asyncio.create_task(c) for c in (self._heartbeat_loop(), self._upload_loop(), self._claim_loop())]
        self._claim_task = tasks[2]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()

    def _request_stop(self) -> None:
        if self.stopping:
            return
        log.info("stopping: ending the scan in progress, sending the spool, giving back held jobs")
        self.stopping = True
        self._stop_requested.set()
        if self._stop_scan is not None:
            self._stop_scan()
        self._claimer.abort()  # a claim parked in its long poll ends now; ingest sees us go and hands nothing out

    async def _shutdown(self, main: asyncio.Task[None]) -> None:
        """Stop scanning, spool, try briefly to send the spool, release every lease still held, return.

        Bounded: a stop must never run into systemd's stop timeout (and a SIGKILL). Whatever is not sent
        stays in the spool for the next start, which releases the leases a failed release left behind."""
        loop = asyncio.get_running_loop()
        claim_task = self._claim_task  # None: still at the first heartbeat, nothing claimed or uploading yet
        if claim_task is not None and not claim_task.done():
            # The scan stops within a step; its open ports are identified and spooled (no completion).
            await asyncio.wait([claim_task, main], timeout=STOP_SCAN_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        if claim_task is not None and not main.done():
            self._spooled.set()
            deadline = loop.time() + STOP_UPLOAD_SECONDS
            while self.spool.pending() and not main.done() and loop.time() < deadline:
                await asyncio.sleep(0.1)
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await main
        for client in (self._uploader, self._progress, self._hb, self._claimer):
            client.abort()  # a call still in its thread must not hold the exit up (asyncio.run joins the threads)
        releaser = self._client()
        for job_id, lease in self.spool.claims():
            if self.spool.has_completion(job_id, lease):
                continue  # finished: the next start sends the completion
            with contextlib.suppress(TransportError, Fatal):
                await self._release(releaser, job_id, lease, "agent stopping", RELEASE_SECONDS)
        log.info("stopped; %s message(s) stay spooled, %s job(s) still held", len(self.spool.pending()),
                 len(self.spool.claims()))

    async def _release(self, client: Client, job_id: int, lease: int, reason: str, timeout: float) -> None:
        """Give one held lease back; the record goes once ingest released it or says it is no longer ours.
        A TransportError leaves the record (the next start tries again)."""
        try:
            answer = await self._call(client, "/scanner/v1/release",
                                      {"job_id": job_id, "lease_token": lease, "reason": reason}, timeout=timeout)
        except ApiRefused as exc:
            # 409: requeued by the reconciler (lease expired) or finished meanwhile: nothing left to give back.
            log.info("job %s lease %s: not released (%s): no longer held", job_id, lease, exc.reason)
        else:
            log.info("job %s lease %s released (%s): %s", job_id, lease, reason, answer.get("action", "requeued"))
        self.spool.drop_claim(job_id, lease)

    async def _release_leftovers(self) -> None:
        """At start: jobs a previous run held but never finished (it was stopped or killed mid-job) cannot be
        resumed. Their spooled batches go first (the upload loop sends them under the lease still held), then
        the lease is given back, so the job is claimable again now instead of after its lease expires."""
        for job_id, lease in self.spool.claims():
            if self.spool.has_completion(job_id, lease):
                continue  # the upload loop sends the completion, then drops the record
            left = len(self.spool.batches_of(job_id, lease))
            if left:
                log.info("job %s lease %s: sending %s spooled batch(es) before giving it back", job_id, lease, left)
            self._spooled.set()
            while self.spool.batches_of(job_id, lease) and not self.stopping:
                await asyncio.sleep(0.2)
            delay = 1.0
            while not self.stopping:  # stopping: the shutdown releases what is still held
                try:
                    await self._release(self._claimer, job_id, lease, "agent restarted", 30.0)
                    break
                except TransportError as exc:
                    if self.stopping:
                        return
                    log.warning("release of job %s failed, retrying: %s", job_id, exc)
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 (jitter, not a secret)
                    delay = min(delay * 2, 30.0)

    async def _call(self, client: Client, path: str, body: object = None, *, raw: bytes | None = None,
                    timeout: float = 30.0) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(client.call, "POST", path, body, raw=raw, timeout=timeout)
        except ApiRefused as exc:
            if exc.reason in FATAL_REASONS:
                raise Fatal(f"ingest refused this scanner: {exc}") from None
            raise

    async def _heartbeat(self) -> None:
        """One beat, retried until it lands.

        A beat that failed once (ingest restarting, Traefik answering 502 while it notices) used to wait for
        the next interval: two intervals of silence are exactly the offline threshold, so one failure made
        a healthy scanner read as offline. Retries back off with jitter, so thousands of scanners coming
        back after an outage do not all knock at once."""
        delay = 1.0
        cap = max(1.0, min(30.0, self.heartbeat_interval / 4))
        while True:
            try:
                load = os.getloadavg()[0]
            except (OSError, AttributeError):  # /proc/loadavg hidden by the unit's sandbox, or not Linux
                load = 0.0
            try:
                self._apply(await self._call(self._hb, "/scanner/v1/heartbeat",
                                             {"version": VERSION, "load": load, "running_jobs": self.running_jobs},
                                             timeout=cap))
                return
            except (TransportError, ApiRefused) as exc:
                log.warning("heartbeat failed, retrying within %.0f s: %s", delay, exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 (jitter, not a secret)
            delay = min(delay * 2, cap)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            await self._heartbeat()

    async def _claim_loop(self) -> None:
        await self._release_leftovers()
        delay = 1.0
        while not self.stopping:
            if self.outdated:  # each heartbeat answer re-decides; no claim means no new job
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), self.heartbeat_interval)
                continue
            try:
                answer = await self._call(self._claimer, "/scanner/v1/claim", {"max_jobs": 1, "wait": 25.0},
                                          timeout=60.0)
            except (TransportError, ApiRefused) as exc:
                if self.stopping:
                    return
                log.warning("claim failed: %s", exc)
                await asyncio.sleep(delay + random.random())  # noqa: S311 (jitter, not a secret)
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            self._apply(answer)
            jobs = answer.get("jobs", [])
            for job in jobs:  # held from now on: a stop (or a crash) gives these back, see _release_leftovers
                self.spool.put_claim(int(job["job_id"]), int(job["lease_token"]))
            for job in jobs:
                if self.stopping:
                    break
                await self.run_job(job)

    def _spool_complete(self, job_id: int, lease: int, body: dict[str, Any]) -> None:
        self.spool.put(Spool.complete_name(job_id, lease),
                       json.dumps({"job_id": job_id, "lease_token": lease, **body}).encode())
        self._spooled.set()

    async def run_job(self, job: dict[str, Any]) -> None:
        job_id, lease = int(job["job_id"]), int(job["lease_token"])
        try:
            ranges = parse_targets(job["targets"])
            ports = parse_ports(job["ports"])
        except (ValueError, KeyError, TypeError) as exc:
            self._spool_complete(job_id, lease, {"status": "failed", "error_class": "malformed_job",
                                                 "error": str(exc), "batches": 0})
            return
        bad = outside_scope(ranges, self.scope)
        if bad:
            # Refused before any socket exists: not a single probe leaves for a target outside scope.
            log.error("job %s refused: targets outside the authorised scope: %s", job_id, ", ".join(bad[:5]))
            self._spool_complete(job_id, lease, {"status": "failed", "error_class": "out_of_scope",
                                                 "error": f"outside the authorised scope: {', '.join(bad[:5])}",
                                                 "batches": 0})
            return
        self.running_jobs += 1
        try:
            await self._scan(job, job_id, lease, ranges, ports)
        finally:
            self.running_jobs -= 1

    async def _scan(self, job: dict[str, Any], job_id: int, lease: int, ranges: Any, ports: Any) -> None:
        options = job.get("options") or {}
        rate = min(int(options.get("rate", self.rate_limit)), self.rate_limit)
        timeout = float(options.get("timeout_ms", 1000)) / 1000.0
        retries = parse_retries(options.get("retries", DEFAULT_RETRIES))
        if retries is None:
            log.warning("job %s: option retries=%r is not an integer 0..%s: using %s", job_id, options["retries"],
                        MAX_RETRIES, DEFAULT_RETRIES)
            retries = DEFAULT_RETRIES
        want_banner, want_tls = bool(options.get("banner", True)), bool(options.get("tls", True))
        if self.stopping:
            return  # the lease is given back: a new attempt scans it whole
        probes_total = count_addresses(ranges) * count_ports(ports)
        # Auto (workers = 0): one process per core, only for jobs big enough to pay for starting them.
        workers = plan_workers(probes_total, self.settings.workers)
        parallel = ParallelScanner(rate, self.concurrency, timeout, workers, retries=retries) if workers > 1 else None
        scanner = ConnectScanner(rate, self.concurrency, timeout, retries)

        def stop_scan() -> None:
            scanner.stop()
            if parallel is not None:
                parallel.stop()
        self._stop_scan = stop_scan

        def scanned() -> int:
            return parallel.done if parallel is not None else scanner.stats.done
        seq = int(job.get("first_batch_seq", 0))
        batch: list[dict[str, Any]] = []
        batches = 0
        enrich_slots = asyncio.Semaphore(64)
        enriching: set[asyncio.Task[None]] = set()
        stale = False

        def flush() -> None:
            nonlocal batch, seq, batches
            if not batch:
                return
            payload = {"job_id": job_id, "batch_seq": seq, "lease_token": lease,
                       "scanned": scanned(), "results": batch}
            self.spool.put(Spool.batch_name(job_id, lease, seq), json.dumps(payload).encode())
            seq, batches, batch = seq + 1, batches + 1, []
            self._spooled.set()

        async def enrich(found: OpenPort) -> None:
            info = ServiceInfo()
            if want_banner or want_tls:
                async with enrich_slots:
                    info = await identify(found.ip, found.port, max(timeout, 1.0), want_banner, want_tls)
            batch.append({"ip": found.ip, "port": found.port, "at": found.at, "rtt_ms": round(found.rtt_ms, 3),
                          "banner": info.banner, "service": info.service,
                          "tls_der": base64.b64encode(info.tls_der).decode() if info.tls_der else None})
            if len(batch) >= self.settings.batch_size:
                flush()

        def on_open(found: OpenPort) -> None:
            task = asyncio.create_task(enrich(found))
            enriching.add(task)
            task.add_done_callback(enriching.discard)

        async def ticker() -> None:
            nonlocal stale
            last_progress = asyncio.get_running_loop().time()
            while True:
                await asyncio.sleep(self.settings.batch_seconds)
                flush()
                now = asyncio.get_running_loop().time()
                if now - last_progress >= min(10.0, self.lease_seconds / 4):
                    last_progress = now
                    try:
                        await self._call(self._progress, "/scanner/v1/progress",
                                         {"job_id": job_id, "lease_token": lease, "scanned": scanned()})
                    except ApiRefused as exc:
                        if exc.reason == "stale_lease":
                            log.warning("job %s lease %s superseded: stopping", job_id, lease)
                            stale = True
                            stop_scan()
                            self.spool.drop_claim(job_id, lease)  # not ours any more: nothing to give back
                            return
                    except TransportError as exc:
                        log.warning("progress failed (results stay spooled): %s", exc)

        probes = iter_probes(ranges, ports)
        tick = asyncio.create_task(ticker())
        try:
            if parallel is not None:
                stats = await parallel.run(job["targets"], job["ports"], on_open)
            else:
                stats = await scanner.run(probes, on_open)
            # Every enrichment task exists by now (only the scan calls on_open): one gather, not `while
            # enriching`. From Python 3.12 gather() of tasks already done completes without yielding, so the
            # set's discard callbacks never ran and that loop spun forever (Debian 13's 3.13, in the lab).
            if enriching:
                await asyncio.gather(*list(enriching))
        finally:
            tick.cancel()
            self._stop_scan = None
        if stale:
            return
        flush()
        if self.stopping:
            # Interrupted: what it found is spooled (and sent if time allows); the job itself is given back.
            log.info("job %s interrupted after about %s probes: it will be released", job_id, scanned())
            return
        log.info("job %s done: %s probes, %s open, %.1f s, %s process(es)", job_id, stats.attempts, stats.open,
                 stats.seconds, workers)
        self._spool_complete(job_id, lease, {"status": "completed", "batches": batches, "scanned": stats.done})

    async def _upload_loop(self) -> None:
        delay = 0.5
        while True:
            files = self.spool.pending()
            if not files:
                self._spooled.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._spooled.wait(), 5.0)
                continue
            for path in files:
                endpoint = "/scanner/v1/complete" if path.name.endswith("-z-complete.json") else "/scanner/v1/batches"
                try:
                    await self._call(self._uploader, endpoint, raw=path.read_bytes(), timeout=120.0)
                except TransportError as exc:
                    # Ingest restarting or the link cut: keep the file, back off, resend the same one.
                    log.warning("upload of %s failed, will retry: %s", path.name, exc)
                    await asyncio.sleep(delay * (1 + random.random()))  # noqa: S311 (jitter)
                    delay = min(delay * 2, 15.0)
                    break
                except ApiRefused as exc:
                    delay = 0.5
                    if exc.status == 409:
                        log.warning("%s refused (%s): lease superseded, dropping it", path.name, exc.reason)
                        self.spool.remove(path)
                        self._completion_sent(path)
                    else:
                        log.error("%s refused (%s): kept in rejected/", path.name, exc)
                        self.spool.reject(path)
                    continue
                delay = 0.5
                self.spool.remove(path)
                self._completion_sent(path)

    def _completion_sent(self, path: Any) -> None:
        """A completion acknowledged (or refused as stale): the job's lease is no longer ours to give back."""
        held = Spool.job_of(path) if path.name.endswith("-z-complete.json") else None
        if held is not None:
            self.spool.drop_claim(*held)

