"""Bring the whole lab up, report it, take it down: ordered, re-runnable steps over hosts and network."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from appliance.deploy import LAB_DEPLOY_DIR
from appliance.lab import aptproxy, hosts, network
from appliance.lab.keys import ensure_ssh_key
from appliance.lab.state import LabError, LabState, build_state, save_lab_state, state_dir, state_file
from appliance.lab.topology import HOSTS, NETWORKS, HostSpec, host_spec

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def lab_lock(root: Path) -> Iterator[None]:
    """One lab operation at a time (two test sessions may share a lab)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "lab.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab creates bridges and boots containers: run it as root")


@dataclass(frozen=True)
class UpResult:
    state: LabState
    started: list[str]  # hosts booted by this call (the others were already running)
    degraded: dict[str, list[str]]  # host → failed units, for hosts that booted "degraded"


def _recreate_if_image_changed(spec: HostSpec, dirs: hosts.HostDirs, image: Path, progress: Progress) -> None:
    recorded = hosts.recorded_image(dirs)
    if recorded is None or recorded == str(image):
        return
    # An upper layer only makes sense over the lower it was written against.
    progress(f"image changed: recreating host {spec.name} (its previous changes are discarded)")
    hosts.stop(dirs)
    shutil.rmtree(dirs.base)


def lab_up(progress: Progress = _quiet, root: Path | None = None) -> UpResult:
    """Image, key, bridges, firewall, apt proxy, then every host booted and answering (idempotent)."""
    from appliance.image import ImageError, build_image, image_path

    _require_root()
    root = root or state_dir()
    with lab_lock(root):
        # Building a new image deletes the old one, which running hosts still have mounted below them.
        for spec in HOSTS:
            dirs = hosts.HostDirs.of(root, spec.name)
            if hosts.running_pid(dirs) is not None and hosts.recorded_image(dirs) != str(image_path()):
                progress(f"the image changed: stopping {spec.name} before it is rebuilt")
                hosts.stop(dirs)
        try:
            image = build_image(progress=True)
        except ImageError as exc:
            raise LabError(f"{exc}. Check that deb.debian.org is reachable, then run `mipo lab up` again") from None
        key = ensure_ssh_key(root)
        progress("network: bridges mipo-ext 198.18.0.1/24, mipo-int 198.18.1.1/24, nft table inet mipo_lab")
        network.ensure_bridges()
        network.ensure_firewall()
        aptproxy.ensure_running(root)
        state = build_state(root, image, key)
        save_lab_state(state)
        public_key = key.with_suffix(".pub").read_text()
        started: list[tuple[HostSpec, hosts.HostDirs]] = []
        waiting: list[tuple[HostSpec, hosts.HostDirs]] = []
        for spec in HOSTS:
            dirs = hosts.HostDirs.of(root, spec.name)
            pid = hosts.running_pid(dirs)
            if pid is not None and hosts.recorded_image(dirs) == str(image):
                # Re-attach in case a previous `up` was interrupted (long started: /proc shows its command line).
                hosts.attach_links(spec, dirs, functools.partial(hosts.is_running, dirs))
                hosts.refresh_apt_proxy(spec, dirs.root)
                waiting.append((spec, dirs))
                continue
            _recreate_if_image_changed(spec, dirs, image, progress)
            hosts.mount_root(dirs, image)
            hosts.seed(spec, dirs.root, public_key)
            hosts.start(spec, dirs)
            started.append((spec, dirs))
        if started:
            progress(f"booting {len(started)} host(s): {', '.join(s.name for s, _ in started)}")
        waiting += started
        with ThreadPoolExecutor(max_workers=len(waiting)) as pool:
            failed = dict(zip([s.name for s, _ in waiting],
                              pool.map(lambda sd: hosts.wait_ready(sd[0], sd[1], key), waiting), strict=True))
        degraded = {name: units for name, units in failed.items() if units}
        progress(f"{len(waiting)} hosts up" + (f"; degraded: {degraded}" if degraded else ""))
        return UpResult(state, [s.name for s, _ in started], degraded)


def stop_host(name: str, root: Path | None = None) -> None:
    """Power one host off (its state is kept), e.g. to show the appliance survives losing it."""
    _require_root()
    root = root or state_dir()
    host_spec(name)  # an unknown name fails here, naming the lab's hosts
    with lab_lock(root):
        hosts.stop(hosts.HostDirs.of(root, name))


