"""Where image bytes go, and the URL the result record gives for them.

Object names are built only from validated ids and keys, and end in the first
12 hex digits of the content's sha256. Two sweeps that raced on the same slot
therefore can never overwrite each other's bytes: whichever result record wins
points at bytes whose digest it states.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

from enqueue_client.keys import is_valid_id

from .errors import StorageError
from .images import ImageInfo


class Storage(Protocol):
    """Stores bytes under an object name and says where they can be read."""

    async def put(self, name: str, data: bytes, mime_type: str) -> str:
        """Store ``data`` as ``name``; return the URL for the result record."""
        ...

    async def check_writable(self) -> None:
        """Raise StorageError when nothing can be stored (for ``doctor``)."""
        ...

    async def find(self, job_id: str, key: str, index: int) -> tuple[str, bytes] | None:
        """URL and bytes of a variation stored earlier whose result was never written."""
        ...


def object_name(job_id: str, key: str, index: int, info: ImageInfo) -> str:
    """``<id>/<key>-<n>-<sha12>.<ext>``; refuses anything that could leave the root."""
    if not (is_valid_id(job_id) and is_valid_id(key)):
        raise StorageError(f"refusing to build a path from id {job_id!r} / key {key!r}")
    return f"{_segment(job_id)}/{_segment(key)}-{index}-{info.sha256[:12]}.{info.extension}"


def _segment(value: str) -> str:
    # '.' and '..' are valid ids but special in paths; '%' is not in the id
    # alphabet, so the escape cannot collide with another id.
    return "%2E" + value[1:] if value.startswith(".") else value


class FileStorage:
    """Files under a root directory; URLs are ``file://`` or the public base URL."""

    def __init__(self, root: Path, public_base_url: str | None = None) -> None:
        self.root = root.resolve()
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None

    def path_for(self, name: str) -> Path:
        """The file for an object name, proven to be inside the root."""
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"object name {name!r} escapes the storage root")
        return path

    async def put(self, name: str, data: bytes, mime_type: str) -> str:
        path = self.path_for(name)
        await asyncio.to_thread(_write_atomically, path, data)
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(name)}"
        return path.as_uri()

    async def find(self, job_id: str, key: str, index: int) -> tuple[str, bytes] | None:
        if not (is_valid_id(job_id) and is_valid_id(key)):
            return None
        directory = self.path_for(_segment(job_id))
        prefix = f"{_segment(key)}-{index}-"
        found = await asyncio.to_thread(_first_match, directory, prefix)
        if found is None:
            return None
        data = await asyncio.to_thread(found.read_bytes)
        name = f"{_segment(job_id)}/{found.name}"
        url = f"{self.public_base_url}/{quote(name)}" if self.public_base_url else found.as_uri()
        return url, data

    async def check_writable(self) -> None:
        probe = self.path_for(".doctor-probe")
        try:
            await asyncio.to_thread(_write_atomically, probe, b"ok")
            probe.unlink()
        except OSError as e:
            raise StorageError(f"cannot write under {self.root}: {e}") from e


def _first_match(directory: Path, prefix: str) -> Path | None:
    # <key>-<n>-<sha12>.<ext>: the 12 hex digits tell it from key "a-1" vs "a-10".
    if not directory.is_dir():
        return None
    for path in directory.iterdir():
        rest = path.name.removeprefix(prefix)
        if rest != path.name and len(rest.split(".")[0]) == 12:
            return path
    return None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file and rename, so readers never see half an image."""
    if path.exists() and path.stat().st_size == len(data):
        return  # same name means same digest: already stored by an earlier try
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {e}") from e


def open_storage(url: str, public_base_url: str | None = None) -> Storage:
    """The store for ``SWEEPER_STORAGE_URL`` (validated by the settings)."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise StorageError(f"{parts.scheme}:// storage is not available in this version")
    # file://./var/images (relative) and file:///srv/images (absolute) both work.
    raw = unquote(parts.netloc + parts.path)
    return FileStorage(Path(raw), public_base_url)
