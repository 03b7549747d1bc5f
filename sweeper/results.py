"""Result records: resuming from one, adding images and failures, final status.

Pure functions of their inputs (time is an argument), so the rules of
CONTRACT section 2 are tested without Redis or a clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from pydantic import ValidationError

from enqueue_client.records import ImageFailure, JobRecord, ResultRecord, StoredImage, utc_iso


class Slot(NamedTuple):
    """One paid image: ``variation`` (1-based) of image ``key``.

    A named tuple, not a frozen dataclass: one is made per image per sweep,
    and tuples are several times cheaper to create.
    """

    key: str
    variation: int

    @property
    def counter(self) -> str:
        """Its field in the attempts hash."""
        return f"{self.key}#{self.variation}"


def all_slots(record: JobRecord) -> list[Slot]:
    """Every slot of a record, in record order."""
    return [Slot(image.key, n) for image in record.images for n in range(1, image.count + 1)]


def resume(
    job_id: str, record: JobRecord, result_json: str | None
) -> tuple[ResultRecord, list[Slot]]:
    """The result so far and the slots still to draw.

    Images already stored are kept and never drawn again. Permanent failures
    of an unfinished run are kept too; a result that is already final (the
    id was put back by hand) keeps its images and retries its failures.
    """
    if not result_json:  # the common case: a fresh job
        return ResultRecord(id=job_id, status="pending"), all_slots(record)
    result = _parse(job_id, result_json)
    wanted = {image.key: image.count for image in record.images}
    images = {
        key: sorted(
            (img for img in stored if 1 <= img.index <= wanted[key]), key=lambda img: img.index
        )
        for key, stored in result.images.items()
        if key in wanted
    }
    failures = (
        {}
        if result.is_final
        else {key: failure for key, failure in result.failures.items() if key in wanted}
    )
    result = result.model_copy(
        update={
            "images": {k: v for k, v in images.items() if v},
            "failures": failures,
            "completed_at": None,
        }
    )
    done = {Slot(key, img.index) for key, stored in images.items() for img in stored}
    done |= {Slot(key, n) for key, failure in failures.items() for n in _failed_indexes(failure)}
    left = [slot for slot in all_slots(record) if slot not in done]
    return result, left


def _parse(job_id: str, result_json: str | None) -> ResultRecord:
    if result_json:
        try:
            return ResultRecord.model_validate_json(result_json)
        except ValidationError:
            pass  # an unreadable result cannot be resumed from; start it afresh
    return ResultRecord(id=job_id, status="pending")


def _failed_indexes(failure: ImageFailure) -> list[int]:
    extra = failure.model_extra or {}
    indexes = extra.get("variations", [])
    return [int(i) for i in indexes if isinstance(i, int)]


def add_image(result: ResultRecord, slot: Slot, image: StoredImage) -> None:
    """Record a stored variation (kept sorted by variation number)."""
    stored = [img for img in result.images.get(slot.key, []) if img.index != slot.variation]
    stored.append(image)
    stored.sort(key=lambda img: img.index)
    result.images[slot.key] = stored


def add_failure(
    result: ResultRecord, slot: Slot, reason: str, *, retryable: bool, attempts: int
) -> None:
    """Record that a variation failed for good (``variations`` lists which)."""
    previous = result.failures.get(slot.key)
    variations = sorted({*(_failed_indexes(previous) if previous else []), slot.variation})
    result.failures[slot.key] = ImageFailure.model_validate(
        {"reason": reason, "retryable": retryable, "attempts": attempts, "variations": variations}
    )


def settle(
    result: ResultRecord, slots_left: int, now: datetime | str | None = None
) -> ResultRecord:
    """Set ``status``, ``updatedAt`` and, once final, ``completedAt``.

    ``now`` is a time or an already formatted stamp.
    """
    stored = any(result.images.values())
    if slots_left:
        result.status = "running" if stored else "pending"
    elif not result.failures:
        result.status = "completed"
    else:
        result.status = "partial" if stored else "failed"
    stamp = now if isinstance(now, str) else utc_iso(now)
    result.updated_at = stamp
    result.completed_at = stamp if result.is_final else None
    return result


def quarantined(job_id: str, reason: str, now: datetime | str | None = None) -> ResultRecord:
    """The result record of a record that cannot be run (CONTRACT section 4)."""
    result = ResultRecord(
        id=printable_id(job_id),
        status="failed",
        failures={"*": ImageFailure(reason=reason, retryable=False, attempts=0)},
    )
    return settle(result, 0, now)


def printable_id(job_id: str) -> str:
    """The id as JSON can carry it: bytes that are not UTF-8 shown as ``\\xff``."""
    return job_id.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def final_result(result_json: str | None) -> ResultRecord | None:
    """The stored result if it is readable and final, else None."""
    if not result_json:
        return None
    try:
        result = ResultRecord.model_validate_json(result_json)
    except ValueError:
        return None
    return result if result.is_final else None
