"""What a blob of image bytes is: format, size, digest (Pillow reads only the header)."""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

_MIME_BY_FORMAT = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}


@dataclass(slots=True)  # not frozen: one per image, and frozen init is slow
class ImageInfo:
    """Facts about image bytes that go into the result record."""

    mime_type: str
    extension: str
    width: int
    height: int
    size: int
    sha256: str


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def inspect_image(data: bytes) -> ImageInfo:
    """Identify ``data``; raise ValueError when it is not an image we can store."""
    size = _png_size(data)
    if size is not None:
        return _info("PNG", *size, data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or ""
            width, height = image.size
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"not a readable image ({e})") from None
    return _info(fmt, width, height, data)


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk: the common case, without Pillow's setup."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width and height else None


def _info(fmt: str, width: int, height: int, data: bytes) -> ImageInfo:
    if fmt not in _MIME_BY_FORMAT:
        raise ValueError(f"unsupported image format {fmt or 'unknown'}")
    mime_type, extension = _MIME_BY_FORMAT[fmt]
    return ImageInfo(
        mime_type=mime_type,
        extension=extension,
        width=width,
        height=height,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
