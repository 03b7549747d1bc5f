"""Drawing one image slot: generate (with the retry policy), check, store, record.

The slot's outcome is written into the job's result record in memory; the
sweep decides when to write it to Redis. Stored bytes found from a sweep that
died before recording them are adopted instead of paid for again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from enqueue_client.records import StoredImage

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
from .jobs import Job
from .jobstore import JobStore
from .metrics import Metrics, reason_label
from .results import Slot, add_failure, add_image
from .retry import RateGate, RetryPolicy, call_with_retry
from .storage import Storage, object_name
from .summary import SweepSummary

log = logging.getLogger("sweeper.sweep")


class Drawer:
    """Draws slots for one sweep; counts into its summary and metrics."""

    def __init__(
        self,
        *,
        store: JobStore,
        generator: Generator,
        storage: Storage,
        budget: Budget,
        policy: RetryPolicy,
        default_model: str,
        summary: SweepSummary,
        metrics: Metrics,
        stamp: Callable[[], str],
        lost: Callable[[Job], None],
    ) -> None:
        self.store = store
        self.generator = generator
        self.storage = storage
        self.budget = budget
        self.policy = policy
        self.default_model = default_model
        self.summary = summary
        self.metrics = metrics
        self.stamp = stamp
        self.lost = lost
        self.timer = CallTimer()
        self.gate = RateGate(budget.clock)
        self.in_flight = 0

    async def draw(self, job: Job, slot: Slot) -> bool:
        """Generate and store one slot; True when it is settled (stored or failed for good)."""
        spec = next(image for image in job.record.images if image.key == slot.key)
        request = ImageRequest(
            job_id=job.job_id,
            key=slot.key,
            index=slot.variation,
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
        fields = {"job_id": job.job_id, "image_key": slot.key, "variation": slot.variation}
        if job.attempts.get("job", 1) > 1 and await self._adopt(job, slot, request.model):
            return True  # an earlier sweep stored it and died before recording it
        try:
            image, info = await call_with_retry(
                lambda: self._call(request),
                policy=self.policy,
                budget=self.budget,
                timer=self.timer,
                gate=self.gate,
                attempts_before=job.attempts_of(slot),
                on_failure=lambda error, total: self._count_failure(job, slot, error, total),
                on_retry=lambda error, n, delay: self._log_retry(fields, started, error, n, delay),
            )
        except Deferred as e:
            self.summary.images_deferred += 1
            self.metrics.images_deferred.inc()
            log.info(
                "image left for the next sweep",
                extra={
                    **fields,
                    "event": "image_deferred",
                    "reason": e.reason,
                    "attempt": job.attempts_of(slot),
                    "duration": round(time.monotonic() - started, 3),
                },
            )
            return False
        except PermanentError as e:
            calls = job.attempts_of(slot) + (0 if isinstance(e, AttemptsExhausted) else 1)
            add_failure(job.result, slot, e.reason, retryable=e.retryable, attempts=calls)
            self.summary.images_failed += 1
            self.metrics.child(self.metrics.images_failed, reason_label(e.reason)).inc()
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
                object_name(job.job_id, slot.key, slot.variation, info), image.data, info.mime_type
            )
        except StorageError as e:
            log.error(
                "could not store image; it stays pending",
                extra={**fields, "event": "storage_error", "reason": str(e)},
            )
            self.summary.errors.append(f"{job.job_id}/{slot.counter}: storage")
            return False
        add_image(job.result, slot, _stored(url, info, image.model, self.stamp(), slot.variation))
        self.summary.images_stored += 1
        self.metrics.child(self.metrics.images_generated, image.model).inc()
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

    async def _adopt(self, job: Job, slot: Slot, model: str) -> bool:
        """Record bytes a crashed sweep stored but never wrote into the result."""
        found = await self.storage.find(job.job_id, slot.key, slot.variation)
        if found is None:
            return False
        url, data = found
        try:
            info = inspect_image(data)
        except ValueError:
            return False
        add_image(job.result, slot, _stored(url, info, model, self.stamp(), slot.variation))
        self.summary.images_adopted += 1
        self.metrics.child(self.metrics.images_generated, model).inc()
        log.info(
            "stored image adopted without a new call",
            extra={
                "event": "image_adopted",
                "job_id": job.job_id,
                "image_key": slot.key,
                "variation": slot.variation,
                "url": url,
            },
        )
        return True

    async def _call(self, request: ImageRequest) -> tuple[GeneratedImage, ImageInfo]:
        self.summary.api_calls += 1
        self.in_flight += 1
        started = time.monotonic()
        outcome = "error"
        try:
            image = await self.generator.generate(request)
            try:
                info = inspect_image(image.data)
            except ValueError as e:
                raise TransientError(f"unreadable image in reply: {e}") from e
            outcome = "ok"
            return image, info
        finally:
            self.in_flight -= 1
            self.metrics.child(self.metrics.api_latency, outcome).observe(
                time.monotonic() - started
            )

    async def _count_failure(
        self, job: Job, slot: Slot, error: GenerationError, total: int
    ) -> None:
        count = await self.store.count_attempt(job.job_id, slot.counter)
        if count < 0:
            self.lost(job)
        else:
            job.attempts[slot.counter] = count

    def _log_retry(
        self, fields: dict[str, Any], started: float, error: GenerationError, n: int, delay: float
    ) -> None:
        self.summary.retries += 1
        self.metrics.child(self.metrics.retries, reason_label(error.reason)).inc()
        log.info(
            "retry scheduled",
            extra={
                **fields,
                "event": "retry_scheduled",
                "reason": error.reason,
                "attempt": n,
                "delay": round(delay, 2),
                "duration": round(time.monotonic() - started, 3),
            },
        )


def _stored(url: str, info: ImageInfo, model: str, stamp: str, index: int) -> StoredImage:
    return StoredImage(  # (model_construct measured slower than validating these few fields)
        url=url,
        mime_type=info.mime_type,
        width=info.width,
        height=info.height,
        bytes=info.size,
        sha256=info.sha256,
        model=model,
        generated_at=stamp,
        index=index,
    )
