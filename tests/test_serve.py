"""``sweep serve``: a real process with APScheduler inside, scraped, stopped by signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from enqueue_client import EnqueueClient
from sweeper.errors import ConfigError
from sweeper.scheduler import parse_every
from sweeper.testing import FakeGemini
from tests.conftest import free_port, sweeper_env, track


def start_serve(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    return track(
        subprocess.Popen(
            [sys.executable, "-m", "sweeper", "serve", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )


def env_for(redis_url: str, fake: FakeGemini, tmp_path: Path, **extra: str) -> dict[str, str]:
    defaults = {"GEMINI_API_KEY": "serve-secret-key", "SWEEPER_LOG_FORMAT": "json"}
    return sweeper_env(redis_url, fake, tmp_path, **(defaults | extra))


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_serve_sweeps_on_an_interval_exposes_metrics_and_stops_on_sigterm(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    port = free_port()
    proc = start_serve(
        env_for(redis_url, fake_gemini, tmp_path, SWEEPER_METRICS_PORT=str(port)),
        tmp_path,
        "--every",
        "1s",
    )
    client = EnqueueClient.from_url(redis_url)
    client.enqueue("a", [{"key": "k", "prompt": "first", "count": 2}])
    wait_for(
        lambda: r.get("image-results:a") is not None and "completed" in r.get("image-results:a")
    )
    client.enqueue("b", [{"key": "k", "prompt": "second"}])  # picked up by a later sweep
    wait_for(lambda: r.scard("pending-image-jobs") == 0 and r.exists("image-results:b"))
    # Gauges are refreshed after each sweep ends: wait for one that saw the empty set.
    wait_for(lambda: "sweeper_jobs_pending 0.0" in scrape(port) and " 3.0" in scrape(port))
    metrics = scrape(port)
    assert 'sweeper_images_generated_total{model="gemini-3.1-flash-image"} 3.0' in metrics
    assert "sweeper_sweep_duration_seconds_count" in metrics
    assert 'sweeper_jobs_finished_total{status="completed"} 2.0' in metrics
    assert "sweeper_jobs_pending 0.0" in metrics

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    events = [json.loads(line) for line in err.splitlines()]
    started = next(e for e in events if e.get("event") == "serve_started")
    assert started["schedule"] == "every 1s" and started["next_run"]
    assert started["config"]["GEMINI_API_KEY"] == "********"
    assert "serve-secret-key" not in err + out
    assert events[-1]["event"] == "serve_stopped"


def test_sigterm_during_a_sweep_lands_calls_within_the_grace_and_releases_the_rest(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    client = EnqueueClient.from_url(redis_url)
    for n in range(8):
        client.enqueue(f"job-{n}", [{"key": "k", "prompt": f"stuck {n} [hang]"}])
    proc = start_serve(
        env_for(redis_url, fake_gemini, tmp_path, SWEEPER_CONCURRENCY="2"),
        tmp_path,
        "--every",
        "1s",
        "--grace",
        "1",
    )
    wait_for(lambda: len(fake_gemini.calls) >= 2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert time.monotonic() - sent < 5
    assert proc.returncode == 0
    assert r.keys("sweeper:lease:*") == []
    assert r.scard("pending-image-jobs") == 8


def test_one_sweep_at_a_time_even_when_sweeps_outlast_the_interval(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    client = EnqueueClient.from_url(redis_url)
    client.enqueue("slow-1", [{"key": "k", "prompt": "slow one [slow:1.5]"}])
    client.enqueue("slow-2", [{"key": "k", "prompt": "slow two [slow:1.5]"}])
    proc = start_serve(
        env_for(redis_url, fake_gemini, tmp_path, SWEEPER_CONCURRENCY="1"),
        tmp_path,
        "--every",
        "0.2s",
    )
    wait_for(lambda: r.scard("pending-image-jobs") == 0)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 0
    starts = sorted(c.started_at for c in fake_gemini.calls)
    assert len(starts) == 2 and starts[1] - starts[0] >= 1.4  # never two sweeps in parallel


def test_cron_schedule_and_next_run_time_are_logged(
    redis_url: str, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    proc = start_serve(
        env_for(redis_url, fake_gemini, tmp_path, SWEEPER_SCHEDULE="*/7 * * * *"), tmp_path
    )
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    started = next(json.loads(line) for line in err.splitlines() if "serve_started" in line)
    assert started["schedule"] == "*/7 * * * *"
    minute = int(started["next_run"].split(":")[1])
    assert minute % 7 == 0


def test_parse_every() -> None:
    assert (parse_every("30s"), parse_every("2m"), parse_every("1h"), parse_every("0.5s")) == (
        30,
        120,
        3600,
        0.5,
    )
    for bad in ("", "5", "2 minutes", "-1s", "0s"):
        with pytest.raises(ConfigError, match="--every"):
            parse_every(bad)


def test_once_processes_and_serve_together_draw_each_slot_exactly_once(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    fake_gemini.latency = 0.3  # long enough for all four to overlap, even on a busy machine
    client = EnqueueClient.from_url(redis_url)
    for n in range(40):
        client.enqueue(
            f"job-{n}",
            [{"key": "a", "prompt": f"{n} a"}, {"key": "b", "prompt": f"{n} b", "count": 2}],
        )
    env = env_for(redis_url, fake_gemini, tmp_path, SWEEPER_CONCURRENCY="3")
    serve = start_serve(env, tmp_path, "--every", "0.3s")
    onces = [
        track(
            subprocess.Popen(
                [sys.executable, "-m", "sweeper", "--once", "--json"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
        for _ in range(3)
    ]
    summaries = [json.loads(p.communicate(timeout=60)[0]) for p in onces]
    wait_for(lambda: r.scard("pending-image-jobs") == 0, timeout=60)
    serve.send_signal(signal.SIGTERM)
    serve.communicate(timeout=20)
    prompts = [(c.prompt) for c in fake_gemini.calls]
    assert len(prompts) == 120  # 40 jobs x 3 slots, each drawn once
    assert sorted(set(prompts)) == sorted(
        {f"{n} a" for n in range(40)} | {f"{n} b" for n in range(40)}
    )
    assert max(prompts.count(f"{n} b") for n in range(40)) == 2  # the two variations, no more
    assert sum(s["images_stored"] for s in summaries) < 120  # serve took part too
    assert all(s["leases_lost"] == 0 for s in summaries)
