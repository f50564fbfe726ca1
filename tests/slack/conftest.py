"""Fixtures for the Slack adapter tests: the loopback Slack emulator and settings that
point the adapter at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.config import Settings, bundled_content_dir
from bot.crypto import generate_key
from tests.emulators.slack_api import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_SIGNING_SECRET,
    SlackEmulator,
)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk's Socket Mode client honours HTTP(S)_PROXY but not NO_PROXY; and Bolt
    reads SLACK_* variables when an argument is missing. Keep both out of the tests."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "SLACK_CLIENT_ID",
        "SLACK_CLIENT_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator(client_id="111.222", client_secret="shh") as emulator:
        yield emulator


@pytest.fixture
def slack_settings(sqlite_url: str, slack: SlackEmulator) -> Settings:
    """One workspace over HTTP: bot token plus signing secret. The core's pacing is
    raised so tests do not wait out Slack's one-message-a-second rule in real time."""
    return Settings(
        database_url=sqlite_url,
        content_dir=bundled_content_dir(),
        slack_bot_token=DEFAULT_BOT_TOKEN,
        slack_signing_secret=DEFAULT_SIGNING_SECRET,
        slack_api_url=slack.base_url,
        slack_channel_rate=100.0,
        slack_workspace_rate=100.0,
    )


@pytest.fixture
def oauth_settings(store_url: str, slack: SlackEmulator) -> Settings:
    """Multi-workspace mode (OAuth installs), on SQLite and PostgreSQL, with a fresh key
    for the stored tokens."""
    return Settings(
        database_url=store_url,
        content_dir=bundled_content_dir(),
        slack_client_id="111.222",
        slack_client_secret="shh",
        slack_signing_secret=DEFAULT_SIGNING_SECRET,
        slack_api_url=slack.base_url,
        slack_channel_rate=100.0,
        slack_workspace_rate=100.0,
        secret_key=generate_key(),
    )
