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


def test_systemd_units() -> None:
    import configparser
    import shutil

    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(REPO / "config" / "systemd" / "image-sweeper.timer")
    calendar = timer["Timer"]["OnCalendar"]
    analyze = shutil.which("systemd-analyze")
    if analyze:
        out = subprocess.run(
            [analyze, "calendar", calendar], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stderr
        assert "*-*-* *:00/5:00" in out.stdout
    else:  # no systemd here: at least the shape of "every 5 minutes"
        assert re.fullmatch(r"\*:0/5", calendar)
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read(REPO / "config" / "systemd" / "image-sweeper.service")
    unit = service["Service"]
    assert unit["ExecStart"].endswith("sweep --once")
    assert unit["Type"] == "oneshot"
    text = (REPO / "config" / "systemd" / "image-sweeper.service").read_text()
    budget = int(re.search(r"SWEEPER_TIME_BUDGET_SECONDS=(\d+)", text).group(1))  # type: ignore[union-attr]
    assert budget < int(unit["TimeoutStartSec"]) <= budget + 60
    serve = configparser.ConfigParser(strict=False, interpolation=None)
    serve.read(REPO / "config" / "systemd" / "image-sweeper-serve.service")
    assert "sweep serve" in serve["Service"]["ExecStart"]


def test_kubernetes_manifests() -> None:
    import yaml

    cron = yaml.safe_load((REPO / "config" / "kubernetes" / "cronjob.yaml").read_text())
    CronTrigger.from_crontab(cron["spec"]["schedule"])
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    container = job["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    budget = float(env["SWEEPER_TIME_BUDGET_SECONDS"])
    assert budget < job["activeDeadlineSeconds"] <= budget + 60  # the deadline backs up the budget
    assert container["args"] == ["sweep", "--once"]
    for name in env:
        assert (
            name in Settings.model_fields
            or name.removeprefix("SWEEPER_").lower() in Settings.model_fields
        )
    deployment = yaml.safe_load((REPO / "config" / "kubernetes" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][:2] == ["sweep", "serve"]
    assert pod["terminationGracePeriodSeconds"] > 10  # longer than serve's --grace
