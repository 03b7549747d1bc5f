"""What the fake Gemini server can do, and the prompt markers that choose it.

Tests script behaviours with :meth:`FakeGemini.script`; a sweeper running as a
subprocess is steered by ``[kind:arg...xN]`` markers in its prompts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MODELS = ("gemini-3.1-flash-image", "gemini-3-pro-image")
BAD_KEY = "bad-key"
PER_DAY_QUOTA = "GenerateRequestsPerDayPerProjectPerModel"
PER_MINUTE_QUOTA = "GenerateRequestsPerMinutePerProjectPerModel"
GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {  # Google's wording, so test logs read like production ones
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report it.",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_MARKER = re.compile(r"\[([a-z]+[^\[\]]*)\]")
_REPEAT = re.compile(r"(?P<body>.*?)(?:x(?P<count>\d+))?")


@dataclass(frozen=True)
class Ok:
    """A successful generation: a real image drawn with Pillow."""

    width: int | None = None
    height: int | None = None
    mime_type: str = "image/png"


@dataclass(frozen=True)
class Error:
    """An HTTP error in Google's envelope; the optional fields are the 429 extras."""

    status: int
    grpc_status: str
    message: str
    retry_delay: str | None = None  # google.rpc.RetryInfo retryDelay, e.g. "2s"
    retry_after: str | None = None  # Retry-After header, in seconds
    quota_id: str | None = None  # google.rpc.QuotaFailure violation quotaId


@dataclass(frozen=True)
class Blocked:
    """HTTP 200 with no candidates: the prompt itself was refused."""

    reason: str = "PROHIBITED_CONTENT"


@dataclass(frozen=True)
class Finish:
    """HTTP 200 with a contentless candidate: the output was filtered."""

    reason: str = "IMAGE_SAFETY"


@dataclass(frozen=True)
class TextOnly:
    """HTTP 200, finishReason STOP, but only text came back."""

    text: str = "I can describe that image, but I cannot draw it."


@dataclass(frozen=True)
class Hang:
    """Sleep, then answer like Ok; stop() or a client hang-up ends it early, unanswered."""

    seconds: float = 3600.0


@dataclass(frozen=True)
class Drop:
    """Close the connection without any response."""


@dataclass(frozen=True)
class Garbage:
    """HTTP 200 whose body is not JSON, like a misbehaving proxy."""


Behavior = Ok | Error | Blocked | Finish | TextOnly | Hang | Drop | Garbage


@dataclass(frozen=True)
class Call:
    """One generateContent request, as the fake understood it."""

    path: str
    model: str
    prompt: str  # the text parts joined with newlines
    aspect_ratio: str | None
    response_modalities: list[str]
    input_images: list[tuple[str, bytes]]  # (mime type, decoded bytes)
    api_key: str | None
    started_at: float  # time.monotonic() on arrival


def error_for(
    status: int,
    message: str | None = None,
    *,
    retry_delay: str | None = None,
    retry_after: str | None = None,
    quota_id: str | None = None,
) -> Error:
    """An Error with the gRPC status and wording Google uses for this HTTP code."""
    message = message or _MESSAGES.get(status, f"Fake error {status}.")
    grpc_status = GRPC_STATUS.get(status, "UNKNOWN")
    return Error(status, grpc_status, message, retry_delay, retry_after, quota_id)


_QUOTAS = {"day": PER_DAY_QUOTA, "minute": PER_MINUTE_QUOTA}
_KINDS: dict[str, Callable[[list[str]], Behavior]] = {
    "block": lambda args: Blocked(*args[:1]),
    "finish": lambda args: Finish(*args[:1]),
    "text": lambda args: TextOnly(),
    "hang": lambda args: Hang(*map(float, args[:1])),
    "slow": lambda args: Hang(float(args[0])),
    "drop": lambda args: Drop(),
    "garbage": lambda args: Garbage(),
    "err": lambda args: error_for(int(args[0]), retry_delay=args[1] if args[1:] else None),
    "retryafter": lambda args: error_for(429, retry_after=str(int(args[0]))),
    "quota": lambda args: error_for(429, quota_id=_QUOTAS[(args or ["day"])[0]]),
}


def parse_marker(prompt: str) -> tuple[Behavior, int | None] | None:
    """The first marker's behaviour and its xN limit (None: every call), or None.

    Brackets of an unknown kind (``[sic]``) are ignored; a known kind with bad
    arguments raises ValueError, so a typo in a test fails loudly.
    """
    for match in _MARKER.finditer(prompt):
        parts = _REPEAT.fullmatch(match.group(1))
        assert parts is not None  # the pattern matches any string
        kind, *args = parts["body"].split(":")
        if kind not in _KINDS:
            continue
        try:
            behavior = _KINDS[kind](args)
        except (ValueError, IndexError, KeyError) as exc:
            raise ValueError(f"bad fake Gemini marker {match.group(0)!r}") from exc
        return behavior, int(parts["count"]) if parts["count"] else None
    return None
