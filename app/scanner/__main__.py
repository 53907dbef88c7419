"""`agent.pyz enrol | run | scan | version`: the scanner agent's command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import VERSION
from .engine import DEFAULT_RETRIES, MAX_RETRIES, ConnectScanner
from .parallel import ParallelScanner, plan_workers
from .ports import count_addresses, count_ports, iter_probes, outside_scope, parse_ports, parse_targets

# asyncio, logging, the settings file and the HTTPS client (ssl, http.client) load only for `enrol` and
# `run`: `scan` (benchmarks, troubleshooting) starts in a fraction of the time.
DEFAULT_CONFIG = "/etc/mipo-scanner/agent.toml"  # settings.DEFAULT_CONFIG


def _read_token(source: str | None) -> str:
    """Never from argv (shell history, `ps`): a file, stdin (`-`), or a prompt on the terminal."""
    if source == "-":
        token = sys.stdin.readline()
    elif source:
        with open(source) as fh:
            token = fh.readline()
    else:
        import getpass

        token = getpass.getpass("Enrolment token: ")
    token = token.strip()
    if not token:
        raise SystemExit("mipo-scanner: empty enrolment token")
    return token


def enrol(config: str, token_source: str | None) -> int:
    import socket

    from .client import ApiRefused, Client, TransportError
    from .settings import host_id, load, write_key

    settings = load(config)
    token = _read_token(token_source)
    client = Client(settings.server_url, settings.ca_file)
    body = {"token": token, "host_id": host_id(settings.machine_id_file), "hostname": socket.gethostname(),
            "version": VERSION}
    try:
        answer = client.call("POST", "/scanner/v1/enrol", body)
    except ApiRefused as exc:
        print(f"mipo-scanner: enrolment refused: {exc.reason} ({exc.body.get('detail', '')})", file=sys.stderr)
        return 1
    except TransportError as exc:
        print(f"mipo-scanner: cannot reach {settings.server_url}: {exc}", file=sys.stderr)
        return 1
    write_key(settings.key_file, answer["key"])
    print(f"enrolled as scanner {answer['scanner_name']} (id {answer['scanner_id']}); key in {settings.key_file}")
    return 0


def run(config: str) -> int:
    import asyncio
    import logging

    from .agent import FATAL_EXIT, Agent, Fatal
    from .settings import load, read_key

    settings = load(config)
    agent = Agent(settings, read_key(settings.key_file))
    try:
        asyncio.run(agent.run())
    except Fatal as exc:
        logging.getLogger("mipo-scanner").error("%s", exc)
        return FATAL_EXIT
    except KeyboardInterrupt:
        return 0
    return 0


def scan(args: argparse.Namespace) -> int:
    """A local scan without the appliance (benchmarks, troubleshooting); the scope is still enforced."""
    ranges = parse_targets([t.split("-", 1) if "-" in t else [t, t] for t in args.targets])
    bad = outside_scope(ranges, args.scope)
    if bad:
        print(f"mipo-scanner: refused, outside --scope: {', '.join(bad)}", file=sys.stderr)
        return 2
    ports = parse_ports(args.ports)
    found: list[tuple[str, int]] = []
    workers = plan_workers(count_addresses(ranges) * count_ports(ports), args.workers)
    if workers > 1:
        parallel = ParallelScanner(args.rate, args.concurrency, args.timeout_ms / 1000, workers, retries=args.retries)
        targets = [[str(a), str(b)] for a, b in ranges]
        stats = parallel.run_blocking(targets, args.ports, lambda o: found.append((o.ip, o.port)))
    else:
        engine = ConnectScanner(args.rate, args.concurrency, args.timeout_ms / 1000, args.retries)
        stats = engine.run_blocking(iter_probes(ranges, ports), lambda o: found.append((o.ip, o.port)))
    print(json.dumps({"open": sorted(found), "attempts": stats.attempts, "workers": workers, "closed": stats.closed,
                      "filtered": stats.filtered, "errors": stats.errors, "retried": stats.retried,
                      "seconds": stats.seconds}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mipo-scanner", description="mipo scanner agent")
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    sub = parser.add_subparsers(dest="command", required=True)
    p_enrol = sub.add_parser("enrol", help="exchange a one-time enrolment token for this host's API key")
    p_enrol.add_argument("--token-file", help="file holding the token, or - for stdin (default: prompt)")
    sub.add_parser("run", help="heartbeat, claim jobs, scan, stream results")
    sub.add_parser("version")
    p_scan = sub.add_parser("scan", help="scan locally and print open ports as JSON (no appliance)")
    p_scan.add_argument("--targets", nargs="+", required=True, help="ADDR or FIRST-LAST")
    p_scan.add_argument("--ports", required=True)
    p_scan.add_argument("--scope", nargs="+", required=True, help="authorised networks")
    p_scan.add_argument("--rate", type=float, default=20000)
    p_scan.add_argument("--concurrency", type=int, default=2000)
    p_scan.add_argument("--timeout-ms", type=int, default=1000)
    p_scan.add_argument("--retries", type=int, default=DEFAULT_RETRIES, choices=range(MAX_RETRIES + 1),
                        help="tries more for a probe that timed out")
    p_scan.add_argument("--workers", type=int, default=0, help="processes (default: one per core for big scans)")
    sub.add_parser("worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command in ("enrol", "run"):
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "version":
        print(VERSION)
        return 0
    if args.command == "enrol":
        return enrol(args.config, args.token_file)
    if args.command == "run":
        return run(args.config)
    if args.command == "worker":
        from .worker import main as worker_main

        return worker_main()
    return scan(args)


if __name__ == "__main__":
    sys.exit(main())
