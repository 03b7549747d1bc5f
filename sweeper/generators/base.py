"""What every generator takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)  # not frozen: one per call, and frozen init is slow
class ImageRequest:
    """One paid call: variation ``index`` of image slot ``key`` of job ``job_id``."""

    job_id: str
    key: str
    index: int
    prompt: str
    model: str
    aspect_ratio: str | None = None
    input_image: bytes | None = None
    input_mime_type: str | None = None
    input_url: str | None = None


@dataclass(slots=True)
class GeneratedImage:
    """Image bytes as the API returned them, and the model that drew them."""

    data: bytes
    mime_type: str
    model: str


class Generator(Protocol):
    """Draws one image per call; raises :class:`sweeper.errors.GenerationError` subclasses."""

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        """Draw the image or raise Transient/Permanent errors."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
