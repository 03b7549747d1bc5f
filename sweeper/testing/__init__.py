"""Test kit for projects that use image-sweeper: a fake Gemini REST server.

Point ``SWEEPER_GEMINI_BASE_URL`` (or the SDK's ``HttpOptions(base_url=...)``)
at :class:`FakeGemini` and your own tests run the real sweeper and the real
google-genai SDK offline, with misbehaviour on demand::

    from sweeper.testing import FakeGemini, error_for

    with FakeGemini(latency=0.1) as fake:
        fake.script("cover", error_for(429, retry_delay="1s"))
        ...  # run `sweep --once` with SWEEPER_GEMINI_BASE_URL=fake.base_url
        assert fake.calls_for("cover")

Prompts can carry markers too (``[err:503x2]``, ``[block:SAFETY]``, ``[hang]``,
...), so a sweeper running in another process can be steered.
"""

from .gemini import FakeGemini
from .gemini_behaviors import (
    BAD_KEY,
    DEFAULT_MODELS,
    GRPC_STATUS,
    PER_DAY_QUOTA,
    PER_MINUTE_QUOTA,
    Behavior,
    Blocked,
    Call,
    Drop,
    Error,
    Finish,
    Garbage,
    Hang,
    Ok,
    TextOnly,
    error_for,
    parse_marker,
)

__all__ = [
    "BAD_KEY",
    "DEFAULT_MODELS",
    "GRPC_STATUS",
    "PER_DAY_QUOTA",
    "PER_MINUTE_QUOTA",
    "Behavior",
    "Blocked",
    "Call",
    "Drop",
    "Error",
    "FakeGemini",
    "Finish",
    "Garbage",
    "Hang",
    "Ok",
    "TextOnly",
    "error_for",
    "parse_marker",
]
