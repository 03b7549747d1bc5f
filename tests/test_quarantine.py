"""Bad input is quarantined with its reason (CONTRACT section 4): no API call, no retry,
and the rest of the sweep goes on."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from enqueue_client import EnqueueClient, ResultRecord
from enqueue_client.records import MAX_RECORD_BYTES
from sweeper.settings import Settings
from sweeper.testing import FakeGemini
from tests.conftest import sweep_once

MakeSettings = Callable[..., Settings]
GOOD = {"key": "k", "prompt": "a good job"}


def arrange(r: redis.Redis, job_id: str, record: object) -> None:
    if record is not None:
        r.set(
            f"pending-images:{job_id}",
            record if isinstance(record, (str, bytes)) else json.dumps(record),
        )
    r.sadd("pending-image-jobs", job_id)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (None, "record is missing"),
        ("{not json", "record is not JSON"),
        ("[1, 2]", "record is JSON list, not an object"),
        ('"just a string"', "record is JSON str, not an object"),
        ({"images": []}, "invalid record: images: List should have at least 1 item"),
        ({"caseId": "x"}, "invalid record: images: Field required"),
        ({"images": [{"key": "k"}]}, "invalid record: images[0].prompt: Field required"),
        ({"images": [{"key": "../etc", "prompt": "p"}]}, "invalid record: images[0].key"),
        ({"images": [GOOD, GOOD]}, "appears more than once"),
        ({"images": [{**GOOD, "count": 99}]}, "images[0].count"),
        ({"images": [GOOD], "priority": "high"}, "priority"),
        ({"images": [GOOD], "callbackUrl": "file:///etc/passwd"}, "callbackUrl"),
        (b"\xff\xfe{}", "record is not valid UTF-8"),
        ("[" * 100_000, "record is not JSON"),
    ],
)
def test_bad_records_are_quarantined_with_their_reason(
    make_settings: MakeSettings,
    redis_url: str,
    r: redis.Redis,
    fake_gemini: FakeGemini,
    record: object,
    reason: str,
) -> None:
    arrange(r, "bad", record)
    EnqueueClient.from_url(redis_url).enqueue("good", [GOOD])
    summary = sweep_once(make_settings())

    assert summary.jobs_quarantined == 1 and summary.jobs_completed == 1
    assert [c.prompt for c in fake_gemini.calls] == ["a good job"]
    raw = r.get("image-results:bad")
    assert raw is not None
    result = ResultRecord.model_validate_json(raw)
    assert result.status == "failed"
    assert reason in result.failures["*"].reason
    assert result.failures["*"].retryable is False
    assert not r.sismember("pending-image-jobs", "bad")
    assert r.sismember("failed-image-jobs", "bad")
    # A second sweep has nothing left to do: never retried.
    again = sweep_once(make_settings())
    assert again.jobs_claimed == 0


def test_wrong_redis_type(
    make_settings: MakeSettings, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    r.hset("pending-images:hashy", "images", "[]")
    r.sadd("pending-image-jobs", "hashy")
    sweep_once(make_settings())
    result = ResultRecord.model_validate_json(r.get("image-results:hashy") or "")
    assert result.failures["*"].reason == "record is a Redis hash, not a string"
    assert fake_gemini.calls == []


def test_oversized_record(
    make_settings: MakeSettings, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    big = json.dumps({"images": [GOOD], "padding": "x" * (MAX_RECORD_BYTES + 10)})
    arrange(r, "huge", big)
    sweep_once(make_settings())
    result = ResultRecord.model_validate_json(r.get("image-results:huge") or "")
    assert "over the 10485760-byte limit" in result.failures["*"].reason
    assert fake_gemini.calls == []


def test_large_but_allowed_record_is_fetched_at_claim(
    make_settings: MakeSettings, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    record = json.dumps({"images": [GOOD], "padding": "x" * 400_000})
    arrange(r, "roomy", record)
    summary = sweep_once(make_settings())
    assert summary.jobs_completed == 1 and len(fake_gemini.calls) == 1


@pytest.mark.parametrize("job_id", ["has space", "a" * 129, "slash/../../x", "", "tab\there"])
def test_bad_ids_are_quarantined_and_never_become_paths(
    make_settings: MakeSettings, r: redis.Redis, fake_gemini: FakeGemini, job_id: str
) -> None:
    arrange(r, job_id, {"images": [GOOD]})
    sweep_once(make_settings())
    assert fake_gemini.calls == []
    assert not r.sismember("pending-image-jobs", job_id)
    assert r.sismember("failed-image-jobs", job_id)
    result = ResultRecord.model_validate_json(r.get(f"image-results:{job_id}") or "")
    assert result.failures["*"].reason.startswith("invalid job id")


def test_an_id_that_is_not_utf8_is_removed_by_its_exact_bytes(
    make_settings: MakeSettings, redis_url: str, fake_gemini: FakeGemini
) -> None:
    raw = redis.Redis.from_url(redis_url)  # bytes in, bytes out
    raw.set(b"pending-images:\xff\xfe", b'{"images": [{"key": "k", "prompt": "p"}]}')
    raw.sadd("pending-image-jobs", b"\xff\xfe")
    sweep_once(make_settings())
    assert raw.smembers("pending-image-jobs") == set()
    assert raw.smembers("failed-image-jobs") == {b"\xff\xfe"}
    assert raw.exists(b"image-results:\xff\xfe") == 1
    assert fake_gemini.calls == []
