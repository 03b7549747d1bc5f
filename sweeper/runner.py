"""Wire settings to the parts and run one sweep (what ``sweep --once`` calls)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .budget import Budget
from .connection import open_redis
from .generators import Generator, make_generator
from .jobstore import JobStore
from .retry import RetryPolicy
from .settings import Settings
from .storage import Storage, open_storage
from .summary import SweepSummary
from .sweep import Sweep, new_token

log = logging.getLogger("sweeper")

RUN_HISTORY = 100


async def run_once(
    settings: Settings,
    *,
    budget: Budget | None = None,
    generator: Generator | None = None,
    storage: Storage | None = None,
    policy: RetryPolicy | None = None,
    handle_signals: bool = False,
) -> SweepSummary:
    """Connect, sweep once within the budget, record the run, close everything.

    With ``handle_signals``, SIGTERM and SIGINT stop the sweep cleanly: no new
    work, calls in flight get a short grace, unstarted jobs are released.
    """
    budget = budget or Budget.from_process_start(settings.time_budget_seconds)
    async with open_redis(settings) as redis:
        return await sweep_with(
            redis,
            settings,
            budget=budget,
            generator=generator,
            storage=storage,
            policy=policy,
            on_start=_stop_on_signals if handle_signals else None,
        )


def _stop_on_signals(sweep: Sweep) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sweep.stop, sig.name)


async def sweep_with(
    redis: Redis,
    settings: Settings,
    *,
    budget: Budget,
    generator: Generator | None = None,
    storage: Storage | None = None,
    policy: RetryPolicy | None = None,
    on_start: Callable[[Sweep], None] | None = None,
) -> SweepSummary:
    """One sweep on an open connection (``serve`` reuses its connection)."""
    store = JobStore(redis, settings.keys, token=new_token(), lease_seconds=settings.lease_seconds)
    own_generator = generator is None
    generator = generator or make_generator(settings)
    storage = storage or open_storage(settings.storage_url, settings.public_base_url)
    sweep = Sweep(
        store,
        generator,
        storage,
        budget=budget,
        policy=policy or policy_from(settings),
        concurrency=settings.concurrency,
        default_model=settings.gemini_model,
    )
    if on_start is not None:
        on_start(sweep)
    try:
        summary = await sweep.run()
    finally:
        if own_generator:
            await generator.aclose()
    log.info("sweep finished", extra={"event": "sweep_finished", **summary.as_dict()})
    if summary.redis_error:
        return summary  # nothing more to write where nothing can be written
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.lpush(settings.keys.runs, json.dumps(summary.as_dict()))
            pipe.ltrim(settings.keys.runs, 0, RUN_HISTORY - 1)
            await pipe.execute()
    except RedisError as e:
        log.warning(
            "could not record the run summary", extra={"event": "history_error", "reason": str(e)}
        )
    return summary


def policy_from(settings: Settings) -> RetryPolicy:
    """The retry policy the settings describe."""
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        initial=settings.retry_initial_seconds,
        maximum=settings.retry_max_seconds,
        jitter=min(1.0, settings.retry_initial_seconds),
        call_timeout=settings.call_timeout_seconds,
    )
