"""Gemini image generation through google-genai's async client.

One client (and one pooled httpx client) per sweep, closed explicitly. We pass
our own ``httpx.AsyncClient`` so the SDK never switches to aiohttp behind our
back, and we keep the SDK's retries off: :mod:`sweeper.retry` owns the policy.
Every SDK and transport failure leaves here as a :class:`GenerationError`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import ValidationError

from ..errors import (
    GenerationError,
    ModelNotFound,
    PermanentError,
    QuotaExhausted,
    TransientError,
)
from ..retry import parse_retry_after, parse_retry_delay
from .base import GeneratedImage, ImageRequest

log = logging.getLogger(__name__)

TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
MAX_INPUT_DOWNLOAD = 15 * 1024 * 1024


class GeminiGenerator:
    """Calls ``models.generate_content`` with ``response_modalities=["IMAGE"]``."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        fallback_models: list[str] | None = None,
        call_timeout: float = 120.0,
        concurrency: int = 4,
    ) -> None:
        self.fallback_models = list(fallback_models or [])
        self._missing_models: set[str] = set()
        limits = httpx.Limits(
            max_connections=concurrency * 2, max_keepalive_connections=concurrency
        )
        # No httpx timeout: the sweep caps every call with asyncio.timeout and the budget.
        self._http = httpx.AsyncClient(timeout=None, limits=limits)  # noqa: S113
        options = types.HttpOptions(
            base_url=base_url,
            # Milliseconds, per phase: a safety net only. The hard cap is the
            # asyncio timeout the sweep puts around every call.
            timeout=int(call_timeout * 1000),
            httpx_async_client=self._http,
        )
        self._client = genai.Client(api_key=api_key, http_options=options)

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        """Try the requested model, then each fallback model still believed alive."""
        models = [request.model, *(m for m in self.fallback_models if m != request.model)]
        candidates = [m for m in models if m not in self._missing_models] or models[-1:]
        last: GenerationError | None = None
        contents = await self._contents(request)
        for model in candidates:
            try:
                return await self._call(model, contents, request)
            except ModelNotFound as e:
                self._missing_models.add(model)
                log.warning("model not found, trying the next", extra={"model": model})
                last = e
        assert last is not None
        raise last

    async def list_models(self) -> list[str]:
        """Model ids the key can see (a cheap call ``doctor`` uses to test the key)."""
        try:
            pager = await self._client.aio.models.list(config={"page_size": 50})
            return [m.name or "" async for m in pager]
        except genai_errors.APIError as e:
            raise translate_api_error(e, "list models") from e
        except httpx.HTTPError as e:
            raise TransientError(f"connection error: {type(e).__name__}") from e

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._http.aclose()

    async def _contents(self, request: ImageRequest) -> list[Any]:
        parts: list[Any] = []
        if request.input_url:
            data, mime = await self._download(request.input_url)
            parts.append(types.Part.from_bytes(data=data, mime_type=mime))
        elif request.input_image is not None:
            mime = request.input_mime_type or "image/png"
            parts.append(types.Part.from_bytes(data=request.input_image, mime_type=mime))
        parts.append(request.prompt)
        return parts

    async def _download(self, url: str) -> tuple[bytes, str]:
        try:
            response = await self._http.get(url, follow_redirects=True, timeout=30.0)
        except httpx.HTTPError as e:
            raise TransientError(f"input image download failed: {type(e).__name__}") from e
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"input image download answered {response.status_code}")
        if response.status_code >= 400:
            raise PermanentError(f"input image download answered {response.status_code}")
        if len(response.content) > MAX_INPUT_DOWNLOAD:
            raise PermanentError(f"input image is larger than {MAX_INPUT_DOWNLOAD} bytes")
        mime = response.headers.get("content-type", "image/png").split(";")[0].strip()
        return response.content, mime

    async def _call(self, model: str, contents: list[Any], request: ImageRequest) -> GeneratedImage:
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=(
                types.ImageConfig(aspect_ratio=request.aspect_ratio)
                if request.aspect_ratio
                else None
            ),
        )
        try:
            response = await self._client.aio.models.generate_content(
                model=model, contents=contents, config=config
            )
        except genai_errors.APIError as e:
            raise translate_api_error(e, model) from e
        except httpx.TimeoutException as e:
            raise TransientError(f"timeout talking to the API ({type(e).__name__})") from e
        except httpx.HTTPError as e:
            raise TransientError(f"connection error: {type(e).__name__}") from e
        except (json.JSONDecodeError, ValidationError, ValueError) as e:
            raise TransientError(f"unparseable reply: {type(e).__name__}") from e
        return image_from_response(response, model)


def image_from_response(response: types.GenerateContentResponse, model: str) -> GeneratedImage:
    """The first non-thought image part, or a PermanentError saying why there is none."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        raise PermanentError(f"blocked: {_enum_name(feedback.block_reason)}")
    if not response.candidates:
        raise PermanentError("no image in reply (no candidates)")
    candidate = response.candidates[0]
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    for part in parts:
        blob = part.inline_data
        if part.thought or blob is None or not blob.data:
            continue
        if (blob.mime_type or "").startswith("image/"):
            return GeneratedImage(data=blob.data, mime_type=blob.mime_type or "", model=model)
    reason = _enum_name(candidate.finish_reason) if candidate.finish_reason else "unknown"
    if reason not in ("STOP", "unknown"):
        raise PermanentError(f"stopped: {reason}")
    raise PermanentError(f"no image in reply (finishReason {reason})")


def translate_api_error(error: genai_errors.APIError, model: str) -> GenerationError:
    """Map an HTTP error from the API onto retry classes, keeping Google's status and message."""
    code = int(error.code or 0)
    message = (error.message or "").strip()
    label = f"api error {code} {error.status or ''}".rstrip()
    reason = f"{label}: {message}" if message else label
    if code == 404:
        return ModelNotFound(f"model {model} not found ({reason})")
    if code == 429:
        body = error.details if isinstance(error.details, dict) else {}
        details = body.get("error", body).get("details", []) if isinstance(body, dict) else []
        headers = getattr(error.response, "headers", None)
        retry_after = parse_retry_delay(details)
        if retry_after is None and headers is not None:
            retry_after = parse_retry_after(headers.get("retry-after"))
        return QuotaExhausted(reason, retry_after=retry_after, daily=_is_daily_quota(details))
    if code in TRANSIENT_HTTP or code >= 500:
        return TransientError(reason)
    return PermanentError(reason)


def _is_daily_quota(details: list[Any]) -> bool:
    for detail in details:
        if not isinstance(detail, dict) or "QuotaFailure" not in str(detail.get("@type", "")):
            continue
        for violation in detail.get("violations", []):
            quota = str(violation.get("quotaId", "")) + str(violation.get("quotaMetric", ""))
            if "PerDay" in quota or "per_day" in quota.lower():
                return True
    return False


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value))
