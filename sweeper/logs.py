"""Logging: JSON lines or human text, one event per state change, secrets scrubbed.

Events carry their fields as ``extra`` (``event``, ``job_id``, ``image_key``,
``attempt``, ``duration``, ...). Every formatted line passes through
:class:`Scrubber`, which replaces any configured secret value, so an API key
that ends up in an exception message still never reaches the output.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
MASK = "********"


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a record."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the event fields."""

    converter = staticmethod(time.gmtime)  # UTC, as the Z says

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(event_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)  # ASCII: ids that are not UTF-8 stay printable


class TextFormatter(logging.Formatter):
    """``23:59:01 INFO  image stored  job_id=case-1 image_key=cover``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in event_fields(record).items() if k != "event")
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        if fields:
            line += "  " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class Scrubber(logging.Formatter):
    """Wraps a formatter and masks every secret value in its output."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(self.inner.format(record), self.secrets)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret replaced by a mask."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def setup_logging(
    level: str = "INFO",
    fmt: str = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure the root logger once for the process."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    inner: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(Scrubber(inner, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Request lines from the HTTP stack add nothing at INFO; DEBUG shows them (scrubbed).
    noisy = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("httpx", "httpcore", "google_genai", "google.genai", "apscheduler"):
        logging.getLogger(name).setLevel(noisy)
