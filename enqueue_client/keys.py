"""Every Redis key name the producer and the sweeper use, spelled once.

The first four names are the public contract (producers in other languages
write them directly); everything the sweeper keeps for itself lives under one
prefix (default ``sweeper:``) so an operator can find and delete it at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PENDING_SET = "pending-image-jobs"
RECORD_PREFIX = "pending-images:"
RESULT_PREFIX = "image-results:"
FAILED_SET = "failed-image-jobs"
INTERNAL_PREFIX = "sweeper:"

#: Job ids and image keys: 1 to 128 of ``A-Z a-z 0-9 . _ : -`` (CONTRACT section 1).
ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_valid_id(value: str) -> bool:
    """True when ``value`` may be used as a job id or image key."""
    return ID_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds key names from the (configurable) prefixes."""

    pending_set: str = PENDING_SET
    record_prefix: str = RECORD_PREFIX
    result_prefix: str = RESULT_PREFIX
    failed_set: str = FAILED_SET
    internal_prefix: str = INTERNAL_PREFIX

    def record(self, job_id: str) -> str:
        """``pending-images:<id>``: the producer's record."""
        return self.record_prefix + job_id

    def result(self, job_id: str) -> str:
        """``image-results:<id>``: the result record."""
        return self.result_prefix + job_id

    def lease(self, job_id: str) -> str:
        """Holds the token of the sweep that owns the job; expires on its own."""
        return f"{self.internal_prefix}lease:{job_id}"

    def attempts(self, job_id: str) -> str:
        """Hash of attempt counters: ``job`` (sweeps that started it), ``<key>#<n>``."""
        return f"{self.internal_prefix}attempts:{job_id}"

    @property
    def first_seen(self) -> str:
        """Hash id -> ms when a sweep first saw a record without ``timestamp``."""
        return f"{self.internal_prefix}first-seen"

    @property
    def scan_cursor(self) -> str:
        """Where the last sweep's SSCAN stopped, so the next one goes on from there."""
        return f"{self.internal_prefix}scan-cursor"

    @property
    def deliveries(self) -> str:
        """Sorted set of job ids with a delivery (callback, Telegram) due at its score (ms)."""
        return f"{self.internal_prefix}deliveries"

    def delivery(self, job_id: str) -> str:
        """What to deliver for a finished job, and how far it got."""
        return f"{self.internal_prefix}delivery:{job_id}"

    @property
    def runs(self) -> str:
        """Capped list of run summaries (newest first)."""
        return f"{self.internal_prefix}runs"

    def lease_pattern(self) -> str:
        """SCAN pattern matching every lease key."""
        return f"{self.internal_prefix}lease:*"
