"""Repository rules CI enforces: lint, types, the README's commands, documented settings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from apscheduler.triggers.cron import CronTrigger

from sweeper.settings import Settings, env_name
from tests.conftest import REPO

BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    out = subprocess.run(
        [str(BIN / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean() -> None:
    out = subprocess.run([str(BIN / "mypy")], cwd=REPO, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/pytest"
    assert command in readme
    assert ci.strip().splitlines()[-1] == command


def test_every_setting_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    example = (REPO / "config" / "sweeper.env.example").read_text()
    for field in Settings.model_fields:
        name = env_name(field)
        assert f"`{name}`" in readme, f"{name} missing from the README"
        assert re.search(rf"^# {name}=", example, re.M), f"{name} missing from sweeper.env.example"


def test_crontab_schedule_parses() -> None:
    lines = [
        line
        for line in (REPO / "crontab.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines
    for line in lines:
        CronTrigger.from_crontab(" ".join(line.split()[:5]))
        assert "sweep --once" in line


def test_example_toml_is_valid_and_inert() -> None:
    import tomllib

    assert tomllib.loads((REPO / "config" / "sweeper.toml").read_text()) == {}
