"""``sweep demo``: the whole path on a fresh machine, no setup and no key needed.

Starts the embedded Redis (unless SWEEPER_REDIS_URL is set), enqueues sample
jobs through ``enqueue_client`` exactly as a game backend would, writes one
broken record the way a buggy producer might, runs one sweep (placeholder
generator unless an API key is set) and prints where everything went.
"""

from __future__ import annotations

import asyncio
import json
import os

from enqueue_client import EnqueueClient, ResultRecord

from .budget import Budget
from .embedded import EmbeddedRedis
from .logs import setup_logging
from .runner import run_once
from .settings import API_KEY_VARS, load_settings

SAMPLE_JOBS: list[tuple[str, int, list[dict[str, object]]]] = [
    (
        "demo-noir-case",
        1,
        [
            {
                "key": "cover",
                "prompt": "A rainy neon alley at night, detective silhouette, film noir",
                "aspectRatio": "16:9",
            },
            {
                "key": "suspect",
                "prompt": "Portrait of a nervous jazz pianist, 1940s, moody light",
                "aspectRatio": "3:4",
                "count": 2,
            },
        ],
    ),
    (
        "demo-dragon",
        0,
        [{"key": "hero", "prompt": "A small friendly dragon reading a map", "aspectRatio": "1:1"}],
    ),
]
BROKEN_ID = "demo-broken-record"
BROKEN_RECORD = '{"images": [{"key": "cover"}]}'  # no prompt: quarantined with its reason


def run_demo(*, as_json: bool = False) -> int:
    """Run the demo; returns the exit code."""
    overrides: dict[str, object] = {}
    if not os.environ.get("SWEEPER_GENERATOR") and not any(os.environ.get(v) for v in API_KEY_VARS):
        overrides["generator"] = "placeholder"
    embedded: EmbeddedRedis | None = None
    if not os.environ.get("SWEEPER_REDIS_URL"):
        embedded = EmbeddedRedis()
        overrides["redis_url"] = embedded.start()
    try:
        settings = load_settings(**overrides)
        setup_logging("WARNING", settings.log_format, settings.secrets())
        assert settings.redis_url is not None
        client = EnqueueClient.from_url(settings.redis_url.get_secret_value(), keys=settings.keys)
        try:
            for job_id, priority, images in SAMPLE_JOBS:
                client.enqueue(job_id, images, priority=priority)
            client.redis.set(settings.keys.record(BROKEN_ID), BROKEN_RECORD)
            client.redis.sadd(settings.keys.pending_set, BROKEN_ID)
            summary = asyncio.run(run_once(settings, budget=Budget(settings.time_budget_seconds)))
            ids = [job_id for job_id, _, _ in SAMPLE_JOBS] + [BROKEN_ID]
            results = {job_id: client.status(job_id) for job_id in ids}
        finally:
            client.close()
    finally:
        if embedded is not None and embedded.started_here:
            embedded.stop()
    if as_json:
        print(
            json.dumps(
                {k: v.model_dump(by_alias=True, exclude_none=True) for k, v in results.items()}
            )
        )
    else:
        print(
            _report(
                settings.generator,
                settings.redis_url_display()
                if embedded is None
                else f"embedded Redis ({embedded.directory})",
                summary.images_stored,
                results,
            )
        )
    return 0


def _report(generator: str, where: str, stored: int, results: dict[str, ResultRecord]) -> str:
    lines = [f"Swept with the {generator} generator on {where}: {stored} images stored.", ""]
    for job_id, result in results.items():
        lines.append(f"{job_id}: {result.status}")
        for key, images in result.images.items():
            for image in images:
                lines.append(f"  {key} #{image.index}  {image.width}x{image.height}  {image.url}")
        for key, failure in result.failures.items():
            lines.append(f"  {key}: {failure.reason}")
    lines += [
        "",
        "Result records are the Redis keys image-results:<id>; read one with",
        "  sweep inspect <id>",
        "  redis-cli -s var/redis/redis.sock GET image-results:demo-dragon",
    ]
    return "\n".join(lines)
