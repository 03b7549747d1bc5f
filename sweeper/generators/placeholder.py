"""Offline generator: draws the prompt onto a real PNG, so everything runs without a key."""

from __future__ import annotations

import asyncio
import hashlib
import io
import textwrap

from PIL import Image, ImageDraw, ImageFont

from .base import GeneratedImage, ImageRequest

LONG_SIDE = 768
MODEL_NAME = "placeholder"


def size_for(aspect_ratio: str | None, long_side: int = LONG_SIDE) -> tuple[int, int]:
    """Pixel size for an aspect ratio like ``16:9``, ``long_side`` on the longer edge."""
    if not aspect_ratio:
        return long_side, long_side
    w, h = (int(part) for part in aspect_ratio.split(":"))
    if w >= h:
        return long_side, max(1, round(long_side * h / w))
    return max(1, round(long_side * w / h)), long_side


def draw(request: ImageRequest) -> bytes:
    """A PNG with a colour from the prompt, the prompt text and the slot name."""
    width, height = size_for(request.aspect_ratio)
    digest = hashlib.sha256(f"{request.prompt}#{request.index}".encode()).digest()
    background = (40 + digest[0] % 120, 40 + digest[1] % 120, 40 + digest[2] % 120)
    image = Image.new("RGB", (width, height), background)
    canvas = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(14, width // 32))
    small = ImageFont.load_default(size=max(10, width // 48))
    columns = max(16, width // max(8, width // 64))
    lines = textwrap.wrap(request.prompt, width=columns)[:12]
    y = height // 8
    for line in lines:
        canvas.text((width // 16, y), line, fill=(245, 245, 245), font=font)
        y += int(getattr(font, "size", 16) * 1.3)
    footer = f"{request.job_id} / {request.key} #{request.index} - placeholder (no API call)"
    canvas.text((width // 16, height - height // 10), footer, fill=(220, 220, 220), font=small)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class PlaceholderGenerator:
    """Draws locally; never fails and never calls out."""

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        data = await asyncio.to_thread(draw, request)
        return GeneratedImage(data=data, mime_type="image/png", model=MODEL_NAME)

    async def aclose(self) -> None:
        return None
