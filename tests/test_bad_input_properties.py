"""Property-based: whatever a producer writes, the sweeper gets a job or a reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enqueue_client import ResultRecord
from enqueue_client.keys import is_valid_id
from enqueue_client.records import MAX_INPUT_IMAGE_BYTES, JobRecord
from sweeper.images import inspect_image
from sweeper.jobs import candidate_from
from sweeper.jobstore import RECORD, Peeked
from sweeper.settings import Settings
from sweeper.storage import FileStorage, object_name
from tests.conftest import sweep_once
from tests.test_storage import PNG

MakeSettings = Callable[..., Settings]
ROOT = Path("/srv/images-root")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
image_like = st.fixed_dictionaries(
    {},
    optional={
        "key": st.text(max_size=20) | st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True),
        "prompt": st.text(max_size=50) | json_values,
        "count": st.integers(-3, 12) | json_values,
        "aspectRatio": st.sampled_from(["16:9", "1:1", "x", "0:1", ""]) | json_values,
        "model": st.text(max_size=20),
        "inputImage": json_values,
    },
)
record_like = st.fixed_dictionaries(
    {},
    optional={
        "images": st.lists(image_like, max_size=4) | json_values,
        "priority": st.integers() | json_values,
        "timestamp": st.integers() | json_values,
        "callbackUrl": st.text(max_size=30) | st.just("https://ok.example/x"),
        "telegram": json_values,
        "caseId": json_values,
    },
)
raw_records = (
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape"))
    | record_like.map(json.dumps)
    | json_values.map(json.dumps)
)
ids = st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")) | st.from_regex(
    r"[A-Za-z0-9._:-]{1,40}", fullmatch=True
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(ids, raw_records)
def test_any_record_gives_a_job_or_a_reason_and_never_a_path_outside(job_id: str, raw: str) -> None:
    candidate = candidate_from(Peeked(job_id, RECORD, raw, 0))
    if candidate.problem is not None:
        assert candidate.record is None and candidate.problem.strip()
        return
    assert candidate.record is not None and is_valid_id(job_id)
    info = inspect_image(PNG)
    for image in candidate.record.images:
        for n in range(1, image.count + 1):
            name = object_name(job_id, image.key, n, info)
            assert (ROOT / name).resolve().is_relative_to(ROOT)
            assert FileStorage(ROOT).path_for(name).is_relative_to(ROOT)


def test_oversized_inline_image_is_refused() -> None:
    import base64

    big = base64.b64encode(b"\0" * (MAX_INPUT_IMAGE_BYTES + 3)).decode()
    raw = json.dumps(
        {
            "images": [
                {"key": "k", "prompt": "p", "inputImage": {"mimeType": "image/png", "data": big}}
            ]
        }
    )
    candidate = candidate_from(Peeked("job", RECORD, raw, 0))
    assert candidate.problem is not None and "larger than" in candidate.problem


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(ids, raw_records), min_size=1, max_size=6))
def test_a_sweep_over_random_input_settles_every_member(
    make_settings: MakeSettings, redis_url: str, tmp_path: Path, batch: list[tuple[str, str]]
) -> None:
    raw = redis.Redis.from_url(redis_url)
    raw.flushall()
    for job_id, record in batch:
        key = b"pending-images:" + job_id.encode("utf-8", "surrogateescape")
        raw.set(key, record.encode("utf-8", "surrogateescape"))
        raw.sadd("pending-image-jobs", job_id.encode("utf-8", "surrogateescape"))
    summary = sweep_once(make_settings(generator="placeholder"), generator=_Tiny())
    assert summary.errors == []
    assert raw.scard("pending-image-jobs") == 0  # every member ended: completed or quarantined
    for member in raw.smembers("failed-image-jobs"):
        result = ResultRecord.model_validate_json(raw.get(b"image-results:" + member) or b"")
        assert result.status in ("failed", "partial") and result.failures
    images = tmp_path / "images"
    if images.exists():
        for path in images.rglob("*"):
            assert path.resolve().is_relative_to(images.resolve())
    raw.close()


class _Tiny:
    async def generate(self, request: object) -> object:
        from sweeper.generators.base import GeneratedImage

        await asyncio.sleep(0)
        return GeneratedImage(PNG, "image/png", "tiny")

    async def aclose(self) -> None:
        return None


def test_record_model_round_trips_what_it_accepts() -> None:
    record = JobRecord.model_validate({"images": [{"key": "a", "prompt": "b", "count": 2}], "x": 1})
    assert JobRecord.model_validate_json(record.to_json()) == record
