"""Pack Redis commands with hiredis in the asyncio client.

redis-py's synchronous client packs commands with hiredis when it is
installed, its asyncio client does not; packing arguments in Python was a
quarter of the sweep's CPU time. Commands hiredis cannot pack (text that is
not UTF-8, kept via ``surrogateescape``) fall back to redis-py's packer.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

try:
    import hiredis

    HAVE_HIREDIS = hasattr(hiredis, "pack_command")
except ImportError:  # pragma: no cover - hiredis is a dependency; stay correct without it
    HAVE_HIREDIS = False


class _HiredisPacking:
    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except (TypeError, UnicodeEncodeError):
            return super().pack_command(*args)  # type: ignore[misc,no-any-return]


def use_hiredis_packing(client: Redis) -> Redis:
    """Switch the client's pool to hiredis packing (no-op without hiredis)."""
    if not HAVE_HIREDIS:
        return client
    pool = client.connection_pool
    base: type[AbstractConnection] = pool.connection_class
    if not issubclass(base, _HiredisPacking):
        pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return client
