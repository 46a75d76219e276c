"""One settings model: flag > environment > .env > defaults.

Every field can be set as CONTENTQ_<FIELD> in the environment or in a `.env` file in the working
directory (or in CONTENTQ_HOME). CLI flags are passed as init arguments, which win over both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contentq.errors import ConfigError
from contentq.redact import register_secret, register_url

QUEUES: tuple[str, ...] = ("publish", "rewrite", "collect", "imagegen", "maintenance")
"""All queues, highest priority first: a worker on several queues takes from the first non-empty one."""


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("contentq", appauthor=False))


@dataclass(frozen=True)
class QueuePolicy:
    name: str
    attempts: int
    backoff_base: float
    timeout: int
    concurrency: int

    def retry_intervals(self) -> list[int]:
        """Backoff before retry n (1-based) is base**n seconds: 2, 4, 8 … with the default base."""
        return [max(1, int(round(self.backoff_base**n))) for n in range(1, self.attempts)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CONTENTQ_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(default_factory=default_home, description="Data directory for everything contentq keeps.")
    config: Path | None = Field(
        None, description="Routes file; default CONTENTQ_HOME/contentq.toml or ./contentq.toml."
    )
    redis_url: str | None = Field(None, description="Redis URL; unset = embedded Valkey under CONTENTQ_HOME.")
    db_busy_timeout_ms: int = 5000
    log_format: Literal["human", "json"] = "human"
    log_level: str = "INFO"

    # Per-queue retry policy, timeouts and concurrency.
    publish_attempts: int = 5
    publish_backoff_base: float = 2.0
    publish_timeout: int = 45
    publish_concurrency: int = 1
    rewrite_attempts: int = 3
    rewrite_backoff_base: float = 2.0
    rewrite_timeout: int = 300
    rewrite_concurrency: int = 2
    collect_attempts: int = 3
    collect_backoff_base: float = 2.0
    collect_timeout: int = 300
    collect_concurrency: int = 1
    imagegen_attempts: int = 3
    imagegen_backoff_base: float = 2.0
    imagegen_timeout: int = 180
    imagegen_concurrency: int = 1
    maintenance_attempts: int = 3
    maintenance_backoff_base: float = 2.0
    maintenance_timeout: int = 600
    maintenance_concurrency: int = 1

    # Workers.
    worker_maintenance_interval: int = Field(15, description="Seconds between registry cleanups (abandoned jobs).")
    worker_heartbeat_ttl: int = Field(30, description="A job whose worker is silent this long is abandoned.")
    job_result_ttl: int = 86400
    job_failure_ttl: int = 7 * 86400

    # Telegram (Telethon, user account).
    tg_api_id: int | None = None
    tg_api_hash: SecretStr | None = None
    tg_session: SecretStr | None = Field(None, description="A StringSession; default: the session file in home.")
    tg_phone: str | None = None
    tg_device_model: str = "contentq"
    tg_system_version: str = "Linux"
    tg_app_version: str = "0.1.0"
    tg_timeout: int = 60
    tg_flood_sleep_threshold: int = 60
    tg_admin_chat: str | None = Field(None, description="Chat (id or @username) that receives admin alerts.")
    collect_backfill: int = Field(50, description="Messages taken from a source on its first collect.")
    collect_max_media_mb: int = Field(50, description="Larger donor media are recorded without downloading (0 = any).")
    listen_alert_after: int = Field(300, description="Seconds a listener may be disconnected before the admin is told.")
    listen_heartbeat: int = Field(5, description="Seconds between a listener's heartbeats (health: 3 missed = down).")
    tg_gateway: str | None = Field(
        None, description="'module:factory' building the Telegram gateway instead of Telethon (benches, demos)."
    )

    # LLM (any OpenAI-compatible endpoint).
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_temperature: float = 0.7
    openai_timeout: float = 30.0
    openai_context_window: int = 128000
    openai_max_output_tokens: int = 2048
    openai_price_in_per_1m: float = 0.15
    openai_price_out_per_1m: float = 0.60
    openai_call_attempts: int = Field(3, description="HTTP tries per LLM call on 429, 5xx and timeouts.")
    openai_retry_after_max: float = Field(
        5.0, description="A longer Retry-After is not slept through: the job is re-enqueued for then."
    )
    breaker_fail_max: int = 5
    breaker_reset_timeout: int = 60

    # Images.
    image_model: str = "gpt-image-1"
    image_size: str = "1024x1024"
    image_quality: str = "medium"
    card_width: int = 1280
    card_height: int = 720
    card_background: str = "#1e293b"
    card_foreground: str = "#f8fafc"
    card_accent: str = "#38bdf8"
    card_font: Path | None = None
    card_logo: Path | None = None

    # Publishing.
    publish_min_interval: int = Field(30, description="Minimum seconds between two sends to one target.")
    publish_account_budget: int = Field(20, description="Sends per account per minute.")
    publish_unreachable_retry: int = Field(60, description="Seconds between tries when Telegram is unreachable.")
    publish_unreachable_limit: int = Field(10, description="Tries before a publication fails as unreachable.")
    flood_notify_threshold: int = Field(300, description="Flood waits longer than this notify the admin.")
    caption_limit: int = 1024
    text_limit: int = 4096

    # Dedup.
    near_duplicate_threshold: float = 0.65  # catches a few words changed in a short post (bench/ingest.py)
    dedup_window_days: int = 30

    # Notifications, alerts, metrics, retention.
    notify_throttle_seconds: int = Field(600, description="The same alert is sent at most once per this window.")
    alert_failure_threshold: int = 5
    alert_window_seconds: int = 3600
    alert_queue_limit: int = 500
    alert_max_wait_seconds: int = 1800
    metrics_enabled: bool = True
    retention_days: int = 30

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # Derived paths -----------------------------------------------------------------------------

    @property
    def db_path(self) -> Path:
        return self.home / "contentq.db"

    @property
    def media_dir(self) -> Path:
        return self.home / "media"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    @property
    def session_path(self) -> Path:
        return self.home / "telegram.session"

    @property
    def outbox_dir(self) -> Path:
        return self.home / "outbox"

    @property
    def config_path(self) -> Path:
        if self.config is not None:
            return self.config.expanduser()
        in_home = self.home / "contentq.toml"
        if in_home.exists():
            return in_home
        return Path("contentq.toml")

    def policy(self, queue: str) -> QueuePolicy:
        if queue not in QUEUES:
            raise ConfigError(f"unknown queue {queue!r}: choose one of {', '.join(QUEUES)}")
        return QueuePolicy(
            name=queue,
            attempts=max(1, int(getattr(self, f"{queue}_attempts"))),
            backoff_base=float(getattr(self, f"{queue}_backoff_base")),
            timeout=int(getattr(self, f"{queue}_timeout")),
            concurrency=max(1, int(getattr(self, f"{queue}_concurrency"))),
        )

    def ensure_home(self) -> Path:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create CONTENTQ_HOME {self.home}: {exc.strerror or exc}; fix the path or its permissions"
            ) from None
        return self.home


def load_settings(**overrides: Any) -> Settings:
    """Build settings; `overrides` (CLI flags) win over environment and `.env`."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    home = clean.get("home") or os.environ.get("CONTENTQ_HOME")
    # `.env` in CONTENTQ_HOME (also when given as --home), then ./.env, which wins where both set a value.
    env_files = (str(Path(home).expanduser() / ".env"), ".env") if home else (".env",)
    try:
        settings = Settings(_env_file=env_files, **clean)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"CONTENTQ_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings ({problems}); fix the environment or .env") from None
    for secret in (settings.openai_api_key, settings.tg_api_hash, settings.tg_session):
        if secret is not None:
            register_secret(secret.get_secret_value())
    for url in (settings.openai_base_url, settings.redis_url):  # a password in a URL is a secret too
        register_url(url)
    return settings


_overrides: dict[str, Any] = {}


def set_overrides(**overrides: Any) -> None:
    """CLI flags: remembered for the process, and exported so child processes see them too."""
    for key, value in overrides.items():
        if value is not None:
            _overrides[key] = value
            os.environ[f"CONTENTQ_{key.upper()}"] = str(value)
    get_settings.cache_clear()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings(**_overrides)
