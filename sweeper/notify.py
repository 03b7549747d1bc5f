"""Delivering finished jobs: the ``callbackUrl`` POST and Telegram (CONTRACT section 5).

A job's delivery is queued by the same Lua step that finishes it (an outbox:
``sweeper:deliveries`` scored by due time, the payload beside it), so a crash
can never lose one. Each sweep takes what is due, hides it for a while (a
sweep that dies mid-delivery leaves it to come due again), and either removes
it or schedules a retry with backoff. A delivery never changes the job.

Telegram progress (which photos went out) is saved after each step, so a
retry does not send a photo twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from redis.asyncio import Redis

from enqueue_client.keys import Keys
from enqueue_client.records import JobRecord, ResultRecord

from . import scripts
from .budget import Budget

log = logging.getLogger("sweeper.notify")

BACKOFF = (10, 30, 60, 120, 300, 600, 1800, 3600)  # seconds before attempt 2, 3, ...
HIDE_SECONDS = 120  # a taken delivery stays hidden this long unless rescheduled
TAKE_LIMIT = 50
HTTP_TIMEOUT = 10.0


def payload(job_id: str, record: JobRecord, result: ResultRecord) -> str:
    """The outbox entry for a finished job, or '' when it wants no delivery."""
    if record.callback_url is None and record.telegram is None:
        return ""
    telegram = record.telegram.model_dump(by_alias=True) if record.telegram else None
    return json.dumps(
        {
            "jobId": job_id,
            "deliveryId": str(uuid.uuid4()),  # stable across retries: receivers can dedupe
            "callbackUrl": record.callback_url,
            "telegram": telegram,
            "result": json.loads(result.to_json()),
            "attempts": 0,
            "callbackDone": record.callback_url is None,
            "telegramSent": [],
            "telegramDone": telegram is None,
        }
    )


class Notifier:
    """Works the outbox for one sweep."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        webhook_secret: str | None = None,
        telegram_token: str | None = None,
        telegram_base_url: str | None = None,
        backoff: tuple[float, ...] = BACKOFF,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.webhook_secret = webhook_secret
        self.telegram_token = telegram_token
        self.telegram_base_url = (telegram_base_url or "https://api.telegram.org").rstrip("/")
        self.backoff = backoff
        self.delivered = 0
        self.failed = 0
        self._take = redis.register_script(scripts.TAKE_DUE)

    async def deliver_due(self, budget: Budget) -> int:
        """Deliver everything due now (as budget allows); returns how many were handled."""
        handled = 0
        http: httpx.AsyncClient | None = None  # made only when something is due: it costs ~25 ms
        try:
            while budget.working_remaining() > HTTP_TIMEOUT:
                now = int(time.time() * 1000)
                ids = await self._take(
                    keys=[self.keys.deliveries],
                    args=[now, TAKE_LIMIT, now + HIDE_SECONDS * 1000],
                )
                if not ids:
                    break
                http = http or httpx.AsyncClient(timeout=HTTP_TIMEOUT)
                await asyncio.gather(*(self._one(http, str(i)) for i in ids))
                handled += len(ids)
        finally:
            if http is not None:
                await http.aclose()
        return handled

    async def _one(self, http: httpx.AsyncClient, job_id: str) -> None:
        raw = await self.redis.get(self.keys.delivery(job_id))
        if raw is None:
            await self.redis.zrem(self.keys.deliveries, job_id)
            return
        entry = json.loads(raw)
        entry["attempts"] += 1
        problems = []
        if not entry["callbackDone"]:
            entry["callbackDone"], problem = await self._callback(http, entry)
            problems += [problem] if problem else []
        if not entry["telegramDone"]:
            entry["telegramDone"], problem = await self._telegram(http, entry, job_id)
            problems += [problem] if problem else []
        if entry["callbackDone"] and entry["telegramDone"]:
            await self._remove(job_id)
            self.delivered += 1
            log.info(
                "delivered",
                extra={"event": "delivered", "job_id": job_id, "attempt": entry["attempts"]},
            )
        elif entry["attempts"] > len(self.backoff):
            await self._remove(job_id)
            self.failed += 1
            log.error(
                "delivery abandoned",
                extra={
                    "event": "delivery_abandoned",
                    "job_id": job_id,
                    "attempt": entry["attempts"],
                    "reason": "; ".join(problems),
                },
            )
        else:
            delay = self.backoff[entry["attempts"] - 1]
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.delivery(job_id), json.dumps(entry))
                pipe.zadd(self.keys.deliveries, {job_id: int((time.time() + delay) * 1000)})
                await pipe.execute()
            log.warning(
                "delivery failed; will retry",
                extra={
                    "event": "delivery_retry",
                    "job_id": job_id,
                    "attempt": entry["attempts"],
                    "delay": delay,
                    "reason": "; ".join(problems),
                },
            )

    async def _remove(self, job_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.delivery(job_id))
            pipe.zrem(self.keys.deliveries, job_id)
            await pipe.execute()

    # -- callback -------------------------------------------------------------

    async def _callback(self, http: httpx.AsyncClient, entry: dict[str, Any]) -> tuple[bool, str]:
        body = json.dumps(entry["result"], separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "x-sweeper-delivery": entry["deliveryId"]}
        if self.webhook_secret:
            digest = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
            headers["x-sweeper-signature"] = f"sha256={digest}"
        try:
            response = await http.post(entry["callbackUrl"], content=body, headers=headers)
        except httpx.HTTPError as e:
            return False, f"callback: {type(e).__name__}"
        if response.is_success:
            return True, ""
        return False, f"callback: HTTP {response.status_code}"

    # -- Telegram -------------------------------------------------------------

    async def _telegram(
        self, http: httpx.AsyncClient, entry: dict[str, Any], job_id: str
    ) -> tuple[bool, str]:
        if not self.telegram_token:
            log.error(
                "telegram delivery asked for but SWEEPER_TELEGRAM_BOT_TOKEN is not set",
                extra={"event": "delivery_skipped", "job_id": job_id},
            )
            return True, ""  # retrying cannot help; nothing more to do
        target = entry["telegram"]
        chat = target["chatId"]
        result = entry["result"]
        for key, images in result.get("images", {}).items():
            for image in images:
                name = f"{key}#{image.get('index', 1)}"
                if name in entry["telegramSent"]:
                    continue
                ok, problem = await self._send_photo(http, chat, image, f"{job_id} / {name}")
                if not ok:
                    return False, problem
                entry["telegramSent"].append(name)
                await self.redis.set(self.keys.delivery(job_id), json.dumps(entry))
        if (
            not any(result.get("images", {}).values())
            and "failed-message" not in entry["telegramSent"]
        ):
            reasons = "; ".join(
                f"{k}: {v['reason']}" for k, v in result.get("failures", {}).items()
            )
            ok, problem = await self._api(
                http,
                "sendMessage",
                json={"chat_id": chat, "text": f"Could not draw {job_id}: {reasons}"[:4000]},
            )
            if not ok:
                return False, problem
            entry["telegramSent"].append("failed-message")
        if target.get("messageId") is not None:
            ok, problem = await self._api(
                http, "deleteMessage", json={"chat_id": chat, "message_id": target["messageId"]}
            )
            if not ok and "message to delete not found" not in problem:
                return False, problem
        return True, ""

    async def _send_photo(
        self, http: httpx.AsyncClient, chat: Any, image: dict[str, Any], caption: str
    ) -> tuple[bool, str]:
        url = str(image.get("url", ""))
        if url.startswith("file://"):
            try:
                data = await asyncio.to_thread(Path(unquote(urlsplit(url).path)).read_bytes)
            except OSError as e:
                return False, f"telegram: cannot read {url}: {e.strerror}"
            files = {
                "photo": (Path(urlsplit(url).path).name, data, image.get("mimeType", "image/png"))
            }
            return await self._api(
                http, "sendPhoto", data={"chat_id": str(chat), "caption": caption}, files=files
            )
        return await self._api(
            http, "sendPhoto", json={"chat_id": chat, "photo": url, "caption": caption}
        )

    async def _api(self, http: httpx.AsyncClient, method: str, **kwargs: Any) -> tuple[bool, str]:
        # The token is part of the URL: never put the URL or the exception text in a reason.
        endpoint = f"{self.telegram_base_url}/bot{self.telegram_token}/{method}"
        try:
            response = await http.post(endpoint, **kwargs)
        except httpx.HTTPError as e:
            return False, f"telegram {method}: {type(e).__name__}"
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.is_success and answer.get("ok"):
            return True, ""
        description = str(answer.get("description", f"HTTP {response.status_code}"))[:200]
        return False, f"telegram {method}: {description}"
