"""Every Redis operation of a sweep: scan, peek, claim, progress, finish, release.

Reads are batched per window (one round trip for a few hundred ids), writes
go through :class:`ScriptBatcher`, and every write that changes a job checks
the caller's lease token inside Lua (see :mod:`sweeper.scripts`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from enqueue_client.keys import Keys
from enqueue_client.records import ResultRecord

from . import scripts
from .batcher import ScriptBatcher

# Records up to this size come back with the window read; larger ones (inline
# input images) are fetched one by one when claimed, to bound memory.
INLINE_RECORD_LIMIT = 256 * 1024

MISSING, RECORD, LARGE, WRONG_TYPE = 0, 1, 2, 3
# Records up to this size are decoded in Lua for their timestamp (status, gauges).
DECODE_LIMIT = 64 * 1024


@dataclass(slots=True)
class Peeked:
    """One id as read from the window: its raw record (if small) and first-seen time."""

    job_id: str
    kind: int
    payload: str
    first_seen_ms: int


@dataclass(slots=True)
class Claimed:
    """What a claim returns for one job: earlier results and attempt counters."""

    job_id: str
    result_json: str | None
    attempts: dict[str, int] = field(default_factory=dict)
    record_json: str | None = None


class JobStore:
    """The sweeper's view of Redis, for one sweep (one lease token)."""

    def __init__(self, redis: Redis, keys: Keys, *, token: str, lease_seconds: float) -> None:
        self.redis = redis
        self.keys = keys
        self.token = token
        self.lease_ms = int(lease_seconds * 1000)
        self.batcher = ScriptBatcher(redis)
        self.reads = 0  # round trips outside the batcher (scan, peek, claim, cursor)
        self._peek = redis.register_script(scripts.PEEK_RECORDS)
        self._claim = redis.register_script(scripts.CLAIM)
        self._oldest = redis.register_script(scripts.OLDEST)

    async def load_scripts(self) -> None:
        """Register the write scripts once per sweep (one round trip)."""
        await self.batcher.load(
            scripts.BATCHED_PROGRESS,
            scripts.BATCHED_FINISH,
            scripts.BATCHED_RELEASE,
            scripts.BATCHED_COUNT_ATTEMPT,
            scripts.BATCHED_RENEW,
        )

    # -- reading --------------------------------------------------------------

    async def scan(self, cursor: int, count: int) -> tuple[int, list[str]]:
        """One SSCAN step over the pending set."""
        self.reads += 1
        next_cursor, ids = await self.redis.sscan(self.keys.pending_set, cursor, count=count)
        return int(next_cursor), [str(i) for i in ids]

    async def load_cursor(self) -> int:
        """Where the previous sweep's scan stopped (0 = from the start)."""
        self.reads += 1
        value = await self.redis.get(self.keys.scan_cursor)
        return int(value) if value and str(value).isdigit() else 0

    async def save_cursor(self, cursor: int) -> None:
        """Remember the scan position so the next sweep goes on from there."""
        self.reads += 1
        await self.redis.set(self.keys.scan_cursor, cursor)

    async def peek(self, job_ids: list[str], now_ms: int | None = None) -> list[Peeked]:
        """Read a window of records in one round trip."""
        if not job_ids:
            return []
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        keys = [self.keys.first_seen, *(self.keys.record(i) for i in job_ids)]
        args: list[Any] = [now_ms, INLINE_RECORD_LIMIT, *job_ids]
        self.reads += 1
        rows = await self._peek(keys=keys, args=args)
        return [
            Peeked(job_id, int(kind), str(payload), _int(seen))
            for job_id, (kind, payload, seen) in zip(job_ids, rows, strict=True)
        ]

    async def backlog(self, sample: int = 1000) -> tuple[int, int | None]:
        """Pending count and the oldest enqueue time (ms) among up to ``sample`` ids."""
        self.reads += 1
        pending = int(await self.redis.scard(self.keys.pending_set))
        _, ids = await self.scan(0, sample)
        if not ids:
            return pending, None
        ids = ids[:sample]
        keys = [self.keys.first_seen, *(self.keys.record(i) for i in ids)]
        oldest = await self._oldest(keys=keys, args=[DECODE_LIMIT, *ids])
        return pending, int(float(oldest)) if oldest else None

    # -- claiming -------------------------------------------------------------

    async def claim(self, job_ids: list[str], fetch_record: set[str]) -> list[Claimed]:
        """Lease every id still pending and free; return only the ones won."""
        if not job_ids:
            return []
        keys: list[str] = [self.keys.pending_set]
        args: list[Any] = [self.token, self.lease_ms]
        for job_id in job_ids:
            keys += [
                self.keys.lease(job_id),
                self.keys.result(job_id),
                self.keys.attempts(job_id),
                self.keys.record(job_id),
            ]
            args += [job_id, "1" if job_id in fetch_record else "0"]
        self.reads += 1
        rows = await self._claim(keys=keys, args=args)
        won = []
        for job_id, (ok, result_json, attempts, record) in zip(job_ids, rows, strict=True):
            if int(ok) != 1:
                continue
            pairs = list(attempts or [])
            counters = {str(pairs[i]): _int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
            won.append(Claimed(job_id, result_json or None, counters, record or None))
        return won

    @property
    def round_trips(self) -> int:
        """Round trips to Redis so far."""
        return self.reads + self.batcher.round_trips

    # -- writing (all fenced by the lease token, all batched) -----------------

    def progress_nowait(self, job_id: str, result: ResultRecord) -> asyncio.Future[Any]:
        """Queue: store the result so far and renew the lease; reply 0 if the lease was lost."""
        keys = [self.keys.lease(job_id), self.keys.result(job_id)]
        args = [self.token, result.to_json(), self.lease_ms]
        return self.batcher.submit(scripts.BATCHED_PROGRESS, keys, args)

    async def progress(self, job_id: str, result: ResultRecord) -> bool:
        """Store the result so far and renew the lease; False if the lease was lost."""
        return int(await self.progress_nowait(job_id, result)) == 1

    def finish_nowait(
        self, job_id: str, result: ResultRecord, delivery: str = "", due_ms: int = 0
    ) -> asyncio.Future[Any]:
        """Queue: end the job atomically (result, sets, record); the reply is 0 if not ours."""
        keys = [
            self.keys.lease(job_id),
            self.keys.result(job_id),
            self.keys.pending_set,
            self.keys.record(job_id),
            self.keys.failed_set,
            self.keys.attempts(job_id),
            self.keys.first_seen,
            self.keys.deliveries,
            self.keys.delivery(job_id),
        ]
        args = [self.token, job_id, result.to_json(), result.status, delivery, due_ms]
        return self.batcher.submit(scripts.BATCHED_FINISH, keys, args)

    async def finish(self, job_id: str, result: ResultRecord) -> bool:
        """End the job atomically; False if the lease was not ours."""
        return int(await self.finish_nowait(job_id, result)) == 1

    async def renew(self, job_ids: list[str]) -> list[bool]:
        """Extend the leases of jobs still held; False where a lease was lost."""
        replies = await asyncio.gather(
            *(
                self.batcher.run(
                    scripts.BATCHED_RENEW, [self.keys.lease(i)], [self.token, self.lease_ms]
                )
                for i in job_ids
            )
        )
        return [int(reply) == 1 for reply in replies]

    async def release(self, job_id: str, *, started: bool) -> bool:
        """Give the job back for the next sweep (and its start, if it never started)."""
        keys = [self.keys.lease(job_id), self.keys.attempts(job_id)]
        args = [self.token, "1" if started else "0"]
        return int(await self.batcher.run(scripts.BATCHED_RELEASE, keys, args)) == 1

    async def count_attempt(self, job_id: str, counter: str) -> int:
        """Add one to an attempt counter; -1 if the lease was lost."""
        keys = [self.keys.lease(job_id), self.keys.attempts(job_id)]
        reply = await self.batcher.run(scripts.BATCHED_COUNT_ATTEMPT, keys, [self.token, counter])
        return int(reply)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
