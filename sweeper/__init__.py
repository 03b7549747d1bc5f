"""image-sweeper: generate queued AI images from Redis, inside a hard time budget."""

from .budget import Budget
from .errors import (
    ConfigError,
    Deferred,
    GenerationError,
    PermanentError,
    RedisUnavailable,
    StorageError,
    SweeperError,
    TransientError,
)
from .runner import run_once, sweep_with
from .settings import Settings, load_settings
from .summary import SweepSummary

__all__ = [
    "Budget",
    "ConfigError",
    "Deferred",
    "GenerationError",
    "PermanentError",
    "RedisUnavailable",
    "Settings",
    "StorageError",
    "SweepSummary",
    "SweeperError",
    "TransientError",
    "load_settings",
    "run_once",
    "sweep_with",
]
