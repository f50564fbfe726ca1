"""The app manifest asks Slack for exactly what the adapter uses."""

from __future__ import annotations

from urllib.parse import urlparse

import yaml

from adapters.slack.app import BOT_SCOPES, COMMAND, EVENTS_PATH, REDIRECT_PATH
from tests.conftest import REPO


def test_manifest_matches_the_adapter() -> None:
    manifest = yaml.safe_load((REPO / "slack-manifest.yaml").read_text(encoding="utf-8"))
    features, settings = manifest["features"], manifest["settings"]

    assert manifest["oauth_config"]["scopes"]["bot"] == list(BOT_SCOPES)
    (command,) = features["slash_commands"]
    assert command["command"] == COMMAND
    assert command["should_escape"] is True  # mentions arrive as <@U…>, as the grammar reads
    assert features["app_home"]["home_tab_enabled"] is True
    assert features["app_home"]["messages_tab_enabled"] is True
    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "app_home_opened",
        "message.im",
        "app_uninstalled",
        "tokens_revoked",
        "team_join",
    }
    assert settings["interactivity"]["is_enabled"] is True
    paths = {
        urlparse(url).path
        for url in (
            command["url"],
            settings["event_subscriptions"]["request_url"],
            settings["interactivity"]["request_url"],
        )
    }
    assert paths == {EVENTS_PATH}
    assert [urlparse(u).path for u in manifest["oauth_config"]["redirect_urls"]] == [REDIRECT_PATH]
