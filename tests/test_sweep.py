"""One sweep end to end: real Redis, the real google-genai SDK against the fake server."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import redis
from PIL import Image

from enqueue_client import EnqueueClient, ResultRecord
from sweeper.budget import Budget
from sweeper.settings import Settings
from sweeper.testing import FakeGemini, Hang
from tests.conftest import sweep_once

MakeSettings = Callable[..., Settings]


def enqueue(redis_url: str, job_id: str, *images: dict[str, object], priority: int = 0) -> None:
    EnqueueClient.from_url(redis_url).enqueue(job_id, list(images), priority=priority)


def result_of(r: redis.Redis, job_id: str) -> ResultRecord:
    raw = r.get(f"image-results:{job_id}")
    assert raw is not None, f"no result record for {job_id}"
    return ResultRecord.model_validate_json(raw)


def test_happy_path_stores_images_and_finishes(
    make_settings: MakeSettings,
    redis_url: str,
    r: redis.Redis,
    fake_gemini: FakeGemini,
    tmp_path: Path,
) -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    enqueue(
        redis_url,
        "case-1",
        {
            "key": "cover",
            "prompt": "a rainy alley",
            "aspectRatio": "16:9",
            "model": "gemini-3-pro-image",
        },
        {
            "key": "hero",
            "prompt": "a detective",
            "count": 2,
            "inputImage": {
                "mimeType": "image/png",
                "data": base64.b64encode(png.getvalue()).decode(),
            },
        },
    )
    summary = sweep_once(make_settings())

    assert (summary.jobs_completed, summary.images_stored, summary.api_calls) == (1, 3, 3)
    result = result_of(r, "case-1")
    assert result.status == "completed" and result.completed_at and result.attempts == 1
    assert [i.index for i in result.images["hero"]] == [1, 2]
    for image in [*result.images["cover"], *result.images["hero"]]:
        path = Path(urlsplit(image.url).path)
        assert path.is_relative_to(tmp_path / "images" / "case-1")
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == image.sha256
        assert len(data) == image.bytes
        with Image.open(path) as img:
            assert img.size == (image.width, image.height)
    cover = result.images["cover"][0]
    assert cover.width > cover.height  # 16:9 went to the API as image config
    assert cover.model == "gemini-3-pro-image"
    assert not r.sismember("pending-image-jobs", "case-1")
    assert r.exists("pending-images:case-1") == 0
    assert not r.sismember("failed-image-jobs", "case-1")
    assert r.keys("sweeper:lease:*") == []

    cover_call = fake_gemini.calls_for("rainy alley")[0]
    assert (cover_call.model, cover_call.aspect_ratio, cover_call.api_key) == (
        "gemini-3-pro-image",
        "16:9",
        "test-key",
    )
    assert cover_call.response_modalities == ["IMAGE"]
    hero_call = fake_gemini.calls_for("a detective")[0]
    assert hero_call.model == "gemini-3.1-flash-image"
    assert hero_call.input_images == [("image/png", png.getvalue())]


def test_order_is_priority_then_newest(
    make_settings: MakeSettings, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    records = {
        "old-low": (0, 1000),
        "new-low": (0, 2000),
        "old-high": (5, 1000),
        "new-high": (5, 3000),
        "no-timestamp": (1, None),
    }
    for job_id, (priority, ts) in records.items():
        record: dict[str, object] = {
            "priority": priority,
            "images": [{"key": "k", "prompt": f"job {job_id}"}],
        }
        if ts is not None:
            record["timestamp"] = ts
        r.set(f"pending-images:{job_id}", json.dumps(record))
        r.sadd("pending-image-jobs", job_id)
    sweep_once(make_settings(concurrency=1))
    order = [call.prompt.removeprefix("job ") for call in fake_gemini.calls]
    assert order == ["new-high", "old-high", "no-timestamp", "new-low", "old-low"]


def test_two_concurrent_sweeps_generate_each_image_once(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    fake_gemini.latency = 0.05
    for n in range(30):
        enqueue(
            redis_url,
            f"job-{n}",
            {"key": "a", "prompt": f"p{n} a"},
            {"key": "b", "prompt": f"p{n} b"},
        )
    settings = make_settings(concurrency=4)
    summaries = []
    threads = [
        threading.Thread(target=lambda: summaries.append(sweep_once(settings))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    prompts = [call.prompt for call in fake_gemini.calls]
    assert len(prompts) == 60 and len(set(prompts)) == 60
    assert sum(s.jobs_completed for s in summaries) == 30
    assert all(s.jobs_claimed > 0 for s in summaries)  # both really took part
    assert r.scard("pending-image-jobs") == 0


def test_budget_cuts_a_hung_call_and_leaves_the_job_pending(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    enqueue(redis_url, "fast", {"key": "k", "prompt": "quick one"})
    enqueue(redis_url, "stuck", {"key": "k", "prompt": "never answers [hang]"})
    settings = make_settings(time_budget_seconds=2.5, concurrency=2, call_timeout_seconds=60)
    started = time.monotonic()
    summary = sweep_once(settings, budget=Budget(2.5))
    elapsed = time.monotonic() - started

    assert elapsed < 3.5, elapsed
    assert summary.budget_exhausted
    assert result_of(r, "fast").status == "completed"
    assert r.sismember("pending-image-jobs", "stuck")
    assert r.exists("pending-images:stuck") == 1
    assert r.get("sweeper:lease:stuck") is None  # released for the next sweep
    assert summary.jobs_released == 1


def test_resume_after_a_partial_sweep_never_redraws(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    enqueue(
        redis_url,
        "case",
        {"key": "a", "prompt": "first image"},
        {"key": "b", "prompt": "second image", "count": 2},
    )
    fake_gemini.script("second image", Hang(), Hang())
    first = sweep_once(make_settings(concurrency=3, time_budget_seconds=2), budget=Budget(2))
    assert first.images_stored == 1
    middle = result_of(r, "case")
    assert middle.status == "running" and list(middle.images) == ["a"]
    assert r.sismember("pending-image-jobs", "case")

    second = sweep_once(make_settings())
    assert second.images_stored == 2
    final = result_of(r, "case")
    assert final.status == "completed"
    assert final.images["a"] == middle.images["a"]
    assert len(fake_gemini.calls_for("first image")) == 1
    assert final.attempts == 2


def test_leased_jobs_are_skipped(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    enqueue(redis_url, "busy", {"key": "k", "prompt": "owned elsewhere"})
    r.set("sweeper:lease:busy", "other-sweep", px=60_000)
    summary = sweep_once(make_settings())
    assert summary.jobs_claimed == 0 and fake_gemini.calls == []
    assert r.get("sweeper:lease:busy") == "other-sweep"


def test_a_finished_job_left_in_the_set_is_finished_without_calls(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    enqueue(redis_url, "case", {"key": "k", "prompt": "already drawn"})
    sweep_once(make_settings())
    done = result_of(r, "case")
    # A crash between storing the last image and finishing leaves this state:
    r.set("pending-images:case", json.dumps({"images": [{"key": "k", "prompt": "already drawn"}]}))
    r.sadd("pending-image-jobs", "case")
    r.set("image-results:case", done.model_copy(update={"status": "running"}).to_json())
    summary = sweep_once(make_settings())
    assert summary.api_calls == 0 and summary.jobs_completed == 1
    assert result_of(r, "case").images == done.images
    assert not r.sismember("pending-image-jobs", "case")


def test_large_backlog_is_read_in_windows(
    make_settings: MakeSettings, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    pipe = r.pipeline()
    for n in range(2500):
        pipe.set(f"pending-images:j{n}", json.dumps({"images": [{"key": "k", "prompt": f"p {n}"}]}))
        pipe.sadd("pending-image-jobs", f"j{n}")
    pipe.execute()
    summary = sweep_once(
        make_settings(concurrency=16, generator="placeholder"), generator=_NullGenerator()
    )
    assert summary.jobs_completed == 2500
    assert r.scard("pending-image-jobs") == 0


class _NullGenerator:
    """Returns one tiny PNG instantly: measures the sweep, not the drawing."""

    def __init__(self) -> None:
        out = io.BytesIO()
        Image.new("RGB", (4, 4)).save(out, format="PNG")
        self.png = out.getvalue()

    async def generate(self, request: object) -> object:
        from sweeper.generators.base import GeneratedImage

        return GeneratedImage(self.png, "image/png", "null")

    async def aclose(self) -> None:
        return None
