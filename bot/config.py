"""Settings from the environment (and a `.env` file), with documented defaults.

Read once at start-up by the entrypoint and passed down; nothing reads os.environ later,
so tests build a ``Settings`` directly. Every value is checked here, at start-up, so a
typo stops the bot with one line naming the variable instead of failing later in front
of a learner.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from dotenv import load_dotenv
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.schedule import ScheduleError, parse_days, parse_time, parse_zone

DEFAULT_DATABASE_URL = "sqlite:///mentorbot.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DATABASE_URL_FORMS = "sqlite:///FILE or postgresql://user:password@host/db"
# Backend and driver names SQLAlchemy reports for the URLs we can open.
_DATABASES = {"sqlite": ("", "pysqlite"), "postgresql": ("", "psycopg"), "postgres": ("",)}
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")

T = TypeVar("T")


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
    data_dir: Path | None = None  # files the bot writes (console logs, saved files)
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
    # A message later than this after its question is checked with the learner, not filed.
    answer_window_hours: float = 48.0
    # Finished outbox rows older than this are removed or compacted (bot/retention.py).
    retention_days: int = 90
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
    # Sending pace (messages per second), enforced by the core's rate limiter: where
    # the learned pace starts, and the optional ceilings it never passes.
    slack_channel_rate: float = 1.0
    slack_workspace_rate: float = 10.0
    slack_channel_rate_max: float | None = None
    slack_workspace_rate_max: float | None = None
    discord_rate: float = 50.0
    # Fernet key(s) that encrypt stored OAuth tokens, newest first (see bot/crypto.py).
    secret_key: str | None = field(default=None, repr=False)

    @property
    def needs_secret_key(self) -> bool:
        """Multi-workspace Slack keeps tokens in the database, so they need the key."""
        return bool(self.slack_client_id)

    @property
    def answer_window(self) -> timedelta:
        return timedelta(hours=self.answer_window_hours)

    @property
    def has_slack(self) -> bool:
        return bool(self.slack_bot_token or self.slack_client_id)

    @property
    def has_discord(self) -> bool:
        return bool(self.discord_token)

    @property
    def files_dir(self) -> Path:
        """Where the bot keeps files of its own: MENTORBOT_DATA_DIR, else a
        ``mentorbot-data`` folder next to the SQLite file (so a checkout or the working
        directory never fills up), else the user's data folder (PostgreSQL)."""
        if self.data_dir is not None:
            return self.data_dir
        sqlite_file = sqlite_file_of(self.database_url)
        if sqlite_file is not None:
            return sqlite_file.absolute().parent / "mentorbot-data"
        base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
        return Path(base) / "mentorbot"


class SettingsError(ValueError):
    """Every setting that is wrong, one line each naming the variable, its value and
    what is accepted, so an operator can fix them all in one go. ``settings`` holds the
    defaults in place of the bad values, for checks that can still run (doctor)."""

    def __init__(self, problems: list[str], bad: set[str], settings: Settings) -> None:
        self.problems = problems
        self.bad = bad
        self.settings = settings
        super().__init__("; ".join(problems))


def shown_url(url: str) -> str:
    """A database URL as it may be printed: the password masked."""
    return _PASSWORD.sub(r"\1***@", url)


