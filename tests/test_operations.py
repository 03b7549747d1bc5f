"""Operator commands through the CLI (subprocess) against real Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import redis

from enqueue_client import EnqueueClient, ResultRecord
from sweeper.settings import Settings
from sweeper.testing import FakeGemini
from tests.conftest import cli_env, run_cli, sweep_once

MakeSettings = Callable[..., Settings]


def env(redis_url: str) -> dict[str, str]:
    return cli_env(SWEEPER_REDIS_URL=redis_url)  # no API key: reading commands need none


def test_status_counts_pending_leased_failed_and_age(
    make_settings: MakeSettings,
    redis_url: str,
    r: redis.Redis,
    fake_gemini: FakeGemini,
    tmp_path: Path,
) -> None:
    client = EnqueueClient.from_url(redis_url)
    client.enqueue("doomed", [{"key": "k", "prompt": "no [block:SAFETY]"}])
    sweep_once(make_settings())
    client.enqueue("waiting", [{"key": "k", "prompt": "later"}])
    client.enqueue("busy", [{"key": "k", "prompt": "in flight"}])
    r.set("sweeper:lease:busy", "someone", px=60_000)
    record = json.loads(r.get("pending-images:waiting") or "")
    record["timestamp"] -= 600_000  # enqueued ten minutes ago
    r.set("pending-images:waiting", json.dumps(record))

    out = run_cli("status", "--json", env=env(redis_url), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["pending"], data["leased"], data["failed"]) == (2, 1, 1)
    assert 595 < data["oldest_pending_age_seconds"] < 700
    assert data["last_run"]["jobs_failed"] == 1

    text = run_cli("status", env=env(redis_url), cwd=tmp_path).stdout
    assert "in progress (leased)  1" in text and "oldest pending" in text and "10m" in text
    assert "last runs" in text and "1 failed, 0 quarantined" in text


def test_inspect_shows_record_result_and_attempts(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    EnqueueClient.from_url(redis_url).enqueue("case", [{"key": "k", "prompt": "look at me"}])
    r.hset("sweeper:attempts:case", "k#1", 2)
    out = run_cli("inspect", "case", "--json", env=env(redis_url), cwd=tmp_path)
    data = json.loads(out.stdout)
    assert data["pending"] and data["record"]["images"][0]["prompt"] == "look at me"
    assert data["attempts"] == {"k#1": 2} and data["result"] is None
    text = run_cli("inspect", "case", env=env(redis_url), cwd=tmp_path).stdout
    assert "job case: pending" in text and "look at me" in text
    missing = run_cli("inspect", "nope", env=env(redis_url), cwd=tmp_path)
    assert missing.returncode == 1


def test_requeue_puts_failed_jobs_back_keeping_images(
    make_settings: MakeSettings,
    redis_url: str,
    r: redis.Redis,
    fake_gemini: FakeGemini,
    tmp_path: Path,
) -> None:
    client = EnqueueClient.from_url(redis_url)
    client.enqueue(
        "mixed", [{"key": "ok", "prompt": "fine"}, {"key": "bad", "prompt": "once [err:400x1]"}]
    )
    sweep_once(make_settings())
    assert ResultRecord.model_validate_json(r.get("image-results:mixed") or "").status == "partial"

    out = run_cli("requeue", "--all-failed", env=env(redis_url), cwd=tmp_path)
    assert out.returncode == 0 and "mixed: requeued" in out.stdout
    assert r.sismember("pending-image-jobs", "mixed") and not r.smembers("failed-image-jobs")
    assert ResultRecord.model_validate_json(r.get("image-results:mixed") or "").status == "running"

    sweep_once(make_settings())
    final = ResultRecord.model_validate_json(r.get("image-results:mixed") or "")
    assert final.status == "completed"
    assert len(fake_gemini.calls_for("fine")) == 1  # the stored image was not paid for again

    gone = run_cli("requeue", "mixed", env=env(redis_url), cwd=tmp_path)
    assert gone.returncode == 1 and "no record" in gone.stdout
    assert run_cli("requeue", env=env(redis_url), cwd=tmp_path).returncode == 2


def test_enqueue_from_the_shell(redis_url: str, r: redis.Redis, tmp_path: Path) -> None:
    out = run_cli(
        "enqueue",
        "--id",
        "shell-1",
        "--prompt",
        "a castle",
        "--aspect-ratio",
        "16:9",
        "--count",
        "2",
        "--priority",
        "4",
        env=env(redis_url),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    record = json.loads(r.get("pending-images:shell-1") or "")
    assert record["priority"] == 4
    assert record["images"] == [
        {"key": "image", "prompt": "a castle", "aspectRatio": "16:9", "count": 2}
    ]
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"priority": 1, "images": [{"key": "a", "prompt": "from a file"}]}))
    assert (
        run_cli(
            "enqueue", "--id", "file-1", "--file", str(job), env=env(redis_url), cwd=tmp_path
        ).returncode
        == 0
    )
    assert r.smembers("pending-image-jobs") == {"shell-1", "file-1"}
    bad = run_cli("enqueue", "--id", "bad id", "--prompt", "x", env=env(redis_url), cwd=tmp_path)
    assert bad.returncode == 2 and "job id" in bad.stderr


def test_status_never_pulls_large_records(r: redis.Redis, redis_url: str) -> None:
    from enqueue_client.keys import Keys
    from sweeper import operations

    now = int(time.time() * 1000)
    big = {
        "timestamp": now - 3_600_000,
        "images": [{"key": "k", "prompt": "p"}],
        "pad": "x" * 200_000,
    }
    r.set("pending-images:big", json.dumps(big))
    r.sadd("pending-image-jobs", "big")
    r.hset("sweeper:first-seen", "big", now - 60_000)  # when a sweep first saw it
    data = operations.status(r, Keys(), now_ms=now)
    assert data["oldest_pending_age_seconds"] == 60.0  # from first-seen: the record was not decoded
