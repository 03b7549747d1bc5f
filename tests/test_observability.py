"""Metrics textfile and Pushgateway, heartbeat, progress output, run history, doctor, dry run."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from enqueue_client import EnqueueClient
from sweeper import heartbeat
from sweeper.metrics import reason_label
from sweeper.settings import Settings
from sweeper.testing import FakeGemini
from tests.conftest import cli_env, run_cli, sweep_once, sweeper_env, track
from tests.fakes.receiver import Receiver

MakeSettings = Callable[..., Settings]


def env_for(redis_url: str, fake: FakeGemini, tmp_path: Path, **extra: str) -> dict[str, str]:
    defaults = {"GEMINI_API_KEY": "obs-secret-key"}
    return sweeper_env(redis_url, fake, tmp_path, **(defaults | extra))


def test_once_writes_the_textfile(redis_url: str, fake_gemini: FakeGemini, tmp_path: Path) -> None:
    client = EnqueueClient.from_url(redis_url)
    client.enqueue(
        "m1",
        [
            {"key": "a", "prompt": "fine", "count": 2},
            {"key": "b", "prompt": "no [block:SAFETY]"},
            {"key": "c", "prompt": "flaky [err:503x1]"},
        ],
    )
    textfile = tmp_path / "sweeper.prom"
    out = run_cli(
        "--once",
        env=env_for(redis_url, fake_gemini, tmp_path, SWEEPER_METRICS_TEXTFILE=str(textfile)),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    text = textfile.read_text()
    assert 'sweeper_images_generated_total{model="gemini-3.1-flash-image"} 3.0' in text
    assert 'sweeper_images_failed_total{reason="blocked"} 1.0' in text
    assert 'sweeper_retries_total{reason="api_503"} 1.0' in text
    assert 'sweeper_jobs_finished_total{status="partial"} 1.0' in text
    assert 'sweeper_sweeps_total{outcome="ok"} 1.0' in text
    assert 'sweeper_api_call_seconds_count{outcome="ok"} 3.0' in text
    assert "sweeper_jobs_pending 0.0" in text


def test_once_pushes_to_a_pushgateway_also_after_sigterm(
    redis_url: str, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    client = EnqueueClient.from_url(redis_url)
    client.enqueue("quick", [{"key": "k", "prompt": "quick"}])
    client.enqueue("stuck", [{"key": "k", "prompt": "stuck [hang]"}])
    with Receiver() as gateway:
        env = env_for(redis_url, fake_gemini, tmp_path, SWEEPER_METRICS_PUSHGATEWAY=gateway.url)
        proc = track(
            subprocess.Popen(
                [sys.executable, "-m", "sweeper", "--once"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        deadline = time.monotonic() + 15
        while not fake_gemini.calls_for("stuck"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert len(gateway.requests) == 1
        push = gateway.requests[0]
    assert push.method == "PUT" and push.path == "/metrics/job/image-sweeper"
    body = push.body.decode()
    assert 'sweeper_sweeps_total{outcome="stopped"} 1.0' in body
    assert "sweeper_images_generated_total" in body


def test_heartbeat_pings_after_each_sweep_and_fail_suffix(
    make_settings: MakeSettings, redis_url: str, fake_gemini: FakeGemini
) -> None:
    EnqueueClient.from_url(redis_url).enqueue("h", [{"key": "k", "prompt": "p"}])
    with Receiver() as monitor:
        sweep_once(make_settings(heartbeat_url=monitor.url + "/ping/abc-123"))
        assert [(q.method, q.path) for q in monitor.requests] == [("GET", "/ping/abc-123")]
        assert asyncio.run(heartbeat.ping(monitor.url + "/ping/abc-123", ok=False))
        assert monitor.requests[-1].path == "/ping/abc-123/fail"


def test_a_slow_or_broken_monitor_never_holds_up_a_sweep(
    make_settings: MakeSettings, redis_url: str, fake_gemini: FakeGemini
) -> None:
    EnqueueClient.from_url(redis_url).enqueue("h", [{"key": "k", "prompt": "p"}])
    with Receiver(delay=30) as monitor:
        started = time.monotonic()
        settings = make_settings(heartbeat_url=monitor.url + "/slow")
        import sweeper.runner

        sweeper.runner.HEARTBEAT_TIMEOUT = 0.5
        try:
            summary = sweep_once(settings)
        finally:
            sweeper.runner.HEARTBEAT_TIMEOUT = 5.0
        assert summary.jobs_completed == 1
        assert time.monotonic() - started < 5
    with Receiver(status=500) as broken:
        assert not asyncio.run(heartbeat.ping(broken.url, ok=True))
    assert not asyncio.run(heartbeat.ping("http://127.0.0.1:9/nothing-listens", ok=True, timeout=1))


def test_progress_bar_in_a_terminal(
    redis_url: str, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    fake_gemini.latency = 0.3
    client = EnqueueClient.from_url(redis_url)
    for n in range(6):
        client.enqueue(f"p{n}", [{"key": "k", "prompt": f"pic {n}"}])
    env = env_for(
        redis_url, fake_gemini, tmp_path, SWEEPER_CONCURRENCY="2", COLUMNS="120", TERM="xterm"
    )
    leader, follower = pty.openpty()
    proc = track(
        subprocess.Popen(
            [sys.executable, "-m", "sweeper", "--once"],
            env=env,
            cwd=tmp_path,
            stdin=follower,
            stdout=follower,
            stderr=follower,
        )
    )
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(leader)
    text = screen.decode(errors="replace")
    assert proc.returncode == 0
    assert "6/6" in text and "in flight" in text and "s left" in text and "failed" in text
    assert "6 images stored" in text


def test_progress_lines_when_not_a_terminal(
    make_settings: MakeSettings,
    redis_url: str,
    fake_gemini: FakeGemini,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import sweeper.progress
    from sweeper.progress import follow

    fake_gemini.latency = 0.4
    EnqueueClient.from_url(redis_url).enqueue("p", [{"key": "k", "prompt": "p", "count": 3}])
    sweeper.progress.LINE_EVERY = 0.2
    try:
        with caplog.at_level("INFO", logger="sweeper.progress"):
            sweep_once(
                make_settings(concurrency=1), on_start=lambda sweep: follow(sweep, tty=False)
            )
    finally:
        sweeper.progress.LINE_EVERY = 10.0
    events = [r for r in caplog.records if getattr(r, "event", None) == "progress"]
    assert events
    assert {"images_done", "images_planned", "in_flight", "budget_left"} <= set(vars(events[-1]))


def test_status_shows_run_history(
    make_settings: MakeSettings,
    redis_url: str,
    r: redis.Redis,
    fake_gemini: FakeGemini,
    tmp_path: Path,
) -> None:
    for n in range(3):
        EnqueueClient.from_url(redis_url).enqueue(f"j{n}", [{"key": "k", "prompt": "p"}])
        sweep_once(make_settings())
    for _ in range(105):
        r.lpush("sweeper:runs", r.lindex("sweeper:runs", 0) or "{}")
    sweep_once(make_settings())
    assert r.llen("sweeper:runs") == 100  # capped
    out = run_cli("status", "--json", env=cli_env(SWEEPER_REDIS_URL=redis_url), cwd=tmp_path)
    data = json.loads(out.stdout)
    assert data["last_run"]["jobs_claimed"] == 0
    assert len(data["recent_runs"]) == 10


def test_reason_labels_stay_few() -> None:
    assert reason_label("blocked: SAFETY") == "blocked"
    assert reason_label("stopped: IMAGE_SAFETY") == "stopped"
    assert reason_label("no image in reply (finishReason STOP)") == "no_image"
    assert reason_label("api error 400 INVALID_ARGUMENT: bad") == "api_400"
    assert (
        reason_label("gave up after 5 attempts: api error 503 UNAVAILABLE") == "attempts_exhausted"
    )
    assert reason_label("record is not JSON: x") == "bad_record"
    assert reason_label("something new") == "other"


def test_doctor_all_good_and_each_failure(
    redis_url: str, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    good = env_for(redis_url, fake_gemini, tmp_path)
    out = run_cli("doctor", "--json", env=good, cwd=tmp_path)
    checks = {c["check"]: c for c in json.loads(out.stdout)}
    assert out.returncode == 0, out.stdout
    assert all(c["ok"] for c in checks.values())
    assert "Redis 7" in checks["redis"]["detail"] or "Redis 6" in checks["redis"]["detail"]
    text = run_cli("doctor", env=good, cwd=tmp_path).stdout
    assert "all good" in text

    bad_key = run_cli("doctor", "--json", env=good | {"GEMINI_API_KEY": "bad-key"}, cwd=tmp_path)
    assert bad_key.returncode == 1
    assert "API key not valid" in json.dumps(json.loads(bad_key.stdout))
    missing_model = run_cli(
        "doctor", env=good | {"SWEEPER_GEMINI_MODEL": "gemini-9-imaginary"}, cwd=tmp_path
    )
    assert (
        missing_model.returncode == 1 and "gemini-9-imaginary not offered" in missing_model.stdout
    )
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    no_store = run_cli(
        "doctor", env=good | {"SWEEPER_STORAGE_URL": f"file://{blocker}"}, cwd=tmp_path
    )
    assert no_store.returncode == 1 and "FAIL  storage" in no_store.stdout
    no_redis = run_cli(
        "doctor", env=good | {"SWEEPER_REDIS_URL": "redis://127.0.0.1:9/0"}, cwd=tmp_path
    )
    assert no_redis.returncode == 1 and "FAIL  redis" in no_redis.stdout
    no_key = run_cli(
        "doctor", env={k: v for k, v in good.items() if k != "GEMINI_API_KEY"}, cwd=tmp_path
    )
    assert no_key.returncode == 1 and "GEMINI_API_KEY" in no_key.stdout


def test_dry_run_shows_the_plan_and_changes_nothing(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    client = EnqueueClient.from_url(redis_url)
    client.enqueue("low", [{"key": "k", "prompt": "p"}], priority=0)
    client.enqueue("high", [{"key": "k", "prompt": "p", "count": 3}], priority=9)
    client.enqueue("busy", [{"key": "k", "prompt": "p"}], priority=5)
    r.set("sweeper:lease:busy", "someone", px=60_000)
    r.set("pending-images:bad", "{oops")
    r.sadd("pending-image-jobs", "bad")
    before = {k: r.dump(k) for k in r.keys("*")}
    out = run_cli(
        "--once", "--dry-run", "--json", env=cli_env(SWEEPER_REDIS_URL=redis_url), cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert [p["id"] for p in plan] == ["bad", "high", "busy", "low"]
    assert [p["action"].split(":")[0] for p in plan] == ["quarantine", "claim", "skip", "claim"]
    assert plan[1]["images"] == 3
    assert {k: r.dump(k) for k in r.keys("*")} == before
    text = run_cli(
        "--once", "--dry-run", env=cli_env(SWEEPER_REDIS_URL=redis_url), cwd=tmp_path
    ).stdout
    assert "high" in text and "skip: leased by a running sweep" in text