def sqlite_file_of(url: str) -> Path | None:
    """The SQLite file a database URL names; None for other databases and memory."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _database_url(value: str | None) -> str:
    if value is None:
        return DEFAULT_DATABASE_URL
    try:
        parsed = make_url(value)
    except ArgumentError as exc:
        raise ValueError(
            f"MENTORBOT_DATABASE_URL must look like {DATABASE_URL_FORMS}, got {shown_url(value)!r}"
        ) from exc
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend not in _DATABASES:
        raise ValueError(
            f"MENTORBOT_DATABASE_URL names a {backend} database, which mentorbot does not "
            f"support, got {shown_url(value)!r}: use {DATABASE_URL_FORMS}"
        )
    drivers = _DATABASES[backend]
    if "+" in parsed.drivername and driver not in drivers:
        raise ValueError(
            f"MENTORBOT_DATABASE_URL asks for the {driver} driver, which mentorbot does not "
            f"use, got {shown_url(value)!r}: write {backend}:// without a driver"
        )
    return value


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


def _port(value: str | None) -> int:
    if value is None:
        return 3000
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 65535:
        raise ValueError(f"PORT must be a whole number from 1 to 65535, got {value!r}")
    return number


def _choice(value: str | None, default: str, allowed: tuple[str, ...], name: str) -> str:
    if value is None:
        return default
    if value.lower() not in [a.lower() for a in allowed]:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value.lower()


def _positive(value: str | None, default: float, name: str) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    if not number > 0 or number == float("inf"):
        raise ValueError(f"{name} must be a number more than 0, got {value!r}")
    return number


def _timezone(value: str | None) -> str:
    if value is None:
        return "UTC"
    try:
        parse_zone(value)
    except ScheduleError as exc:
        hint = str(exc)[str(exc).find(" (did you mean") :] if "did you mean" in str(exc) else ""
        raise ValueError(
            f"MENTORBOT_TIMEZONE must be an IANA time zone like Europe/Berlin, got {value!r}{hint}"
        ) from exc
    return value.strip()


def _delivery_time(value: str | None) -> str:
    if value is None:
        return "09:00"
    try:
        parse_time(value)
    except ScheduleError as exc:
        raise ValueError(
            f"MENTORBOT_DELIVERY_TIME must be a 24-hour time HH:MM like 09:00, got {value!r}"
        ) from exc
    return value.strip()


def _delivery_days(value: str | None) -> str:
    if value is None:
        return "mon,tue,wed,thu,fri"
    try:
        parse_days(value)
    except ScheduleError as exc:
        raise ValueError(
            "MENTORBOT_DELIVERY_DAYS must be weekdays, daily, weekends or day names like "
            f"mon,wed,fri, got {value!r}"
        ) from exc
    return value.strip()


def _url(value: str | None, name: str, schemes: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if not re.match(rf"^(?:{'|'.join(schemes)})://[^/\s]+", value.strip()):
        forms = " or ".join(f"{s}://" for s in schemes)
        raise ValueError(f"{name} must be a URL starting {forms}, got {value!r}")
    return value.strip()


def _token(value: str | None, name: str, prefixes: tuple[str, ...], what: str) -> str | None:
    """Check a secret's shape without ever printing more than its first characters."""
    if value is None:
        return None
    if any(c.isspace() for c in value.strip()) or value.strip() != value:
        raise ValueError(f"{name} contains spaces or line breaks: paste the {what} alone")
    if prefixes and not value.startswith(prefixes):
        raise ValueError(
            f"{name} must be the {what} (starting {' or '.join(prefixes)}), "
            f"got one starting {value[:5]!r}"
        )
    return value


def _guild_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise ValueError(
            f"DISCORD_GUILD_ID must be a server id (digits: Developer Mode, then right-click "
            f"the server, Copy Server ID), got {value!r}"
        )
    return value.strip()


def _data_dir(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"MENTORBOT_DATA_DIR must be a folder, got {value!r}, which is a file")
    return path


