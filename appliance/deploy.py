"""`mipo check` / `mipo deploy` and the lab's deploy: run pyinfra on the appliance file, report in one line."""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import ConfigError

if TYPE_CHECKING:
    from appliance.lab.state import LabState

REPO = Path(__file__).resolve().parent.parent
INVENTORY = REPO / "inventory.py"
DEPLOY_FILE = REPO / "provision" / "deploy.py"
LAB_DEPLOY_DIR = "deploy"  # under the lab's state dir: CA, secrets, wheelhouse, the generated appliance file
# pyinfra's closing table: "Grand total  <hosts>  <changed>  <errors>  <unchanged>" ("-" for zero).
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TOTAL = re.compile(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)")


@dataclass(frozen=True)
class DeployResult:
    """What a deploy did: pyinfra's exit status, how many operations changed something, how to log in."""

    returncode: int
    changed: int
    errors: int
    log: Path
    url: str = ""
    ca_file: str = ""
    admin_username: str = ""
    admin_password: str = ""
    revision: str = ""  # the commit deployed ("" for a working-tree deploy)
    unready: str = ""   # what did not answer through the edge after the operations succeeded ("" when all did)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.errors == 0 and not self.unready


# Answered through the edge once a deploy is done: the manager, and ingest (an unauthenticated, tiny file).
READY_PATHS = ("/health", "/scanner/agent.pyz.sha256")


def wait_ready(url: str, ca_file: str, timeout: float = 90.0) -> str:
    """"" once every READY_PATHS answers 200 through the edge, else what the last attempt got.

    Units restarted by the deploy take a moment to listen, and Traefik takes a health-check interval to
    send traffic to them again: a deploy that returned at once left the scanner API answering 503 to
    whoever came first (an install command run right after `mipo lab up`)."""
    import ssl
    import time
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=ca_file or None)
    deadline, last = time.monotonic() + timeout, ""
    pending = list(READY_PATHS)
    while True:
        for path in list(pending):
            try:
                with urllib.request.urlopen(url.rstrip("/") + path, timeout=5, context=context) as answer:  # noqa: S310
                    answer.read()
                pending.remove(path)
            except urllib.error.HTTPError as exc:
                last = f"{path}: HTTP {exc.code}"
            except (OSError, ssl.SSLError) as exc:
                last = f"{path}: {getattr(exc, 'reason', exc)}"
        if not pending:
            return ""
        if time.monotonic() > deadline:
            return f"{url} did not answer within {timeout:.0f} s ({last})"
        time.sleep(1)


def _count(text: str) -> int:
    return 0 if text == "-" else int(text)


def parse_totals(output: str) -> tuple[int, int]:
    """(changed, errors) from pyinfra's results table; raises ValueError when there is no table."""
    found = _TOTAL.findall(output)
    if not found:
        raise ValueError("pyinfra printed no results table")
    _hosts, changed, errors, _unchanged = found[-1]
    return _count(changed), _count(errors)


def check(config: str | Path) -> int:
    """Validate the appliance file (hosts, groups, settings) without touching any host."""
    from provision.config import load_appliance

    try:
        appliance = load_appliance(config)
    except ConfigError as exc:
        print(f"mipo: config error: {exc}", file=sys.stderr)
        return 1
    groups = ", ".join(f"{g}={len(appliance.group(g))}" for g in ("edge", "manager", "ingest", "dispatcher",
                                                                   "backup", "db"))
    print(f"{config}: ok ({len(appliance.hosts)} hosts: {groups}; public URL {appliance.public_url})")
    return 0


