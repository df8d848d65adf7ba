"""The bridge to stamina, driven without a network: attempts, waits, the test switch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import stamina

from bulkkm.engine._retrying import retrying
from bulkkm.errors import ApiError, OntapError
from bulkkm.retry import RetryOn, RetryPolicy, classify

NO_WAIT = RetryPolicy(attempts=4, timeout=30.0, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)
LONG_WAIT = RetryPolicy(attempts=4, timeout=300.0, wait_initial=30.0, wait_max=60.0)
"""Backoffs no test may sleep: a run under ``asyncio.timeout`` shows they were not."""


def transient(retry_after: float | None = None) -> ApiError:
    """A failure worth another try (``retry_after``: what a 429 asked for)."""
    code = "2621573"
    return ApiError(
        "locked", cluster="c1", code=code, category=classify(code, 400), retry_after=retry_after
    )


class Script:
    """A unit of work failing with each scripted error in turn, then succeeding."""

    def __init__(self, *errors: Exception) -> None:
        """The errors of the first attempts."""
        self.errors = list(errors)
        self.attempts: list[int] = []
        self.retries: list[tuple[int, float, str]] = []

    async def __call__(self, attempt: int) -> str:
        """One attempt."""
        self.attempts.append(attempt)
        if self.errors:
            raise self.errors.pop(0)
        return "done"

    def report(self, attempt: int, wait: float, exc: OntapError) -> None:
        """The reporter: record each retry."""
        self.retries.append((attempt, wait, exc.message))


@pytest.fixture
async def guard() -> AsyncIterator[None]:
    """No test here may hang on a backoff."""
    async with asyncio.timeout(10):
        yield


async def test_a_first_attempt_that_succeeds_consults_nothing(guard: None) -> None:
    """The fast path: no predicate call, no retry."""
    calls: list[Exception] = []

    def on(exc: Exception) -> bool:
        calls.append(exc)
        return True

    work = Script()
    assert await retrying(work, policy=NO_WAIT, on=on, report=work.report) == "done"
    assert (work.attempts, work.retries, calls) == ([1], [], [])


async def test_each_retry_is_reported_with_its_attempt(guard: None) -> None:
    """Two transient failures: attempts 1, 2, 3; retries reported after 1 and 2."""
    work = Script(transient(), transient())
    assert await retrying(work, policy=NO_WAIT, on=RetryOn(), report=work.report) == "done"
    assert work.attempts == [1, 2, 3]
    assert [(n, wait) for n, wait, _ in work.retries] == [(1, 0.0), (2, 0.0)]


async def test_the_servers_retry_after_replaces_the_backoff(guard: None) -> None:
    """A float from the predicate is the wait, first (ours) and later (stamina's)."""
    work = Script(transient(retry_after=0.0), transient(retry_after=0.0))
    assert await retrying(work, policy=LONG_WAIT, on=RetryOn(), report=work.report) == "done"
    assert [(n, wait) for n, wait, _ in work.retries] == [(1, 0.0), (2, 0.0)]


async def test_stamina_testing_switch_means_no_backoff_even_the_first(guard: None) -> None:
    """Under ``stamina.set_testing`` the first backoff is not slept either, nor any other."""
    work = Script(transient(), transient())
    with stamina.set_testing(True, attempts=3):
        assert await retrying(work, policy=LONG_WAIT, on=RetryOn(), report=work.report) == "done"
    assert work.attempts == [1, 2, 3]
    assert [wait for _, wait, _ in work.retries] == [0.0, 0.0]


async def test_stamina_testing_switch_sets_the_attempts(guard: None) -> None:
    """``set_testing(True, attempts=1)``: one attempt, as stamina promises."""
    work = Script(transient())
    with stamina.set_testing(True, attempts=1), pytest.raises(ApiError):
        await retrying(work, policy=LONG_WAIT, on=RetryOn(), report=work.report)
    assert work.attempts == [1]


@pytest.mark.parametrize("refuse", [lambda exc: False, RetryOn()], ids=["false", "permanent"])
async def test_a_failure_not_worth_retrying_is_raised_at_once(
    guard: None, refuse: Callable[[Exception], bool | float]
) -> None:
    """The predicate gives up: the first failure is raised, nothing retried."""
    work = Script(ApiError("exists", cluster="c1", code="65536870"))
    with pytest.raises(ApiError, match="exists"):
        await retrying(work, policy=NO_WAIT, on=refuse, report=work.report)
    assert (work.attempts, work.retries) == ([1], [])


async def test_the_policys_attempts_bound_the_unit(guard: None) -> None:
    """Always failing: four attempts in all, three retries, then the last failure."""
    work = Script(*(transient() for _ in range(10)))
    with pytest.raises(ApiError):
        await retrying(work, policy=NO_WAIT, on=RetryOn(), report=work.report)
    assert work.attempts == [1, 2, 3, 4]
    assert [n for n, _, _ in work.retries] == [1, 2, 3]
