"""Enqueue jobs and read their results: the only code a game backend needs.

Enqueueing is two Redis writes in one MULTI/EXEC (record first, then the id
into the pending set), so it returns in about a millisecond and can never
leave an id in the set without its record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel, ValidationError

from .errors import InvalidJobId, InvalidRecord
from .keys import Keys, is_valid_id
from .records import (
    MAX_RECORD_BYTES,
    JobRecord,
    ResultRecord,
    TelegramTarget,
    error_summary,
)

ImageInput = Mapping[str, Any] | BaseModel
_POLL_START = 0.2
_POLL_MAX = 2.0


def build_record(
    job_id: str,
    images: Iterable[ImageInput],
    *,
    priority: int = 0,
    callback_url: str | None = None,
    telegram: Mapping[str, Any] | TelegramTarget | None = None,
    case_id: str | None = None,
    timestamp_ms: int | None = None,
) -> JobRecord:
    """Validate everything and return the record, or raise with the field named."""
    if not isinstance(job_id, str) or not is_valid_id(job_id):
        raise InvalidJobId(
            f"job id {job_id!r} is invalid: use 1 to 128 characters of A-Z a-z 0-9 . _ : -"
        )
    raw: dict[str, Any] = {
        "caseId": case_id or job_id,
        "timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
        "priority": priority,
        "images": [_as_dict(image) for image in images],
    }
    if callback_url is not None:
        raw["callbackUrl"] = callback_url
    if telegram is not None:
        raw["telegram"] = _as_dict(telegram)
    try:
        record = JobRecord.model_validate(raw)
    except ValidationError as e:
        raise InvalidRecord(f"job {job_id}: {error_summary(e.errors())}") from None
    if len(record.to_json().encode()) > MAX_RECORD_BYTES:
        raise InvalidRecord(f"job {job_id}: record is larger than {MAX_RECORD_BYTES} bytes")
    return record


def _as_dict(value: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True)
    return dict(value)


def parse_status(job_id: str, result_json: str | None, pending: bool) -> ResultRecord:
    """The result record if there is one, else a synthetic ``pending``/``unknown`` one."""
    if result_json is not None:
        return ResultRecord.model_validate_json(result_json)
    return ResultRecord(id=job_id, status="pending" if pending else "unknown")


class EnqueueClient:
    """Synchronous producer client.

    >>> client = EnqueueClient.from_url("redis://localhost:6379/0")
    >>> client.enqueue("case-123", [{"key": "cover", "prompt": "A rainy neon alley"}])
    """

    def __init__(self, redis_client: redis.Redis, *, keys: Keys | None = None) -> None:
        self.redis = redis_client
        self.keys = keys or Keys()

    @classmethod
    def from_url(cls, url: str, *, keys: Keys | None = None, **kwargs: Any) -> EnqueueClient:
        """Connect with a ``redis://``, ``rediss://`` or ``unix://`` URL."""
        return cls(redis.Redis.from_url(url, decode_responses=True, **kwargs), keys=keys)

    def enqueue(
        self,
        job_id: str,
        images: Iterable[ImageInput],
        *,
        priority: int = 0,
        callback_url: str | None = None,
        telegram: Mapping[str, Any] | TelegramTarget | None = None,
        case_id: str | None = None,
    ) -> JobRecord:
        """Write the record and add the id to the pending set; returns the record written.

        Enqueueing an id again replaces its record and clears its old result,
        so the job starts afresh.
        """
        record = build_record(
            job_id,
            images,
            priority=priority,
            callback_url=callback_url,
            telegram=telegram,
            case_id=case_id,
        )
        pipe = self.redis.pipeline(transaction=True)
        _queue_enqueue(pipe, self.keys, job_id, record)
        pipe.execute()
        return record

    def status(self, job_id: str) -> ResultRecord:
        """The result record; ``pending`` while queued, ``unknown`` if never seen."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.result(job_id))
        pipe.sismember(self.keys.pending_set, job_id)
        result_json, pending = pipe.execute()
        return parse_status(job_id, result_json, bool(pending))

    def wait(self, job_id: str, timeout: float) -> ResultRecord:
        """Poll until the job ends (completed, partial, failed) or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        delay = _POLL_START
        while True:
            state = self.status(job_id)
            remaining = deadline - time.monotonic()
            if state.is_final or remaining <= 0:
                return state
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX)

    def close(self) -> None:
        """Close the connection pool."""
        self.redis.close()


class AsyncEnqueueClient:
    """The same client for asyncio code (redis-py's asyncio client)."""

    def __init__(self, redis_client: aioredis.Redis, *, keys: Keys | None = None) -> None:
        self.redis = redis_client
        self.keys = keys or Keys()

    @classmethod
    def from_url(cls, url: str, *, keys: Keys | None = None, **kwargs: Any) -> AsyncEnqueueClient:
        """Connect with a ``redis://``, ``rediss://`` or ``unix://`` URL."""
        return cls(aioredis.Redis.from_url(url, decode_responses=True, **kwargs), keys=keys)

    async def enqueue(
        self,
        job_id: str,
        images: Iterable[ImageInput],
        *,
        priority: int = 0,
        callback_url: str | None = None,
        telegram: Mapping[str, Any] | TelegramTarget | None = None,
        case_id: str | None = None,
    ) -> JobRecord:
        """See :meth:`EnqueueClient.enqueue`."""
        record = build_record(
            job_id,
            images,
            priority=priority,
            callback_url=callback_url,
            telegram=telegram,
            case_id=case_id,
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            _queue_enqueue(pipe, self.keys, job_id, record)
            await pipe.execute()
        return record

    async def status(self, job_id: str) -> ResultRecord:
        """See :meth:`EnqueueClient.status`."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.result(job_id))
            pipe.sismember(self.keys.pending_set, job_id)
            result_json, pending = await pipe.execute()
        return parse_status(job_id, result_json, bool(pending))

    async def wait(self, job_id: str, timeout: float) -> ResultRecord:  # noqa: ASYNC109 - mirrors the sync API
        """See :meth:`EnqueueClient.wait`."""
        deadline = time.monotonic() + timeout
        delay = _POLL_START
        while True:
            state = await self.status(job_id)
            remaining = deadline - time.monotonic()
            if state.is_final or remaining <= 0:
                return state
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()


def _queue_enqueue(pipe: Any, keys: Keys, job_id: str, record: JobRecord) -> None:
    """The writes of one enqueue, queued on a MULTI/EXEC pipeline (sync or async)."""
    pipe.set(keys.record(job_id), record.to_json())
    pipe.delete(keys.result(job_id), keys.attempts(job_id))
    pipe.srem(keys.failed_set, job_id)
    pipe.sadd(keys.pending_set, job_id)
