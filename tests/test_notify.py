"""Deliveries (CONTRACT section 5): signed callbacks and Telegram, from a crash-safe outbox."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Callable

import redis
import redis.asyncio as aioredis

from enqueue_client import EnqueueClient, ResultRecord
from enqueue_client.keys import Keys
from sweeper.budget import Budget
from sweeper.logs import setup_logging
from sweeper.notify import Notifier
from sweeper.settings import Settings
from sweeper.testing import FakeGemini
from tests.conftest import sweep_once
from tests.fakes.receiver import Receiver

MakeSettings = Callable[..., Settings]
TELEGRAM_OK = b'{"ok": true, "result": {}}'
TOKEN = "123456:telegram-token-secret"


def test_callback_is_posted_signed_with_the_result(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    with Receiver() as hook:
        EnqueueClient.from_url(redis_url).enqueue(
            "cb", [{"key": "k", "prompt": "p"}], callback_url=hook.url + "/hooks/images"
        )
        summary = sweep_once(make_settings(webhook_secret="whsec-test"))
        assert summary.jobs_completed == 1
        assert len(hook.requests) == 1
        post = hook.requests[0]
    assert (post.method, post.path) == ("POST", "/hooks/images")
    result = ResultRecord.model_validate_json(post.body)
    assert result == ResultRecord.model_validate_json(r.get("image-results:cb") or "")
    expected = hmac.new(b"whsec-test", post.body, hashlib.sha256).hexdigest()
    assert post.headers["x-sweeper-signature"] == f"sha256={expected}"
    assert len(post.headers["x-sweeper-delivery"]) == 36
    assert r.zcard("sweeper:deliveries") == 0 and r.keys("sweeper:delivery:*") == []


def test_a_failed_callback_is_retried_later_and_never_fails_the_job(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    with Receiver(fail_first=1) as hook:
        EnqueueClient.from_url(redis_url).enqueue(
            "cb", [{"key": "k", "prompt": "p"}], callback_url=hook.url
        )
        sweep_once(make_settings())
        assert (
            ResultRecord.model_validate_json(r.get("image-results:cb") or "").status == "completed"
        )
        due = r.zscore("sweeper:deliveries", "cb")
        assert due is not None and due > time.time() * 1000 + 5_000  # backoff: about 10 s
        assert json.loads(r.get("sweeper:delivery:cb") or "")["attempts"] == 1
        sweep_once(make_settings())
        assert len(hook.requests) == 1  # not due yet
        r.zadd("sweeper:deliveries", {"cb": 0})  # time passes
        sweep_once(make_settings())
        assert len(hook.requests) == 2
        first, second = hook.requests
    assert first.headers["x-sweeper-delivery"] == second.headers["x-sweeper-delivery"]  # dedupe key
    assert "x-sweeper-signature" not in second.headers  # no secret set
    assert r.zcard("sweeper:deliveries") == 0


def test_telegram_gets_the_photos_then_the_processing_message_goes(
    make_settings: MakeSettings,
    redis_url: str,
    r: redis.Redis,
    fake_gemini: FakeGemini,
) -> None:
    with Receiver(body=TELEGRAM_OK) as telegram:
        EnqueueClient.from_url(redis_url).enqueue(
            "tg",
            [{"key": "cover", "prompt": "p", "count": 2}],
            telegram={"chatId": 42, "messageId": 7},
        )
        settings = make_settings(telegram_bot_token=TOKEN, telegram_base_url=telegram.url)
        output = io.StringIO()
        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        setup_logging("DEBUG", "json", settings.secrets(), stream=output)  # as the CLI does
        try:
            sweep_once(settings)
        finally:
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)
        calls = telegram.requests
    assert [c.path for c in calls] == [
        f"/bot{TOKEN}/sendPhoto",
        f"/bot{TOKEN}/sendPhoto",
        f"/bot{TOKEN}/deleteMessage",
    ]
    assert (
        b"\x89PNG" in calls[0].body
        and b'name="chat_id"' in calls[0].body
        and b"42" in calls[0].body
    )
    assert b"tg / cover#1" in calls[0].body and b"tg / cover#2" in calls[1].body
    assert json.loads(calls[2].body) == {"chat_id": 42, "message_id": 7}
    assert "deleteMessage" in output.getvalue()  # the HTTP lines were logged...
    assert TOKEN not in output.getvalue()  # ...with the token masked
    assert r.zcard("sweeper:deliveries") == 0


def test_telegram_hears_why_a_job_failed(
    make_settings: MakeSettings, redis_url: str, fake_gemini: FakeGemini
) -> None:
    with Receiver(body=TELEGRAM_OK) as telegram:
        EnqueueClient.from_url(redis_url).enqueue(
            "tg", [{"key": "k", "prompt": "no [block:SAFETY]"}], telegram={"chatId": "@channel"}
        )
        sweep_once(make_settings(telegram_bot_token=TOKEN, telegram_base_url=telegram.url))
        calls = telegram.requests
    assert [c.path.rsplit("/", 1)[1] for c in calls] == ["sendMessage"]
    message = json.loads(calls[0].body)
    assert message["chat_id"] == "@channel" and "blocked: SAFETY" in message["text"]


def test_a_retry_does_not_send_a_photo_twice(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    with Receiver(body=TELEGRAM_OK, fail_requests=frozenset({2})) as telegram:
        EnqueueClient.from_url(redis_url).enqueue(
            "tg",
            [{"key": "a", "prompt": "p"}, {"key": "b", "prompt": "q"}],
            telegram={"chatId": 1, "messageId": 2},
        )
        settings = make_settings(telegram_bot_token=TOKEN, telegram_base_url=telegram.url)
        sweep_once(settings)  # photo a goes out, photo b fails: retry scheduled
        sent_first = json.loads(r.get("sweeper:delivery:tg") or "")["telegramSent"]
        assert len(sent_first) == 1
        r.zadd("sweeper:deliveries", {"tg": 0})
        sweep_once(settings)
        methods = [c.path.rsplit("/", 1)[1] for c in telegram.requests]
        photos = [c.body for c in telegram.requests if c.path.endswith("sendPhoto")]
    assert methods == ["sendPhoto", "sendPhoto", "sendPhoto", "deleteMessage"]
    for name in (b"tg / a#1", b"tg / b#1"):  # each photo arrived once (the failed try aside)
        delivered = [p for i, p in enumerate(photos) if name in p and i != 1]
        assert len(delivered) == 1
    assert r.zcard("sweeper:deliveries") == 0


def test_deliveries_are_abandoned_after_the_last_backoff(redis_url: str, r: redis.Redis) -> None:
    with Receiver(status=503) as hook:
        keys = Keys()
        r.set(
            keys.delivery("j"),
            json.dumps(
                {
                    "jobId": "j",
                    "deliveryId": "d",
                    "callbackUrl": hook.url,
                    "telegram": None,
                    "result": {"id": "j", "status": "completed"},
                    "attempts": 0,
                    "callbackDone": False,
                    "telegramSent": [],
                    "telegramDone": True,
                }
            ),
        )
        r.zadd(keys.deliveries, {"j": 0})

        async def scenario() -> tuple[int, int]:
            conn = aioredis.Redis.from_url(redis_url, decode_responses=True)
            notifier = Notifier(conn, keys, backoff=(0, 0))
            for _ in range(3):
                await notifier.deliver_due(Budget(60))
            await conn.aclose()
            return notifier.delivered, notifier.failed

        assert asyncio.run(scenario()) == (0, 1)
        assert len(hook.requests) == 3
    assert r.zcard(keys.deliveries) == 0 and r.get(keys.delivery("j")) is None
