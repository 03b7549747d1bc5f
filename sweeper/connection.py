"""Opening Redis for the sweeper: the configured URL or the embedded server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from .embedded import EmbeddedRedis
from .errors import RedisUnavailable
from .fastpack import use_hiredis_packing
from .settings import Settings, mask_url


def redis_url(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """The URL to connect to, starting the embedded server when none is configured."""
    if settings.redis_url is not None:
        return settings.redis_url.get_secret_value(), None
    embedded = EmbeddedRedis()
    return embedded.start(), embedded


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A checked connection (PING answered); closes it, and an embedded server we started."""
    url, embedded = redis_url(settings)
    client = aioredis.Redis.from_url(
        url,
        decode_responses=True,
        # Keeps ids and records that are not UTF-8 round-trippable, so they
        # can be quarantined and removed by their exact bytes.
        encoding_errors="surrogateescape",
        socket_connect_timeout=5,
        socket_timeout=30,
    )
    use_hiredis_packing(client)
    try:
        try:
            await client.ping()
        except (RedisError, OSError) as e:
            raise RedisUnavailable(
                f"cannot reach Redis at {mask_url(url)}: {e}. "
                "Check SWEEPER_REDIS_URL and that the server is running."
            ) from None
        # Ride out a Redis restart or a cut connection: retry with backoff
        # (about 5 s in all; the sweep's budget still bounds everything).
        client.set_retry(Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=8))
        yield client
    finally:
        await client.aclose()
        if embedded is not None and embedded.started_here:
            embedded.stop()
