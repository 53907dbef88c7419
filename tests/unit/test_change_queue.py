"""The change-detection retry backoff: doubling from the first delay, capped, and reaching the cap before give-up."""

from __future__ import annotations

from app.domain.results.change_queue import MAX_ATTEMPTS, RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS, retry_after


def test_retry_delay_doubles_from_the_first_and_is_capped() -> None:
    assert [retry_after(n) for n in (1, 2, 3)] == [RETRY_FIRST_SECONDS, 2 * RETRY_FIRST_SECONDS,
                                                   4 * RETRY_FIRST_SECONDS]
    assert retry_after(MAX_ATTEMPTS) == RETRY_MAX_SECONDS
    assert retry_after(10_000) == RETRY_MAX_SECONDS  # no overflow, no unbounded wait


def test_a_failing_run_is_retried_for_hours_before_it_is_given_up() -> None:
    """Long enough to ride out a results-database restart or a long retention/backup lock."""
    total = sum(retry_after(n) for n in range(1, MAX_ATTEMPTS))
    assert 3 * 3600 <= total <= 6 * 3600
