"""Polling for tests: call a check until it holds or a deadline passes, then fail saying what and what was seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float, what: str, *, interval: float = 0.2,
               detail: Callable[[], object] | None = None) -> T:
    """Call `check` every `interval` s while `timeout` s have not passed; return its first truthy value.

    Otherwise raise AssertionError naming `what` and the last value `check` returned, or `detail()` (state
    gathered at failure time, e.g. a log path or the rows) when given. A check may raise to stop early."""
    deadline = time.monotonic() + timeout
    value: T | None = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    seen = detail() if detail is not None else f"last seen: {value!r}"
    raise AssertionError(f"not within {timeout:g} s: {what} ({seen})")
