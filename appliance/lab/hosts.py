"""One lab host: its overlay root over the shared image, the files seeded before boot, its nspawn."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.lab import network, procs
from appliance.lab.state import SSH_OPTIONS, LabError
from appliance.lab.target import install_target_services
from appliance.lab.topology import NETWORKS, HostSpec, apt_proxy_conf, hosts_file, network_file


@dataclass(frozen=True)
class HostDirs:
    """Where one host lives under the state dir: overlay layers, its merged root, log and pid."""

    base: Path

    @classmethod
    def of(cls, state_dir: Path, name: str) -> HostDirs:
        return cls(state_dir / "hosts" / name)

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def log(self) -> Path:
        return self.base / "nspawn.log"

    @property
    def pidfile(self) -> Path:
        return self.base / "nspawn.pid"

    @property
    def image_record(self) -> Path:
        return self.base / "image"


def _marker(dirs: HostDirs) -> str:
    # The root path appears in exactly one nspawn command line: this host's.
    return f"-D {dirs.root} "


def running_pid(dirs: HostDirs) -> int | None:
    return procs.read_pid(dirs.pidfile, _marker(dirs))


def is_running(dirs: HostDirs) -> bool:
    return running_pid(dirs) is not None


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as info:
        return any(line.split()[4] == target for line in info)


def recorded_image(dirs: HostDirs) -> str | None:
    try:
        return dirs.image_record.read_text().strip()
    except FileNotFoundError:
        return None


def mount_root(dirs: HostDirs, image: Path) -> None:
    """Mount the host's overlay root: the image read-only below, the host's own changes above."""
    if is_mounted(dirs.root):
        return
    for d in (dirs.upper, dirs.work, dirs.root):
        d.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={image},upperdir={dirs.upper},workdir={dirs.work}"
    network.run(f"mount the overlay root of {dirs.base.name}",
                ["mount", "-t", "overlay", "overlay", "-o", options, str(dirs.root)])
    dirs.image_record.write_text(f"{image}\n")


def unmount_root(dirs: HostDirs) -> None:
    if not is_mounted(dirs.root):
        return
    if subprocess.run(["umount", str(dirs.root)], capture_output=True, check=False).returncode != 0:
        # A process still holding a file there must not keep the host's state pinned forever.
        network.run(f"unmount the root of {dirs.base.name}", ["umount", "--lazy", str(dirs.root)])


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)


def seed(spec: HostSpec, root: Path, public_key: str) -> None:
    """Files each host needs before it boots (written through the mounted overlay, so into its upper layer)."""
    _write(root / "etc/hostname", f"{spec.name}\n")
    # Each host its own machine id (the image ships an empty one, and nspawn would otherwise hand every host
    # the same): journals, and the scanner agent's host identity, must tell the hosts apart. Derived from the
    # lab's key so it is stable across reboots of one lab and different in the next lab.
    _write(root / "etc/machine-id", uuid.uuid5(uuid.NAMESPACE_URL, f"mipo-lab:{public_key.strip()}:{spec.name}").hex
           + "\n", 0o444)
    _write(root / "etc/hosts", hosts_file(spec))
    # No name server: the lab has no route out; apt resolves names through the proxy.
    _write(root / "etc/resolv.conf", "# mipo lab: no DNS (no route out); apt goes through its proxy\n")
    for net in spec.networks:
        _write(root / f"etc/systemd/network/10-mipo-{net.interface}.network",
               network_file(net, spec.addresses[net.key]))
    _write(root / "etc/apt/apt.conf.d/01proxy", apt_proxy_conf(spec))
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    _write(ssh_dir / "authorized_keys", public_key, 0o600)
    if "target" in spec.groups:
        install_target_services(root, spec.addresses["external"])


def refresh_apt_proxy(spec: HostSpec, root: Path) -> None:
    """Keep a running host's apt proxy setting in step with the lab's proxy (its address may have changed)."""
    path = root / "etc/apt/apt.conf.d/01proxy"
    wanted = apt_proxy_conf(spec)
    if not path.exists() or path.read_text() != wanted:
        _write(path, wanted)


def nspawn_argv(spec: HostSpec, dirs: HostDirs) -> list[str]:
    argv = [
        "systemd-nspawn", "-D", str(dirs.root), "--boot",
        # No system bus and no systemd as PID 1 here: nspawn must not try to register a machine/scope.
        "--register=no", "--keep-unit",
        f"--machine={spec.name}", f"--hostname={spec.name}",
        "--resolv-conf=off", "--link-journal=no", "--timezone=off",
    ]
    for net in spec.networks:
        argv.append(f"--network-veth-extra={spec.host_side_interface(net.key)}:{net.interface}")
    return argv


def start(spec: HostSpec, dirs: HostDirs) -> int:
    """Boot the host detached; return its nspawn pid once its network links are on the bridges."""
    for net in spec.networks:
        stale = spec.host_side_interface(net.key)
        if network.link_exists(stale):  # left by a crash; nspawn would refuse to create it
            network.run(f"remove stale link {stale}", ["ip", "link", "del", stale])
    # cgroup v2 inside every host, as on a real Debian 13 machine, even where this machine runs the
    # hybrid layout (systemd 257 deprecates v1; BPF-based unit sandboxing needs v2).
    env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
    proc = procs.start_detached(nspawn_argv(spec, dirs), dirs.log, dirs.pidfile, env)
    attach_links(spec, dirs, lambda: proc.poll() is None)
    return proc.pid


def attach_links(spec: HostSpec, dirs: HostDirs, is_running: Callable[[], bool], timeout: float = 30) -> None:
    """Put the host-side ends of its veth pairs on the bridges (nspawn creates them but attaches none)."""
    deadline = time.monotonic() + timeout
    for net in spec.networks:
        interface = spec.host_side_interface(net.key)
        while not network.link_exists(interface):
            if not is_running():
                raise LabError(f"host {spec.name} exited while starting: {log_tail(dirs)} (log {dirs.log})")
            if time.monotonic() > deadline:
                raise LabError(f"host {spec.name}: {interface} did not appear within {timeout:.0f} s; see {dirs.log}")
            time.sleep(0.1)
        network.attach(interface, NETWORKS[net.key].bridge)


def log_tail(dirs: HostDirs, lines: int = 1) -> str:
    try:
        text = dirs.log.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "no log"
    return " | ".join(text[-lines:]) if text else "empty log"


def stop(dirs: HostDirs, timeout: float = 60) -> None:
    """Ask the host to power off (SIGTERM to nspawn), wait, then unmount its root."""
    pid = running_pid(dirs)
    if pid is not None:
        procs.stop(pid, _marker(dirs), timeout)
    unmount_root(dirs)


# Under heavy load, systemd in a container sometimes fails to spawn an early oneshot (journal: "Failed to
# spawn executor: No such file or directory", Result=resources). Such a unit never ran, so starting it
# once more is what a retry at boot would do; units that ran and failed are left alone and reported.
RETRY_SPAWN_FAILURES = (
    "for u in $(systemctl --failed --no-legend --plain | cut -d' ' -f1); do "
    "if [ \"$(systemctl show -P Result \"$u\")\" = resources ]; then "
    "systemctl reset-failed \"$u\"; systemctl start \"$u\" >/dev/null 2>&1; fi; done; "
    "systemctl --failed --no-legend --plain | cut -d' ' -f1"
)


def wait_ready(spec: HostSpec, dirs: HostDirs, ssh_key: Path, timeout: float = 240) -> list[str]:
    """Wait until SSH answers and boot finished; return the failed units (empty when `running`)."""
    address = spec.ssh_address
    ssh = ["ssh", "-i", str(ssh_key), *SSH_OPTIONS, f"root@{address}"]
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if running_pid(dirs) is None:
            raise LabError(f"host {spec.name} stopped while booting: {log_tail(dirs)} (log {dirs.log})")
        try:
            result = subprocess.run([*ssh, "systemctl is-system-running --wait"], capture_output=True, text=True,
                                    timeout=max(5.0, deadline - time.monotonic()), check=False)
        except subprocess.TimeoutExpired:
            break
        state = result.stdout.strip()
        if state == "running":
            return []
        if state == "degraded":
            try:
                failed = subprocess.run([*ssh, RETRY_SPAWN_FAILURES], capture_output=True, text=True,
                                        timeout=max(5.0, deadline - time.monotonic()), check=False)
            except subprocess.TimeoutExpired:
                # A retried unit that hangs (or SSH stalling while the host's firewall loads) is not a reason
                # to abort the whole `lab up`: ask again until the deadline.
                last = "degraded (retrying failed units timed out)"
                continue
            return failed.stdout.split()
        last = state or (result.stderr.strip().splitlines() or ["ssh failed"])[-1]
        time.sleep(1)
    raise LabError(f"host {spec.name} ({address}) not ready within {timeout:.0f} s (last: {last}); "
                   f"see {dirs.log}, then `mipo lab down` and `mipo lab up`")