def load_settings(env: dict[str, str] | None = None, dotenv: bool = True) -> Settings:
    """Build settings from ``env`` (default: the process environment plus ``.env``).

    Raises ``SettingsError`` naming every bad variable at once."""
    if env is None:
        if dotenv:
            load_dotenv(Path.cwd() / ".env", override=False)
        env = dict(os.environ)

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value not in (None, "") else None

    problems: list[str] = []
    bad: set[str] = set()

    def check(name: str, parse: Callable[[str | None], T], default: T) -> T:
        try:
            return parse(get(name))
        except ValueError as exc:
            problems.append(str(exc))
            bad.add(name)
            return default

    def on_off(name: str) -> bool:
        return check(name, lambda v: _choice(v, "off", ("on", "off"), name), "off") == "on"

    def rate(name: str, default: float) -> float:
        return check(name, lambda v: _positive(v, default, name), default)

    def ceiling(name: str) -> float | None:
        return check(name, lambda v: _positive(v, 0.0, name) if v else None, None)

    content = get("MENTORBOT_CONTENT_DIR")
    settings = Settings(
        database_url=check("MENTORBOT_DATABASE_URL", _database_url, DEFAULT_DATABASE_URL),
        content_dir=Path(content) if content else bundled_content_dir(),
        data_dir=check("MENTORBOT_DATA_DIR", _data_dir, None),
        log_level=check(
            "MENTORBOT_LOG_LEVEL",
            lambda v: _choice(v, "INFO", LOG_LEVELS, "MENTORBOT_LOG_LEVEL").upper(),
            "INFO",
        ),
        log_format=check(
            "MENTORBOT_LOG_FORMAT",
            lambda v: _choice(v, "keyvalue", ("keyvalue", "json"), "MENTORBOT_LOG_FORMAT"),
            "keyvalue",
        ),
        shutdown_timeout=rate("MENTORBOT_SHUTDOWN_TIMEOUT", 20.0),
        http=check(
            "MENTORBOT_HTTP",
            lambda v: _choice(v, "auto", ("auto", "on", "off"), "MENTORBOT_HTTP"),
            "auto",
        ),
        default_course=get("MENTORBOT_DEFAULT_COURSE"),
        snippets_per_day=check(
            "MENTORBOT_SNIPPETS_PER_DAY",
            lambda v: _int_or_none(v, "MENTORBOT_SNIPPETS_PER_DAY"),
            None,
        ),
        timezone=check("MENTORBOT_TIMEZONE", _timezone, "UTC"),
        delivery_time=check("MENTORBOT_DELIVERY_TIME", _delivery_time, "09:00"),
        delivery_days=check("MENTORBOT_DELIVERY_DAYS", _delivery_days, "mon,tue,wed,thu,fri"),
        reminder_after_hours=rate("MENTORBOT_REMINDER_AFTER", 4.0),
        tick_seconds=rate("MENTORBOT_TICK_SECONDS", 60.0),
        content_watch=on_off("MENTORBOT_CONTENT_WATCH"),
        slack_bot_token=check(
            "SLACK_BOT_TOKEN",
            lambda v: _token(v, "SLACK_BOT_TOKEN", ("xoxb-", "xoxe.xoxb-"), "Bot User OAuth Token"),
            None,
        ),
        slack_signing_secret=check(
            "SLACK_SIGNING_SECRET",
            lambda v: _token(v, "SLACK_SIGNING_SECRET", (), "Signing Secret"),
            None,
        ),
        slack_app_token=check(
            "SLACK_APP_TOKEN",
            lambda v: _token(v, "SLACK_APP_TOKEN", ("xapp-",), "App-Level Token"),
            None,
        ),
        answer_window_hours=rate("MENTORBOT_ANSWER_WINDOW_HOURS", 48.0),
        retention_days=check(
            "MENTORBOT_RETENTION_DAYS",
            lambda v: _int_or_none(v, "MENTORBOT_RETENTION_DAYS") or 90,
            90,
        ),
        slack_client_id=get("SLACK_CLIENT_ID"),
        slack_client_secret=check(
            "SLACK_CLIENT_SECRET",
            lambda v: _token(v, "SLACK_CLIENT_SECRET", (), "Client Secret"),
            None,
        ),
        slack_api_url=check(
            "SLACK_API_URL", lambda v: _url(v, "SLACK_API_URL", ("https", "http")), None
        ),
        discord_token=check(
            "DISCORD_TOKEN", lambda v: _token(v, "DISCORD_TOKEN", (), "bot token"), None
        ),
        discord_guild_id=check("DISCORD_GUILD_ID", _guild_id, None),
        discord_lead_role=get("DISCORD_LEAD_ROLE"),
        discord_api_url=check(
            "DISCORD_API_URL", lambda v: _url(v, "DISCORD_API_URL", ("https", "http")), None
        ),
        discord_gateway_url=check(
            "DISCORD_GATEWAY_URL",
            lambda v: _url(v, "DISCORD_GATEWAY_URL", ("wss", "ws", "https", "http")),
            None,
        ),
        discord_members_intent=on_off("DISCORD_MEMBERS_INTENT"),
        port=check("PORT", _port, 3000),
        slack_channel_rate=rate("MENTORBOT_SLACK_CHANNEL_RATE", 1.0),
        slack_workspace_rate=rate("MENTORBOT_SLACK_WORKSPACE_RATE", 10.0),
        slack_channel_rate_max=ceiling("MENTORBOT_SLACK_CHANNEL_RATE_MAX"),
        slack_workspace_rate_max=ceiling("MENTORBOT_SLACK_WORKSPACE_RATE_MAX"),
        discord_rate=rate("MENTORBOT_DISCORD_RATE", 50.0),
        secret_key=get("MENTORBOT_SECRET_KEY"),
    )
    if problems:
        raise SettingsError(problems, bad, settings)
    return settings
