"""A learner's Slack day over signed HTTP: the real AsyncApp on loopback, the emulator
as Slack, the real core and a real SQLite file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bot.config import Settings
from tests.conftest import Clock
from tests.emulators.slack_api import (
    DEFAULT_USER_ID,
    SlackEmulator,
    app_home_opened_event,
    message_event,
)
from tests.slack.rig import (
    SlackRig,
    block_text,
    buttons,
    dm_of,
    lessons,
    posts,
    responses,
)

Scenario = Callable[[SlackRig], Awaitable[None]]


def run(settings: Settings, slack: SlackEmulator, clock: Clock, scenario: Scenario) -> None:
    async def main() -> None:
        async with SlackRig(settings, slack, clock) as rig:
            await scenario(rig)

    asyncio.run(main())


async def start(rig: SlackRig) -> None:
    assert (await rig.command("start"))[0] == 200
    await rig.settle()


def test_a_full_learner_day(slack_settings: Settings, slack: SlackEmulator, clock: Clock) -> None:
    async def scenario(rig: SlackRig) -> None:
        # The command is acknowledged while the core has not even seen it.
        rig.hub.gate.clear()
        status, body = await rig.command("start")
        assert (status, body) == (200, "")
        assert rig.hub.seen == [] and posts(slack) == []
        gate_opened = datetime.now(UTC)
        rig.hub.gate.set()
        await rig.settle()
        assert rig.hub.seen[0].received_at < gate_opened  # stamped when Slack's request came

        (welcome,) = responses(slack)
        assert welcome["response_type"] == "ephemeral"
        assert "Welcome to *Data Engineering Leadership*!" in welcome["blocks"][0]["text"]["text"]
        dm = dm_of(slack)
        (lesson,) = lessons(slack)
        assert lesson.params["channel"] == dm
        blocks = lesson.params["blocks"]
        assert blocks[0] == {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": "0.2.2 Senior / Lead Data Engineer — day 1 of 3",
                "emoji": True,
            },
        }
        assert "Do you prefer individual work or guiding others?" in block_text(blocks)
        assert lesson.params["text"].startswith("0.2.2 Senior / Lead Data Engineer — day 1 of 3")
        (delivery,) = rig.deliveries()
        assert lesson.params["metadata"] == {
            "event_type": "mentorbot_delivery",
            "event_payload": {
                "delivery_key": delivery.key,
                "delivery_id": delivery.id,
                "part": 0,
                "parts": 1,
            },
        }
        assert (delivery.status, delivery.platform_channel) == ("sent", dm)
        assert delivery.platform_message_ids == lesson.response["ts"]
        (learner,) = rig.learners()
        assert (learner.timezone, learner.display_name, learner.role) == (
            "Europe/Berlin",
            "alex",
            "learner",
        )

        # Reply button -> modal -> submission -> stored -> confirmed in the DM.
        reply = buttons(blocks)["mentor.reply"]
        message = {"type": "message", "ts": lesson.response["ts"], "blocks": blocks, "text": ""}
        assert (await rig.press(reply, message=message, channel_id=dm))[0] == 200
        await rig.settle()
        (opened,) = slack.calls_to("views.open")
        view = opened.params["view"]
        assert view["callback_id"] == "mentor.reply"
        assert "Do you prefer individual work" in block_text(view["blocks"])
        assert json.loads(view["private_metadata"])["delivery"] == delivery.id

        values = {"answer": {"text": {"type": "plain_text_input", "value": "Guiding others"}}}
        status, body = await rig.submit(
            "mentor.reply", values, private_metadata=view["private_metadata"]
        )
        assert (status, body) == (200, "")
        await rig.settle()
        (stored,) = rig.replies()
        assert (stored.text, stored.delivery_id) == ("Guiding others", delivery.id)
        confirmation = posts(slack, dm)[-1]
        assert "Thanks, I kept your answer" in confirmation.params["text"]

    run(slack_settings, slack, clock, scenario)


def test_dm_reply_then_a_second_message_adds_to_it(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await start(rig)
        dm = dm_of(slack)
        first = message_event("I prefer guiding others", channel=dm)
        await rig.event(first)
        await rig.settle()
        await rig.event(message_event("and reviewing designs", channel=dm))
        await rig.settle()

        replies = rig.replies()
        # One answer holding both messages (a second message within minutes is added).
        assert [r.text for r in replies] == ["I prefer guiding others\n\nand reviewing designs"]
        assert replies[0].platform_message_id == first["ts"]
        answers = [c.params["text"] for c in posts(slack, dm)[1:]]
        assert answers[0].startswith("Thanks, I kept your answer")
        assert answers[1].startswith("Added to your answer")

    run(slack_settings, slack, clock, scenario)


def test_thread_reply_answers_the_question_of_that_message(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await start(rig)
        await rig.command("next")  # day 2: now the newest open question
        await rig.settle()
        day1, day2 = rig.deliveries()
        dm = dm_of(slack)

        await rig.event(
            message_event("About day one", channel=dm, thread_ts=day1.platform_message_ids)
        )
        await rig.settle()

        (reply,) = rig.replies()
        assert reply.delivery_id == day1.id != day2.id
        confirmation = posts(slack, dm)[-1]
        assert confirmation.params["thread_ts"] == day1.platform_message_ids

    run(slack_settings, slack, clock, scenario)


def test_editing_a_reply_updates_the_stored_answer(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await start(rig)
        dm = dm_of(slack)
        original = message_event("Frist draft", channel=dm)
        await rig.event(original)
        await rig.settle()
        edit = {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": dm,
            "channel_type": "im",
            "ts": "1700000999.000100",
            "event_ts": "1700000999.000100",
            "message": {**original, "text": "First draft &amp; more", "edited": {"user": "x"}},
            "previous_message": original,
        }
        await rig.event(edit)
        await rig.settle()

        (reply,) = rig.replies()
        assert reply.text == "First draft & more"
        assert reply.edited_at is not None

    run(slack_settings, slack, clock, scenario)


def test_unknown_command_gets_the_help_text(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await rig.command("frobnicate")
        await rig.command("start payload")  # Bolt alone would read this form as empty
        await rig.settle()

        unknown, no_course = (r["text"] for r in responses(slack))
        assert "Unknown command `frobnicate`" in unknown
        assert "Commands (type them after /mentor):" in unknown
        assert "There is no course called `payload`" in no_course
        assert rig.deliveries() == []

    run(slack_settings, slack, clock, scenario)


def test_a_dm_from_someone_never_enrolled_gets_an_invitation(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        dm = dm_of(slack)
        await rig.event(message_event("hello?", channel=dm))
        await rig.settle()

        (answer,) = posts(slack, dm)
        assert "Say `/mentor start` to begin" in answer.params["text"]
        # Nothing a person writes is dropped: it is kept as a note, never as an answer.
        assert [(r.kind, r.text) for r in rig.replies()] == [("note", "hello?")]

    run(slack_settings, slack, clock, scenario)


def test_a_40000_character_reply_is_stored_whole(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await start(rig)
        words = ("lorem ipsum dolor sit amet " * 2000)[:39_999] + "."
        assert len(words) == 40_000
        await rig.event(message_event(words, channel=dm_of(slack)))
        await rig.settle()

        (reply,) = rig.replies()
        assert reply.text == words

    run(slack_settings, slack, clock, scenario)


def test_app_home_shows_progress_and_its_buttons_work(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await rig.event(app_home_opened_event())
        await rig.settle()
        home = slack.home_view(DEFAULT_USER_ID)
        assert home is not None
        assert "You are not taking a course yet" in block_text(home["blocks"])
        start_button = buttons(home["blocks"])["mentor.start"]

        view = {"type": "home", "id": home["id"]}
        await rig.press(start_button, view=view)
        await rig.settle()
        assert len(lessons(slack)) == 1  # day 1 arrived in the DM
        home = slack.home_view(DEFAULT_USER_ID)
        assert home is not None
        assert "Your progress" in block_text(home["blocks"])
        pause = buttons(home["blocks"])["mentor.pause"]

        await rig.press(pause, view={"type": "home", "id": home["id"]})
        await rig.settle()
        home = slack.home_view(DEFAULT_USER_ID)
        assert home is not None
        assert "Phase: paused" in block_text(home["blocks"])
        assert "mentor.resume" in buttons(home["blocks"])
        assert "Paused." in posts(slack, dm_of(slack))[-1].params["text"]

    run(slack_settings, slack, clock, scenario)


def test_lesson_buttons_answer_ephemerally(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await start(rig)
        (lesson,) = lessons(slack)
        skip = buttons(lesson.params["blocks"])["mentor.skip"]

        await rig.press(skip)
        await rig.settle()

        assert rig.deliveries()[0].skipped_at is not None
        assert responses(slack)[-1]["text"].startswith("Skipped:")

    run(slack_settings, slack, clock, scenario)
