"""Nothing lost, nothing paid twice: real SIGKILLs, broken states written by hand,
fenced writes, renewed leases, poison jobs, signals."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import redis
import redis.asyncio as aioredis

from enqueue_client import EnqueueClient, ResultRecord
from enqueue_client.keys import Keys
from sweeper.jobstore import JobStore
from sweeper.settings import Settings
from sweeper.testing import FakeGemini
from tests.conftest import sweep_once, sweeper_env, track

MakeSettings = Callable[..., Settings]


def env_for(redis_url: str, fake: FakeGemini, tmp_path: Path, **extra: str) -> dict[str, str]:
    defaults = {
        "SWEEPER_LEASE_SECONDS": "1",
        "SWEEPER_CONCURRENCY": "4",
        "SWEEPER_TIME_BUDGET_SECONDS": "30",
    }
    return sweeper_env(redis_url, fake, tmp_path, **(defaults | extra))


def start_sweep(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return track(
        subprocess.Popen(
            [sys.executable, "-m", "sweeper", "--once", "--json"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )


def results(r: redis.Redis, ids: list[str]) -> dict[str, ResultRecord]:
    found = {}
    for job_id in ids:
        raw = r.get(f"image-results:{job_id}")
        if raw:
            found[job_id] = ResultRecord.model_validate_json(raw)
    return found


def assert_stored_bytes_match(result: ResultRecord) -> None:
    for images in result.images.values():
        for image in images:
            data = Path(unquote(urlsplit(image.url).path)).read_bytes()
            assert hashlib.sha256(data).hexdigest() == image.sha256


def sweep_until_done(env: dict[str, str], cwd: Path, r: redis.Redis, rounds: int = 6) -> float:
    """Run sweeps (waiting out dead leases) until nothing is pending; returns seconds taken."""
    started = time.monotonic()
    for _ in range(rounds):
        if r.scard("pending-image-jobs") == 0:
            break
        out = start_sweep(env, cwd).communicate(timeout=60)
        assert "Traceback" not in out[1], out[1]
        if r.scard("pending-image-jobs"):
            time.sleep(1.1)  # a killed sweep's leases last SWEEPER_LEASE_SECONDS=1
    assert r.scard("pending-image-jobs") == 0
    return time.monotonic() - started


@pytest.mark.parametrize("kill_after", [0.5, 1.0, 1.6, 2.4])
def test_sigkill_at_any_moment_loses_nothing_and_pays_little_twice(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path, kill_after: float
) -> None:
    fake_gemini.latency = 0.25
    ids = [f"job-{n}" for n in range(10)]
    client = EnqueueClient.from_url(redis_url)
    for job_id in ids:
        client.enqueue(
            job_id, [{"key": "a", "prompt": f"{job_id} a"}, {"key": "b", "prompt": f"{job_id} b"}]
        )
    env = env_for(redis_url, fake_gemini, tmp_path)

    victim = start_sweep(env, tmp_path)
    time.sleep(kill_after)  # startup, claiming, calls in flight, storing, finishing
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    calls_at_kill = len(fake_gemini.calls)
    stored_at_kill = sum(
        len(imgs) for res in results(r, ids).values() for imgs in res.images.values()
    )

    sweep_until_done(env, tmp_path, r)

    final = results(r, ids)
    assert all(final[j].status == "completed" for j in ids)
    for res in final.values():
        assert sorted(res.images) == ["a", "b"] and all(len(v) == 1 for v in res.images.values())
        assert_stored_bytes_match(res)
    per_prompt = Counter(c.prompt for c in fake_gemini.calls)
    assert set(per_prompt) == {f"{j} {k}" for j in ids for k in "ab"}
    # Only calls in flight at the kill (at most the concurrency) are paid twice.
    assert len(fake_gemini.calls) - 20 <= 4
    assert sum(n - 1 for n in per_prompt.values()) <= max(0, calls_at_kill - stored_at_kill)
    assert r.keys("sweeper:attempts:*") == [] and r.keys("sweeper:lease:*") == []


def test_a_dead_sweeps_lease_blocks_until_it_expires_then_the_job_is_finished(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    EnqueueClient.from_url(redis_url).enqueue("orphan", [{"key": "k", "prompt": "left behind"}])
    r.set("sweeper:lease:orphan", "dead-sweep-token", px=800)
    r.hset("sweeper:attempts:orphan", mapping={"job": 1, "unclean": 1})
    assert sweep_once(make_settings()).jobs_claimed == 0
    time.sleep(0.9)
    summary = sweep_once(make_settings())
    assert summary.jobs_completed == 1
    assert results(r, ["orphan"])["orphan"].attempts == 2  # the dead sweep's start counts


def test_bytes_stored_but_never_recorded_are_adopted_without_a_call(
    make_settings: MakeSettings,
    redis_url: str,
    r: redis.Redis,
    fake_gemini: FakeGemini,
    tmp_path: Path,
) -> None:
    EnqueueClient.from_url(redis_url).enqueue(
        "crashed",
        [{"key": "a", "prompt": "drawn before the crash"}, {"key": "b", "prompt": "never drawn"}],
    )
    # The state a kill between storing bytes and writing the result leaves behind:
    from sweeper.images import inspect_image
    from tests.test_storage import png

    data = png((6, 4))
    info = inspect_image(data)
    path = tmp_path / "images" / "crashed" / f"a-1-{info.sha256[:12]}.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    r.hset("sweeper:attempts:crashed", mapping={"job": 1, "unclean": 1})

    summary = sweep_once(make_settings())
    assert summary.images_adopted == 1 and summary.api_calls == 1
    assert [c.prompt for c in fake_gemini.calls] == ["never drawn"]
    res = results(r, ["crashed"])["crashed"]
    assert res.status == "completed" and res.images["a"][0].sha256 == info.sha256
    assert_stored_bytes_match(res)


def test_a_running_result_is_resumed_and_a_missing_record_keeps_a_final_result(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    client = EnqueueClient.from_url(redis_url)
    client.enqueue("done", [{"key": "k", "prompt": "finished long ago"}])
    sweep_once(make_settings())
    before = r.get("image-results:done")
    r.sadd("pending-image-jobs", "done")  # a producer retried SADD without the record
    sweep_once(make_settings())
    assert r.get("image-results:done") == before
    assert not r.sismember("pending-image-jobs", "done") and not r.smembers("failed-image-jobs")
    assert len(fake_gemini.calls) == 1


def test_fenced_writes_refuse_a_sweep_whose_lease_was_taken_over(
    redis_url: str, r: redis.Redis
) -> None:
    EnqueueClient.from_url(redis_url).enqueue("contested", [{"key": "k", "prompt": "p"}])

    async def scenario() -> tuple[bool, bool, bool]:
        conn = aioredis.Redis.from_url(redis_url, decode_responses=True)
        old = JobStore(conn, Keys(), token="old", lease_seconds=30)
        new = JobStore(conn, Keys(), token="new", lease_seconds=30)
        await old.load_scripts()
        assert [c.job_id for c in await old.claim(["contested"], set())] == ["contested"]
        await conn.delete("sweeper:lease:contested")  # the old lease expired
        assert [c.job_id for c in await new.claim(["contested"], set())] == ["contested"]
        mine = ResultRecord(id="contested", status="running", attempts=2)
        assert await new.progress("contested", mine)
        stale = ResultRecord(id="contested", status="completed", attempts=1)
        outcome = (
            await old.progress("contested", stale),
            await old.finish("contested", stale),
            await old.release("contested", started=True),
        )
        await conn.aclose()
        return outcome

    assert asyncio.run(scenario()) == (False, False, False)
    assert ResultRecord.model_validate_json(r.get("image-results:contested") or "").attempts == 2
    assert r.get("sweeper:lease:contested") == "new"
    assert r.sismember("pending-image-jobs", "contested")


def test_a_long_healthy_job_keeps_its_lease(
    make_settings: MakeSettings,
    redis_url: str,
    r: redis.Redis,
    fake_gemini: FakeGemini,
    tmp_path: Path,
) -> None:
    EnqueueClient.from_url(redis_url).enqueue(
        "slow", [{"key": "k", "prompt": "takes a while [slow:3]"}]
    )
    env = env_for(redis_url, fake_gemini, tmp_path)  # 1 s leases, renewed every 1/3 s
    first = start_sweep(env, tmp_path)
    time.sleep(2.2)  # the call is in flight, well past one lease period
    assert r.get("sweeper:lease:slow") is not None
    intruder = start_sweep(env, tmp_path).communicate(timeout=30)[0]
    assert json.loads(intruder)["jobs_claimed"] == 0
    assert json.loads(first.communicate(timeout=30)[0])["jobs_completed"] == 1
    assert len(fake_gemini.calls) == 1


def test_a_job_that_keeps_killing_sweeps_is_quarantined(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    EnqueueClient.from_url(redis_url).enqueue("poison", [{"key": "k", "prompt": "deadly [hang]"}])
    EnqueueClient.from_url(redis_url).enqueue("fine", [{"key": "k", "prompt": "harmless"}])
    env = env_for(redis_url, fake_gemini, tmp_path)
    for _ in range(3):
        victim = start_sweep(env, tmp_path)
        deadline = time.monotonic() + 10
        while not fake_gemini.calls_for("deadly") or len(fake_gemini.calls_for("deadly")) < _ + 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)  # "the job crashed the sweeper"
        victim.communicate()
        time.sleep(1.1)
    assert r.hget("sweeper:attempts:poison", "unclean") == "3"
    out = start_sweep(env, tmp_path).communicate(timeout=30)
    summary = json.loads(out[0])
    assert summary["jobs_quarantined"] == 1
    res = results(r, ["poison"])["poison"]
    assert res.status == "failed" and "3 sweeps died" in res.failures["*"].reason
    assert r.sismember("failed-image-jobs", "poison")
    assert len(fake_gemini.calls_for("deadly")) == 3
    assert results(r, ["fine"])["fine"].status == "completed"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signals_stop_cleanly_and_release_unstarted_work(
    redis_url: str, r: redis.Redis, fake_gemini: FakeGemini, tmp_path: Path, sig: int, code: int
) -> None:
    client = EnqueueClient.from_url(redis_url)
    for n in range(12):
        client.enqueue(f"job-{n}", [{"key": "k", "prompt": f"forever {n} [hang]"}])
    proc = start_sweep(
        env_for(redis_url, fake_gemini, tmp_path, SWEEPER_LEASE_SECONDS="60"), tmp_path
    )
    deadline = time.monotonic() + 10
    while len(fake_gemini.calls) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=15)
    assert time.monotonic() - sent < 5
    assert proc.returncode == code
    summary = json.loads(out)
    assert summary["stopped_by"] == signal.Signals(sig).name
    assert r.keys("sweeper:lease:*") == []  # every lease given back at once
    assert r.scard("pending-image-jobs") == 12
    started = [k for k in r.keys("sweeper:attempts:*") if r.hget(k, "job")]
    assert len(started) == 4  # the four in flight count a start; the queued ones do not
    assert all(r.hget(k, "unclean") is None for k in r.keys("sweeper:attempts:*"))


def test_quota_storm_pauses_every_call_and_daily_quota_defers_everything(
    make_settings: MakeSettings, redis_url: str, r: redis.Redis, fake_gemini: FakeGemini
) -> None:
    from sweeper.testing import error_for

    client = EnqueueClient.from_url(redis_url)
    for n in range(6):
        client.enqueue(f"job-{n}", [{"key": "k", "prompt": f"storm {n}"}])
    fake_gemini.script("storm 5", error_for(429, retry_delay="1s"))
    summary = sweep_once(make_settings(concurrency=1))
    assert summary.jobs_completed == 6
    first_429 = fake_gemini.calls_for("storm 5")[0].started_at
    later = [c.started_at for c in fake_gemini.calls if c.started_at > first_429]
    assert later and min(later) - first_429 >= 0.95  # nobody called during the pause

    fake_gemini.reset()
    for n in range(4):
        client.enqueue(f"day-{n}", [{"key": "k", "prompt": f"daily {n} [quota:day]"}])
    summary = sweep_once(make_settings(concurrency=1))
    assert len(fake_gemini.calls) == 1 and summary.images_deferred == 4
    assert r.scard("pending-image-jobs") == 4
    assert all(r.hget(f"sweeper:attempts:day-{n}", "k#1") is None for n in range(4))


def test_redis_restart_mid_sweep_loses_nothing(
    durable_redis,
    fake_gemini: FakeGemini,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    r = redis.Redis.from_url(durable_redis.url, decode_responses=True)
    fake_gemini.latency = 0.2
    ids = [f"job-{n}" for n in range(16)]
    client = EnqueueClient.from_url(durable_redis.url)
    for job_id in ids:
        client.enqueue(job_id, [{"key": "k", "prompt": f"{job_id} survives"}])
    env = env_for(durable_redis.url, fake_gemini, tmp_path, SWEEPER_LEASE_SECONDS="5")
    proc = start_sweep(env, tmp_path)
    deadline = time.monotonic() + 10
    while len(fake_gemini.calls) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    durable_redis.restart()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    r = redis.Redis.from_url(durable_redis.url, decode_responses=True)
    sweep_until_done(env, tmp_path, r)
    final = results(r, ids)
    assert all(final[j].status == "completed" for j in ids)
    assert len(fake_gemini.calls) <= 16 + 4
    r.close()


def test_redis_gone_for_good_stops_the_sweep_cleanly(
    durable_redis,
    fake_gemini: FakeGemini,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    fake_gemini.latency = 0.3
    client = EnqueueClient.from_url(durable_redis.url)
    for n in range(8):
        client.enqueue(f"job-{n}", [{"key": "k", "prompt": f"job {n}"}])
    env = env_for(durable_redis.url, fake_gemini, tmp_path, SWEEPER_LEASE_SECONDS="2")
    proc = start_sweep(env, tmp_path)
    deadline = time.monotonic() + 10
    while len(fake_gemini.calls) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    durable_redis.stop()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert json.loads(out)["redis_error"]
    durable_redis.start()
    time.sleep(2.1)  # its leases lapse
    r = redis.Redis.from_url(durable_redis.url, decode_responses=True)
    sweep_until_done(env, tmp_path, r)
    assert all(v.status == "completed" for v in results(r, [f"job-{n}" for n in range(8)]).values())
    r.close()
