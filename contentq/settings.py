"""One settings model: flag > environment > .env > defaults.

Every field can be set as CONTENTQ_<FIELD> in the environment or in a `.env` file in the working
directory (or in CONTENTQ_HOME). CLI flags are passed as init arguments, which win over both.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contentq.errors import ConfigError
from contentq.redact import register_secret, register_url

QUEUES: tuple[str, ...] = ("publish", "rewrite", "collect", "imagegen", "maintenance")
"""All queues, highest priority first: a worker on several queues takes from the first non-empty one."""


# Ranges of the numeric settings: a value outside is refused with the variable's name, not discovered later as
# an overflow, a hung job or a queue that silently never runs.
DAY = 86400
Attempts = Annotated[int, Field(ge=1, le=50)]
BackoffBase = Annotated[float, Field(ge=1.0, le=10.0)]
Timeout = Annotated[int, Field(ge=1, le=DAY)]
Concurrency = Annotated[int, Field(ge=1, le=64)]
Seconds = Annotated[int, Field(ge=0, le=30 * DAY)]
PositiveSeconds = Annotated[int, Field(ge=1, le=30 * DAY)]
Count = Annotated[int, Field(ge=1, le=1_000_000)]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

RETRY_INTERVAL_MAX = DAY
"""No backoff between two tries is longer than a day, whatever attempts and base give."""


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
        return [min(RETRY_INTERVAL_MAX, max(1, int(round(self.backoff_base**n)))) for n in range(1, self.attempts)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CONTENTQ_", env_file=".env", env_file_encoding="utf-8", extra="ignore", allow_inf_nan=False
    )

    home: Path = Field(default_factory=default_home, description="Data directory for everything contentq keeps.")
    config: Path | None = Field(
        None, description="Routes file; default CONTENTQ_HOME/contentq.toml or ./contentq.toml."
    )
    redis_url: str | None = Field(None, description="Redis URL; unset = embedded Valkey under CONTENTQ_HOME.")
    db_busy_timeout_ms: Annotated[int, Field(ge=0, le=600_000)] = 5000
    db_wait_seconds: Annotated[float, Field(ge=0, le=86_400)] = Field(
        60.0,
        description="How long a command waits for a database held by another process (or a full disk) before it"
        " gives up; workers wait for as long as it takes.",
    )
    log_format: Literal["human", "json"] = "human"
    log_level: str = "INFO"

    # Per-queue retry policy, timeouts and concurrency.
    publish_attempts: Attempts = 5
    publish_backoff_base: BackoffBase = 2.0
    publish_timeout: Timeout = 45
    publish_concurrency: Concurrency = 1
    rewrite_attempts: Attempts = 3
    rewrite_backoff_base: BackoffBase = 2.0
    rewrite_timeout: Timeout = 300
    rewrite_concurrency: Concurrency = 1
    collect_attempts: Attempts = 3
    collect_backoff_base: BackoffBase = 2.0
    collect_timeout: Timeout = 300
    collect_concurrency: Concurrency = 1
    imagegen_attempts: Attempts = 3
    imagegen_backoff_base: BackoffBase = 2.0
    imagegen_timeout: Timeout = 180
    imagegen_concurrency: Concurrency = 1
    maintenance_attempts: Attempts = 3
    maintenance_backoff_base: BackoffBase = 2.0
    maintenance_timeout: Timeout = 600
    maintenance_concurrency: Concurrency = 1

    # Workers.
    process_layout: Literal["compact", "spread"] = Field(
        "compact",
        description="What `supervisor render` runs: compact (the Telegram worker also hosts the listeners and the"
        " admin bot; rewrite, imagegen and maintenance share one worker program) fits a small VPS; spread runs"
        " each in its own program (docs/operations.md#sizing).",
    )
    worker_maintenance_interval: int = Field(
        15, ge=1, le=3600, description="Seconds between registry cleanups (abandoned jobs)."
    )
    worker_heartbeat_ttl: int = Field(
        30, ge=1, le=3600, description="A job whose worker is silent this long is abandoned."
    )
    worker_reconcile_interval: int = Field(
        60, ge=1, le=3600, description="Seconds between the light reconciles that live workers take turns to run."
    )
    job_result_ttl: Seconds = 86400
    job_failure_ttl: PositiveSeconds = 7 * 86400

    # Telegram (Telethon, user account).
    tg_api_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    tg_api_hash: SecretStr | None = None
    tg_session: SecretStr | None = Field(None, description="A StringSession; default: the session file in home.")
    tg_phone: str | None = None
    tg_device_model: str = "contentq"
    tg_system_version: str = "Linux"
    tg_app_version: str = "0.1.0"
    tg_timeout: Annotated[int, Field(ge=1, le=3600)] = 60
    tg_flood_sleep_threshold: Annotated[int, Field(ge=0, le=DAY)] = 60
    tg_admin_chat: str | None = Field(None, description="Chat (id or @username) that receives admin alerts.")
    tg_account_recheck: int = Field(
        300, ge=1, le=DAY, description="Seconds between two looks of a job waiting for a logged-out or banned account."
    )
    collect_backfill: int = Field(
        50, ge=0, le=100_000, description="Messages taken from a source on its first collect."
    )
    collect_max_media_mb: int = Field(
        50, ge=0, le=4096, description="Larger donor media are recorded without downloading (0 = any)."
    )
    listen_alert_after: int = Field(
        300, ge=1, le=7 * DAY, description="Seconds a listener may be disconnected before the admin is told."
    )
    listen_heartbeat: int = Field(
        5, ge=1, le=3600, description="Seconds between a listener's heartbeats (health: 3 missed = down)."
    )
    tg_gateway: str | None = Field(
        None, description="'module:factory' building the Telegram gateway instead of Telethon (benches, demos)."
    )

    # The admin bot (`contentq bot`, docs/bot.md).
    bot_token: SecretStr | None = Field(None, description="The bot's token from @BotFather; set: `contentq bot` runs.")
    bot_admins: str = Field(
        "", description="Telegram user ids (comma-separated) the bot obeys; everyone else gets no answer."
    )
    bot_chat: Annotated[int, Field(ge=-(10**15), le=10**15)] | None = Field(
        None, description="A group chat id for cards and alerts; unset: each admin's private chat with the bot."
    )
    bot_gateway: str | None = Field(
        None, description="'module:factory' building the bot gateway instead of Telethon (benches, demos)."
    )

    # LLM (any OpenAI-compatible endpoint).
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    openai_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    openai_context_window: Annotated[int, Field(ge=256, le=100_000_000)] = 128000
    openai_max_output_tokens: Annotated[int, Field(ge=1, le=10_000_000)] = 2048
    openai_price_in_per_1m: Annotated[float, Field(ge=0, le=10_000)] | None = Field(
        None, description="Dollars per 1M input tokens; unset: the price table (docs/costs.md) for the model."
    )
    openai_price_cached_per_1m: Annotated[float, Field(ge=0, le=10_000)] | None = Field(
        None, description="Dollars per 1M input tokens served from the provider's prompt cache; unset: the table."
    )
    openai_price_out_per_1m: Annotated[float, Field(ge=0, le=10_000)] | None = Field(
        None, description="Dollars per 1M output tokens; unset: the price table for the model."
    )
    openai_prompt_cache_key: bool = Field(
        True, description="Send `prompt_cache_key` (the route) so a route's calls meet the provider's prompt cache."
    )
    openai_call_attempts: int = Field(3, ge=1, le=20, description="HTTP tries per LLM call on 429, 5xx and timeouts.")
    openai_retry_after_max: float = Field(
        5.0, ge=0, le=3600, description="A longer Retry-After is not slept through: the job is re-enqueued for then."
    )
    # Batch rewrites (the OpenAI Batch API; a route's rewrite_mode, docs/content.md "Batch rewrites").
    openai_batch_window: int = Field(
        DAY, ge=60, le=7 * DAY,
        description="Seconds the provider may take to finish a batch (OpenAI: 24 h). rewrite_mode = \"auto\" sends"
        " a post to a batch only when its slot is further away than this.",
    )  # fmt: skip
    openai_batch_price_share: float = Field(
        0.5, ge=0, le=1, description="What a batch call costs against a direct one (OpenAI: half the price)."
    )
    openai_batch_gather: float = Field(
        60.0, ge=0, le=DAY, description="Seconds a batch waits for more posts after the last one joined it."
    )
    openai_batch_gather_max: float = Field(
        900.0, ge=0, le=DAY, description="Seconds at most between a batch's first post and its submission."
    )
    openai_batch_poll: float = Field(
        60.0, gt=0, le=DAY, description="Seconds between two looks at a submitted batch's status."
    )
    openai_batch_margin: int = Field(
        1800, ge=0, le=DAY,
        description="A post still in a batch this many seconds before its slot is rewritten by a direct call.",
    )  # fmt: skip
    openai_batch_max_lines: int = Field(
        50_000, ge=1, le=50_000, description="Posts in one batch at most (OpenAI: 50,000 requests a file)."
    )
    breaker_fail_max: Annotated[int, Field(ge=1, le=10_000)] = 5
    breaker_reset_timeout: Annotated[int, Field(ge=1, le=DAY)] = 60

    # Images.
    image_model: str = "gpt-image-1"
    image_size: str = "1024x1024"
    image_quality: str = "medium"
    image_price: Annotated[float, Field(ge=0, le=1000)] | None = Field(
        None, description="Dollars per generated image; unset: the image price table (docs/costs.md)."
    )
    card_width: Annotated[int, Field(ge=64, le=8192)] = 1280
    card_height: Annotated[int, Field(ge=64, le=8192)] = 720
    card_background: str = "#1e293b"
    card_foreground: str = "#f8fafc"
    card_accent: str = "#38bdf8"
    card_font: Path | None = None
    card_logo: Path | None = None

    # Publishing.
    publish_min_interval: int = Field(30, ge=0, le=DAY, description="Minimum seconds between two sends to one target.")
    publish_account_budget: int = Field(20, ge=0, le=10_000, description="Sends per account per minute (0: no limit).")
    publish_unreachable_retry: int = Field(
        60, ge=1, le=DAY, description="Seconds between tries when Telegram is unreachable."
    )
    publish_unreachable_limit: int = Field(
        10, ge=1, le=10_000, description="Tries before a publication fails as unreachable."
    )
    flood_notify_threshold: int = Field(
        300, ge=0, le=7 * DAY, description="Flood waits longer than this notify the admin."
    )
    destination_timeout: float = Field(
        30.0, gt=0, le=600, description="Seconds one request to X or Instagram may take (docs/destinations.md)."
    )
    instagram_poll_seconds: float = Field(
        2.0, ge=0, le=600, description="Instagram: seconds between two looks at a container being processed."
    )
    caption_limit: Annotated[int, Field(ge=1, le=4096)] = 1024
    text_limit: Annotated[int, Field(ge=1, le=4096)] = 4096

    # Dedup.
    near_duplicate_threshold: Annotated[float, Field(gt=0, le=1)] = 0.65  # a few words changed (bench/ingest.py)
    dedup_window_days: Annotated[int, Field(ge=0, le=3650)] = 30

    # Notifications, alerts, metrics, retention.
    notify_throttle_seconds: int = Field(
        600, ge=0, le=30 * DAY, description="The same alert is sent at most once per this window."
    )
    alert_failure_threshold: Count = 5
    alert_window_seconds: PositiveSeconds = 3600
    alert_queue_limit: Count = 500
    alert_max_wait_seconds: PositiveSeconds = 1800
    metrics_enabled: bool = True
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    audit_retention_days: int = Field(
        365, ge=1, le=36500, description="`contentq purge` removes audit_events rows older than this many days."
    )

    # Insights (docs/insights.md).
    insights_fetch_days: int = Field(
        14, ge=1, le=365, description="Insights: posts published this many days back are measured on each fetch."
    )
    insights_min_posts: int = Field(
        10, ge=1, le=100_000, description="Insights: no suggestion rests on fewer posts than this."
    )

    # The web panel (docs/web.md).
    web_max_body_kb: int = Field(
        1024, ge=1, le=1_048_576, description="Largest request body the panel takes, in KiB; a larger one gets 413."
    )
    web_session_idle_minutes: int = Field(
        720, ge=1, le=30 * 24 * 60, description="A panel login unused this long is logged out."
    )
    web_session_max_hours: int = Field(
        168, ge=1, le=24 * 365, description="A panel login ends this long after it began, used or not."
    )
    web_login_window_minutes: int = Field(
        15, ge=1, le=24 * 60, description="Failed panel logins count for this long (the throttle's window)."
    )
    web_login_max_failures: int = Field(
        10, ge=1, le=10_000, description="Failed logins of one user name in the window before its logins wait."
    )
    web_login_max_failures_per_address: int = Field(
        50, ge=1, le=100_000, description="Failed logins from one client address in the window before it waits."
    )

    # Backups and replication.
    backup_dir: Path | None = Field(None, description="Where `db backup` writes; default CONTENTQ_HOME/backups.")
    backup_keep_daily: int = Field(
        7, ge=0, le=3650, description="Rotation keeps the newest backup of each of this many last days with one."
    )
    backup_keep_weekly: int = Field(
        4, ge=0, le=520, description="…and the newest of each of this many last ISO weeks with one."
    )
    backup_max_age_hours: int = Field(
        48, ge=1, le=24 * 3650, description="doctor, db check and alerts warn when the last good backup is older."
    )
    litestream_url: str | None = Field(
        None, description="Litestream replica (file:///path or s3://bucket/path): `supervisor render` adds the program."
    )

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        try:
            return value.expanduser().resolve()
        except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop, no $HOME for '~'
            raise ValueError(f"not a usable path ({exc})") from None

    @field_validator("openai_base_url", "redis_url", mode="after")
    @classmethod
    def _url_with_scheme(cls, value: str | None) -> str | None:
        # Without a scheme, "user:password@host" is no URL: clients misread it, and its password is not
        # recognised as one (the value itself is never echoed: it may hold a secret).
        if value is None or not value.strip():
            return None
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", value.strip()):
            raise ValueError("must be a URL with a scheme, e.g. https://host/v1 or redis://host:6379/0")
        return value.strip()

    @field_validator("litestream_url", mode="after")
    @classmethod
    def _replica_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        scheme, sep, rest = value.partition("://")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme):
            raise ValueError("must be a replica URL, e.g. file:///var/backups/contentq or s3://bucket/contentq")
        if scheme.lower() == "file" and not rest.startswith("/"):
            raise ValueError("a file:// replica needs an absolute path: file:///var/backups/contentq")
        return value

    @field_validator("bot_admins", mode="after")
    @classmethod
    def _user_ids(cls, value: str) -> str:
        ids = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
        bad = [part for part in ids if not part.isdigit()]
        if bad:
            raise ValueError(
                f"{', '.join(bad[:3])} is not a Telegram user id: give numeric ids, comma-separated (@userinfobot "
                "tells you yours)"
            )
        return ",".join(ids)

    @property
    def bot_admin_ids(self) -> tuple[int, ...]:
        """CONTENTQ_BOT_ADMINS as user ids."""
        return tuple(int(part) for part in self.bot_admins.split(",") if part)

    @property
    def bot_session_path(self) -> Path:
        """The bot's Telethon session (its update state, for catching up after a restart): mode 0600."""
        return self.home / "bot.session"

    @field_validator("log_level", mode="after")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"use one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    # Derived paths -----------------------------------------------------------------------------

    @property
    def db_path(self) -> Path:
        return self.home / "contentq.db"

    @property
    def backups_dir(self) -> Path:
        return self.backup_dir.expanduser() if self.backup_dir is not None else self.home / "backups"

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
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # private whatever the umask
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
    for env_file in env_files:
        _check_env_file(Path(env_file).expanduser())
    try:
        settings = Settings(_env_file=env_files, **clean)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ConfigError(f"invalid settings ({problems}); fix the environment or .env") from None
    for secret in (settings.openai_api_key, settings.tg_api_hash, settings.tg_session, settings.bot_token):
        if secret is not None:
            register_secret(secret.get_secret_value())
    for url in (settings.openai_base_url, settings.redis_url, settings.litestream_url):  # a URL's password too
        register_url(url)
    _register_account_secrets(env_files)
    return settings


