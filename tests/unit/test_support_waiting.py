"""wait_until: the check's first truthy value comes back; a timeout names what was awaited and what was seen."""

from __future__ import annotations

import pytest

from tests.support.waiting import wait_until


def test_returns_the_first_truthy_value_of_the_check() -> None:
    answers = iter([None, [], ["row"], ["later"]])
    assert wait_until(lambda: next(answers), 10, "a row", interval=0.01) == ["row"]


def test_timeout_names_what_and_the_last_value_seen() -> None:
    with pytest.raises(AssertionError, match=r"^not within 0\.05 s: a row \(last seen: \[\]\)$"):
        wait_until(list, 0.05, "a row", interval=0.01)


def test_detail_replaces_the_last_value_in_the_failure() -> None:
    with pytest.raises(AssertionError, match=r"^not within 0\.05 s: a row \(see /tmp/x\.log\)$"):
        wait_until(lambda: 0, 0.05, "a row", interval=0.01, detail=lambda: "see /tmp/x.log")


def test_an_error_raised_by_the_check_ends_the_wait_at_once() -> None:
    def exited() -> bool:
        raise RuntimeError("the process exited")

    with pytest.raises(RuntimeError, match="the process exited"):
        wait_until(exited, 10, "the process ready")
