"""Dead-man's switch: ping ``SWEEPER_HEARTBEAT_URL`` after each sweep (healthchecks.io style).

Success pings the URL, failure pings ``<url>/fail``. A short timeout, and
every error only logged: a monitoring outage must never hold up a sweep.
"""

from __future__ import annotations

import logging

import httpx

log = logging.getLogger("sweeper.heartbeat")


async def ping(url: str, *, ok: bool, timeout: float = 5.0) -> bool:  # noqa: ASYNC109 - an HTTP timeout, not a cancel scope
    """Ping; True when the monitor answered 2xx."""
    target = url if ok else url.rstrip("/") + "/fail"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(target)
    except httpx.HTTPError as e:
        log.warning(
            "heartbeat failed", extra={"event": "heartbeat_error", "reason": type(e).__name__}
        )
        return False
    if response.is_success:
        return True
    log.warning(
        "heartbeat refused",
        extra={"event": "heartbeat_error", "reason": f"HTTP {response.status_code}"},
    )
    return False
