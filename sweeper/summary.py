"""What one sweep did: counted as it goes, logged at the end, kept for ``sweep status``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
    images_adopted: int = 0
    images_planned: int = 0
    api_calls: int = 0
    retries: int = 0
    budget_exhausted: bool = False
    leases_lost: int = 0
    redis_round_trips: int = 0
    stopped_by: str | None = None
    redis_error: str | None = None
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)
