"""The ``sweep`` command as users run it: a real subprocess, real Redis, the fake API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from enqueue_client import EnqueueClient, ResultRecord
from sweeper.testing import FakeGemini
from tests.conftest import cli_env, run_cli, sweeper_env, track

SECRET_KEY = "test-gemini-key-not-real-0123456789abcdef"


def env_for(redis_url: str, fake: FakeGemini, tmp_path: Path, **extra: str) -> dict[str, str]:
    defaults = {"GEMINI_API_KEY": SECRET_KEY}
    return sweeper_env(redis_url, fake, tmp_path, **(defaults | extra))


def test_no_arguments_prints_help(tmp_path: Path) -> None:
    out = run_cli(env=cli_env(), cwd=tmp_path)
    assert out.returncode == 0
    assert "usage: sweep" in out.stdout and "--once" in out.stdout and "demo" in out.stdout


def test_once_happy_path(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    client = EnqueueClient.from_url(redis_url)
    for n in range(3):
        client.enqueue(
            f"case-{n}", [{"key": "cover", "prompt": f"scene {n}", "aspectRatio": "16:9"}]
        )
    out = run_cli("--once", env=env_for(redis_url, fake_gemini, tmp_path), cwd=tmp_path)

    assert out.returncode == 0, out.stderr
    assert "3 jobs claimed, 3 images stored" in out.stdout
    for n in range(3):
        result = ResultRecord.model_validate_json(r.get(f"image-results:case-{n}") or "")
        assert result.status == "completed"
    events = [json.loads(line) for line in out.stderr.splitlines()]  # JSON when not a TTY
    kinds = [e.get("event") for e in events]
    assert kinds.count("image_stored") == 3 and kinds.count("job_finished") == 3
    assert kinds[-1] == "sweep_finished"
    stored = next(e for e in events if e.get("event") == "image_stored")
    assert {"job_id", "image_key", "attempt", "duration", "ts", "level"} <= set(stored)


def test_console_script_and_json_summary(
    redis_url: str, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    script = Path(sys.executable).parent / "sweep"
    assert script.exists(), "pip install -e . puts the sweep script beside python"
    out = subprocess.run(
        [str(script), "--once", "--json"],
        env=env_for(redis_url, fake_gemini, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["jobs_claimed"] == 0 and summary["budget_exhausted"] is False


def test_bad_configuration_exits_2_before_touching_redis(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    env = cli_env(
        SWEEPER_REDIS_URL=f"redis://127.0.0.1:{port}/0",
        SWEEPER_CONCURRENCY="lots",
        SWEEPER_GENERATOR="placeholder",
    )
    out = run_cli("--once", env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert "SWEEPER_CONCURRENCY" in out.stderr
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    listener.close()


def test_missing_key_exits_2_and_says_what_to_do(tmp_path: Path) -> None:
    out = run_cli("--once", env=cli_env(SWEEPER_REDIS_URL="redis://127.0.0.1:1/0"), cwd=tmp_path)
    assert out.returncode == 2
    assert "GEMINI_API_KEY" in out.stderr and "SWEEPER_GENERATOR=placeholder" in out.stderr


def test_unreachable_redis_exits_1_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    env = cli_env(
        SWEEPER_REDIS_URL=f"redis://user:pw-secret@127.0.0.1:{port}/0",
        SWEEPER_GENERATOR="placeholder",
    )
    out = run_cli("--once", env=env, cwd=tmp_path)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "sweep: cannot reach Redis at redis://user:****@"
    )
    assert "pw-secret" not in out.stderr + out.stdout


def test_budget_holds_from_process_start_even_when_the_api_hangs(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    EnqueueClient.from_url(redis_url).enqueue("stuck", [{"key": "k", "prompt": "hangs [hang]"}])
    env = env_for(redis_url, fake_gemini, tmp_path, SWEEPER_TIME_BUDGET_SECONDS="3")
    started = time.monotonic()
    out = run_cli("--once", env=env, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert elapsed < 3 + 1.5, elapsed
    assert "time budget reached" in out.stdout
    assert r.sismember("pending-image-jobs", "stuck") and r.get("sweeper:lease:stuck") is None


def test_debug_output_never_contains_secrets(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    r.execute_command(
        "ACL", "SETUSER", "sweeper-user", "on", ">pw-redis-secret", "~*", "&*", "+@all"
    )
    secret_url = redis_url.replace("redis://", "redis://sweeper-user:pw-redis-secret@")
    client = EnqueueClient.from_url(redis_url)
    client.enqueue(
        "s1",
        [
            {"key": "k", "prompt": "ok"},
            {"key": "b", "prompt": "no [err:403]"},
            {"key": "c", "prompt": "flaky [err:503x1]"},
        ],
    )
    r.set("pending-images:broken", "{nope")
    r.sadd("pending-image-jobs", "broken")
    env = env_for(
        secret_url,
        fake_gemini,
        tmp_path,
        SWEEPER_LOG_LEVEL="DEBUG",
        SWEEPER_WEBHOOK_SECRET="whsec-secret-value",
        SWEEPER_TELEGRAM_BOT_TOKEN="123456:telegram-secret",
    )
    out = run_cli("--once", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "retry_scheduled" in out.stderr and "job_quarantined" in out.stderr
    assert len(out.stderr) > 500  # DEBUG really logged something
    status = run_cli("status", env=env, cwd=tmp_path)
    inspect = run_cli("inspect", "s1", env=env, cwd=tmp_path)
    seen = out.stdout + out.stderr + status.stdout + status.stderr + inspect.stdout + inspect.stderr
    stored = b"".join(
        redis.Redis.from_url(redis_url).get(k) or b"" for k in r.keys("image-results:*")
    )
    for secret in (SECRET_KEY, "whsec-secret-value", "telegram-secret", "pw-redis-secret"):
        assert secret not in seen
        assert secret.encode() not in stored
    assert fake_gemini.calls[0].api_key == SECRET_KEY  # it was really used


def test_two_sweep_processes_never_draw_the_same_image(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    fake_gemini.latency = 0.2  # long enough that the two runs overlap, even on a busy machine
    client = EnqueueClient.from_url(redis_url)
    for n in range(24):
        client.enqueue(
            f"job-{n}", [{"key": "a", "prompt": f"job {n} a"}, {"key": "b", "prompt": f"job {n} b"}]
        )
    env = env_for(redis_url, fake_gemini, tmp_path)
    procs = [
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
        for _ in range(2)
    ]
    summaries = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    prompts = [c.prompt for c in fake_gemini.calls]
    assert len(prompts) == 48 and len(set(prompts)) == 48
    assert sum(s["images_stored"] for s in summaries) == 48
    assert all(s["images_stored"] > 0 for s in summaries)  # both really worked
    assert r.scard("pending-image-jobs") == 0
