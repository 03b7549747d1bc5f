"""Operator commands on a synchronous connection: status, inspect, requeue, enqueue."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis
from pydantic import ValidationError

from enqueue_client import EnqueueClient, ResultRecord
from enqueue_client.keys import Keys

from . import scripts
from .jobstore import DECODE_LIMIT

SAMPLE_LIMIT = 10_000


def status(client: redis.Redis, keys: Keys, now_ms: int | None = None) -> dict[str, Any]:
    """Counts for the dashboard: pending, leased, failed, oldest pending age, last run."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    pipe = client.pipeline(transaction=False)
    pipe.scard(keys.pending_set)
    pipe.scard(keys.failed_set)
    pipe.lrange(keys.runs, 0, 9)
    pending, failed, runs = pipe.execute()
    leased = sum(1 for _ in client.scan_iter(match=keys.lease_pattern(), count=1000))
    oldest, sampled = _oldest_pending(client, keys, now_ms)
    return {
        "pending": int(pending),
        "leased": leased,
        "failed": int(failed),
        "oldest_pending_age_seconds": None
        if oldest is None
        else round((now_ms - oldest) / 1000, 1),
        "oldest_sampled": sampled,
        "last_run": json.loads(runs[0]) if runs else None,
        "recent_runs": [json.loads(run) for run in runs],
    }


def _oldest_pending(client: redis.Redis, keys: Keys, now_ms: int) -> tuple[int | None, int]:
    """Oldest enqueue time among up to SAMPLE_LIMIT pending ids (a huge set is sampled).

    Computed in Lua next to the records, so large records never cross the wire.
    """
    ids: list[str] = []
    for job_id in client.sscan_iter(keys.pending_set, count=1000):
        ids.append(str(job_id))
        if len(ids) >= SAMPLE_LIMIT:
            break
    if not ids:
        return None, 0
    oldest_script = client.register_script(scripts.OLDEST)
    oldest = None
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        found = oldest_script(
            keys=[keys.first_seen, *(keys.record(i) for i in chunk)], args=[DECODE_LIMIT, *chunk]
        )
        if found:
            value = int(float(found))
            oldest = value if oldest is None else min(oldest, value)
    return (oldest if oldest is not None else now_ms), len(ids)


def inspect(client: redis.Redis, keys: Keys, job_id: str) -> dict[str, Any]:
    """Everything known about one job."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.record(job_id))
    pipe.get(keys.result(job_id))
    pipe.sismember(keys.pending_set, job_id)
    pipe.sismember(keys.failed_set, job_id)
    pipe.pttl(keys.lease(job_id))
    pipe.hgetall(keys.attempts(job_id))
    record, result, pending, failed, lease_ms, attempts = pipe.execute(raise_on_error=False)
    return {
        "id": job_id,
        "pending": bool(pending),
        "failed_set": bool(failed),
        "lease_seconds_left": round(lease_ms / 1000, 1)
        if isinstance(lease_ms, int) and lease_ms > 0
        else None,
        "attempts": {k: int(v) for k, v in (attempts or {}).items()}
        if isinstance(attempts, dict)
        else {},
        "record": _maybe_json(record),
        "result": _maybe_json(result),
    }


def _maybe_json(raw: Any) -> Any:
    if not isinstance(raw, str):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def requeue(client: redis.Redis, keys: Keys, job_ids: Iterable[str]) -> dict[str, str]:
    """Put jobs back in the pending set with attempts reset; stored images are kept."""
    outcome: dict[str, str] = {}
    for job_id in job_ids:
        if not client.exists(keys.record(job_id)):
            outcome[job_id] = "no record (a completed job's record is deleted): enqueue it again"
            continue
        result = _reset_result(job_id, _text(client.get(keys.result(job_id))))
        pipe = client.pipeline(transaction=True)
        pipe.set(keys.result(job_id), result.to_json())
        pipe.delete(keys.attempts(job_id))
        pipe.srem(keys.failed_set, job_id)
        pipe.sadd(keys.pending_set, job_id)
        pipe.execute()
        outcome[job_id] = "requeued"
    return outcome


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _reset_result(job_id: str, raw: str | None) -> ResultRecord:
    try:
        old = ResultRecord.model_validate_json(raw) if raw else None
    except ValidationError:
        old = None
    images = old.images if old else {}
    return ResultRecord(
        id=job_id, status="running" if any(images.values()) else "pending", images=images
    )


def failed_ids(client: redis.Redis, keys: Keys) -> list[str]:
    """Every id in the failed set."""
    return sorted(str(i) for i in client.sscan_iter(keys.failed_set, count=1000))


def enqueue(
    client: redis.Redis, keys: Keys, job_id: str, images: list[dict[str, Any]], priority: int = 0
) -> dict[str, Any]:
    """Enqueue through the producer client, exactly as a game backend would."""
    record = EnqueueClient(client, keys=keys).enqueue(job_id, images, priority=priority)
    return json.loads(record.to_json())  # type: ignore[no-any-return]


def dry_run(client: redis.Redis, keys: Keys, window: int = 1000) -> list[dict[str, Any]]:
    """What the next sweep would do with the first window, in its order; writes nothing."""
    from .jobs import candidate_from, order
    from .jobstore import MISSING, RECORD, WRONG_TYPE, Peeked

    cursor = client.get(keys.scan_cursor)
    start = int(cursor) if isinstance(cursor, str) and cursor.isdigit() else 0
    ids: list[str] = []
    next_cursor, found = client.sscan(keys.pending_set, start, count=window)
    ids += [str(i) for i in found]
    if next_cursor == 0 and start != 0 and len(ids) < window:
        ids += [str(i) for i in client.sscan(keys.pending_set, 0, count=window)[1] if i not in ids]
    pipe = client.pipeline(transaction=False)
    for job_id in ids[:window]:
        pipe.get(keys.record(job_id))
        pipe.exists(keys.lease(job_id))
    replies = pipe.execute(raise_on_error=False)
    peeked, leased = [], {}
    for job_id, raw, lease in zip(ids, replies[::2], replies[1::2], strict=False):
        if isinstance(raw, Exception):
            peeked.append(Peeked(job_id, WRONG_TYPE, "non-string value", 0))
        else:
            peeked.append(Peeked(job_id, MISSING if raw is None else RECORD, raw or "", 0))
        leased[job_id] = bool(lease)
    plan = []
    for candidate in order([candidate_from(p) for p in peeked]):
        if leased[candidate.job_id]:
            action = "skip: leased by a running sweep"
        elif candidate.problem:
            action = f"quarantine: {candidate.problem}"
        else:
            action = "claim"
        record = candidate.record
        plan.append(
            {
                "id": candidate.job_id,
                "priority": candidate.priority,
                "timestamp": candidate.timestamp_ms or None,
                "images": sum(i.count for i in record.images) if record else 0,
                "action": action,
            }
        )
    return plan
