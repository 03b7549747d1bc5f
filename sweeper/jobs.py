"""From what Redis holds to a runnable job, or a quarantine with its reason."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from enqueue_client.keys import is_valid_id
from enqueue_client.records import MAX_RECORD_BYTES, JobRecord, ResultRecord, error_summary

from .jobstore import LARGE, MISSING, RECORD, WRONG_TYPE, Peeked
from .results import Slot


@dataclass(slots=True)
class Candidate:
    """A pending id after the window read: ready to order and claim."""

    job_id: str
    priority: int = 0
    timestamp_ms: int = 0
    record: JobRecord | None = None
    needs_fetch: bool = False
    problem: str | None = None  # set: quarantine instead of running


@dataclass(slots=True, eq=False)
class Job:
    """A claimed job during a sweep."""

    job_id: str
    record: JobRecord
    result: ResultRecord
    left: list[Slot]
    attempts: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    started: bool = False
    ended: bool = False
    lost: bool = False
    claimed_at: float = field(default_factory=time.monotonic)

    def attempts_of(self, slot: Slot) -> int:
        """Failed calls of this slot in earlier sweeps."""
        return self.attempts.get(slot.counter, 0)

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing left: ready to finish."""
        return not self.left and self.in_flight == 0


def candidate_from(peeked: Peeked) -> Candidate:
    """Validate id and record; a problem becomes the quarantine reason."""
    job_id = peeked.job_id
    if not is_valid_id(job_id):
        return Candidate(job_id, problem="invalid job id: use 1 to 128 of A-Z a-z 0-9 . _ : -")
    if peeked.kind == MISSING:
        return Candidate(job_id, problem="record is missing (nothing at the record key)")
    if peeked.kind == WRONG_TYPE:
        return Candidate(job_id, problem=f"record is a Redis {peeked.payload}, not a string")
    if peeked.kind == LARGE:
        size = int(peeked.payload)
        if size > MAX_RECORD_BYTES:
            return Candidate(
                job_id, problem=f"record is {size} bytes, over the {MAX_RECORD_BYTES}-byte limit"
            )
        return Candidate(job_id, timestamp_ms=peeked.first_seen_ms, needs_fetch=True)
    assert peeked.kind == RECORD
    return _from_json(job_id, peeked.payload, peeked.first_seen_ms)


def _from_json(job_id: str, raw: str, first_seen_ms: int) -> Candidate:
    record, problem = parse_record(raw)
    if record is None:
        return Candidate(job_id, problem=problem)
    timestamp = record.timestamp if record.timestamp is not None else first_seen_ms
    return Candidate(job_id, record.priority, timestamp, record)


def parse_record(raw: str) -> tuple[JobRecord | None, str]:
    """The record, or None and why it cannot be used."""
    if len(raw) <= MAX_RECORD_BYTES // 4:
        try:  # fast path: most records are fine, and pydantic parses JSON itself
            return JobRecord.model_validate_json(raw), ""
        except (ValidationError, ValueError):
            pass  # find out why, below, with messages written for people
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return None, "record is not valid UTF-8"
    if len(raw) > MAX_RECORD_BYTES:
        return None, f"record is over the {MAX_RECORD_BYTES}-byte limit"
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        return None, f"record is not JSON: {str(e)[:200]}"
    if not isinstance(data, dict):
        return None, f"record is JSON {type(data).__name__}, not an object"
    try:
        return JobRecord.model_validate(data), ""
    except ValidationError as e:
        return None, f"invalid record: {error_summary(e.errors())[:1000]}"
    except (ValueError, TypeError, RecursionError) as e:
        return None, f"invalid record: {str(e)[:200]}"


def fill_fetched(candidate: Candidate, raw: str | None) -> Candidate:
    """A large record fetched at claim time, parsed now."""
    if raw is None:
        return Candidate(candidate.job_id, problem="record is missing (nothing at the record key)")
    return _from_json(candidate.job_id, raw, candidate.timestamp_ms)


def order(candidates: list[Candidate]) -> list[Candidate]:
    """Higher ``priority`` first; ties: newer ``timestamp`` first (quarantines go first: cheap)."""
    return sorted(
        candidates,
        key=lambda c: (c.problem is None, -c.priority, -c.timestamp_ms),
    )
