"""Image generators: the real Gemini one and an offline placeholder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import GeneratedImage, Generator, ImageRequest

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["GeneratedImage", "Generator", "ImageRequest", "make_generator"]


def make_generator(settings: Settings) -> Generator:
    """The generator ``SWEEPER_GENERATOR`` names (imports google-genai only when needed)."""
    if settings.generator == "placeholder":
        from .placeholder import PlaceholderGenerator

        return PlaceholderGenerator()
    from .gemini import GeminiGenerator

    settings.require_generator()
    assert settings.api_key is not None
    return GeminiGenerator(
        api_key=settings.api_key.get_secret_value(),
        base_url=settings.gemini_base_url,
        fallback_models=settings.gemini_fallback_models,
        call_timeout=settings.call_timeout_seconds,
        concurrency=settings.concurrency,
    )
