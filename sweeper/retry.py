"""The one retry policy for image calls (tenacity underneath).

* Transient errors are retried with exponential backoff and jitter, waiting at
  least what the server asked for (``Retry-After`` or ``RetryInfo.retryDelay``).
* A 429 pauses every call of the sweep through a shared :class:`RateGate`, so a
  quota storm is not answered by each task hammering on its own.
* Attempts count across sweeps (``attempts_before``); once ``max_attempts`` is
  reached the slot fails for good with the last reason.
* Nothing waits past the budget: a call that could not finish, or a wait that
  would end too late, raises :class:`Deferred`, which spends no attempt.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from .budget import Budget, CallTimer, Clock
from .errors import AttemptsExhausted, Deferred, GenerationError, QuotaExhausted, TransientError

T = TypeVar("T")
log = logging.getLogger("sweeper.retry")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def parse_retry_delay(details: list[Any]) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "53s"``)."""
    for detail in details:
        if isinstance(detail, dict) and "RetryInfo" in str(detail.get("@type", "")):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RateGate:
    """Shared pause: while the API asked us to back off, no call of the sweep starts.

    ``close()`` stops every call for the rest of the sweep (a daily quota is gone).
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.until = 0.0
        self.closed: str | None = None

    def close(self, reason: str) -> None:
        """No call starts again in this sweep; logged once."""
        if self.closed is None:
            self.closed = reason
            log.error(
                "daily quota exhausted: all work deferred until it resets (midnight Pacific)",
                extra={"event": "quota_exhausted", "reason": reason},
            )

    def pause(self, seconds: float) -> None:
        """Hold every call for ``seconds`` from now (never shortens a longer pause)."""
        self.until = max(self.until, self.clock() + seconds)

    def delay(self) -> float:
        """Seconds until calls may start again."""
        return max(0.0, self.until - self.clock())

    async def wait(self) -> None:
        """Sleep until the pause is over (re-checked: another 429 may extend it)."""
        while (delay := self.delay()) > 0:  # noqa: ASYNC110 - the pause is a deadline, not an event
            await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff shape: ``initial * 2**n`` capped at ``maximum``, plus up to ``jitter`` seconds."""

    max_attempts: int = 5
    initial: float = 1.0
    maximum: float = 30.0
    jitter: float = 1.0
    call_timeout: float = 120.0

    def backoff(self, failures: int) -> float:
        """The wait after the ``failures``-th failed attempt of this sweep."""
        base: float = min(self.maximum, self.initial * 2.0 ** max(0, failures - 1))
        return base + random.uniform(0, self.jitter)


FailureHook = Callable[[GenerationError, int], Awaitable[None]]
RetryHook = Callable[[GenerationError, int, float], None]


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    budget: Budget,
    timer: CallTimer,
    gate: RateGate,
    attempts_before: int = 0,
    on_failure: FailureHook | None = None,
    on_retry: RetryHook | None = None,
) -> T:
    """Run ``call`` under the policy; see the module docstring for the rules."""
    counted = 0  # failed calls that count against max_attempts (429s do not)

    async def attempt() -> T:
        nonlocal counted
        await _wait_for_gate(gate, budget, timer)
        if budget.working_remaining() < timer.estimate:
            raise Deferred("budget too short to start another call")
        started = budget.clock()
        try:
            result = await _with_timeout(call, policy.call_timeout)
        except TimeoutError:
            error: GenerationError = TransientError(f"no reply within {policy.call_timeout:g}s")
        except TransientError as e:
            error = e
        else:
            timer.observe(budget.clock() - started)
            return result
        timer.observe(budget.clock() - started)
        if isinstance(error, QuotaExhausted):
            # Quota is the project's limit, not this image's fault: no attempt spent.
            if error.daily:
                gate.close(error.reason)
                raise Deferred(f"daily quota exhausted: {error.reason}") from error
            if error.retry_after:
                gate.pause(error.retry_after)
            raise error
        counted += 1
        if on_failure is not None:
            await on_failure(error, attempts_before + counted)
        raise error

    # The first try runs without tenacity: most calls succeed, and building a
    # retry machine per call would cost more than the rest of the bookkeeping.
    try:
        return await attempt()
    except TransientError as e:
        first_error = e

    def wait(retry_state: RetryCallState) -> float:
        error = _error_of(retry_state)
        server = error.retry_after if isinstance(error, TransientError) else None
        return max(server or 0.0, policy.backoff(retry_state.attempt_number), gate.delay())

    def stop(retry_state: RetryCallState) -> bool:
        if attempts_before + counted >= policy.max_attempts:
            return True
        return retry_state.upcoming_sleep + timer.estimate > budget.working_remaining()

    def give_up(retry_state: RetryCallState) -> T:
        error = _error_of(retry_state)
        total = attempts_before + counted
        if total >= policy.max_attempts:
            raise AttemptsExhausted(f"gave up after {total} attempts: {error.reason}") from error
        raise Deferred(f"left for the next sweep: {error.reason}") from error

    def after(retry_state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry(_error_of(retry_state), retry_state.attempt_number, retry_state.upcoming_sleep)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=wait,
        stop=stop,
        before_sleep=after,
        retry_error_callback=give_up,
        reraise=True,
    )
    result: T = await retrying(_replaying(first_error, attempt))
    return result


async def _with_timeout(call: Callable[[], Awaitable[T]], seconds: float) -> T:
    """``asyncio.timeout`` without its per-use objects (it was a fifth of the sweep's CPU).

    Same rule for telling our cancellation from someone else's: only when
    ``uncancel()`` leaves no other cancel request pending is it our timeout.
    """
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await call()
    except asyncio.CancelledError:
        if fired and task.uncancel() == 0:
            raise TimeoutError from None
        raise
    finally:
        handle.cancel()


def _replaying(error: Exception, attempt: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """``attempt`` whose first run re-raises the failure of the untracked first try."""
    replayed = False

    async def run() -> T:
        nonlocal replayed
        if not replayed:
            replayed = True
            raise error
        return await attempt()

    return run


async def _wait_for_gate(gate: RateGate, budget: Budget, timer: CallTimer) -> None:
    if gate.closed is not None:
        raise Deferred(f"daily quota exhausted: {gate.closed}")
    delay = gate.delay()
    if delay <= 0:
        return
    if delay + timer.estimate > budget.working_remaining():
        raise Deferred(f"API asked to wait {delay:.0f}s, longer than the budget left")
    await gate.wait()


def _error_of(retry_state: RetryCallState) -> GenerationError:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    if isinstance(error, GenerationError):
        return error
    return TransientError(repr(error))
