"""Build (once, cached) the Debian 13 root filesystem that test databases and lab hosts boot from."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
CACHE_ROOT = Path(os.environ.get("MIPO_CACHE", "/var/cache/mipo"))
# Bump when the build steps change, so cached images are rebuilt.
BUILDER_VERSION = 3

BOOTSTRAP_PACKAGES = ["systemd", "systemd-sysv", "dbus", "iproute2"]
# Everything any lab host or test needs is baked in: lab hosts have no route to the internet.
IMAGE_PACKAGES = [
    "age",
    "ca-certificates",
    "curl",
    "iputils-ping",
    "less",
    "nftables",
    "nmap",
    "openssh-server",
    "openssl",
    "postgresql-17",
    "postgresql-17-timescaledb",
    "procps",
    "python3",
    "python3-venv",
    "sudo",
    "systemd-timesyncd",
    "tcpdump",
]


class ImageError(RuntimeError):
    """The image could not be built; the message says which step failed."""


def image_key() -> str:
    spec = {"suite": SUITE, "bootstrap": BOOTSTRAP_PACKAGES, "packages": IMAGE_PACKAGES, "v": BUILDER_VERSION}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def image_path() -> Path:
    return CACHE_ROOT / "images" / f"{SUITE}-{image_key()}"


def _run(step: str, cmd: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise ImageError(f"image build step '{step}' failed (exit {result.returncode}); see {log}")


def _in_image(root: Path, *cmd: str) -> list[str]:
    # nspawn (not bare chroot) gives /proc, /dev and /run without leaving mounts behind.
    return [
        "systemd-nspawn", "-q", "-D", str(root), "--register=no", "--keep-unit",
        "-E", "DEBIAN_FRONTEND=noninteractive", *cmd,
    ]


def build_image(progress: bool = True) -> Path:
    """Return the cached image, building it first when its package list changed or it is missing."""
    target = image_path()
    if (target / ".mipo-image-ok").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent test run waits instead of building twice
        if (target / ".mipo-image-ok").exists():
            return target
        work = target.with_name(target.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        log = target.with_name(target.name + ".log")
        log.write_text("")
        steps: list[tuple[str, list[str]]] = [
            ("debootstrap", ["debootstrap", "--variant=minbase", f"--include={','.join(BOOTSTRAP_PACKAGES)}",
                             SUITE, str(work), MIRROR]),
            ("apt-get update", _in_image(work, "apt-get", "update", "-q")),
            ("install packages", _in_image(work, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                                           *IMAGE_PACKAGES)),
            # Hosts create their own clusters; none ships in the image.
            ("drop default cluster", _in_image(work, "pg_dropcluster", "17", "main")),
            ("enable networkd", _in_image(work, "systemctl", "enable", "systemd-networkd", "ssh")),
            ("clean apt", _in_image(work, "apt-get", "clean")),
        ]
        for i, (name, cmd) in enumerate(steps, 1):
            if progress:
                print(f"[image {i}/{len(steps)}] {name}", file=sys.stderr, flush=True)
            _run(name, cmd, log)
        # Every host must generate its own identity and SSH host keys.
        (work / "etc" / "machine-id").write_text("")
        for key in (work / "etc" / "ssh").glob("ssh_host_*"):
            key.unlink()
        dropin = work / "etc" / "systemd" / "system" / "ssh.service.d"
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "10-host-keys.conf").write_text(
            "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"
        )
        (work / ".mipo-image-ok").write_text(image_key() + "\n")
        work.rename(target)
        for old in target.parent.iterdir():
            if old.is_dir() and old.name.startswith(f"{SUITE}-") and old != target:
                shutil.rmtree(old, ignore_errors=True)
    return target


if __name__ == "__main__":
    print(build_image())