def run_deploy(config: str | Path, inventory: str | Path = INVENTORY, revision: str | None = None) -> DeployResult:
    """Validate, then run `pyinfra inventory.py provision/deploy.py` with progress lines and a full log.

    `revision`: the commit to deploy (default HEAD, resolved once here so all hosts get the same code).
    """
    from provision.config import load_appliance
    from provision.controller import prepare_appliance
    from provision.wheelhouse import source_revision

    appliance = load_appliance(config)  # ConfigError before any host is contacted
    appliance.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = appliance.state_dir / "deploy.log"
    env = {**os.environ, "MIPO_APPLIANCE": str(Path(config).resolve()), "PYTHONUNBUFFERED": "1"}
    revision = revision or source_revision()
    if revision:
        env["MIPO_WHEEL_REV"] = revision
    # CA, certificates, secrets and wheelhouse first, here: a failure is one line before any host is touched.
    prepare_appliance(appliance, revision)
    cmd = [sys.executable, "-m", "pyinfra", "-y", "--parallel", "10", str(inventory), str(DEPLOY_FILE)]
    output: list[str] = []
    # One deploy at a time per appliance: two test sessions sharing the lab would otherwise interleave.
    with open(appliance.state_dir / "deploy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with log.open("w") as out:
            log.chmod(0o600)  # operation output is not meant to hold secrets, but stays root-only anyway
            # Run from the state dir: pyinfra drops pyinfra-debug.log into its working directory on a crash.
            proc = subprocess.Popen(cmd, cwd=appliance.state_dir, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                line = _ANSI.sub("", line)
                out.write(line)
                out.flush()
                output.append(line)
                if line.startswith("--> Starting operation:"):
                    print(f"mipo: {line.removeprefix('--> Starting operation:').strip()}", file=sys.stderr)
            returncode = proc.wait()
    try:
        changed, errors = parse_totals("".join(output))
    except ValueError:
        changed, errors = 0, 1
    ca_file = appliance.deploy.edge_ca or str(appliance.state_dir / "pki" / "ca.crt")
    unready = wait_ready(appliance.public_url, ca_file) if returncode == 0 and errors == 0 else ""
    return DeployResult(returncode, changed, errors, log, url=appliance.public_url, ca_file=ca_file,
                        revision=revision or "", unready=unready)


def deploy(config: str | Path, inventory: str | Path = INVENTORY) -> int:
    """`mipo deploy`: 0 when every operation succeeded; one line saying what failed otherwise."""
    try:
        result = run_deploy(config, inventory)
    except ConfigError as exc:
        print(f"mipo: config error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # wheelhouse/PKI preparation: one line, then the log
        print(f"mipo: deploy failed before touching any host: {exc}", file=sys.stderr)
        return 1
    if result.unready:
        print(f"mipo: every operation succeeded, but the appliance does not answer: {result.unready}; "
              "check `systemctl status traefik mipo-manager mipo-ingest` on its hosts (or, if this machine "
              "cannot reach that address, check it from one that can)", file=sys.stderr)
        return 1
    if not result.ok:
        print(f"mipo: deploy failed ({result.errors} operations failed, exit {result.returncode}); "
              f"read {result.log}, fix the cause, then run `mipo deploy` again", file=sys.stderr)
        return 1
    print(f"mipo: deployed; {result.changed} operations changed something. Open {result.url} "
          f"(trust {result.ca_file})")
    return 0


# --- the lab: the embedded default appliance -------------------------------------------------------

def _lab_backup_recipient(deploy_dir: Path) -> str:
    """The lab's age recipient; the identity stays on this machine (an operator would keep it offline)."""
    import pyrage

    identity_file = deploy_dir / "backup-identity.txt"
    if not identity_file.exists():
        identity = pyrage.x25519.Identity.generate()
        fd = os.open(identity_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"# public key: {identity.to_public()}\n{identity}\n")
    for line in identity_file.read_text().splitlines():
        if line.startswith("# public key: "):
            return line.removeprefix("# public key: ").strip()
    raise ConfigError(f"{identity_file}: no '# public key:' line; delete the file to make a new lab key")


def lab_appliance_document(state: LabState) -> dict[str, Any]:
    """The appliance file of the lab: its hosts, the controller's addresses, the lab network as scope."""
    deploy_dir = state.state_dir / LAB_DEPLOY_DIR
    deploy_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    internal, external = state.networks["internal"], state.networks["external"]
    appliance_groups = {"edge", "manager", "ingest", "dispatcher", "backup", "db"}
    hosts = []
    for h in state.hosts:
        groups = [g for g in h.groups if g in appliance_groups]
        if not groups:
            continue  # scanners and the target are not appliance hosts
        entry: dict[str, Any] = {"name": h.name, "groups": groups, "address": h.addresses["internal"],
                                 "ssh_address": h.ssh_address}
        if "external" in h.addresses:
            entry["external_address"] = h.addresses["external"]
        hosts.append(entry)
    return {
        "deploy": {
            "state_dir": str(deploy_dir), "ssh_user": state.ssh_user, "ssh_key": str(state.ssh_key),
            "strict_host_keys": "no", "admin_networks": [f"{internal.gateway}/32"],
            "package_proxy": internal.apt_proxy, "edge_names": ["edge", "mipo.lab"],
        },
        "hosts": hosts,
        "settings": {
            "scope": {"authorised": [external.cidr]},
            "backup": {"recipient": _lab_backup_recipient(deploy_dir)},
        },
    }


def _toml_document(doc: dict[str, Any]) -> str:
    from provision.render import _toml, _toml_value

    head = "# The lab's appliance file, generated from lab.json by `mipo lab up`; rewritten every time.\n"
    body = _toml({"deploy": doc["deploy"], "settings": doc["settings"]})
    hosts = "".join(
        "\n[[hosts]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in h.items()) for h in doc["hosts"]
    )
    return head + body + hosts


def lab_appliance_file(state: LabState | None = None) -> Path:
    """Write (when changed) and return the lab's appliance file."""
    from appliance.lab.state import load_lab_state

    state = state or load_lab_state()
    path = state.state_dir / LAB_DEPLOY_DIR / "appliance.toml"
    text = _toml_document(lab_appliance_document(state))
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        path.chmod(0o600)
    return path


def deploy_lab(state: LabState) -> DeployResult:
    """Deploy the whole appliance into the booted lab (what `mipo lab up` runs after booting hosts)."""
    from provision.config import load_appliance
    from provision.controller import initial_admin_password
    from provision.units import ADMIN_USERNAME

    path = lab_appliance_file(state)
    result = run_deploy(path)
    if not result.ok:
        return result
    # Shown once per lab: the first successful deploy into freshly created hosts hands the password over,
    # later ones do not (it stays root-only in /root/mipo-initial-admin-password on the manager). The lab's
    # SSH key is made anew with its hosts, so it tells one lab from the next.
    state_dir = load_appliance(path).state_dir
    shown = state_dir / "secrets" / "initial-admin-password.shown"
    key_file = state.ssh_key.with_name(state.ssh_key.name + ".pub")
    this_lab = hashlib.sha256(key_file.read_bytes() if key_file.exists() else b"").hexdigest()
    if shown.exists() and shown.read_text().strip() == this_lab:
        return result
    password = initial_admin_password(state_dir)
    shown.write_text(this_lab + "\n")
    return replace(result, admin_username=ADMIN_USERNAME, admin_password=password)


# --- `mipo check` and `mipo deploy` ----------------------------------------------------------------

def _config_from(args: argparse.Namespace) -> Path | None:
    """--config, else $MIPO_APPLIANCE, else the lab's appliance file; None (after one line) when there is none."""
    from appliance.lab.state import LabError
    from provision.controller import appliance_path

    if args.config:
        return Path(args.config)
    try:
        return appliance_path()
    except LabError as exc:
        print(f"mipo: no appliance file given (--config PATH or $MIPO_APPLIANCE) and {exc}", file=sys.stderr)
        return None


def add_deploy_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `mipo check` and `mipo deploy` on the CLI's subcommands."""
    help_config = "appliance file (default: $MIPO_APPLIANCE, else the local lab's)"
    for name, func, text in (
        ("check", check, "validate the appliance file and app settings; touches no host"),
        ("deploy", deploy, "deploy the appliance with pyinfra (inventory.py provision/deploy.py)"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("--config", help=help_config)
        parser.set_defaults(func=lambda args, func=func: 1 if (path := _config_from(args)) is None else func(path))
