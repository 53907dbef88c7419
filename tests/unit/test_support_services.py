"""The tests' own process teardown: `stop_process` ends a role cleanly, or kills one that ignores SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.support.services import stop_process


def test_stop_process_terminates_a_process_that_honours_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop_process(proc)
    assert proc.returncode == -signal.SIGTERM


def test_stop_process_kills_and_reaps_a_process_that_ignores_sigterm() -> None:
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"  # the handler is in place
    stop_process(proc, timeout=0.5)
    assert proc.returncode == -signal.SIGKILL
    proc.stdout.close()


def test_stop_process_leaves_an_exited_process_alone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    stop_process(proc)
    assert proc.returncode == 3
