"""The wire contract as pydantic models: the job record and the result record.

Producers build :class:`JobRecord` (or write the same JSON from any language);
the sweeper parses records with the very same models, so CONTRACT section 1
has exactly one definition. Field names are camelCase on the wire and
snake_case accepted on input; unknown fields are kept and ignored.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .keys import ID_PATTERN

#: Records larger than this are refused by the client and quarantined by the sweeper.
MAX_RECORD_BYTES = 10 * 1024 * 1024
#: Decoded inline input images larger than this are refused; base64 of it still fits a record.
MAX_INPUT_IMAGE_BYTES = 7 * 1024 * 1024
MAX_IMAGES = 64
MAX_COUNT = 8
MAX_PROMPT_CHARS = 8000

INPUT_MIME_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif", "image/gif"}
)

Identifier = Annotated[str, StringConstraints(pattern="^" + ID_PATTERN.pattern + "$")]
ModelId = Annotated[str, StringConstraints(pattern=r"^(models/)?[A-Za-z0-9._-]{1,128}$")]
AspectRatio = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,2}:[1-9][0-9]{0,2}$")]

JobStatus = Literal["pending", "running", "completed", "partial", "failed", "unknown"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "partial", "failed"})


class _Wire(BaseModel):
    """camelCase on the wire, snake_case accepted, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
    )


class InputImage(_Wire):
    """An image-to-image source: inline base64 bytes, or a URL the sweeper fetches."""

    mime_type: str | None = None
    data: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InputImage:
        if (self.data is None) == (self.url is None):
            raise ValueError("give either {mimeType, data} or {url}, not both and not neither")
        if self.url is not None and not re.match(r"^https?://", self.url):
            raise ValueError("url must start with http:// or https://")
        if self.data is not None:
            if self.mime_type not in INPUT_MIME_TYPES:
                allowed = ", ".join(sorted(INPUT_MIME_TYPES))
                raise ValueError(f"mimeType must be one of {allowed}, not {self.mime_type!r}")
            if len(self.data) * 3 // 4 > MAX_INPUT_IMAGE_BYTES:
                raise ValueError(f"data is larger than {MAX_INPUT_IMAGE_BYTES} bytes")
            try:
                base64.b64decode(self.data, validate=True)
            except (binascii.Error, ValueError) as e:
                raise ValueError("data is not valid base64") from e
        return self

    def decoded(self) -> bytes:
        """The inline bytes (validated at parse time)."""
        return base64.b64decode(self.data or "")


class ImageSpec(_Wire):
    """One image slot of a job: a prompt drawn ``count`` times."""

    key: Identifier
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARS)]
    model: ModelId | None = None
    aspect_ratio: AspectRatio | None = None
    count: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 1
    input_image: InputImage | None = None

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt is blank")
        return value


class TelegramTarget(_Wire):
    """Where to deliver the finished images, and which "processing..." message to delete."""

    chat_id: int | str
    message_id: int | None = None


class JobRecord(_Wire):
    """``pending-images:<id>``: what a producer writes."""

    case_id: str | None = None
    timestamp: Annotated[int, Field(ge=0)] | None = None
    priority: int = 0
    images: Annotated[list[ImageSpec], Field(min_length=1, max_length=MAX_IMAGES)]
    callback_url: str | None = None
    telegram: TelegramTarget | None = None

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s]+$", value):
            raise ValueError("callbackUrl must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _unique_keys(self) -> JobRecord:
        seen: set[str] = set()
        for image in self.images:
            if image.key in seen:
                raise ValueError(f"images[].key {image.key!r} appears more than once")
            seen.add(image.key)
        return self

    def to_json(self) -> str:
        """The record as producers write it (camelCase, no nulls)."""
        return self.model_dump_json(exclude_none=True)


class StoredImage(_Wire):
    """One stored variation, as listed in the result record."""

    url: str
    mime_type: str
    width: int
    height: int
    bytes: int
    sha256: str
    model: str
    generated_at: str
    index: int = 1


class ImageFailure(_Wire):
    """Why an image slot (or, under key ``*``, the whole record) failed."""

    reason: str
    retryable: bool
    attempts: int = 0


class ResultRecord(_Wire):
    """``image-results:<id>``: what the sweeper writes."""

    id: str
    status: JobStatus
    images: dict[str, list[StoredImage]] = Field(default_factory=dict)
    failures: dict[str, ImageFailure] = Field(default_factory=dict)
    attempts: int = 0
    updated_at: str | None = None
    completed_at: str | None = None

    @property
    def is_final(self) -> bool:
        """True once the job has ended: completed, partial or failed."""
        return self.status in TERMINAL_STATUSES

    def to_json(self) -> str:
        """Compact JSON as stored in Redis."""
        return self.model_dump_json(exclude_none=True)


def utc_iso(moment: datetime | None = None) -> str:
    """``2026-11-21T10:00:00Z``: the one timestamp format of result records."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_summary(errors: list[Any]) -> str:
    """Turn pydantic errors into ``images[0].prompt: String should have ...`` lines."""
    parts = []
    for err in errors:
        loc = ""
        for item in err.get("loc", ()):
            loc += f"[{item}]" if isinstance(item, int) else (f".{item}" if loc else str(item))
        message = str(err.get("msg", "invalid"))
        parts.append(f"{loc or 'record'}: {message}")
    return "; ".join(parts)
