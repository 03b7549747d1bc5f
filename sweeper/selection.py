"""Which pending jobs a sweep looks at, and in what order.

The pending set is read a window at a time (SSCAN, never SMEMBERS) from where
the previous sweep stopped; each window is ordered by priority, then newest
timestamp. The next window is read while this one is worked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from .jobs import Candidate, candidate_from, order
from .jobstore import JobStore


async def windows(store: JobStore, size: int) -> AsyncIterator[list[Candidate]]:
    """Windows of the pending set, each ordered by priority then newest timestamp.

    The next window is read while this one is claimed, so workers never wait
    on a scan; the cursor is saved only once a window has been gone through,
    so a sweep that stops early does not make the next one skip jobs.
    """
    reader = _read_windows(store, size)
    ahead: asyncio.Future[tuple[list[Candidate], int] | None] = asyncio.ensure_future(
        anext(reader, None)
    )
    try:
        while (item := await ahead) is not None:
            window, cursor = item
            ahead = asyncio.ensure_future(anext(reader, None))
            yield window
            await store.save_cursor(cursor)
    finally:
        ahead.cancel()
        await asyncio.gather(ahead, return_exceptions=True)
        await reader.aclose()


async def _read_windows(
    store: JobStore, size: int
) -> AsyncGenerator[tuple[list[Candidate], int], None]:
    cursor = start = await store.load_cursor()
    wrapped = False
    seen: set[str] = set()
    while True:
        ids: list[str] = []
        while len(ids) < size:
            cursor, found = await store.scan(cursor, size)
            ids.extend(i for i in found if i not in seen)
            seen.update(found)
            if cursor == 0:
                break
        if ids:
            yield order([candidate_from(p) for p in await store.peek(ids)]), cursor
        if cursor == 0:
            if start == 0 or wrapped:
                return
            wrapped = True  # began mid-set: go round once more from the start
