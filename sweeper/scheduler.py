"""``sweep serve``: APScheduler (3.x) runs a sweep on a cron schedule or an interval.

Never two sweeps at once in one process (``max_instances=1``, ``coalesce``);
across processes the leases keep work apart. SIGTERM or SIGINT stops the
scheduler, gives the running sweep a bounded grace to land its calls, lets it
release what it did not start, and returns 0.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .budget import Budget
from .connection import open_redis
from .errors import ConfigError
from .metrics import Metrics
from .runner import sweep_with
from .settings import Settings
from .sweep import Sweep

log = logging.getLogger("sweeper.serve")

MISFIRE_GRACE = 60  # a run late by up to this much still happens (once: coalesced)
_EVERY = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)$")


def parse_every(text: str) -> float:
    """``30s``, ``2m``, ``1h`` -> seconds."""
    match = _EVERY.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"--every {text!r}: use a number with s, m or h, like 30s or 2m")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def trigger_for(settings: Settings, every: float | None) -> BaseTrigger:
    """An interval trigger for ``--every``, else the ``SWEEPER_SCHEDULE`` cron expression."""
    if every is not None:
        return IntervalTrigger(seconds=every)
    return CronTrigger.from_crontab(settings.schedule)


class Server:
    """The long-running scheduler: one connection, one metrics registry, many sweeps."""

    def __init__(self, settings: Settings, *, every: float | None, grace: float) -> None:
        self.settings = settings
        self.every = every
        self.grace = grace
        self.metrics = Metrics()
        self.current: Sweep | None = None
        self.running: asyncio.Task[object] | None = None
        self.sweeps = 0
        self._stop = asyncio.Event()

    async def run(self) -> int:
        """Serve until SIGTERM or SIGINT; returns the exit code."""
        self.settings.require_generator()
        if self.settings.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(self.settings.metrics_port, registry=self.metrics.registry)
        async with open_redis(self.settings) as redis:
            scheduler = AsyncIOScheduler()
            # With --every the first sweep runs at once; a cron schedule waits its
            # turn. (Passing next_run_time=None would pause the job: leave it out.)
            first = {"next_run_time": datetime.now().astimezone()} if self.every else {}
            job = scheduler.add_job(
                self._sweep,
                trigger_for(self.settings, self.every),
                args=[redis],
                id="sweep",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=MISFIRE_GRACE,
                **first,
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.shutdown, sig.name)
            scheduler.start()
            log.info(
                "serving",
                extra={
                    "event": "serve_started",
                    "schedule": f"every {self.every:g}s" if self.every else self.settings.schedule,
                    "next_run": str(job.next_run_time),
                    "metrics_port": self.settings.metrics_port,
                    "config": self.settings.describe(),
                },
            )
            await self._stop.wait()
            scheduler.shutdown(wait=False)
            if self.running is not None and not self.running.done():
                await asyncio.wait([self.running], timeout=self.grace + 5)
        log.info("stopped", extra={"event": "serve_stopped", "sweeps": self.sweeps})
        return 0

    def shutdown(self, reason: str) -> None:
        """Stop scheduling; the running sweep gets ``grace`` seconds, then releases the rest."""
        log.warning("shutting down", extra={"event": "serve_stopping", "reason": reason})
        if self.current is not None and not self.current.finished:
            self.current.stop(reason, grace=self.grace)
        self._stop.set()

    async def _sweep(self, redis: object) -> None:
        if self._stop.is_set():
            return
        self.running = asyncio.current_task()
        budget = Budget(self.settings.time_budget_seconds)
        try:
            await sweep_with(
                redis,  # type: ignore[arg-type]
                self.settings,
                budget=budget,
                metrics=self.metrics,
                on_start=self._started,
            )
        except Exception:  # the scheduler must outlive one bad sweep
            log.exception("sweep failed", extra={"event": "sweep_error"})
        finally:
            self.sweeps += 1
            self.current = None

    def _started(self, sweep: Sweep) -> None:
        self.current = sweep
        if self._stop.is_set():
            sweep.stop("shutting down", grace=0)
