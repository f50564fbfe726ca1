"""A learner's day on Discord, end to end: slash command, lesson DM with buttons, the
reply form, DM answers, replies to a specific lesson, edits and scheduled lessons."""

from __future__ import annotations

from tests.conftest import Clock
from tests.discord.world import (
    ACME,
    ALICE,
    DAVE,
    ERIN,
    custom_ids,
    message_text,
    run,
    running,
)
from tests.emulators.discord_api import InteractionCallbackType, MessageFlags


def test_start_lesson_reply_button_form_and_confirmation(store_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(store_url, clock) as world:
            started = await world.command(ALICE, "start")
            assert started.ephemeral
            assert "Welcome to **Data Engineering Leadership**" in started.text
            [callback] = started.callbacks
            assert callback.type == InteractionCallbackType.CHANNEL_MESSAGE_WITH_SOURCE

            [lesson] = world.lessons(ALICE)
            [delivery] = world.deliveries(ALICE)
            embeds = lesson["embeds"]
            assert embeds[0]["title"] == "0.2.2 Senior / Lead Data Engineer — day 1 of 3"
            assert embeds[0]["description"].startswith("**Concept Explanation**")
            question = next(e for e in embeds if e.get("title") == "Question")
            assert question["description"] == delivery.question
            assert lesson["nonce"].startswith("mb-")
            assert custom_ids(lesson) == [
                f"mentor:reply:{delivery.id}:{ACME}",
                f"mentor:skip:{delivery.id}:{ACME}:skip",
                f"mentor:snooze:{delivery.id}:{ACME}:snooze",
            ]
            assert delivery.status == "sent"
            assert delivery.platform_message_ids == lesson["id"]
            assert delivery.platform_channel == str(world.dc.dm_channel_id(ALICE))

            opened = await world.press(ALICE, lesson, "reply")
            [form] = opened.callbacks
            assert form.type == InteractionCallbackType.MODAL
            assert form.data["custom_id"] == f"mentor-answer:{delivery.id}:{ACME}"
            [row] = form.data["components"]
            [field] = row["components"]
            assert (field["custom_id"], field["style"], field["max_length"]) == ("answer", 2, 4000)

            answer = "I prefer guiding others, and I review designs before code."
            thanks = await world.submit(ALICE, form.data["custom_id"], answer)
            assert thanks.ephemeral
            assert "Thanks, I kept your answer to" in thanks.text
            [reply] = world.replies(ALICE)
            assert (reply.text, reply.delivery_id) == (answer, delivery.id)
            assert world.replies(ALICE, ACME) == [reply]
            # Alice holds the lead role (by name); Dave has Manage Server. Both are leads
            # on each event, from Discord, without the role being stored.
            assert "For leads:" in (await world.command(ALICE, "help")).text
            assert "For leads:" in (await world.command(DAVE, "help")).text
            assert world.learners(ALICE) == [(str(ACME), "learner")]

    run(scenario)


def test_dm_answers_are_kept_and_a_second_message_is_added(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            [first] = await world.dm(ALICE, "I prefer guiding others.")
            assert "Thanks, I kept your answer to" in first["content"]
            assert first["message_reference"]["message_id"]  # answers the learner's message
            [second] = await world.dm(ALICE, "And pairing on the hard parts.")
            assert "Added to your answer to" in second["content"]
            texts = [r.text for r in world.replies(ALICE)]
            assert texts == ["I prefer guiding others.\n\nAnd pairing on the hard parts."]

    run(scenario)


def test_replying_to_a_lesson_message_answers_that_lesson(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            await world.command(ALICE, "next", guild=None)  # day 2, from the DM
            day1, day2 = world.lessons(ALICE)
            first, second = world.deliveries(ALICE)
            assert "day 2 of 3" in message_text(day2)

            # Day 2's question is the open one, but a reply to day 1's message answers day 1.
            await world.dm(ALICE, "Late thoughts on day one.", reply_to_id=int(day1["id"]))
            await world.dm(ALICE, "Now day two.")
            by_delivery = {r.delivery_id: r.text for r in world.replies(ALICE)}
            assert by_delivery == {
                first.id: "Late thoughts on day one.",
                second.id: "Now day two.",
            }

    run(scenario)


def test_editing_a_dm_updates_the_stored_answer(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            await world.dm(ALICE, "first draft")
            [written] = [
                m
                for m in world.dc.messages(world.dc.dm_channel_id(ALICE))
                if m["content"] == "first draft"
            ]
            clock.advance(minutes=5)
            said = await world.edit(ALICE, written, "final answer, after some thought")
            assert said == []  # nothing to say about a successful edit
            [reply] = world.replies(ALICE)
            assert reply.text == "final answer, after some thought"
            assert reply.edited_at is not None

    run(scenario)


def test_scheduled_lesson_arrives_by_dm(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            await world.dm(ALICE, "Day one answer.")
            clock.advance(days=1, hours=1, minutes=1)  # Thursday 09:01, the next slot
            await world.app.engine.tick()
            _day1, day2 = world.lessons(ALICE)
            assert "day 2 of 3" in message_text(day2)
            latest = world.deliveries(ALICE)[-1]
            assert (latest.origin, latest.status, latest.day) == ("schedule", "sent", 2)
            assert latest.platform_message_ids == day2["id"]
            # A tick with nothing due sends nothing more.
            await world.app.engine.tick()
            assert len(world.lessons(ALICE)) == 2

    run(scenario)


def test_unenrolled_dm_gets_a_friendly_invitation(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            [invitation] = await world.dm(ERIN, "hello?")
            assert "Say `/mentor start` to begin" in invitation["content"]
            assert [(r.kind, r.text) for r in world.replies(ERIN)] == [("note", "hello?")]
            # A typed command in the DM works like the slash command.
            said = await world.dm(ERIN, "/mentor help")
            assert "Commands (type them after /mentor)" in "\n".join(m["content"] for m in said)
            # The slash command from the DM: an ephemeral answer.
            answer = await world.command(ERIN, "progress", guild=None)
            assert answer.ephemeral
            assert all(int(m["flags"]) & MessageFlags.EPHEMERAL for m in answer.messages)
            assert "not taking a course yet" in answer.text

    run(scenario)
