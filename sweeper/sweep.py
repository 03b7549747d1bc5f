"""One sweep: select -> claim -> generate -> store -> finish, inside a hard budget.

A feeder reads the pending set a window at a time (SSCAN, never SMEMBERS),
orders each window by priority then newest timestamp, and claims jobs in
small batches just ahead of the workers. ``concurrency`` workers draw image
slots; each stored image is recorded at once (fenced by the lease), so a later
sweep resumes without paying for it again. When the budget runs out, calls in
flight are cancelled, unfinished jobs are released, and the sweep returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from enqueue_client.records import StoredImage, utc_iso

from .budget import Budget, CallTimer
from .errors import (
    AttemptsExhausted,
    Deferred,
    GenerationError,
    PermanentError,
    StorageError,
    TransientError,
)
from .generators.base import GeneratedImage, Generator, ImageRequest
from .images import ImageInfo, inspect_image
from .jobs import Candidate, Job, candidate_from, fill_fetched, order
from .jobstore import Claimed, JobStore
from .results import Slot, add_failure, add_image, quarantined, resume, settle
from .retry import RateGate, RetryPolicy, call_with_retry
from .storage import Storage, object_name

log = logging.getLogger("sweeper.sweep")

WINDOW = 1000


@dataclass(slots=True)
class SweepSummary:
    """What one sweep did; logged as the final line and kept for ``sweep status``."""

    run_id: str
    started_at: str
    duration_seconds: float = 0.0
    jobs_claimed: int = 0
    jobs_completed: int = 0
    jobs_partial: int = 0
    jobs_failed: int = 0
    jobs_quarantined: int = 0
    jobs_released: int = 0
    images_stored: int = 0
    images_failed: int = 0
    images_deferred: int = 0
    api_calls: int = 0
    retries: int = 0
    budget_exhausted: bool = False
    leases_lost: int = 0
    redis_round_trips: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


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
    ) -> None:
        self.store = store
        self.generator = generator
        self.storage = storage
        self.budget = budget
        self.policy = policy
        self.concurrency = concurrency
        self.default_model = default_model
        self.window = window
        self.now: Now = now or (lambda: datetime.now(UTC))
        self.timer = CallTimer()
        self.gate = RateGate(budget.clock)
        self.jobs: list[Job] = []
        self._stamp_cache: tuple[int, str] = (-1, "")
        self.summary = SweepSummary(run_id=store.token, started_at=self.stamp())
        self._queue: asyncio.Queue[tuple[Job, Slot]] = asyncio.Queue(maxsize=concurrency * 2)
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
        try:
            async with asyncio.timeout(max(0.0, self.budget.working_remaining())):
                await self.store.load_scripts()
                await self._feed()
                await self._queue.join()
                await self._settle_tasks()
        except TimeoutError:
            self.summary.budget_exhausted = True
            log.warning("time budget reached; stopping", extra={"event": "budget_exhausted"})
        finally:
            for task in [*workers, *self._tasks]:
                task.cancel()
            await asyncio.gather(*workers, *self._tasks, return_exceptions=True)
            await self._clean_up()
            self.summary.duration_seconds = round(time.monotonic() - started, 3)
            self.summary.redis_round_trips = self.store.round_trips
        return self.summary

    async def _settle_tasks(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _clean_up(self) -> None:
        """Release every job this sweep claimed but did not end, within the reserve."""
        unfinished = [job for job in self.jobs if not job.ended and not job.lost]
        try:
            async with asyncio.timeout(max(0.2, self.budget.remaining() - 0.2)):
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

    # -- feeding --------------------------------------------------------------

    async def _feed(self) -> None:
        """Claim just ahead of the workers: only as many jobs as the queue has room for.

        Claiming more would hold leases on jobs this sweep cannot start soon,
        starving a concurrent sweep that could.
        """
        async for window in self._windows():
            i = 0
            while i < len(window):
                if not self._can_start_work():
                    return
                room = max(1, self._queue.maxsize - self._queue.qsize())
                await self._claim(window[i : i + room])
                i += room

    def _can_start_work(self) -> bool:
        room = self.budget.working_remaining() - self.timer.estimate
        return room > 0 and room > self.gate.delay()

    async def _windows(self) -> AsyncIterator[list[Candidate]]:
        """Windows of the pending set, each ordered by priority then newest timestamp."""
        cursor = start = await self.store.load_cursor()
        wrapped = False
        seen: set[str] = set()
        while True:
            ids: list[str] = []
            while len(ids) < self.window:
                cursor, found = await self.store.scan(cursor, self.window)
                ids.extend(i for i in found if i not in seen)
                seen.update(found)
                if cursor == 0:
                    break
            if ids:
                yield order([candidate_from(p) for p in await self.store.peek(ids)])
            await self.store.save_cursor(cursor)
            if cursor == 0:
                if start == 0 or wrapped:
                    return
                wrapped = True  # began mid-set: go round once more from the start

    async def _claim(self, batch: list[Candidate]) -> None:
        fetch = {c.job_id for c in batch if c.needs_fetch}
        by_id = {c.job_id: c for c in batch}
        for claimed in await self.store.claim([c.job_id for c in batch], fetch):
            self.summary.jobs_claimed += 1
            candidate = by_id[claimed.job_id]
            if candidate.needs_fetch:
                candidate = fill_fetched(candidate, claimed.record_json)
            if candidate.problem is not None or candidate.record is None:
                self._spawn(self._quarantine(claimed.job_id, candidate.problem or "no record"))
                continue
            job = self._job_from(candidate, claimed)
            if not job.left:
                self._spawn(self._end(job))
                continue
            log.debug(
                "job claimed",
                extra={"event": "job_claimed", "job_id": job.job_id, "images_left": len(job.left)},
            )
            for slot in list(job.left):
                await self._queue.put((job, slot))

    def _job_from(self, candidate: Candidate, claimed: Claimed) -> Job:
        assert candidate.record is not None
        result, left = resume(candidate.job_id, candidate.record, claimed.result_json)
        job = Job(candidate.job_id, candidate.record, result, left, claimed.attempts)
        self.jobs.append(job)
        return job

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:  # one bad job must not stop the sweep
            log.exception("unexpected error finishing a job", extra={"event": "job_error"})
            self.summary.errors.append("finish")

    async def _quarantine(self, job_id: str, reason: str) -> None:
        result = quarantined(job_id, reason, self.stamp())
        if await self.store.finish(job_id, result):
            self.summary.jobs_quarantined += 1
            log.warning(
                "record quarantined",
                extra={"event": "job_quarantined", "job_id": job_id, "reason": reason},
            )

    # -- working --------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            job, slot = await self._queue.get()
            try:
                await self._work(job, slot)
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
            return
        job.started = True  # CLAIM counted the start; RELEASE gives it back if never set
        job.in_flight += 1
        try:
            resolved = await self._draw(job, slot)
        finally:
            job.in_flight -= 1
        if resolved:
            job.left.remove(slot)
            await (self._end(job) if job.idle else self._progress(job))

    async def _draw(self, job: Job, slot: Slot) -> bool:
        """Generate and store one slot; True when it is settled (stored or failed for good)."""
        spec = next(image for image in job.record.images if image.key == slot.key)
        request = ImageRequest(
            job_id=job.job_id,
            key=slot.key,
            index=slot.index,
            prompt=spec.prompt,
            model=spec.model or self.default_model,
            aspect_ratio=spec.aspect_ratio,
            input_image=spec.input_image.decoded()
            if spec.input_image and spec.input_image.data
            else None,
            input_mime_type=spec.input_image.mime_type if spec.input_image else None,
            input_url=spec.input_image.url if spec.input_image else None,
        )
        started = time.monotonic()
        fields = {"job_id": job.job_id, "image_key": slot.key, "variation": slot.index}
        try:
            image, info = await call_with_retry(
                lambda: self._call(request),
                policy=self.policy,
                budget=self.budget,
                timer=self.timer,
                gate=self.gate,
                attempts_before=job.attempts_of(slot),
                on_failure=lambda error, total: self._count_failure(job, slot, error, total),
                on_retry=lambda error, n, delay: self._log_retry(fields, error, n, delay),
            )
        except Deferred as e:
            self.summary.images_deferred += 1
            log.info(
                "image left for the next sweep",
                extra={**fields, "event": "image_deferred", "reason": e.reason},
            )
            return False
        except PermanentError as e:
            calls = job.attempts_of(slot) + (0 if isinstance(e, AttemptsExhausted) else 1)
            add_failure(job.result, slot, e.reason, retryable=e.retryable, attempts=calls)
            self.summary.images_failed += 1
            log.warning(
                "image failed",
                extra={
                    **fields,
                    "event": "image_failed",
                    "reason": e.reason,
                    "attempt": calls,
                    "duration": round(time.monotonic() - started, 3),
                },
            )
            return True
        try:
            url = await self.storage.put(
                object_name(job.job_id, slot.key, slot.index, info), image.data, info.mime_type
            )
        except StorageError as e:
            log.error(
                "could not store image; it stays pending",
                extra={**fields, "event": "storage_error", "reason": str(e)},
            )
            self.summary.errors.append(f"{job.job_id}/{slot.counter}: storage")
            return False
        add_image(
            job.result,
            slot,
            StoredImage.model_construct(  # trusted values: skip validation in the hot path
                url=url,
                mime_type=info.mime_type,
                width=info.width,
                height=info.height,
                bytes=info.size,
                sha256=info.sha256,
                model=image.model,
                generated_at=self.stamp(),
                index=slot.index,
            ),
        )
        self.summary.images_stored += 1
        if log.isEnabledFor(logging.INFO):  # skip building the event when nobody reads it
            log.info(
                "image stored",
                extra={
                    **fields,
                    "event": "image_stored",
                    "url": url,
                    "attempt": job.attempts_of(slot) + 1,
                    "duration": round(time.monotonic() - started, 3),
                },
            )
        return True

    async def _call(self, request: ImageRequest) -> tuple[GeneratedImage, ImageInfo]:
        self.summary.api_calls += 1
        image = await self.generator.generate(request)
        try:
            return image, inspect_image(image.data)
        except ValueError as e:
            raise TransientError(f"unreadable image in reply: {e}") from e

    async def _count_failure(
        self, job: Job, slot: Slot, error: GenerationError, total: int
    ) -> None:
        count = await self.store.count_attempt(job.job_id, slot.counter)
        if count < 0:
            self._lost(job)
        else:
            job.attempts[slot.counter] = count

    def _log_retry(
        self, fields: dict[str, Any], error: GenerationError, n: int, delay: float
    ) -> None:
        self.summary.retries += 1
        log.info(
            "retry scheduled",
            extra={
                **fields,
                "event": "retry_scheduled",
                "reason": error.reason,
                "attempt": n,
                "delay": round(delay, 2),
            },
        )

    # -- recording ------------------------------------------------------------

    async def _progress(self, job: Job) -> None:
        settle(job.result, len(job.left), self.stamp())
        job.result.attempts = job.attempts.get("job", 0)
        if not await self.store.progress(job.job_id, job.result) and not job.ended:
            self._lost(job)

    async def _end(self, job: Job) -> None:
        if job.ended or job.lost:
            return
        job.ended = True
        settle(job.result, 0, self.stamp())
        job.result.attempts = job.attempts.get("job", 0)
        if not await self.store.finish(job.job_id, job.result):
            job.ended = False
            self._lost(job)
            return
        status = job.result.status
        if status == "completed":
            self.summary.jobs_completed += 1
        elif status == "partial":
            self.summary.jobs_partial += 1
        else:
            self.summary.jobs_failed += 1
        log.info(
            "job finished", extra={"event": "job_finished", "job_id": job.job_id, "status": status}
        )

    def _lost(self, job: Job) -> None:
        if not job.lost:
            job.lost = True
            self.summary.leases_lost += 1
            log.warning(
                "lease lost to another sweep; dropping the job",
                extra={"event": "lease_lost", "job_id": job.job_id},
            )


def new_token() -> str:
    """A lease token unique to one sweep."""
    return uuid.uuid4().hex
