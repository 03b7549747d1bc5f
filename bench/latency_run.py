"""Wall time of ``sweep --once`` for N single-image jobs against the fake Gemini server.

The real CLI in a subprocess, the real google-genai SDK, a fake API that
answers after ``--latency`` seconds, a redis-server of its own on a free port.
The floor is ceil(N / concurrency) * latency; the ratio says how close we get.

    python bench/latency_run.py [--jobs 100] [--latency 0.2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from harness import start_redis, sweeper_env

from enqueue_client import EnqueueClient
from sweeper.testing import FakeGemini


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeGemini(latency=args.latency) as fake:
        proc, port = start_redis(Path(tmp))
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = EnqueueClient.from_url(url)
            for n in range(args.jobs):
                client.enqueue(f"job-{n}", [{"key": "cover", "prompt": f"scene {n}"}])
            env = sweeper_env(
                url,
                fake.base_url,
                tmp,
                SWEEPER_CONCURRENCY=str(args.concurrency),
            )
            started = time.monotonic()
            out = subprocess.run(
                [sys.executable, "-m", "sweeper", "--once"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.monotonic() - started
            done = redis.Redis(port=port).scard("pending-image-jobs") == 0
            floor = math.ceil(args.jobs / args.concurrency) * args.latency
            print(out.stdout.strip() or out.stderr.strip())
            print(
                f"sweep --once, {args.jobs} jobs, latency {args.latency}s, "
                f"concurrency {args.concurrency}: {wall:.2f}s wall "
                f"(API floor {floor:.2f}s, ratio {wall / floor:.2f}); "
                f"{len(fake.calls)} API calls; all done: {done}"
            )
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