# Destination accounts (docs/destinations.md): their secrets live only in the environment or .env, one variable
# per account and field, CONTENTQ_<PLATFORM>_<ACCOUNT>_<FIELD>, e.g. CONTENTQ_X_MAIN_ACCESS_TOKEN.
ACCOUNT_SECRETS: dict[str, tuple[str, ...]] = {
    "x": ("consumer_key", "consumer_secret", "access_token", "access_token_secret"),
    "instagram": ("access_token",),
}
_ACCOUNT_SECRET_NAME = re.compile(
    r"^CONTENTQ_(?:X|INSTAGRAM)_[A-Z0-9_]+_(?:CONSUMER_KEY|CONSUMER_SECRET|ACCESS_TOKEN|ACCESS_TOKEN_SECRET)$"
)


def account_variable(platform: str, account: str, field: str) -> str:
    return f"CONTENTQ_{platform.upper()}_{account.upper()}_{field.upper()}"


def _env_files(home: Path) -> list[Path]:
    """The .env files settings read, lowest precedence first (./.env wins over CONTENTQ_HOME/.env)."""
    return [home / ".env", Path(".env")]


def _dotenv(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values  # python-dotenv: what pydantic-settings reads .env with

    try:
        if not path.is_file():
            return {}
        return {k: v for k, v in dotenv_values(path, encoding="utf-8").items() if v is not None}
    except (OSError, UnicodeDecodeError):
        return {}


def account_secret(settings: Settings, platform: str, account: str, field: str) -> str | None:
    """A destination account's secret: the environment, else ./.env, else CONTENTQ_HOME/.env; None when unset."""
    name = account_variable(platform, account, field)
    value = os.environ.get(name)
    if value is None:
        for env_file in reversed(_env_files(settings.home)):
            value = _dotenv(env_file).get(name)
            if value is not None:
                break
    if value is not None and value.strip():
        register_secret(value.strip())
        return value.strip()
    return None


def _register_account_secrets(env_files: tuple[str, ...]) -> None:
    """Every destination secret set anywhere is known to the redaction before anything is printed or stored."""
    found = {k: v for k, v in os.environ.items() if _ACCOUNT_SECRET_NAME.match(k)}
    for env_file in env_files:
        found.update({k: v for k, v in _dotenv(Path(env_file).expanduser()).items() if _ACCOUNT_SECRET_NAME.match(k)})
    register_secret(*(value.strip() for value in found.values()))


def _shown(given: Any) -> str:
    """The rejected value, when it is a number: any other text setting might be a secret."""
    if isinstance(given, int | float) and not isinstance(given, bool):
        return f" (got {given!r})"
    if isinstance(given, str) and len(given) <= 30:
        try:
            float(given)
        except ValueError:
            return ""
        return f" (got {given})"
    return ""


def _problem(err: Any) -> str:
    name = "CONTENTQ_" + "_".join(str(p) for p in err["loc"]).upper()
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{name}: {msg}{_shown(err.get('input'))}"


def _check_env_file(path: Path) -> None:
    """A `.env` that cannot be read as text is named, instead of failing deep inside the settings loader."""
    try:
        if not path.is_file():
            return  # missing (or a folder named .env in the working directory): nothing to read
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; .env holds KEY=VALUE lines") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None


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
