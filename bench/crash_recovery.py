"""Kill a sweep with SIGKILL mid-run, keep sweeping, count what it cost.

20 jobs x 2 images against the fake Gemini server (``--latency`` per call),
``sweep --once`` killed after ``--kill-after`` seconds, then a sweep started
every ``--every`` seconds (a fast cron) until nothing is pending. Prints API
calls made versus images delivered and the time until everything completed.

    python bench/crash_recovery.py [--kill-after 3] [--latency 0.5] [--lease 5]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from harness import start_redis, sweeper_env

from enqueue_client import EnqueueClient, ResultRecord
from sweeper.testing import FakeGemini


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--kill-after", type=float, default=3.0)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeGemini(latency=args.latency) as fake:
        proc, port = start_redis(Path(tmp))
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = EnqueueClient.from_url(url)
            ids = [f"job-{n}" for n in range(args.jobs)]
            for job_id in ids:
                client.enqueue(
                    job_id,
                    [{"key": "a", "prompt": f"{job_id} a"}, {"key": "b", "prompt": f"{job_id} b"}],
                )
            env = sweeper_env(
                url,
                fake.base_url,
                tmp,
                SWEEPER_CONCURRENCY=str(args.concurrency),
                SWEEPER_LEASE_SECONDS=str(args.lease),
            )
            command = [sys.executable, "-m", "sweeper", "--once"]
            started = time.monotonic()
            victim = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(args.kill_after)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            calls_at_kill = len(fake.calls)
            r = redis.Redis(port=port, decode_responses=True)
            sweeps = 0
            while r.scard("pending-image-jobs") and time.monotonic() - started < 300:
                time.sleep(args.every)
                subprocess.run(command, env=env, capture_output=True, check=False)
                sweeps += 1
            elapsed = time.monotonic() - started
            delivered = 0
            for job_id in ids:
                raw = r.get(f"image-results:{job_id}")
                if raw:
                    result = ResultRecord.model_validate_json(raw)
                    delivered += sum(len(v) for v in result.images.values())
            calls = len(fake.calls)
            print(
                f"{args.jobs} jobs x 2 images, killed after {args.kill_after:g}s "
                f"({calls_at_kill} calls made by then), latency {args.latency:g}s, "
                f"concurrency {args.concurrency}, lease {args.lease:g}s"
            )
            print(
                f"API calls {calls} for {delivered} images delivered "
                f"({calls - delivered} paid twice); all completed after {elapsed:.1f}s "
                f"and {sweeps} more sweeps"
            )
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
