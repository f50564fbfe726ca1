"""Socket Mode through the real entry point: ``choose_adapters`` picks Slack from the
settings and ``serve`` runs it, as ``mentorbot run`` does."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest
from sqlmodel import select

from adapters.slack import SlackAdapter
from bot.config import Settings
from bot.models import Reply
from mentorbot.bootstrap import build, choose_adapters, serve
from tests.conftest import Clock
from tests.emulators.slack_api import (
    DEFAULT_APP_TOKEN,
    SlackEmulator,
    block_actions_payload,
    event_callback_payload,
    message_event,
    slash_command_payload,
)
from tests.slack.rig import buttons, dm_of, lessons, posts, responses


def test_socket_mode_round_trip_through_serve(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    # Socket Mode only: no signing secret, so no HTTP server is started at all.
    settings = replace(slack_settings, slack_app_token=DEFAULT_APP_TOKEN, slack_signing_secret=None)

    async def main() -> None:
        app = build(settings, clock=clock)
        (adapter,) = choose_adapters(app, None)
        assert isinstance(adapter, SlackAdapter)
        assert adapter.routes() == []
        running = asyncio.create_task(serve(app, [adapter], tick=False))
        try:
            await asyncio.to_thread(slack.wait_for_socket_connection)
            command = slash_command_payload(
                "/mentor", "start", response_url=slack.new_response_url()
            )
            envelope = await slack.async_socket_send_envelope("slash_commands", command)
            assert await slack.async_wait_for_ack(envelope) == {"envelope_id": envelope}
            await slack.async_wait_for("chat.postMessage")
            await adapter.drain()
            assert "Welcome" in responses(slack)[0]["text"]
            (lesson,) = lessons(slack)

            dm = dm_of(slack)
            reply = message_event("Guiding others, mostly", channel=dm)
            envelope = await slack.async_socket_send_envelope(
                "events_api", event_callback_payload(reply)
            )
            assert await slack.async_wait_for_ack(envelope) == {"envelope_id": envelope}
            await adapter.drain()
            stored = app.store.run(lambda s: [r.text for r in s.exec(select(Reply)).all()])
            assert stored == ["Guiding others, mostly"]
            assert posts(slack, dm)[-1].params["text"].startswith("Thanks, I kept your answer")
            assert lesson.token == slack.calls_to("users.info")[0].token

            skip = buttons(lesson.params["blocks"])["mentor.skip"]
            press = block_actions_payload(
                skip["action_id"], value=skip["value"], response_url=slack.new_response_url()
            )
            envelope = await slack.async_socket_send_envelope("interactive", press)
            assert await slack.async_wait_for_ack(envelope) == {"envelope_id": envelope}
            await adapter.drain()
            assert responses(slack)[-1]["text"].startswith("Skipped:")
        finally:
            await adapter.stop()  # start() returns, so serve() winds everything down
            await asyncio.wait_for(running, timeout=10)
        assert running.result() is None

    asyncio.run(main())
    assert slack.calls_to("apps.connections.open")[0].token == DEFAULT_APP_TOKEN


def test_a_misshapen_socket_mode_payload_is_acknowledged_and_logged_once(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(slack_settings, slack_app_token=DEFAULT_APP_TOKEN, slack_signing_secret=None)
    press = block_actions_payload("mentor.skip", value='{"command": "skip"}')

    async def main() -> None:
        app = build(settings, clock=clock)
        (adapter,) = choose_adapters(app, None)
        running = asyncio.create_task(serve(app, [adapter], tick=False))
        try:
            await asyncio.to_thread(slack.wait_for_socket_connection)
            for kind, payload in (
                ("events_api", {**event_callback_payload(message_event("hi")), "event": "hi"}),
                ("interactive", {**press, "user": "U00000001"}),
                ("interactive", {**press, "actions": "mentor.skip"}),
            ):
                envelope = await slack.async_socket_send_envelope(kind, payload)
                assert await slack.async_wait_for_ack(envelope) == {"envelope_id": envelope}
            await adapter.drain()
        finally:
            await adapter.stop()
            await asyncio.wait_for(running, timeout=10)

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    refusals = [r.getMessage() for r in caplog.records if "refused a Socket Mode" in r.getMessage()]
    assert refusals == [
        "slack: refused a Socket Mode events_api: event is a string, not an object",
        "slack: refused a Socket Mode interactive: user is a string, not an object",
        "slack: refused a Socket Mode interactive: actions is a string, not a list",
    ]
    assert all(r.exc_info is None and r.levelno < logging.ERROR for r in caplog.records)
    assert [c.method for c in slack.calls if c.method != "apps.connections.open"] == []
