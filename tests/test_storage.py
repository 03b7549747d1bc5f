"""File storage: names only from validated ids, never outside the root, atomic writes."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from enqueue_client.keys import is_valid_id
from sweeper.errors import StorageError
from sweeper.images import inspect_image
from sweeper.storage import FileStorage, object_name, open_storage


def png(size: tuple[int, int] = (3, 2)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "blue").save(out, format="PNG")
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (5, 4), "green").save(out, format="JPEG")
    return out.getvalue()


def test_inspect_reads_format_size_and_digest() -> None:
    info = inspect_image(png((7, 3)))
    assert (info.mime_type, info.extension, info.width, info.height) == ("image/png", "png", 7, 3)
    assert len(info.sha256) == 64
    info = inspect_image(jpeg())
    assert (info.mime_type, info.extension, info.width, info.height) == ("image/jpeg", "jpg", 5, 4)
    with pytest.raises(ValueError, match="not a readable image"):
        inspect_image(b"<html>")


def test_object_names_are_content_addressed() -> None:
    info = inspect_image(png())
    assert object_name("case-1", "cover", 2, info) == f"case-1/cover-2-{info.sha256[:12]}.png"


@pytest.mark.parametrize("job_id", ["..", ".", ".hidden", "..."])
def test_dot_ids_stay_inside_the_root(tmp_path: Path, job_id: str) -> None:
    storage = FileStorage(tmp_path)
    data = png()
    url = asyncio.run(
        storage.put(object_name(job_id, "..", 1, inspect_image(data)), data, "image/png")
    )
    stored = Path(unquote(urlsplit(url).path))
    assert stored.is_relative_to(tmp_path)
    assert stored.read_bytes() == data


@pytest.mark.parametrize(
    ("job_id", "key"), [("a/b", "k"), ("ok", "../x"), ("", "k"), ("ok", "k\x00")]
)
def test_invalid_ids_never_make_a_name(job_id: str, key: str) -> None:
    with pytest.raises(StorageError, match="refusing"):
        object_name(job_id, key, 1, inspect_image(png()))


def test_path_escape_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="escapes"):
        FileStorage(tmp_path).path_for("../outside.png")


@given(st.text(min_size=0, max_size=40), st.text(min_size=0, max_size=40))
def test_any_id_and_key_either_refused_or_inside_root(job_id: str, key: str) -> None:
    root = Path("/srv/images-root")
    info = inspect_image(PNG)
    try:
        name = object_name(job_id, key, 1, info)
    except StorageError:
        assert not (is_valid_id(job_id) and is_valid_id(key))
        return
    assert (root / name).resolve().is_relative_to(root)


PNG = png()


def test_public_base_url_and_relative_root(tmp_path: Path) -> None:
    storage = open_storage("file://./var/images", "https://cdn.example/img/")
    assert isinstance(storage, FileStorage)
    assert storage.root == (tmp_path / "var" / "images").resolve()
    url = asyncio.run(storage.put("case/k-1-abc.png", PNG, "image/png"))
    assert url == "https://cdn.example/img/case/k-1-abc.png"
    assert (tmp_path / "var/images/case/k-1-abc.png").read_bytes() == PNG


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    asyncio.run(storage.put("c/a.png", PNG, "image/png"))
    asyncio.run(storage.put("c/a.png", PNG, "image/png"))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["a.png"]


def test_unwritable_root_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    storage = FileStorage(blocker)
    with pytest.raises(StorageError):
        asyncio.run(storage.put("c/a.png", PNG, "image/png"))
    with pytest.raises(StorageError):
        asyncio.run(storage.check_writable())
