"""Settings: every value validated up front, errors name the variable, secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.errors import ConfigError
from sweeper.settings import Settings, load_settings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    s = load_settings()
    assert s.redis_url is None
    assert (s.pending_set, s.record_prefix, s.result_prefix, s.failed_set) == (
        "pending-image-jobs",
        "pending-images:",
        "image-results:",
        "failed-image-jobs",
    )
    assert (s.time_budget_seconds, s.concurrency, s.max_attempts) == (280, 4, 5)
    assert s.storage_url == "file://./var/images"
    assert s.schedule == "*/5 * * * *"
    assert s.generator == "gemini"
    assert s.gemini_model == "gemini-3.1-flash-image"
    assert s.log_level == "INFO" and s.log_format == "auto"
    assert s.lease_seconds == 60


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SWEEPER_CONCURRENCY": "many"}, "SWEEPER_CONCURRENCY"),
        ({"SWEEPER_CONCURRENCY": "0"}, "SWEEPER_CONCURRENCY"),
        ({"SWEEPER_TIME_BUDGET_SECONDS": "-1"}, "SWEEPER_TIME_BUDGET_SECONDS"),
        ({"SWEEPER_MAX_ATTEMPTS": "0"}, "SWEEPER_MAX_ATTEMPTS"),
        ({"SWEEPER_LEASE_SECONDS": "600"}, "SWEEPER_LEASE_SECONDS"),
        ({"SWEEPER_REDIS_URL": "http://localhost"}, "SWEEPER_REDIS_URL"),
        ({"SWEEPER_STORAGE_URL": "ftp://x"}, "SWEEPER_STORAGE_URL"),
        ({"SWEEPER_STORAGE_URL": "s3://bucket/p"}, "SWEEPER_STORAGE_URL"),
        ({"SWEEPER_SCHEDULE": "every day"}, "SWEEPER_SCHEDULE"),
        ({"SWEEPER_GENERATOR": "dalle"}, "SWEEPER_GENERATOR"),
        ({"SWEEPER_LOG_LEVEL": "LOUD"}, "SWEEPER_LOG_LEVEL"),
        ({"SWEEPER_LOG_FORMAT": "xml"}, "SWEEPER_LOG_FORMAT"),
        ({"SWEEPER_GEMINI_BASE_URL": "localhost:1234"}, "SWEEPER_GEMINI_BASE_URL"),
        ({"SWEEPER_GEMINI_MODEL": "a/b/../c"}, "SWEEPER_GEMINI_MODEL"),
        ({"SWEEPER_PUBLIC_BASE_URL": "cdn.example"}, "SWEEPER_PUBLIC_BASE_URL"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_gemini_needs_a_key_and_says_how_to_run_offline() -> None:
    settings = load_settings()  # reading commands (status, inspect) need no key
    with pytest.raises(ConfigError, match=r"GEMINI_API_KEY.*SWEEPER_GENERATOR=placeholder"):
        settings.require_generator()
    load_settings(generator="placeholder").require_generator()


def test_google_api_key_is_accepted_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-very-secret")
    monkeypatch.setenv("SWEEPER_REDIS_URL", "redis://user:hunter22@db:6380/1")
    monkeypatch.setenv("SWEEPER_WEBHOOK_SECRET", "whsec-xyz1")
    s = load_settings()
    assert s.api_key is not None and s.api_key.get_secret_value() == "AIza-very-secret"
    shown = repr(s) + str(s) + str(s.describe())
    for secret in ("AIza-very-secret", "hunter22", "whsec-xyz1"):
        assert secret not in shown
    assert s.describe()["SWEEPER_REDIS_URL"] == "redis://user:****@db:6380/1"
    assert set(s.secrets()) == {"AIza-very-secret", "hunter22", "whsec-xyz1"}


def test_fallback_models_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_GEMINI_FALLBACK_MODELS", "gemini-3-pro-image, other-model ,")
    s = load_settings(generator="placeholder")
    assert s.gemini_fallback_models == ["gemini-3-pro-image", "other-model"]


def test_sources_environment_beats_dotenv_beats_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "sweeper.toml").write_text(
        'SWEEPER_GENERATOR = "placeholder"\nSWEEPER_CONCURRENCY = 3\n'
        "SWEEPER_MAX_ATTEMPTS = 7\nSWEEPER_TIME_BUDGET_SECONDS = 100\n"
    )
    (tmp_path / ".env").write_text("SWEEPER_MAX_ATTEMPTS=8\nSWEEPER_TIME_BUDGET_SECONDS=50\n")
    monkeypatch.setenv("SWEEPER_TIME_BUDGET_SECONDS", "20")
    s = load_settings()
    assert (s.generator, s.concurrency, s.max_attempts, s.time_budget_seconds) == (
        "placeholder",
        3,
        8,
        20,
    )


def test_unknown_toml_setting_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "sweeper.toml").write_text("SWEEPER_CONCURENCY = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'SWEEPER_CONCURENCY'"):
        load_settings(generator="placeholder")


def test_settings_can_be_built_directly() -> None:
    s = Settings(generator="placeholder", concurrency=9, internal_prefix="x:")
    assert s.keys.lease("a") == "x:lease:a"
    assert s.keys.pending_set == "pending-image-jobs"
