"""One sweep: select -> claim -> generate -> store -> finish, inside a hard budget.

A feeder takes windows of the pending set in order (:mod:`sweeper.selection`)
and claims jobs in batches just ahead of the workers. ``concurrency`` workers draw image
slots; each stored image is recorded at once (fenced by the lease), so a later
sweep resumes without paying for it again. When the budget runs out, calls in
flight are cancelled, unfinished jobs are released, and the sweep returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from enqueue_client.records import ImageFailure, utc_iso

from . import notify
from .budget import Budget
from .drawing import Drawer
from .generators.base import Generator
from .jobs import Candidate, Job, fill_fetched
from .jobstore import Claimed, JobStore
from .metrics import Metrics, reason_label
from .results import Slot, final_result, quarantined, resume, settle
from .retry import RetryPolicy
from .selection import windows
from .storage import Storage
from .summary import SweepSummary

log = logging.getLogger("sweeper.sweep")

WINDOW = 1000
# A job held by this many sweeps that died without releasing it is quarantined.
POISON_CRASHES = 3
# After a stop request (SIGTERM, SIGINT), calls in flight get this long to land.
STOP_GRACE = 3.0
# How often finished jobs' deliveries go out while a sweep is still drawing.
DELIVERY_EVERY = 2.0
# Background tasks get this long to stop when the sweep ends.
STOP_WAIT = 1.0
# Releasing leases at the end never takes longer than this.
CLEANUP_LIMIT = 1.5


Now = Callable[[], datetime]


class Sweep:
    """Runs one sweep against a store, a generator and a storage backend."""

    def __init__(
        self,
        store: JobStore,
        generator: Generator,
        storage: Storage,
        *,
        budget: Budget,
        policy: RetryPolicy,
        concurrency: int,
        default_model: str,
        window: int = WINDOW,
        now: Now | None = None,
        metrics: Metrics | None = None,
        notifier: notify.Notifier | None = None,
    ) -> None:
        self.notifier = notifier
        self.store = store
        self.budget = budget
        self.concurrency = concurrency
        self.window = window
        self.now: Now = now or (lambda: datetime.now(UTC))
        self.metrics = metrics or Metrics()
        self.held: dict[str, Job] = {}  # claimed and not yet ended or lost
        self._stamp_cache: tuple[int, str] = (-1, "")
        self.summary = SweepSummary(run_id=store.token, started_at=self.stamp())
        self.drawer = Drawer(
            store=store,
            generator=generator,
            storage=storage,
            budget=budget,
            policy=policy,
            default_model=default_model,
            summary=self.summary,
            metrics=self.metrics,
            stamp=self.stamp,
            lost=self._lost,
        )
        self.stopping: str | None = None
        self.finished = False
        self._closing = False  # background loops end when they see this
        self._phase: asyncio.Timeout | None = None
        # Images claimed but not yet started stay between low and high: enough
        # for the workers, in batches big enough to make claims cheap.
        self._queue: asyncio.Queue[tuple[Job, Slot]] = asyncio.Queue()
        self._high = concurrency * 4
        self._low = concurrency * 2
        self._room = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def stamp(self) -> str:
        """The current time as result records write it (formatted once per second)."""
        moment = self.now()
        second = int(moment.timestamp())
        if self._stamp_cache[0] != second:
            self._stamp_cache = (second, utc_iso(moment))
        return self._stamp_cache[1]

    # -- the run --------------------------------------------------------------

    async def run(self) -> SweepSummary:
        """Sweep until the pending set is done or the budget ends; always clean up."""
        started = time.monotonic()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]
        workers.append(asyncio.create_task(self._keep_leases()))
        if self.notifier is not None:
            workers.append(asyncio.create_task(self._deliver_meanwhile()))
        try:
            async with asyncio.timeout(max(0.0, self.budget.working_remaining())) as phase:
                self._phase = phase
                await self.store.load_scripts()
                await self._feed()
                await self._queue.join()
                await self._settle_tasks()
                await self.store.batcher.drain()  # finishes queued by the workers
                if self.notifier is not None:
                    await self.notifier.deliver_due(self.budget)
        except TimeoutError:
            if self.stopping is None:
                self.summary.budget_exhausted = True
                log.warning("time budget reached; stopping", extra={"event": "budget_exhausted"})
        except RedisError as e:
            self._redis_failed(e)
        finally:
            self._closing = True
            await _stop_all([*workers, *self._tasks])
            await self._clean_up()
            self.summary.duration_seconds = round(time.monotonic() - started, 3)
            self.summary.redis_round_trips = self.store.round_trips
            self.finished = True
        return self.summary

    def stop(self, reason: str, grace: float = STOP_GRACE) -> None:
        """Start no more work; calls in flight get ``grace`` seconds, then the sweep ends."""
        if self.stopping is None:
            self.stopping = reason
            self.summary.stopped_by = reason
            log.warning(
                "stopping: no new work", extra={"event": "stop_requested", "reason": reason}
            )
        if self._phase is not None:
            when = asyncio.get_running_loop().time() + grace
            current = self._phase.when()
            if current is None or when < current:
                self._phase.reschedule(when)

    def _redis_failed(self, error: Exception) -> None:
        if self.summary.redis_error is None:
            self.summary.redis_error = str(error)
            log.error(
                "Redis unreachable after retries; stopping, the next sweep resumes",
                extra={"event": "redis_error", "reason": str(error)},
            )
        self.stop("redis unreachable", grace=0)

    async def _settle_tasks(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _clean_up(self) -> None:
        """Release every job this sweep claimed but did not end, within the reserve."""
        await self._drain_quietly()
        unfinished = [job for job in self.held.values() if not job.ended]
        try:
            async with asyncio.timeout(max(0.2, min(CLEANUP_LIMIT, self.budget.remaining() - 0.2))):
                released = await asyncio.gather(
                    *(self.store.release(job.job_id, started=job.started) for job in unfinished),
                    return_exceptions=True,
                )
                await self.store.batcher.drain()
        except TimeoutError:
            log.error(
                "clean-up cut short by the budget; leases expire on their own",
                extra={"event": "cleanup_timeout"},
            )
            return
        self.summary.jobs_released = sum(1 for ok in released if ok is True)
        for job in unfinished:
            log.info(
                "job released for the next sweep",
                extra={"event": "job_released", "job_id": job.job_id, "images_left": len(job.left)},
            )

    async def _deliver_meanwhile(self) -> None:
        """Callbacks and Telegram messages go out while the sweep still draws."""
        assert self.notifier is not None
        while not self._closing:
            await asyncio.sleep(DELIVERY_EVERY)
            try:
                await self.notifier.deliver_due(self.budget)
            except RedisError as e:
                if self._closing:  # redis-py may turn our cancellation into an error
                    return
                log.warning(
                    "deliveries paused", extra={"event": "delivery_error", "reason": str(e)}
                )

    async def _drain_quietly(self) -> None:
        """Let writes already queued land before deciding what to release."""
        try:
            async with asyncio.timeout(max(0.1, min(CLEANUP_LIMIT, self.budget.remaining() - 0.3))):
                await self.store.batcher.drain()
        except (TimeoutError, RedisError):
            pass  # whatever did not land is released below or expires on its own

    async def _keep_leases(self) -> None:
        """Renew every held lease a few times per lease period, so healthy work is never stolen."""
        interval = self.store.lease_ms / 1000 / 3
        while not self._closing:
            await asyncio.sleep(interval)
            held = list(self.held.values())
            if not held:
                continue
            try:
                alive = await self.store.renew([job.job_id for job in held])
            except RedisError as e:
                log.warning(
                    "could not renew leases; retrying",
                    extra={"event": "renew_error", "reason": str(e)},
                )
                continue
            for job, ok in zip(held, alive, strict=True):
                if not ok and not job.ended:
                    self._lost(job)

    # -- feeding --------------------------------------------------------------

    async def _feed(self) -> None:
        """Claim just ahead of the workers: only as many jobs as the queue has room for.

        Claiming more would hold leases on jobs this sweep cannot start soon,
        starving a concurrent sweep that could.
        """
        async for window in windows(self.store, self.window):
            i = 0
            while i < len(window):
                if self._queue.qsize() > self._low:
                    self._room.clear()
                    await self._room.wait()
                if not self._can_start_work():
                    return
                room = max(1, self._high - self._queue.qsize())
                await self._claim(window[i : i + room])
                i += room

    def _can_start_work(self) -> bool:
        gate, timer = self.drawer.gate, self.drawer.timer
        if self.stopping is not None or gate.closed is not None:
            return False
        room = self.budget.working_remaining() - timer.estimate
        return room > 0 and room > gate.delay()

    async def _claim(self, batch: list[Candidate]) -> None:
        fetch = {c.job_id for c in batch if c.needs_fetch}
        by_id = {c.job_id: c for c in batch}
        for claimed in await self.store.claim([c.job_id for c in batch], fetch):
            self.summary.jobs_claimed += 1
            candidate = by_id[claimed.job_id]
            if candidate.needs_fetch:
                candidate = fill_fetched(candidate, claimed.record_json)
            if candidate.problem is not None or candidate.record is None:
                problem = candidate.problem or "record is missing"
                self._spawn(self._quarantine(claimed.job_id, problem, claimed.result_json))
                continue
            job = self._job_from(candidate, claimed)
            crashes = job.attempts.get("unclean", 1) - 1
            if crashes > 0:
                self.metrics.lease_takeovers.inc()
            if crashes >= POISON_CRASHES:
                self._poisoned(job, crashes)
                continue
            if not job.left:
                self._end(job)
                continue
            self.summary.images_planned += len(job.left)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "job claimed",
                    extra={
                        "event": "job_claimed",
                        "job_id": job.job_id,
                        "images_left": len(job.left),
                        "attempt": job.attempts.get("job", 1),
                    },
                )
            for slot in list(job.left):
                self._queue.put_nowait((job, slot))

    def _job_from(self, candidate: Candidate, claimed: Claimed) -> Job:
        assert candidate.record is not None
        result, left = resume(candidate.job_id, candidate.record, claimed.result_json)
        job = Job(candidate.job_id, candidate.record, result, left, claimed.attempts)
        self.held[job.job_id] = job
        return job

    def _poisoned(self, job: Job, crashes: int) -> None:
        """A job whose sweeps keep dying: end it rather than crash the next sweep too."""
        reason = (
            f"quarantined: {crashes} sweeps died while working on this job "
            "(killed, out of memory, or a crash it causes)"
        )
        job.result.failures["*"] = ImageFailure(reason=reason, retryable=False, attempts=crashes)
        job.left = []
        log.error(
            "poison job quarantined",
            extra={"event": "job_quarantined", "job_id": job.job_id, "reason": reason},
        )
        self.summary.jobs_quarantined += 1
        self.metrics.jobs_quarantined.labels("poison").inc()
        self._end(job)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except RedisError as e:
            self._redis_failed(e)
        except Exception:  # one bad job must not stop the sweep
            log.exception("unexpected error finishing a job", extra={"event": "job_error"})
            self.summary.errors.append("finish")

    async def _quarantine(self, job_id: str, reason: str, result_json: str | None = None) -> None:
        ended = final_result(result_json) if reason.startswith("record is missing") else None
        if ended is not None:
            # The job ended and its record went with it; the id came back on its
            # own (a producer's retry, a hand-made SADD). Keep the result.
            await self.store.finish(job_id, ended)
            return
        result = quarantined(job_id, reason, self.stamp())
        if await self.store.finish(job_id, result):
            self.summary.jobs_quarantined += 1
            self.metrics.jobs_quarantined.labels(reason_label(reason)).inc()
            log.warning(
                "record quarantined",
                extra={"event": "job_quarantined", "job_id": job_id, "reason": reason},
            )

    # -- working --------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            job, slot = await self._queue.get()
            if self._queue.qsize() <= self._low:
                self._room.set()
            try:
                await self._work(job, slot)
            except RedisError as e:  # retried by the client already: Redis is gone
                self._redis_failed(e)
            except Exception:  # one bad job must not stop the sweep
                log.exception(
                    "unexpected error; the image stays pending",
                    extra={"event": "image_error", "job_id": job.job_id, "image_key": slot.key},
                )
                self.summary.errors.append(f"{job.job_id}/{slot.counter}")
            finally:
                self._queue.task_done()

    async def _work(self, job: Job, slot: Slot) -> None:
        if job.ended or job.lost:
            return
        if not self._can_start_work():
            self.summary.images_deferred += 1
            self.metrics.images_deferred.inc()
            return
        job.started = True  # CLAIM counted the start; RELEASE gives it back if never set
        job.in_flight += 1
        try:
            resolved = await self.drawer.draw(job, slot)
        finally:
            job.in_flight -= 1
        if resolved:
            job.left.remove(slot)
            # Queued, not awaited: the batcher sends writes in order, and the worker
            # goes on to the next image meanwhile.
            self._end(job) if job.idle else self._progress(job)

    # -- recording ------------------------------------------------------------

    def _progress(self, job: Job) -> None:
        settle(job.result, len(job.left), self.stamp())
        job.result.attempts = job.attempts.get("job", 0)
        written = self.store.progress_nowait(job.job_id, job.result)
        written.add_done_callback(lambda reply: self._progressed(job, reply))

    def _progressed(self, job: Job, reply: asyncio.Future[Any]) -> None:
        if self._write_failed(reply):
            return
        if int(reply.result()) != 1 and not job.ended:
            self._lost(job)

    def _end(self, job: Job) -> None:
        if job.ended or job.lost:
            return
        job.ended = True
        settle(job.result, 0, self.stamp())
        job.result.attempts = job.attempts.get("job", 0)
        delivery = notify.payload(job.job_id, job.record, job.result)
        written = self.store.finish_nowait(
            job.job_id, job.result, delivery, int(time.time() * 1000)
        )
        written.add_done_callback(lambda reply: self._ended(job, reply))

    def _ended(self, job: Job, reply: asyncio.Future[Any]) -> None:
        if self._write_failed(reply):
            job.ended = False  # not known to be finished: cleanup releases it
            return
        if int(reply.result()) != 1:
            job.ended = False
            self._lost(job)
            return
        self.held.pop(job.job_id, None)
        status = job.result.status
        self.metrics.child(self.metrics.jobs_finished, status).inc()
        if status == "completed":
            self.summary.jobs_completed += 1
        elif status == "partial":
            self.summary.jobs_partial += 1
        else:
            self.summary.jobs_failed += 1
        log.info(
            "job finished",
            extra={
                "event": "job_finished",
                "job_id": job.job_id,
                "status": status,
                "attempt": job.result.attempts,
                "duration": round(time.monotonic() - job.claimed_at, 3),
            },
        )

    def _write_failed(self, reply: asyncio.Future[Any]) -> bool:
        """True when a queued write got no reply (cancelled, or Redis gone)."""
        if reply.cancelled():
            return True
        error = reply.exception()
        if error is None:
            return False
        if isinstance(error, RedisError):
            self._redis_failed(error)
        else:
            log.error("write failed", extra={"event": "write_error", "reason": repr(error)})
            self.summary.errors.append("write")
        return True

    def _lost(self, job: Job) -> None:
        self.held.pop(job.job_id, None)
        if not job.lost:
            job.lost = True
            self.summary.leases_lost += 1
            log.warning(
                "lease lost to another sweep; dropping the job",
                extra={"event": "lease_lost", "job_id": job.job_id},
            )


async def _stop_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel and wait, but never hang on a task that will not stop."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    done, stuck = await asyncio.wait(tasks, timeout=STOP_WAIT)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: workers log their own errors
    for task in stuck:
        log.error(
            "a task did not stop; leaving it",
            extra={"event": "task_stuck", "reason": repr(task.get_coro())},
        )


def new_token() -> str:
    """A lease token unique to one sweep."""
    return uuid.uuid4().hex
