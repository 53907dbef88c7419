"""`python -m app migrate | serve ROLE | dispatcher | create-admin | retention | backup-now`: unit entry points."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from app.config import ConfigError, Settings, load_settings

DEFAULT_CONFIG = "/etc/mipo/mipo.toml"
HTTP_ROLES = ("manager", "ingest", "backup")
EXIT_PENDING = 3  # `migrate --check`: a migration is pending (1 means the check itself failed)


def _serve(settings: Settings, role: str) -> int:
    import importlib

    import uvicorn

    module = importlib.import_module(f"app.roles.{role}.app")
    listen = {"manager": settings.manager, "ingest": settings.ingest, "backup": settings.backup_api}[role]
    # A role may put a thinner ASGI entry in front of its app (ingest: its hot scanner calls); create_app() still
    # lists every route the role serves.
    factory = getattr(module, "create_asgi", module.create_app)
    uvicorn.run(
        factory(settings),
        host=listen.host,
        port=listen.port,
        proxy_headers=False,  # forwarded headers are interpreted by the app, trusting only Traefik
        server_header=False,
        log_level="info",
        access_log=False,  # Traefik keeps the access log (without secrets)
        # uvloop and httptools are dependencies, so uvicorn's "auto" picks them. Idle keep-alive connections
        # outlive Traefik's (90 s idleConnTimeout): Traefik, not the app, closes them, so it never reuses a
        # connection the app is closing at that moment (a spurious 502).
        timeout_keep_alive=120,
        # Ingest answers only through Traefik, which dates every response it forwards (Go's HTTP server adds Date
        # when the backend sent none): uvicorn's own Date header would be one more header per heartbeat.
        date_header=role != "ingest",
    )
    return 0


def _migrate_check(settings: Settings) -> int:
    """`migrate --check`: 0 when every migration is applied, EXIT_PENDING when one is not, 1 when unknown."""
    import psycopg

    from app.db.migrate import MigrationError, pending_all

    try:
        pending = pending_all(settings)
    except MigrationError as exc:
        print(f"mipo: migrate --check: {exc}", file=sys.stderr)
        return 1
    except (psycopg.Error, OSError) as exc:
        print(f"mipo: migrate --check failed: {type(exc).__name__}: {exc}".strip(), file=sys.stderr)
        return 1
    for database, names in pending.items():
        print(f"{database}: pending {', '.join(names)}" if names else f"{database}: up to date")
    return EXIT_PENDING if any(pending.values()) else 0


def _create_admin(settings: Settings, username: str, password_file: str, *, only_if_no_users: bool = False) -> int:
    import asyncio

    import psycopg

    from app.db.connect import conninfo
    from app.domain.users.repository import count_users
    from app.domain.users.service import ensure_admin
    from app.errors import DomainError

    try:
        with open(password_file) as f:
            password = f.read().rstrip("\n")
    except OSError as exc:
        print(f"mipo: create-admin: cannot read {password_file}: {exc.strerror}", file=sys.stderr)
        return 1

    async def run() -> bool | None:
        async with await psycopg.AsyncConnection.connect(conninfo(settings, "config")) as conn:
            async with conn.transaction():
                if only_if_no_users and await count_users(conn, query=None) > 0:
                    return None
                return await ensure_admin(conn, "deploy", username, password)

    try:
        created = asyncio.run(run())
    except DomainError as exc:
        print(f"mipo: create-admin: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"mipo: create-admin failed: {type(exc).__name__}: {exc}".strip(), file=sys.stderr)
        return 1
    if created is None:
        print("the config database has users; no first admin created")
    elif created:
        print(f"created admin {username!r}; the password must be changed at first login")
    else:
        print(f"user {username!r} already exists; left unchanged")
    return 0


def _retention(settings: Settings) -> int:
    import psycopg

    from app.domain.results.retention import run_retention

    try:
        report = run_retention(settings)
    except psycopg.Error as exc:
        print(f"mipo: retention failed: {type(exc).__name__}: {exc}".strip(), file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="mipo runtime entry points")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"settings file (default {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser("migrate", help="apply the migrations of the three databases (idempotent)")
    migrate.add_argument("--check", action="store_true",
                         help=f"apply nothing; exit {EXIT_PENDING} when a migration is pending, 1 when it cannot tell")
    serve = sub.add_parser("serve", help="run an HTTP role")
    serve.add_argument("role", choices=HTTP_ROLES)
    sub.add_parser("dispatcher", help="run the dispatcher (single instance; standby while another runs)")
    sub.add_parser("check-config", help="validate the settings file and exit")
    sub.add_parser("retention", help="drop observations past the retention window (as the results schema owner)")
    sub.add_parser("backup-now", help="back up the three databases, apply backup retention, check freshness (timer)")
    admin = sub.add_parser("create-admin", help="create the first admin unless it exists (password change forced)")
    admin.add_argument("--username", default="admin")
    admin.add_argument("--password-file", required=True, help="file holding the initial password (root-only)")
    admin.add_argument("--if-no-users", action="store_true",
                       help="create it only when the config database has no user at all (the deploy's first admin)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"mipo: config error: {exc}", file=sys.stderr)
        return 2

    if args.command == "check-config":
        print(f"{args.config}: ok")
        return 0
    if args.command == "migrate":
        from app.db.migrate import MigrationError, migrate_all

        if args.check:
            return _migrate_check(settings)
        try:
            for report in migrate_all(settings):
                print(report.line())
        except (MigrationError, OSError) as exc:
            print(f"mipo: migrate failed: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # psycopg connection errors: one line, not a traceback
            print(f"mipo: migrate failed: {type(exc).__name__}: {exc}".strip(), file=sys.stderr)
            return 1
        return 0
    if args.command == "serve":
        return _serve(settings, args.role)
    if args.command == "create-admin":
        return _create_admin(settings, args.username, args.password_file, only_if_no_users=args.if_no_users)
    if args.command == "retention":
        return _retention(settings)
    if args.command == "backup-now":
        from app.domain.backups.cycle import backup_now_command

        return backup_now_command(settings)
    if args.command == "dispatcher":
        from app.roles.dispatcher.main import main as dispatcher_main

        return dispatcher_main(settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())
