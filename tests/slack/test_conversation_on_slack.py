"""The router on Slack, over signed HTTP against the emulator, on SQLite and PostgreSQL:
typed commands in a DM, thread replies and top-level messages, the "is this your
answer?" buttons, and corrections from history."""

from __future__ import annotations

import asyncio

import pytest

from bot.config import Settings, bundled_content_dir
from tests.conftest import Clock
from tests.emulators.slack_api import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_SIGNING_SECRET,
    SlackEmulator,
    message_event,
)
from tests.slack.rig import SlackRig, block_text, buttons, dm_of, posts, responses


@pytest.fixture
def settings(store_url: str, slack: SlackEmulator) -> Settings:
    return Settings(
        database_url=store_url,
        content_dir=bundled_content_dir(),
        slack_bot_token=DEFAULT_BOT_TOKEN,
        slack_signing_secret=DEFAULT_SIGNING_SECRET,
        slack_api_url=slack.base_url,
        slack_channel_rate=100.0,
        slack_workspace_rate=100.0,
    )


def last_text(slack: SlackEmulator, dm: str) -> str:
    call = posts(slack, dm)[-1]
    return block_text(call.params.get("blocks") or []) + "\n" + call.params["text"]


def test_top_level_dms_threads_and_the_ask_buttons(
    settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario() -> None:
        async with SlackRig(settings, slack, clock) as rig:
            await rig.command("start")
            await rig.settle()
            dm = dm_of(slack)

            for typed, expected in (
                ("/MENTOR HELP", "Commands (type them after /mentor)"),
                ("mentor progress", "lesson questions answered 0 of 1"),
                ("/mentr history", "Did you mean `/mentor history`?"),
            ):
                await rig.event(message_event(typed, channel=dm))
                await rig.settle()
                assert expected in last_text(slack, dm)
            assert rig.replies() == []

            # Small talk is asked about, with buttons; "Yes" files it as the answer.
            await rig.event(message_event("thanks!", channel=dm))
            await rig.settle()
            ask = posts(slack, dm)[-1]
            assert "Is this your answer to" in ask.params["text"]
            yes = buttons(ask.params["blocks"])["mentor.yes"]
            await rig.press(yes, channel_id=dm)
            await rig.settle()
            [reply] = rig.replies()
            assert (reply.kind, reply.text) == ("answer", "thanks!")

            # A thread reply on day 1, answered already, adds to that answer even
            # though day 2's question is the newest.
            clock.advance(minutes=10)
            await rig.command("next")
            await rig.settle()
            day1, day2 = [d for d in rig.deliveries() if d.kind == "lesson"]
            await rig.event(
                message_event("One more thing.", channel=dm, thread_ts=day1.platform_message_ids)
            )
            await rig.settle()
            assert "Added to your answer" in last_text(slack, dm)
            [reply] = rig.replies()
            assert reply.text == "thanks!\n\nOne more thing."
            # A top-level message answers day 2, the newest.
            await rig.event(message_event("I owned our ingestion service.", channel=dm))
            await rig.settle()
            assert {r.delivery_id for r in rig.replies()} == {day1.id, day2.id}

            # History offers a move button; pressing it lists the candidates.
            await rig.command("history")
            await rig.settle()
            history = [r for r in responses(slack) if "blocks" in r][-1]
            move = buttons(history["blocks"])["mentor.move"]
            assert move["text"]["text"] == "Move reply 2"
            await rig.press(move, channel_id=dm)
            await rig.settle()
            offer = responses(slack)[-1]
            assert "Where should reply 2 go?" in offer["text"]

    asyncio.run(scenario())


def test_the_end_of_lesson_summary_arrives_with_its_file(
    settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    from datetime import timedelta

    async def scenario() -> None:
        async with SlackRig(settings, slack, clock) as rig:
            await rig.command("start")
            await rig.settle()
            dm = dm_of(slack)
            for text in ("Saying no is hard.", "/mentor next", "I owned it.", "/mentor next"):
                clock.advance(minutes=10)
                if text.startswith("/mentor "):
                    await rig.command(text.removeprefix("/mentor "))
                else:
                    await rig.event(message_event(text, channel=dm))
                await rig.settle()
            clock.advance(minutes=10)
            await rig.event(message_event("We document decisions.", channel=dm))
            await rig.settle()
            clock.now = clock.now.replace(hour=9) + timedelta(days=1)
            await rig.app.engine.tick()
            await rig.settle()
            summary = [c for c in posts(slack, dm) if "Here is what you wrote" in c.params["text"]]
            assert len(summary) == 1
            [upload] = [f for f in slack.files.values() if f.completed]
            assert upload.filename == "my-answers-0.2.2.md" and upload.channels == [dm]
            assert upload.content is not None and b"We document decisions." in upload.content

    asyncio.run(scenario())
