"""The `mipo` operator CLI: test, check, deploy and the local lab."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.deploy import add_deploy_parsers
from appliance.lab.commands import add_lab_parser

REPO = Path(__file__).resolve().parent.parent


def _fail(message: str) -> int:
    print(f"mipo: {message}", file=sys.stderr)
    return 1


def cmd_test(args: argparse.Namespace) -> int:
    """Every test tier: unit, integration, api/browser and lab (unless narrowed by pytest args)."""
    from appliance.image import ImageError, build_image

    if os.geteuid() != 0:
        return _fail("the test suite boots containers and databases: run it as root")
    try:
        print(f"mipo: Debian 13 image at {build_image()}", file=sys.stderr)
    except ImageError as exc:
        return _fail(f"{exc}. Check that deb.debian.org is reachable, then run again.")
    pytest_args = args.pytest_args or ["tests"]
    # pytest's own exit status is returned unchanged: 5 ("no tests collected") is a failure too.
    return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=REPO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mipo", description="operate a mipo appliance")
    sub = parser.add_subparsers(dest="command", required=True)
    test = sub.add_parser("test", help="run every test tier (installs what is missing)")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments passed to pytest")
    test.set_defaults(func=cmd_test)
    add_lab_parser(sub)
    add_deploy_parsers(sub)  # mipo check, mipo deploy
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
