"""enqueue_client: validation per CONTRACT section 1, enqueue/status/wait on real Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

import pytest
import redis

from enqueue_client import (
    AsyncEnqueueClient,
    EnqueueClient,
    ImageSpec,
    InvalidJobId,
    InvalidRecord,
    JobRecord,
    ResultRecord,
)
from enqueue_client.keys import Keys
from tests.conftest import REPO

COVER = {"key": "cover", "prompt": "A rainy neon alley", "aspectRatio": "16:9"}


@pytest.mark.parametrize("job_id", ["", "a" * 129, "has space", "slash/id", "ü", "new\nline"])
def test_invalid_job_ids_are_refused(redis_url: str, job_id: str) -> None:
    client = EnqueueClient.from_url(redis_url)
    with pytest.raises(InvalidJobId, match="1 to 128 characters"):
        client.enqueue(job_id, [COVER])


@pytest.mark.parametrize(
    ("images", "field"),
    [
        ([], "images: List should have at least 1 item"),
        ([{"key": "c", "prompt": "x"}] * 2, "appears more than once"),
        (
            [{"key": f"k{i}", "prompt": "x"} for i in range(65)],
            "images: List should have at most 64",
        ),
        ([{"key": "bad key", "prompt": "x"}], "images[0].key"),
        ([{"key": "c", "prompt": ""}], "images[0].prompt"),
        ([{"key": "c", "prompt": "   "}], "prompt is blank"),
        ([{"key": "c", "prompt": "x" * 8001}], "images[0].prompt"),
        ([{"key": "c", "prompt": "x", "count": 9}], "images[0].count"),
        ([{"key": "c", "prompt": "x", "count": 0}], "images[0].count"),
        ([{"key": "c", "prompt": "x", "aspectRatio": "wide"}], "images[0].aspectRatio"),
        ([{"key": "c", "prompt": "x", "model": "../../etc"}], "images[0].model"),
        ([{"key": "c", "prompt": "x", "inputImage": {"mimeType": "image/png"}}], "either"),
        (
            [{"key": "c", "prompt": "x", "inputImage": {"mimeType": "image/png", "data": "!!"}}],
            "not valid base64",
        ),
        (
            [{"key": "c", "prompt": "x", "inputImage": {"mimeType": "text/html", "data": "aGk="}}],
            "mimeType must be one of",
        ),
        ([{"key": "c", "prompt": "x", "inputImage": {"url": "ftp://x"}}], "http"),
        ([{"prompt": "x"}], "images[0].key: Field required"),
    ],
)
def test_invalid_records_name_the_field(
    redis_url: str, images: list[dict[str, object]], field: str
) -> None:
    client = EnqueueClient.from_url(redis_url)
    with pytest.raises(InvalidRecord) as info:
        client.enqueue("case-1", images)
    assert field in str(info.value)
    assert str(info.value).startswith("job case-1: ")


def test_callback_url_must_be_http(redis_url: str) -> None:
    client = EnqueueClient.from_url(redis_url)
    with pytest.raises(InvalidRecord, match="callbackUrl"):
        client.enqueue("case-1", [COVER], callback_url="javascript:alert(1)")


def test_enqueue_writes_record_then_pending_id(r: redis.Redis, redis_url: str) -> None:
    client = EnqueueClient.from_url(redis_url)
    record = client.enqueue(
        "case-1",
        [COVER, ImageSpec(key="hero", prompt="A detective", count=2)],
        priority=3,
        callback_url="https://game.example/hook",
        telegram={"chatId": 42, "messageId": 7},
    )
    stored = json.loads(r.get("pending-images:case-1") or "")
    assert stored == json.loads(record.to_json())
    assert stored["caseId"] == "case-1"
    assert stored["priority"] == 3
    assert abs(stored["timestamp"] - time.time() * 1000) < 60_000
    assert stored["images"][1] == {"key": "hero", "prompt": "A detective", "count": 2}
    assert stored["callbackUrl"] == "https://game.example/hook"
    assert stored["telegram"] == {"chatId": 42, "messageId": 7}
    assert r.smembers("pending-image-jobs") == {"case-1"}


def test_reenqueue_clears_the_old_result(r: redis.Redis, redis_url: str) -> None:
    client = EnqueueClient.from_url(redis_url)
    r.set("image-results:case-1", ResultRecord(id="case-1", status="failed").to_json())
    r.sadd("failed-image-jobs", "case-1")
    client.enqueue("case-1", [COVER])
    assert r.get("image-results:case-1") is None
    assert not r.sismember("failed-image-jobs", "case-1")
    assert client.status("case-1").status == "pending"


def test_snake_case_and_unknown_fields_are_accepted() -> None:
    record = JobRecord.model_validate(
        {
            "case_id": "c",
            "images": [
                {
                    "key": "k",
                    "prompt": "p",
                    "aspect_ratio": "1:1",
                    "input_image": {"url": "https://x/y.png"},
                }
            ],
            "callback_url": "https://x",
            "fromTheFuture": {"kept": True},
        }
    )
    assert record.case_id == "c"
    assert record.images[0].aspect_ratio == "1:1"
    assert record.images[0].input_image is not None
    assert record.model_extra == {"fromTheFuture": {"kept": True}}
    assert "fromTheFuture" in record.to_json()


def test_status_unknown_pending_and_result(redis_url: str, r: redis.Redis) -> None:
    client = EnqueueClient.from_url(redis_url)
    assert client.status("nope").status == "unknown"
    client.enqueue("case-1", [COVER])
    assert client.status("case-1").status == "pending"
    result = ResultRecord(id="case-1", status="completed", attempts=1)
    r.set("image-results:case-1", result.to_json())
    assert client.status("case-1") == result


def test_wait_returns_when_the_job_ends(redis_url: str, r: redis.Redis) -> None:
    client = EnqueueClient.from_url(redis_url)
    client.enqueue("case-1", [COVER])

    def finish_later() -> None:
        time.sleep(0.3)
        r.set("image-results:case-1", ResultRecord(id="case-1", status="partial").to_json())

    threading.Thread(target=finish_later).start()
    started = time.monotonic()
    assert client.wait("case-1", timeout=10).status == "partial"
    assert time.monotonic() - started < 5
    assert client.wait("never", timeout=0.3).status == "unknown"


def test_async_client(redis_url: str, r: redis.Redis) -> None:
    async def scenario() -> tuple[str, str, str]:
        client = AsyncEnqueueClient.from_url(redis_url, keys=Keys(pending_set="custom-set"))
        await client.enqueue("case-a", [COVER], priority=-1)
        before = (await client.status("case-a")).status
        r.set("image-results:case-a", ResultRecord(id="case-a", status="completed").to_json())
        after = (await client.wait("case-a", timeout=5)).status
        with pytest.raises(InvalidJobId):
            await client.enqueue("bad id", [COVER])
        unknown = (await client.status("x")).status
        await client.aclose()
        return before, after, unknown

    assert asyncio.run(scenario()) == ("pending", "completed", "unknown")
    assert r.smembers("custom-set") == {"case-a"}


def test_importing_the_client_pulls_in_no_sweeper_machinery() -> None:
    code = (
        "import sys, enqueue_client\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('google', 'apscheduler', 'sweeper', 'tenacity', 'PIL', 'httpx')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_exported_members() -> None:
    import enqueue_client
    import sweeper
    import sweeper.testing

    for package in (enqueue_client, sweeper, sweeper.testing):
        assert len(set(package.__all__)) == len(package.__all__)  # ruff (RUF022) keeps the order
        for name in package.__all__:
            assert getattr(package, name) is not None
