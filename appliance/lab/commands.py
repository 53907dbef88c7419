"""`mipo lab up | status | ssh HOST [CMD…] | down | destroy`: the lab's operator commands."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from appliance.lab.control import lab_destroy, lab_down, lab_status, lab_up
from appliance.lab.state import LabError, LabState, load_lab_state


def _progress(message: str) -> None:
    print(f"mipo lab: {message}", file=sys.stderr, flush=True)


def _fail(message: str) -> int:
    print(f"mipo lab: {message}", file=sys.stderr)
    return 1


def deploy_hook() -> Callable[[LabState], Any] | None:
    """`appliance.deploy.deploy_lab(state)` when the deploy is installed, else None (hosts only)."""
    try:
        module = importlib.import_module("appliance.deploy")
    except ModuleNotFoundError as exc:
        if exc.name == "appliance.deploy":
            return None
        raise
    hook = getattr(module, "deploy_lab", None)
    return hook if callable(hook) else None


def report_deploy(result: Any) -> int:
    """Print what the operator needs after `appliance.deploy.deploy_lab` (a `DeployResult`): the GUI URL,
    the CA file to trust and the first admin's credentials, or one line saying what failed."""
    if getattr(result, "unready", ""):
        return _fail(f"every operation succeeded, but the appliance does not answer: {result.unready}; "
                     "run `mipo lab up` again, or look at `mipo lab ssh edge -- journalctl -u traefik`")
    if not getattr(result, "ok", False):
        return _fail(f"deploy failed ({getattr(result, 'errors', '?')} operations failed); read "
                     f"{getattr(result, 'log', 'the deploy log')}, fix the cause, then run `mipo lab up` again")
    print(f"GUI:      {result.url}")
    print(f"CA file:  {result.ca_file}  (e.g. curl --cacert {result.ca_file} {result.url}/health)")
    if result.admin_username:
        print(f"Admin:    {result.admin_username} / {result.admin_password}  (shown once; change it after login)")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    try:
        up = lab_up(_progress)
    except LabError as exc:
        return _fail(str(exc))
    except (OSError, subprocess.SubprocessError) as exc:  # one line, never a traceback, and what to do next
        return _fail(f"bringing the lab up failed: {exc}. Hosts already booted stay up: run `mipo lab up` again")
    for name, units in up.degraded.items():
        _progress(f"warning: {name} booted degraded (failed: {', '.join(units)}); "
                  f"inspect with `mipo lab ssh {name} systemctl --failed`")
    hook = None if args.no_deploy else deploy_hook()
    if hook is None:
        _progress(f"lab up; state in {up.state.state_dir / 'lab.json'}; `mipo lab ssh HOST` to log in")
        return 0
    _progress("deploying the appliance into the lab")
    try:
        result = hook(up.state)
    except Exception as exc:  # any failure of the deploy ends in one line saying what to do
        return _fail(f"deploy failed: {exc}. The hosts stay up: fix the cause, then run `mipo lab up` again")
    return report_deploy(result)


def cmd_status(args: argparse.Namespace) -> int:
    rows, infra = lab_status()
    print(f"{'HOST':<11} {'GROUPS':<11} {'EXTERNAL':<13} {'INTERNAL':<13} STATE")
    for row in rows:
        state = f"running (pid {row.pid})" if row.pid else "stopped"
        print(f"{row.name:<11} {','.join(row.groups):<11} {row.addresses.get('external', '-'):<13} "
              f"{row.addresses.get('internal', '-'):<13} {state}")
    for what, ok in infra.items():
        print(f"{what}: {'yes' if ok else 'no'}")
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    try:
        argv = load_lab_state().ssh_command(args.host, *args.cmd)
    except LabError as exc:
        return _fail(str(exc))
    os.execvp(argv[0], argv)  # noqa: S606 - replacing this process with ssh is the point


def cmd_down(args: argparse.Namespace) -> int:
    try:
        lab_down(_progress)
    except LabError as exc:
        return _fail(str(exc))
    _progress("hosts stopped; their state is kept (`mipo lab up` resumes, `mipo lab destroy` removes)")
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    try:
        lab_destroy(_progress)
    except LabError as exc:
        return _fail(str(exc))
    _progress("lab destroyed (the image, the apt cache and the wheelhouse are kept)")
    return 0


def add_lab_parser(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="the local lab: Debian 13 hosts in systemd-nspawn (as root)")
    cmds = lab.add_subparsers(dest="lab_command", required=True)
    up = cmds.add_parser("up", help="boot the lab hosts (reusing what runs), then deploy into them")
    up.add_argument("--no-deploy", action="store_true", help="boot the hosts only")
    up.set_defaults(func=cmd_up)
    cmds.add_parser("status", help="hosts, addresses, running or not").set_defaults(func=cmd_status)
    ssh = cmds.add_parser("ssh", help="log in to a lab host as root (or run a command there)")
    ssh.add_argument("host")
    ssh.add_argument("cmd", nargs=argparse.REMAINDER, help="command to run instead of a login shell")
    ssh.set_defaults(func=cmd_ssh)
    cmds.add_parser("down", help="stop the hosts, keep their state").set_defaults(func=cmd_down)
    cmds.add_parser("destroy", help="remove the hosts, the key, the lab's CA and secrets, the bridges").set_defaults(
        func=cmd_destroy)