def start_host(name: str, root: Path | None = None) -> list[str]:
    """Boot one stopped host of an up lab again; return its failed units (empty when `running`)."""
    from appliance.lab.state import load_lab_state

    _require_root()
    root = root or state_dir()
    spec = host_spec(name)
    state = load_lab_state(state_file(root))
    with lab_lock(root):
        dirs = hosts.HostDirs.of(root, name)
        if hosts.running_pid(dirs) is None:
            hosts.mount_root(dirs, state.image)
            hosts.seed(spec, dirs.root, state.ssh_key.with_suffix(".pub").read_text())
            hosts.start(spec, dirs)
        return hosts.wait_ready(spec, dirs, state.ssh_key)


def lab_down(progress: Progress = _quiet, root: Path | None = None) -> None:
    """Power every host off and unmount its root; keep its state, the key and the bridges."""
    _require_root()
    root = root or state_dir()
    with lab_lock(root):
        _stop_all(root, progress)


def _stop_all(root: Path, progress: Progress) -> None:
    running = [spec.name for spec in HOSTS if hosts.running_pid(hosts.HostDirs.of(root, spec.name)) is not None]
    if running:
        progress(f"stopping {len(running)} host(s): {', '.join(running)}")
    with ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
        list(pool.map(lambda spec: hosts.stop(hosts.HostDirs.of(root, spec.name)), HOSTS))
    aptproxy.stop(root)


def lab_destroy(progress: Progress = _quiet, root: Path | None = None) -> None:
    """Everything `down` does, then remove the hosts' state, the lab key, the lab appliance's CA and secrets,
    the bridges and nft table. The image, the apt cache and the wheelhouse are kept."""
    _require_root()
    root = root or state_dir()
    with lab_lock(root):
        _stop_all(root, progress)
        for spec in HOSTS:
            dirs = hosts.HostDirs.of(root, spec.name)
            if hosts.is_mounted(dirs.root):
                raise LabError(f"{dirs.root} is still mounted: unmount it, then run `mipo lab destroy` again")
        progress(f"removing {root}/hosts, the lab key, bridges and the nft table")
        shutil.rmtree(root / "hosts", ignore_errors=True)
        shutil.rmtree(root / "ssh", ignore_errors=True)
        shutil.rmtree(root / "apt-cacher-ng", ignore_errors=True)
        _remove_lab_appliance_state(root)
        state_file(root).unlink(missing_ok=True)
        network.remove_bridges()
        network.remove_firewall()


def _remove_lab_appliance_state(root: Path) -> None:
    """The lab appliance's CA, secrets and first-admin password die with its hosts: a new lab gets new ones.
    Only the wheelhouse (a content-addressed build cache) is kept, and the browser tests' remembered password
    goes too (it opened the destroyed manager, not the next one)."""
    deploy = root / LAB_DEPLOY_DIR
    if deploy.is_dir():
        for entry in deploy.iterdir():
            if entry.name == "wheelhouse":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    for leftover in (*root.glob("browser-profile-*"), root / "browser-admin-password"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@dataclass(frozen=True)
class HostStatus:
    name: str
    groups: tuple[str, ...]
    addresses: dict[str, str]
    pid: int | None


def lab_status(root: Path | None = None) -> tuple[list[HostStatus], dict[str, bool]]:
    """Per host: addresses and nspawn pid (None = stopped); plus whether bridges and proxy are up."""
    root = root or state_dir()
    rows = [HostStatus(s.name, s.groups, s.addresses, hosts.running_pid(hosts.HostDirs.of(root, s.name)))
            for s in HOSTS]
    infra = {f"bridge {n.bridge}": network.link_exists(n.bridge) for n in NETWORKS.values()}
    infra["apt proxy"] = aptproxy.running_pid(root) is not None
    for n in NETWORKS.values():
        if network.link_exists(n.bridge):
            infra[f"no routing from {n.bridge}"] = not network.bridge_forwarding_enabled(n.bridge)
    return rows, infra


def any_host_running(root: Path | None = None) -> bool:
    root = root or state_dir()
    return any(hosts.running_pid(hosts.HostDirs.of(root, s.name)) is not None for s in HOSTS)


# Leases let several test sessions share one lab: only the last one out may take it down.
def acquire_lease(root: Path | None = None) -> Path:
    leases = (root or state_dir()) / "leases"
    leases.mkdir(parents=True, exist_ok=True)
    lease = leases / str(os.getpid())
    lease.write_text("")
    return lease


def release_lease(lease: Path) -> bool:
    """Drop this lease; True when no other live process still holds one."""
    lease.unlink(missing_ok=True)
    others = False
    for other in lease.parent.iterdir():
        if other.name.isdigit() and Path(f"/proc/{other.name}").exists():
            others = True
        else:
            other.unlink(missing_ok=True)  # its holder died without releasing it
    return not others
