"""Coalesce concurrent Redis writes into one pipeline per event-loop turn.

Many tasks finishing images at once each ``await batcher.run(...)``; the
first one schedules a flush, the rest join it. In the flush, consecutive calls
of the same script become one EVALSHA of its looped form
(:class:`sweeper.scripts.Batched`), and the whole lot goes to Redis in one
round trip. Order is kept: calls run in the order they were made. A flush
runs as its own task, so a caller that is cancelled (budget over) never
leaves a pipeline half-sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from .scripts import Batched


@dataclass(slots=True)
class _Call:
    script: Batched
    keys: list[str]
    args: list[Any]
    future: asyncio.Future[Any]


class ScriptBatcher:
    """Runs batched Lua scripts for many callers in shared pipelines."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queue: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self._sha: dict[str, str] = {}
        self.round_trips = 0

    async def load(self, *scripts: Batched) -> None:
        """Register scripts on the server (again after a restart or SCRIPT FLUSH)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for script in scripts:
                pipe.script_load(script.source)
            shas = await pipe.execute()
        self.round_trips += 1
        for script, sha in zip(scripts, shas, strict=True):
            self._sha[script.name] = str(sha)

    def submit(self, script: Batched, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue one script call; the future holds its reply once the flush is answered."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(script, keys, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return future

    async def run(self, script: Batched, keys: list[str], args: list[Any]) -> Any:
        """Queue one script call and wait for its reply."""
        # A cancelled caller cancels only its own future; the flush skips it but
        # still sends the script if it was already on its way.
        return await self.submit(script, keys, args)

    async def drain(self) -> None:
        """Wait until everything queued so far has been sent and answered."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let every task ready in this turn add its call
        while self._queue:
            batch, self._queue = self._queue, []
            groups = [list(g) for _, g in itertools.groupby(batch, key=lambda c: c.script.name)]
            try:
                replies = await self._send(groups)
            except Exception as e:  # noqa: BLE001 - every waiter must hear about the failure
                _fail(batch, e)
                continue
            retry: list[_Call] = []
            for group, reply in zip(groups, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    retry += group  # this group did not run; the others did
                elif isinstance(reply, Exception):
                    _fail(group, reply)
                else:
                    for call, one in zip(group, reply, strict=True):
                        if not call.future.done():
                            call.future.set_result(one)
            if retry:  # the server restarted or flushed its scripts
                await self.load(*{c.script.name: c.script for c in retry}.values())
                self._queue[:0] = retry

    async def _send(self, groups: list[list[_Call]]) -> list[Any]:
        """One pipeline; one EVALSHA per run of calls to the same script."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for group in groups:
                script = group[0].script
                keys = [k for call in group for k in call.keys]
                args = [a for call in group for a in call.args]
                sha = self._sha.get(script.name) or _sha1(script.source)
                pipe.evalsha(sha, len(keys), *keys, script.keys, script.args, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        self.round_trips += 1
        return replies


def _fail(calls: list[_Call], error: BaseException) -> None:
    for call in calls:
        if not call.future.done():
            call.future.set_exception(error)


def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
