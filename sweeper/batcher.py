"""Coalesce concurrent Redis writes into one pipeline per event-loop turn.

Many tasks finishing images at once each ``await batcher.run(...)``; the
first one schedules a flush, the rest join it, and the whole lot goes to
Redis in one round trip. A flush runs as its own task, so a caller that is
cancelled (budget over) never leaves a pipeline half-sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


@dataclass(slots=True)
class _Call:
    script: AsyncScript
    keys: list[str]
    args: list[Any]
    future: asyncio.Future[Any]


class ScriptBatcher:
    """Runs Lua scripts for many callers in shared pipelines."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queue: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self.round_trips = 0

    async def run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Queue one script call and wait for its reply."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(script, keys, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # A cancelled caller cancels only its own future; the flush skips it but
        # still sends the script if it was already on its way.
        return await future

    async def drain(self) -> None:
        """Wait until everything queued so far has been sent and answered."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _send(self, batch: list[_Call]) -> list[Any]:
        # EVALSHA straight on the pipeline: going through Script objects makes
        # redis-py ask SCRIPT EXISTS before every pipeline, a second round trip.
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in batch:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        self.round_trips += 1
        return replies

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let every task ready in this turn add its call
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                replies = await self._send(batch)
            except Exception as e:  # noqa: BLE001 - every waiter must hear about the failure
                for call in batch:
                    if not call.future.done():
                        call.future.set_exception(e)
                continue
            missing = [
                c for c, r in zip(batch, replies, strict=True) if isinstance(r, NoScriptError)
            ]
            if missing:  # the server restarted or flushed its scripts: load, send those again
                for script in {id(c.script): c.script for c in missing}.values():
                    await self.redis.script_load(script.script)
                self._queue[:0] = missing
            for call, reply in zip(batch, replies, strict=True):
                if call.future.done():
                    continue
                if isinstance(reply, NoScriptError):
                    continue
                if isinstance(reply, Exception):
                    call.future.set_exception(reply)
                else:
                    call.future.set_result(reply)
