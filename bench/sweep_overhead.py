"""Sweep overhead with a null generator: jobs/s, Redis round trips per job, time to first call.

Starts its own redis-server on a free port (never touches 6379), fills the
pending set, runs one sweep with a generator that returns a tiny PNG at once
and a storage that keeps nothing, and prints figures and ratios to targets.

    python bench/sweep_overhead.py [--jobs 20000] [--backlog 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from harness import start_redis
from PIL import Image

from sweeper.budget import Budget
from sweeper.fastpack import use_hiredis_packing
from sweeper.generators.base import GeneratedImage, ImageRequest
from sweeper.runner import sweep_with
from sweeper.settings import Settings

TARGET_JOBS_PER_S = 10_000
TARGET_ROUND_TRIPS = 2.0
TARGET_FIRST_CALL_S = 0.5


class NullGenerator:
    def __init__(self) -> None:
        out = io.BytesIO()
        Image.new("RGB", (4, 4)).save(out, format="PNG")
        self.png = out.getvalue()
        self.first_call: float | None = None
        self.calls = 0

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        if self.first_call is None:
            self.first_call = time.monotonic()
        self.calls += 1
        return GeneratedImage(self.png, "image/png", "null")

    async def aclose(self) -> None:
        return None


class NullStorage:
    async def put(self, name: str, data: bytes, mime_type: str) -> str:
        return f"null://{name}"

    async def check_writable(self) -> None:
        return None

    async def find(self, job_id: str, key: str, index: int) -> tuple[str, bytes] | None:
        return None


def fill(port: int, jobs: int) -> None:
    client = redis.Redis(port=port)
    client.flushall()
    record = json.dumps({"timestamp": 1763700000000, "images": [{"key": "k", "prompt": "p"}]})
    for start in range(0, jobs, 10_000):
        pipe = client.pipeline(transaction=False)
        ids = [f"job-{n}" for n in range(start, min(jobs, start + 10_000))]
        for job_id in ids:
            pipe.set(f"pending-images:{job_id}", record)
        pipe.sadd("pending-image-jobs", *ids)
        pipe.execute()


async def run(
    port: int, concurrency: int, budget: float, stop_after_first: bool = False
) -> dict[str, Any]:
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{port}/0",
        generator="placeholder",
        concurrency=concurrency,
        time_budget_seconds=budget,
    )
    client = aioredis.Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=True)  # type: ignore[union-attr]
    use_hiredis_packing(client)
    await client.ping()
    info_before = await client.info("stats")
    generator = NullGenerator()
    started = time.monotonic()
    summary = await sweep_with(
        client, settings, budget=Budget(budget), generator=generator, storage=NullStorage()
    )
    elapsed = time.monotonic() - started
    info_after = await client.info("stats")
    await client.aclose()
    # Every command a client sends counts; a pipeline of N scripts is one round trip,
    # so count round trips on the client side instead: see sweep_with's batcher.
    return {
        "summary": summary,
        "elapsed": elapsed,
        "first_call": (generator.first_call - started) if generator.first_call else None,
        "commands": int(info_after["total_commands_processed"])
        - int(info_before["total_commands_processed"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_redis(Path(tmp))
        try:
            fill(port, args.jobs)
            cpu = time.process_time()
            out = asyncio.run(run(port, args.concurrency, budget=120))
            cpu = time.process_time() - cpu
            s = out["summary"]
            rate = s.jobs_completed / out["elapsed"]
            print(
                f"jobs swept            {s.jobs_completed} in {out['elapsed']:.2f}s "
                f"(concurrency {args.concurrency})"
            )
            print(
                f"sweep overhead        {rate:,.0f} jobs/s   target {TARGET_JOBS_PER_S:,}  "
                f"ratio {rate / TARGET_JOBS_PER_S:.2f}"
            )
            print(
                f"sweeper CPU           {cpu:.2f}s of {out['elapsed']:.2f}s wall "
                f"({cpu / out['elapsed']:.0%}; the rest is Redis and the loop waiting)"
            )
            print(f"redis commands/job    {out['commands'] / max(1, s.jobs_completed):.2f}")
            print(
                f"round trips/job       {s.redis_round_trips / max(1, s.jobs_completed):.3f}"
                f"   target <= {TARGET_ROUND_TRIPS}"
            )

            fill(port, args.backlog)
            out = asyncio.run(run(port, args.concurrency, budget=1.0))
            first = out["first_call"]
            print(
                f"first call, {args.backlog:,} pending  {first:.3f}s   "
                f"target <= {TARGET_FIRST_CALL_S}s  ratio {first / TARGET_FIRST_CALL_S:.2f}"
            )
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
