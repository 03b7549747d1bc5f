"""The sweeper's errors.

    SweeperError
    ├── ConfigError            bad configuration: exit 2 before touching Redis
    ├── RedisUnavailable       Redis cannot be reached: exit 1
    ├── StorageError           the image store refused a write
    └── GenerationError        one image call went wrong (reason, retryable)
        ├── TransientError     worth retrying: 429, 5xx, timeouts, dropped connections
        │   └── QuotaExhausted 429 RESOURCE_EXHAUSTED (daily=True for a per-day quota)
        ├── PermanentError     retrying cannot help: blocked prompt, safety stop, no image, 4xx
        │   ├── ModelNotFound  404: try the fallback models
        │   └── AttemptsExhausted  SWEEPER_MAX_ATTEMPTS transient failures in a row
        └── Deferred           not tried (or not retried) in this sweep: the budget is too short

Generators translate SDK and HTTP errors into these (``raise ... from e``);
everything above the generator only sees this hierarchy.
"""

from __future__ import annotations


class SweeperError(Exception):
    """Base class of every error the sweeper raises on purpose."""


class ConfigError(SweeperError):
    """A setting is missing or invalid; the message names the variable."""


class RedisUnavailable(SweeperError):
    """Redis cannot be reached or answered with an error at start."""


class StorageError(SweeperError):
    """Storing image bytes failed."""


class GenerationError(SweeperError):
    """One image call failed; ``reason`` is what the result record shows."""

    retryable: bool = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(GenerationError):
    """Retry later; ``retry_after`` is the server's requested wait in seconds, if any."""

    retryable = True

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class QuotaExhausted(TransientError):
    """429 RESOURCE_EXHAUSTED; ``daily`` when the exhausted quota is per day."""

    def __init__(self, reason: str, *, retry_after: float | None = None, daily: bool) -> None:
        super().__init__(reason, retry_after=retry_after)
        self.daily = daily


class PermanentError(GenerationError):
    """Retrying the same request cannot succeed."""


class ModelNotFound(PermanentError):
    """The model answered 404 (unknown or retired)."""


class AttemptsExhausted(PermanentError):
    """Transient failures used up every attempt; a requeue may still succeed."""

    retryable = True


class Deferred(GenerationError):
    """Left for the next sweep without spending an attempt."""

    retryable = True
