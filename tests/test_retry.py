"""Retry classes end to end (fake server, real SDK) and the policy's pure parts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import redis

from enqueue_client import EnqueueClient, ResultRecord
from sweeper.budget import Budget, CallTimer
from sweeper.errors import AttemptsExhausted, Deferred, QuotaExhausted, TransientError
from sweeper.retry import (
    RateGate,
    RetryPolicy,
    call_with_retry,
    parse_retry_after,
    parse_retry_delay,
)
from sweeper.settings import Settings
from sweeper.testing import FakeGemini, Hang
from tests.conftest import sweep_once

MakeSettings = Callable[..., Settings]


def run_one(redis_url: str, r: redis.Redis, settings: Settings, prompt: str) -> ResultRecord:
    EnqueueClient.from_url(redis_url).enqueue("job", [{"key": "k", "prompt": prompt}])
    sweep_once(settings)
    raw = r.get("image-results:job")
    assert raw is not None
    return ResultRecord.model_validate_json(raw)


@pytest.mark.parametrize(
    "marker",
    [
        "[err:503x2]",
        "[err:500x2]",
        "[err:504x2]",
        "[err:429x2]",
        "[dropx2]",
        "[garbagex2]",
        "[retryafter:0x2]",
        "[err:429:0sx2]",
    ],
)
def test_transient_failures_are_retried_until_an_image_comes(
    make_settings: MakeSettings,
    redis_url: str,
    r: redis.Redis,
    fake_gemini: FakeGemini,
    marker: str,
) -> None:
    result = run_one(redis_url, r, make_settings(), f"flaky {marker}")
    assert result.status == "completed"
    assert len(fake_gemini.calls) == 3
    assert r.hget("sweeper:attempts:job", "k#1") is None  # cleared with the finished job


def test_a_hung_call_times_out_and_is_retried(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    fake_gemini.script("slowpoke", Hang(30))
    result = run_one(redis_url, r, make_settings(call_timeout_seconds=0.5), "slowpoke")
    assert result.status == "completed"
    assert len(fake_gemini.calls) == 2


@pytest.mark.parametrize(
    ("marker", "reason"),
    [
        ("[block:PROHIBITED_CONTENT]", "blocked: PROHIBITED_CONTENT"),
        ("[block:SAFETY]", "blocked: SAFETY"),
        ("[finish:IMAGE_SAFETY]", "stopped: IMAGE_SAFETY"),
        ("[finish:IMAGE_PROHIBITED_CONTENT]", "stopped: IMAGE_PROHIBITED_CONTENT"),
        ("[text]", "no image in reply (finishReason STOP)"),
        ("[err:400]", "api error 400 INVALID_ARGUMENT"),
        ("[err:403]", "api error 403 PERMISSION_DENIED"),
    ],
)
def test_permanent_outcomes_are_not_retried_and_say_why(
    make_settings: MakeSettings,
    redis_url: str,
    r: redis.Redis,
    fake_gemini: FakeGemini,
    marker: str,
    reason: str,
) -> None:
    result = run_one(redis_url, r, make_settings(), f"doomed {marker}")
    assert len(fake_gemini.calls) == 1
    assert result.status == "failed"
    failure = result.failures["k"]
    assert failure.reason.startswith(reason)
    assert (failure.retryable, failure.attempts) == (False, 1)
    assert r.sismember("failed-image-jobs", "job")
    assert r.exists("pending-images:job") == 1  # kept so it can be requeued
    assert not r.sismember("pending-image-jobs", "job")


def test_attempts_run_out_across_sweeps(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    settings = make_settings(max_attempts=3)
    EnqueueClient.from_url(redis_url).enqueue(
        "job", [{"key": "k", "prompt": "always down [err:503]"}]
    )
    r.hset("sweeper:attempts:job", "k#1", 1)  # one failure left by an earlier sweep
    sweep_once(settings)
    assert len(fake_gemini.calls) == 2
    raw = r.get("image-results:job")
    assert raw is not None
    result = ResultRecord.model_validate_json(raw)
    assert result.status == "failed"
    assert result.failures["k"].reason.startswith("gave up after 3 attempts: api error 503")
    assert (result.failures["k"].retryable, result.failures["k"].attempts) == (True, 3)


def test_a_retry_delay_longer_than_the_budget_defers_without_spending_attempts(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    settings = make_settings(time_budget_seconds=3)
    EnqueueClient.from_url(redis_url).enqueue("job", [{"key": "k", "prompt": "busy [err:429:60s]"}])
    started = time.monotonic()
    summary = sweep_once(settings, budget=Budget(3))
    assert time.monotonic() - started < 2  # did not sit out the 60 s
    assert summary.images_deferred == 1 and len(fake_gemini.calls) == 1
    assert r.sismember("pending-image-jobs", "job")
    assert r.hget("sweeper:attempts:job", "k#1") is None  # a 429 is the quota, not the image
    assert r.get("sweeper:lease:job") is None


def test_model_fallback_on_404(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    fake_gemini.unknown_models.add("gemini-3.1-flash-image")
    settings = make_settings(gemini_fallback_models=["gemini-3-pro-image"])
    result = run_one(redis_url, r, settings, "needs a live model")
    assert result.status == "completed"
    assert result.images["k"][0].model == "gemini-3-pro-image"
    assert [c.model for c in fake_gemini.calls] == ["gemini-3.1-flash-image", "gemini-3-pro-image"]


# -- the policy's parts ---------------------------------------------------------


def test_parse_retry_delay_and_retry_after() -> None:
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "53s"}
    assert parse_retry_delay([{"@type": "x"}, info]) == 53.0
    assert (
        parse_retry_delay(
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.5s"}]
        )
        == 0.5
    )
    assert parse_retry_delay([]) is None
    assert parse_retry_after("7") == 7.0
    now = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial=1, maximum=8, jitter=0)
    assert [policy.backoff(n) for n in range(1, 6)] == [1, 2, 4, 8, 8]


def test_a_429_pauses_every_call_through_the_gate() -> None:
    clock = [100.0]
    gate = RateGate(lambda: clock[0])
    gate.pause(5)
    gate.pause(2)  # never shortens
    assert gate.delay() == 5
    clock[0] += 4
    assert gate.delay() == 1


def test_quota_error_pauses_the_gate_and_honours_retry_after() -> None:
    async def scenario() -> tuple[int, float]:
        gate = RateGate()
        calls = 0

        async def call() -> str:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise QuotaExhausted("429", retry_after=0.3, daily=False)
            return "ok"

        started = time.monotonic()
        result = await call_with_retry(
            call,
            policy=RetryPolicy(initial=0, jitter=0),
            budget=Budget(10),
            timer=CallTimer(),
            gate=gate,
        )
        assert result == "ok"
        return calls, time.monotonic() - started

    calls, waited = asyncio.run(scenario())
    assert calls == 2 and waited >= 0.3


def test_no_call_starts_when_the_budget_is_shorter_than_a_call() -> None:
    async def scenario() -> None:
        timer = CallTimer()
        timer.observe(50)

        async def call() -> str:
            raise AssertionError("must not be called")

        with pytest.raises(Deferred):
            await call_with_retry(
                call, policy=RetryPolicy(), budget=Budget(10), timer=timer, gate=RateGate()
            )

    asyncio.run(scenario())


def test_exhausted_attempts_raise_with_the_last_reason() -> None:
    async def scenario() -> None:
        async def call() -> str:
            raise TransientError("api error 503 UNAVAILABLE")

        with pytest.raises(AttemptsExhausted, match="gave up after 2 attempts: api error 503"):
            await call_with_retry(
                call,
                policy=RetryPolicy(max_attempts=2, initial=0, jitter=0),
                budget=Budget(10),
                timer=CallTimer(),
                gate=RateGate(),
            )

    asyncio.run(scenario())
