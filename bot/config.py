"""Settings from the environment (and a `.env` file), with documented defaults.

Read once at start-up by the entrypoint and passed down; nothing reads os.environ later,
so tests build a ``Settings`` directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import load_dotenv

DEFAULT_DATABASE_URL = "sqlite:///mentorbot.db"


def bundled_content_dir() -> Path:
    """The course shipped with mentorbot: the repo's content/ or the installed copy."""
    here = Path(__file__).resolve().parent
    repo_copy = here.parent / "content"
    if repo_copy.is_dir():
        return repo_copy
    installed = here.parent / "mentorbot" / "bundled_content"
    return installed


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    content_dir: Path = field(default_factory=bundled_content_dir)
    log_level: str = "INFO"
    log_format: str = "keyvalue"  # keyvalue | json
    shutdown_timeout: float = 20.0
    http: str = "auto"  # auto (on with Slack or Discord) | on | off
    default_course: str | None = None
    snippets_per_day: int | None = None
    timezone: str = "UTC"
    delivery_time: str = "09:00"
    delivery_days: str = "mon,tue,wed,thu,fri"
    reminder_after_hours: float = 4.0
    tick_seconds: float = 60.0
    content_watch: bool = False  # reload edited lessons at each tick, without a signal
    # Platform settings; an adapter starts when its credentials are present.
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    slack_api_url: str | None = None
    discord_token: str | None = None
    discord_guild_id: str | None = None
    discord_lead_role: str | None = None
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    discord_members_intent: bool = False  # needed to see members join (auto-enrol)
    port: int = 3000
    # Sending pace (messages per second), enforced by the core's rate limiter.
    slack_channel_rate: float = 1.0
    slack_workspace_rate: float = 10.0
    discord_rate: float = 50.0
    # Fernet key(s) that encrypt stored OAuth tokens, newest first (see bot/crypto.py).
    secret_key: str | None = field(default=None, repr=False)

    @property
    def needs_secret_key(self) -> bool:
        """Multi-workspace Slack keeps tokens in the database, so they need the key."""
        return bool(self.slack_client_id)

    @property
    def has_slack(self) -> bool:
        return bool(self.slack_bot_token or self.slack_client_id)

    @property
    def has_discord(self) -> bool:
        return bool(self.discord_token)


def _int_or_none(value: str | None, name: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from exc
    if number < 1:
        raise ValueError(f"{name} must be at least 1, got {value!r}")
    return number


def _choice(value: str | None, default: str, allowed: tuple[str, ...], name: str) -> str:
    if value is None:
        return default
    if value.lower() not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value.lower()


def _positive(value: str | None, default: float, name: str) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    if number <= 0:
        raise ValueError(f"{name} must be more than 0, got {value!r}")
    return number


def load_settings(env: dict[str, str] | None = None, dotenv: bool = True) -> Settings:
    """Build settings from ``env`` (default: the process environment plus ``.env``)."""
    if env is None:
        if dotenv:
            load_dotenv(Path.cwd() / ".env", override=False)
        env = dict(os.environ)

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value not in (None, "") else None

    content = get("MENTORBOT_CONTENT_DIR")
    return Settings(
        database_url=get("MENTORBOT_DATABASE_URL") or DEFAULT_DATABASE_URL,
        content_dir=Path(content) if content else bundled_content_dir(),
        log_level=(get("MENTORBOT_LOG_LEVEL") or "INFO").upper(),
        log_format=_choice(
            get("MENTORBOT_LOG_FORMAT"), "keyvalue", ("keyvalue", "json"), "MENTORBOT_LOG_FORMAT"
        ),
        shutdown_timeout=_positive(
            get("MENTORBOT_SHUTDOWN_TIMEOUT"), 20.0, "MENTORBOT_SHUTDOWN_TIMEOUT"
        ),
        http=_choice(get("MENTORBOT_HTTP"), "auto", ("auto", "on", "off"), "MENTORBOT_HTTP"),
        default_course=get("MENTORBOT_DEFAULT_COURSE"),
        snippets_per_day=_int_or_none(
            get("MENTORBOT_SNIPPETS_PER_DAY"), "MENTORBOT_SNIPPETS_PER_DAY"
        ),
        timezone=get("MENTORBOT_TIMEZONE") or "UTC",
        delivery_time=get("MENTORBOT_DELIVERY_TIME") or "09:00",
        delivery_days=get("MENTORBOT_DELIVERY_DAYS") or "mon,tue,wed,thu,fri",
        reminder_after_hours=_positive(
            get("MENTORBOT_REMINDER_AFTER"), 4.0, "MENTORBOT_REMINDER_AFTER"
        ),
        tick_seconds=_positive(get("MENTORBOT_TICK_SECONDS"), 60.0, "MENTORBOT_TICK_SECONDS"),
        content_watch=_choice(
            get("MENTORBOT_CONTENT_WATCH"), "off", ("on", "off"), "MENTORBOT_CONTENT_WATCH"
        )
        == "on",
        slack_bot_token=get("SLACK_BOT_TOKEN"),
        slack_signing_secret=get("SLACK_SIGNING_SECRET"),
        slack_app_token=get("SLACK_APP_TOKEN"),
        slack_client_id=get("SLACK_CLIENT_ID"),
        slack_client_secret=get("SLACK_CLIENT_SECRET"),
        slack_api_url=get("SLACK_API_URL"),
        discord_token=get("DISCORD_TOKEN"),
        discord_guild_id=get("DISCORD_GUILD_ID"),
        discord_lead_role=get("DISCORD_LEAD_ROLE"),
        discord_api_url=get("DISCORD_API_URL"),
        discord_gateway_url=get("DISCORD_GATEWAY_URL"),
        discord_members_intent=_choice(
            get("DISCORD_MEMBERS_INTENT"), "off", ("on", "off"), "DISCORD_MEMBERS_INTENT"
        )
        == "on",
        port=int(get("PORT") or 3000),
        slack_channel_rate=_positive(
            get("MENTORBOT_SLACK_CHANNEL_RATE"), 1.0, "MENTORBOT_SLACK_CHANNEL_RATE"
        ),
        slack_workspace_rate=_positive(
            get("MENTORBOT_SLACK_WORKSPACE_RATE"), 10.0, "MENTORBOT_SLACK_WORKSPACE_RATE"
        ),
        discord_rate=_positive(get("MENTORBOT_DISCORD_RATE"), 50.0, "MENTORBOT_DISCORD_RATE"),
        secret_key=get("MENTORBOT_SECRET_KEY"),
    )
