"""Wire settings to the parts and run one sweep (what ``sweep --once`` calls)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable

from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import heartbeat, notify
from .budget import Budget
from .connection import open_redis
from .generators import Generator, make_generator
from .jobstore import JobStore
from .metrics import Metrics
from .retry import RetryPolicy
from .settings import Settings
from .storage import Storage, open_storage
from .summary import SweepSummary
from .sweep import Sweep, new_token

log = logging.getLogger("sweeper")

RUN_HISTORY = 100
HEARTBEAT_TIMEOUT = 5.0


async def run_once(
    settings: Settings,
    *,
    budget: Budget | None = None,
    generator: Generator | None = None,
    storage: Storage | None = None,
    policy: RetryPolicy | None = None,
    metrics: Metrics | None = None,
    on_start: Callable[[Sweep], None] | None = None,
) -> SweepSummary:
    """Connect, sweep once within the budget, record the run, close everything."""
    budget = budget or Budget.from_process_start(settings.time_budget_seconds)
    async with open_redis(settings) as redis:
        return await sweep_with(
            redis,
            settings,
            budget=budget,
            generator=generator,
            storage=storage,
            policy=policy,
            metrics=metrics,
            on_start=on_start,
        )


def stop_on_signals(sweep: Sweep, grace: float | None = None) -> None:
    """SIGTERM and SIGINT stop the sweep cleanly: no new work, calls in flight get
    a short grace, unstarted jobs are released."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    for sig in (signal.SIGTERM, signal.SIGINT):
        if grace is None:
            loop.add_signal_handler(sig, sweep.stop, sig.name)
        else:
            loop.add_signal_handler(sig, sweep.stop, sig.name, grace)


async def sweep_with(
    redis: Redis,
    settings: Settings,
    *,
    budget: Budget,
    generator: Generator | None = None,
    storage: Storage | None = None,
    policy: RetryPolicy | None = None,
    metrics: Metrics | None = None,
    on_start: Callable[[Sweep], None] | None = None,
) -> SweepSummary:
    """One sweep on an open connection (``serve`` reuses its connection)."""
    metrics = metrics or Metrics()
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
        metrics=metrics,
        notifier=notify.Notifier(
            redis,
            settings.keys,
            webhook_secret=_secret(settings.webhook_secret),
            telegram_token=_secret(settings.telegram_bot_token),
            telegram_base_url=settings.telegram_base_url,
        ),
    )
    if on_start is not None:
        on_start(sweep)
    try:
        summary = await sweep.run()
    finally:
        if own_generator:
            await generator.aclose()
    await _after(store, settings, summary, metrics, budget)
    return summary


async def _after(
    store: JobStore, settings: Settings, summary: SweepSummary, metrics: Metrics, budget: Budget
) -> None:
    """Log the run, keep its summary, refresh backlog gauges, ping the heartbeat."""
    log.info("sweep finished", extra={"event": "sweep_finished", **summary.as_dict()})
    metrics.sweep_ended(summary.duration_seconds, outcome(summary))
    if not summary.redis_error:  # nothing more to write where nothing can be written
        try:
            async with store.redis.pipeline(transaction=False) as pipe:
                pipe.lpush(settings.keys.runs, json.dumps(summary.as_dict()))
                pipe.ltrim(settings.keys.runs, 0, RUN_HISTORY - 1)
                await pipe.execute()
            pending, oldest = await store.backlog()
            metrics.jobs_pending.set(pending)
            age = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
            metrics.oldest_pending_age.set(age)
        except RedisError as e:
            log.warning(
                "could not record the run", extra={"event": "history_error", "reason": str(e)}
            )
    if settings.heartbeat_url:
        timeout = min(HEARTBEAT_TIMEOUT, max(0.5, budget.remaining()))
        await heartbeat.ping(
            settings.heartbeat_url, ok=outcome(summary) != "failed", timeout=timeout
        )


def outcome(summary: SweepSummary) -> str:
    """``ok``, ``budget`` (ran out of time), ``stopped`` (signal) or ``failed``."""
    if summary.redis_error or summary.errors:
        return "failed"
    if summary.stopped_by:
        return "stopped"
    return "budget" if summary.budget_exhausted else "ok"


def dump_tasks() -> None:
    """SIGUSR1: print what every asyncio task is waiting on (for a sweep that seems stuck)."""
    for task in asyncio.all_tasks():
        task.print_stack(limit=6, file=sys.stderr)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def policy_from(settings: Settings) -> RetryPolicy:
    """The retry policy the settings describe."""
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        initial=settings.retry_initial_seconds,
        maximum=settings.retry_max_seconds,
        jitter=min(1.0, settings.retry_initial_seconds),
        call_timeout=settings.call_timeout_seconds,
    )
