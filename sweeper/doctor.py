"""``sweep doctor``: is everything a sweep needs in place? Each check says what is wrong."""

from __future__ import annotations

import asyncio
from typing import Any

from .connection import open_redis
from .errors import ConfigError, GenerationError, RedisUnavailable, StorageError
from .settings import Settings
from .storage import open_storage

API_CHECK_TIMEOUT = 15.0


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "ok": ok, "detail": detail}


async def run_checks(settings: Settings) -> list[dict[str, Any]]:
    """Configuration, Redis, storage, API key and model; never raises."""
    checks = [_config(settings), await _redis(settings), await _storage(settings)]
    checks += await _api(settings)
    return checks


def _config(settings: Settings) -> dict[str, Any]:
    try:
        settings.require_generator()
    except ConfigError as e:
        return _check("configuration", False, str(e))
    return _check(
        "configuration",
        True,
        f"generator {settings.generator}, budget {settings.time_budget_seconds:g}s, "
        f"concurrency {settings.concurrency}, lease {settings.lease_seconds:g}s",
    )


async def _redis(settings: Settings) -> dict[str, Any]:
    try:
        async with open_redis(settings) as redis:
            info = await redis.info("server")
            pending = await redis.scard(settings.keys.pending_set)
    except RedisUnavailable as e:
        return _check("redis", False, str(e))
    version = info.get("redis_version", "?")
    return _check(
        "redis", True, f"{settings.redis_url_display()}: Redis {version}, {pending} pending"
    )


async def _storage(settings: Settings) -> dict[str, Any]:
    try:
        storage = open_storage(settings.storage_url, settings.public_base_url)
        await storage.check_writable()
    except StorageError as e:
        return _check("storage", False, str(e))
    return _check("storage", True, f"{settings.storage_url} is writable")


async def _api(settings: Settings) -> list[dict[str, Any]]:
    if settings.generator != "gemini":
        return [_check("api key", True, "not needed: placeholder generator")]
    if settings.api_key is None:
        return [_check("api key", False, "GEMINI_API_KEY (or GOOGLE_API_KEY) is not set")]
    from .generators.gemini import GeminiGenerator

    generator = GeminiGenerator(
        api_key=settings.api_key.get_secret_value(),
        base_url=settings.gemini_base_url,
        call_timeout=API_CHECK_TIMEOUT,
    )
    try:
        async with asyncio.timeout(API_CHECK_TIMEOUT):
            models = await generator.list_models()
    except GenerationError as e:
        return [_check("api key", False, f"the API refused the key or could not be reached: {e}")]
    except TimeoutError:
        return [_check("api key", False, f"no answer from the API within {API_CHECK_TIMEOUT:g}s")]
    finally:
        await generator.aclose()
    names = {m.removeprefix("models/") for m in models}
    wanted = [settings.gemini_model, *settings.gemini_fallback_models]
    missing = [m for m in wanted if m.removeprefix("models/") not in names]
    model_check = (
        _check("model", True, f"{', '.join(wanted)} available")
        if not missing
        else _check(
            "model",
            False,
            f"{', '.join(missing)} not offered to this key "
            "(check SWEEPER_GEMINI_MODEL / SWEEPER_GEMINI_FALLBACK_MODELS)",
        )
    )
    return [_check("api key", True, f"accepted ({len(models)} models listed)"), model_check]
