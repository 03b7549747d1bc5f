"""All configuration as one typed object (CONTRACT section 3).

Sources, strongest first: arguments given in code, the environment, a
``.env`` file, ``config/sweeper.toml`` (same variable names as keys). Every
value is validated before anything touches Redis; :func:`load_settings`
turns a validation failure into a :class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from enqueue_client.keys import FAILED_SET, PENDING_SET, RECORD_PREFIX, RESULT_PREFIX, Keys

from .errors import ConfigError

ENV_PREFIX = "SWEEPER_"
TOML_PATH = Path("config/sweeper.toml")
API_KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
STORAGE_SCHEMES = ("file", "s3", "gs", "az", "redis")
SUPPORTED_STORAGE_SCHEMES = ("file",)
# A crashed sweep's jobs must be claimable again no later than budget + 60 s
# after they were claimed (CONTRACT section 2). Leases are renewed while work
# goes on, so a lease of at most 60 s keeps that promise whatever the budget.
MAX_LEASE_SECONDS = 60.0


class Settings(BaseSettings):
    """Everything the sweeper can be told; built directly in tests."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        validate_default=True,
        validate_by_name=True,  # tests and code may pass api_key=...
    )

    redis_url: SecretStr | None = None
    pending_set: str = Field(PENDING_SET, min_length=1)
    record_prefix: str = Field(RECORD_PREFIX, min_length=1)
    result_prefix: str = Field(RESULT_PREFIX, min_length=1)
    failed_set: str = Field(FAILED_SET, min_length=1)
    internal_prefix: str = Field("sweeper:", min_length=1)
    time_budget_seconds: float = Field(280.0, gt=0, le=86_400)
    concurrency: int = Field(4, ge=1, le=256)
    max_attempts: int = Field(5, ge=1, le=100)
    call_timeout_seconds: float = Field(120.0, gt=0, le=3_600)
    lease_seconds: float = Field(60.0, ge=1, le=MAX_LEASE_SECONDS)
    retry_initial_seconds: float = Field(1.0, ge=0, le=600)
    retry_max_seconds: float = Field(30.0, ge=0, le=3_600)
    storage_url: str = "file://./var/images"
    public_base_url: str | None = None
    schedule: str = "*/5 * * * *"
    generator: Literal["gemini", "placeholder"] = "gemini"
    gemini_model: str = Field(
        "gemini-3.1-flash-image", pattern=r"^(models/)?[A-Za-z0-9._-]{1,128}$"
    )
    gemini_fallback_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    gemini_base_url: str | None = None
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices(*API_KEY_VARS))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    metrics_port: int | None = Field(None, ge=1, le=65_535)
    metrics_textfile: str | None = None
    metrics_pushgateway: str | None = None
    heartbeat_url: str | None = None
    webhook_secret: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_base_url: str | None = None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            scheme = urlsplit(value.get_secret_value()).scheme
            if scheme not in ("redis", "rediss", "unix"):
                raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in STORAGE_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(STORAGE_SCHEMES)}, not {scheme!r}")
        if scheme not in SUPPORTED_STORAGE_SCHEMES:
            raise ValueError(f"{scheme}:// storage is not available in this version; use file://")
        return value

    @field_validator(
        "public_base_url",
        "gemini_base_url",
        "telegram_base_url",
        "metrics_pushgateway",
        "heartbeat_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("metrics_textfile")
    @classmethod
    def _prom_file(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".prom"):
            raise ValueError("must end in .prom (node-exporter reads only those)")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as e:
            raise ValueError(f"not a cron expression ({e})") from None
        return value

    @field_validator("gemini_fallback_models", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("log_level", "log_format", "generator", mode="before")
    @classmethod
    def _fold_case(cls, value: Any) -> Any:
        return (
            value.upper()
            if isinstance(value, str) and value.lower() in _LEVELS
            else (value.lower() if isinstance(value, str) else value)
        )

    def require_generator(self) -> None:
        """Raise ConfigError unless the generator can run (reading commands need no key)."""
        if self.generator == "gemini" and self.api_key is None:
            raise ConfigError(
                "invalid configuration: GEMINI_API_KEY (or GOOGLE_API_KEY) is required when "
                "SWEEPER_GENERATOR=gemini; set it, or set SWEEPER_GENERATOR=placeholder "
                "to run offline"
            )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, TomlSource(settings_cls)

    # -- derived values -------------------------------------------------------

    @property
    def keys(self) -> Keys:
        """Key names built from the configured prefixes."""
        return Keys(
            pending_set=self.pending_set,
            record_prefix=self.record_prefix,
            result_prefix=self.result_prefix,
            failed_set=self.failed_set,
            internal_prefix=self.internal_prefix,
        )

    def secrets(self) -> list[str]:
        """Every secret value set, for scrubbing from log output."""
        values = [self.api_key, self.webhook_secret, self.telegram_bot_token]
        found = [v.get_secret_value() for v in values if v is not None]
        if self.heartbeat_url:  # a ping URL is a capability: whoever has it can fake pings
            found.append(self.heartbeat_url)
        if self.redis_url is not None:
            password = urlsplit(self.redis_url.get_secret_value()).password
            if password:
                found.append(password)
        return [s for s in found if s]

    def redis_url_display(self) -> str:
        """The Redis URL with its password masked, for messages."""
        if self.redis_url is None:
            return "embedded Redis under ./var/redis"
        return mask_url(self.redis_url.get_secret_value())

    def describe(self) -> dict[str, Any]:
        """The effective configuration with secrets masked (for startup logs and doctor)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "redis_url":
                value = self.redis_url_display()
            elif name == "heartbeat_url" and value:
                value = urlsplit(value)._replace(path="/****", query="").geturl()
            elif name == "metrics_pushgateway" and value:
                value = mask_url(value)
            elif isinstance(value, SecretStr):
                value = "********"
            out[env_name(name)] = value
        return out


_LEVELS = {"debug", "info", "warning", "error"}


def mask_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:****@host``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:****@{netloc}"))


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    if field == "api_key":
        return API_KEY_VARS[0]
    return ENV_PREFIX + field.upper()


class TomlSource(PydanticBaseSettingsSource):
    """``config/sweeper.toml`` with the environment variable names as keys."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path = TOML_PATH) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{self.path}: cannot read it as TOML: {e}") from None
        by_env = {env_name(name): name for name in self.settings_cls.model_fields}
        by_env.update({alias: "api_key" for alias in API_KEY_VARS})
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = by_env.get(key.upper())
            if name is None:
                raise ConfigError(f"{self.path}: unknown setting {key!r}")
            values[name] = value
        return values


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings, or raise :class:`ConfigError` naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise ConfigError(_describe_errors(e)) from None


def _describe_errors(error: ValidationError) -> str:
    lines = []
    for err in error.errors(include_input=False, include_url=False):
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else ""
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if field in Settings.model_fields:
            lines.append(f"{env_name(field)}: {message}")
        elif field in API_KEY_VARS:
            lines.append(f"{field}: {message}")
        else:
            lines.append(message)
    return "invalid configuration: " + "; ".join(lines)
