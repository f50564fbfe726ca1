"""Settings are checked when they are read: a bad value is named with the variable and
what is accepted, instead of surfacing later as "something went wrong" for a learner."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import DEFAULT_DATABASE_URL, Settings, SettingsError, load_settings


def problems(**env: str) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(env, dotenv=False)
    return caught.value.problems


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MENTORBOT_TIMEZONE", "Mars/X", "must be an IANA time zone like Europe/Berlin"),
        ("MENTORBOT_DELIVERY_TIME", "9am", "must be a 24-hour time HH:MM like 09:00"),
        ("MENTORBOT_DELIVERY_TIME", "25:00", "must be a 24-hour time HH:MM like 09:00"),
        ("MENTORBOT_DELIVERY_DAYS", "funday", "must be weekdays, daily, weekends or day names"),
        ("MENTORBOT_LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR"),
        ("MENTORBOT_LOG_FORMAT", "xml", "must be one of keyvalue, json"),
        ("MENTORBOT_HTTP", "maybe", "must be one of auto, on, off"),
        ("MENTORBOT_CONTENT_WATCH", "yes please", "must be one of on, off"),
        ("DISCORD_MEMBERS_INTENT", "1x", "must be one of on, off"),
        ("PORT", "abc", "must be a whole number from 1 to 65535"),
        ("PORT", "70000", "must be a whole number from 1 to 65535"),
        ("MENTORBOT_SHUTDOWN_TIMEOUT", "soon", "must be a number"),
        ("MENTORBOT_REMINDER_AFTER", "-1", "must be a number more than 0"),
        ("MENTORBOT_TICK_SECONDS", "nan", "must be a number more than 0"),
        ("MENTORBOT_SLACK_CHANNEL_RATE", "0", "must be a number more than 0"),
        ("MENTORBOT_SLACK_WORKSPACE_RATE", "fast", "must be a number"),
        ("MENTORBOT_DISCORD_RATE", "inf", "must be a number more than 0"),
        ("MENTORBOT_SLACK_WORKSPACE_RATE_MAX", "0", "must be a number more than 0"),
        ("MENTORBOT_SLACK_CHANNEL_RATE_MAX", "lots", "must be a number"),
        ("MENTORBOT_SNIPPETS_PER_DAY", "two", "must be a whole number"),
        ("MENTORBOT_RETENTION_DAYS", "0", "must be at least 1"),
        ("MENTORBOT_RETENTION_DAYS", "-5", "must be at least 1"),
        ("MENTORBOT_RETENTION_DAYS", "ninety", "must be a whole number"),
        ("MENTORBOT_ANSWER_WINDOW_HOURS", "0", "must be a number more than 0"),
        ("MENTORBOT_DATABASE_URL", "nonsense", "must look like sqlite:///FILE or postgresql://"),
        ("MENTORBOT_DATABASE_URL", "mysql://u@h/db", "names a mysql database, which mentorbot"),
        ("MENTORBOT_DATABASE_URL", "postgresql+psycopg2://h/db", "asks for the psycopg2 driver"),
        ("SLACK_API_URL", "slack.example", "must be a URL starting https:// or http://"),
        ("DISCORD_API_URL", "ftp://x", "must be a URL starting https:// or http://"),
        ("DISCORD_GATEWAY_URL", "gateway", "must be a URL starting wss:// or ws://"),
        ("DISCORD_GUILD_ID", "my-server", "must be a server id (digits"),
    ],
)
def test_a_bad_setting_is_one_line_naming_variable_value_and_what_is_accepted(
    name: str, value: str, expected: str
) -> None:
    [line] = problems(**{name: value})
    assert line.startswith(f"{name} ")
    assert expected in line
    assert repr(value) in line
    assert "\n" not in line


def test_every_bad_setting_is_reported_at_once_with_defaults_for_the_rest() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "MENTORBOT_TIMEZONE": "Mars/X",
                "MENTORBOT_DELIVERY_TIME": "9am",
                "MENTORBOT_DELIVERY_DAYS": "funday",
                "MENTORBOT_LOG_LEVEL": "LOUD",
                "PORT": "abc",
                "MENTORBOT_DATABASE_URL": "sqlite:///x.db",
            },
            dotenv=False,
        )
    error = caught.value
    assert len(error.problems) == 5
    assert error.bad == {
        "MENTORBOT_TIMEZONE",
        "MENTORBOT_DELIVERY_TIME",
        "MENTORBOT_DELIVERY_DAYS",
        "MENTORBOT_LOG_LEVEL",
        "PORT",
    }
    assert error.settings.timezone == "UTC" and error.settings.port == 3000
    assert error.settings.database_url == "sqlite:///x.db"  # the good ones are kept


def test_a_near_miss_time_zone_gets_a_suggestion() -> None:
    [line] = problems(MENTORBOT_TIMEZONE="berlin")
    assert line.endswith("got 'berlin' (did you mean Europe/Berlin?)")


def test_secrets_are_checked_but_never_printed() -> None:
    password = "s3cret-pass"
    [url] = problems(MENTORBOT_DATABASE_URL=f"mysql://me:{password}@db/x")
    token = "xoxp-1234-user-token-should-not-appear"
    [slack] = problems(SLACK_BOT_TOKEN=token)
    [app] = problems(SLACK_APP_TOKEN="xoxb-1-wrong-place")
    [spaced] = problems(DISCORD_TOKEN="Bot abc.def.ghi")
    assert password not in url and "me:***@db" in url
    assert token not in slack and "got one starting 'xoxp-'" in slack
    assert "SLACK_APP_TOKEN must be the App-Level Token (starting xapp-)" in app
    assert spaced == "DISCORD_TOKEN contains spaces or line breaks: paste the bot token alone"


def test_good_settings_are_accepted_as_written() -> None:
    settings = load_settings(
        {
            "MENTORBOT_DATABASE_URL": "postgresql://u:p@h:5432/db",
            "MENTORBOT_TIMEZONE": "Europe/Berlin",
            "MENTORBOT_DELIVERY_TIME": "8:30",
            "MENTORBOT_DELIVERY_DAYS": "mon,wed,fri",
            "MENTORBOT_LOG_LEVEL": "debug",
            "PORT": "8080",
            "SLACK_BOT_TOKEN": "xoxb-1-2-abc",
            "SLACK_APP_TOKEN": "xapp-1-abc",
            "DISCORD_GUILD_ID": "123456789012345678",
            "DISCORD_GATEWAY_URL": "ws://127.0.0.1:9000",
            "MENTORBOT_SLACK_WORKSPACE_RATE_MAX": "50",
        },
        dotenv=False,
    )
    assert (settings.slack_workspace_rate_max, settings.slack_channel_rate_max) == (50.0, None)
    assert (settings.timezone, settings.delivery_time, settings.delivery_days) == (
        "Europe/Berlin",
        "8:30",
        "mon,wed,fri",
    )
    assert (settings.log_level, settings.port) == ("DEBUG", 8080)
    assert load_settings({}, dotenv=False).database_url == DEFAULT_DATABASE_URL


def test_the_data_folder_is_next_to_the_sqlite_file_unless_set(tmp_path: Path) -> None:
    beside = Settings(database_url=f"sqlite:///{tmp_path / 'db' / 'bot.db'}")
    assert beside.files_dir == tmp_path / "db" / "mentorbot-data"
    chosen = load_settings({"MENTORBOT_DATA_DIR": str(tmp_path / "files")}, dotenv=False)
    assert chosen.files_dir == tmp_path / "files"
    (tmp_path / "a-file").write_text("x")
    [line] = problems(MENTORBOT_DATA_DIR=str(tmp_path / "a-file"))
    assert line.startswith("MENTORBOT_DATA_DIR must be a folder")
