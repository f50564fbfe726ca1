"""Input the bot must cope with: unknown subcommands, bad options, guilds it left,
buttons for deliveries that are gone, very long answers, other bots."""

from __future__ import annotations

from typing import Any

from tests.conftest import Clock
from tests.discord.world import (
    ACME,
    ALICE,
    CAROL,
    ERIN,
    GLOBEX,
    GLOBEX_GENERAL,
    TIMEOUT,
    World,
    message_text,
    run,
    running,
)
from tests.emulators.discord_api import (
    FakeChannel,
    FakeUser,
    InteractionCallbackType,
    InteractionType,
    channel_payload,
    interaction_payload,
    message_payload,
    snowflake,
)


def test_unknown_subcommand_gets_the_cores_answer(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            # Discord still shows a subcommand from an older sync that this version lacks.
            answer = await world.command(ALICE, "frobnicate", options={"level": "high"})
            assert answer.ephemeral
            assert "Unknown command `frobnicate`" in answer.text
            assert "Commands (type them after /mentor)" in answer.text
            close = await world.command(ALICE, "progres")
            assert "Did you mean `/mentor progress`?" in close.text

    run(scenario)


def test_bad_schedule_options_get_the_cores_clear_errors(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            bad_time = await world.command(ALICE, "schedule", options={"time": "25:00"})
            assert bad_time.ephemeral
            assert "invalid time '25:00': hours go to 23" in bad_time.text
            bad_zone = await world.command(
                ALICE, "schedule", options={"time": "08:30", "timezone": "Mars/Base"}
            )
            assert bad_zone.ephemeral
            assert "unknown time zone 'Mars/Base'" in bad_zone.text
            bad_days = await world.command(
                ALICE, "schedule", options={"time": "08:30", "days": "someday"}
            )
            assert "invalid day 'someday'" in bad_days.text
            bad_hours = await world.command(ALICE, "snooze", options={"hours": 500.0})
            assert "give more than 0 and at most 72" in bad_hours.text

            done = await world.command(
                ALICE,
                "schedule",
                options={"time": "08:30", "days": "mon, wed", "timezone": "Europe/Berlin"},
            )
            assert "Done: lessons arrive at" in done.text
            assert "Europe/Berlin" in done.text
            shown = await world.command(ALICE, "schedule")
            assert "08:30" in shown.text and "Europe/Berlin" in shown.text

    run(scenario)


def test_two_guilds_keep_their_data_apart(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start", guild=ACME)
            await world.dm(ALICE, "Acme answer from Alice.")
            await world.command(CAROL, "start", guild=GLOBEX)
            await world.dm(CAROL, "Globex answer from Carol.")

            # Alice is also in Globex, where she has no course and no replies.
            history = await world.command(ALICE, "history", guild=GLOBEX)
            assert "You have not replied to anything yet." in history.text
            progress = await world.command(ALICE, "progress", guild=GLOBEX)
            assert "not taking a course yet" in progress.text
            home = await world.command(ALICE, "history", guild=ACME)
            assert "Acme answer from Alice." in home.text
            assert "Carol" not in home.text

            assert [r.text for r in world.replies(ALICE, ACME)] == ["Acme answer from Alice."]
            assert world.replies(ALICE, GLOBEX) == []
            assert [r.text for r in world.replies(CAROL, GLOBEX)] == ["Globex answer from Carol."]
            assert sorted(world.learners(ALICE)) == sorted(
                [(str(ACME), "learner"), (str(GLOBEX), "learner")]
            )

    run(scenario)


def test_interaction_from_a_guild_the_bot_left(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            client = world.adapter.client
            assert client is not None
            before = world.adapter.handled
            await world.dc.leave_guild(GLOBEX)
            await world.adapter.wait_handled(before + 1, TIMEOUT)
            assert client.get_guild(GLOBEX) is None
            # Discord can still deliver an interaction from a stale command list.
            payload = interaction_payload(
                InteractionType.APPLICATION_COMMAND,
                application_id=world.dc.application_id,
                user=world.dc.users[CAROL],
                channel=channel_payload(FakeChannel(GLOBEX_GENERAL, "general"), GLOBEX),
                guild_id=GLOBEX,
                command="mentor help",
                command_id=int(world.dc.commands()[0]["id"]),
            )
            answer = await world.interact(payload)
            assert answer.ephemeral
            assert "I'm mentorbot" in answer.text
            assert world.learners(CAROL) == [(str(GLOBEX), "learner")]

    run(scenario)


def test_buttons_for_deliveries_that_are_gone(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            [lesson] = world.lessons(ALICE)
            opened = await world.press(ALICE, lesson, "reply")
            erased = await world.command(ALICE, "forget-me", options={"confirm": True})
            assert "everything I stored about you in this workspace is deleted" in erased.text
            assert world.deliveries(ALICE) == []

            skipped = await world.press(ALICE, lesson, "skip")
            assert skipped.ephemeral
            assert "That question is no longer available; nothing was changed." in skipped.text
            late = await world.submit(ALICE, opened.callbacks[0].data["custom_id"], "Too late?")
            assert late.ephemeral
            assert "That question is no longer available" in late.text
            # What was typed is kept as a note, never filed under some other question.
            assert [(r.kind, r.text) for r in world.replies(ALICE)] == [("note", "Too late?")]

            # A button naming a delivery id that never existed.
            fake = world.dc.store_message(
                message_payload(
                    channel_id=world.dc.dm_channel_id(ALICE),
                    author=world.dc.bot_user,
                    content="old",
                    components=[
                        {
                            "type": 1,
                            "components": [
                                {
                                    "type": 2,
                                    "style": 2,
                                    "label": "Skip",
                                    "custom_id": f"mentor:skip:987654:{ACME}:skip",
                                }
                            ],
                        }
                    ],
                )
            )
            ghost = await world.press(ALICE, fake, "skip")
            assert "That question is no longer available; nothing was changed." in ghost.text

    run(scenario)


def _text_attachment(world: World, text: str) -> dict[str, Any]:
    """A ``message.txt`` as Discord makes it from a long paste, served by the emulator."""
    channel = world.dc.dm_channel_id(ALICE)
    attachment_id = snowflake()
    # The emulator stores uploads the bot makes; a user's upload is staged directly.
    world.dc._attachments[attachment_id] = text.encode()
    url = f"{world.dc.base_url}/attachments/{channel}/{attachment_id}/message.txt"
    return {
        "id": str(attachment_id),
        "filename": "message.txt",
        "size": len(text.encode()),
        "url": url,
        "proxy_url": url,
        "content_type": "text/plain; charset=utf-8",
    }


def test_a_10000_character_answer(sqlite_url: str, clock: Clock) -> None:
    """Discord caps a message at 2,000 characters (4,000 with Nitro) and the reply form
    at 4,000. A longer answer arrives either as several DMs, each added to the same
    answer, or as a pasted ``message.txt``, which is read whole."""

    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            long = ("I delegate the work and keep the context. " * 240)[:10_000]
            assert len(long) == 10_000

            pasted = await world.dm(ALICE, "", attachments=[_text_attachment(world, long)])
            assert len(pasted) == 1 and "Thanks, I kept your answer" in pasted[0]["content"]
            [reply] = world.replies(ALICE)
            assert reply.text == long.strip()

            await world.command(ALICE, "next")
            chunks = [long[i : i + 2000] for i in range(0, 10_000, 2000)]
            seen = [await world.dm(ALICE, chunk) for chunk in chunks]
            assert "your answer to" in seen[0][0]["content"]
            assert all("Added to your answer" in s[0]["content"] for s in seen[1:])
            [day2] = [r for r in world.replies(ALICE) if r.delivery_id != reply.delivery_id]
            assert day2.text == "\n\n".join(chunks)

            too_long = "x" * 60_000
            refused = await world.dm(ALICE, "", attachments=[_text_attachment(world, too_long)])
            assert "I keep replies up to 50,000" in refused[0]["content"]

    run(scenario)


def test_messages_from_bots_and_the_bot_itself_are_ignored(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            [lesson] = world.lessons(ALICE)
            other = world.dc.add_user(FakeUser(1_400_000_000_000_000_099, "otherbot", bot=True))
            channel = world.dc.dm_channel_id(ALICE)
            for author in (other, world.dc.bot_user):
                before = world.adapter.handled
                await world.dc.dispatch(
                    "MESSAGE_CREATE",
                    message_payload(channel_id=channel, author=author, content="beep"),
                )
                await world.adapter.wait_handled(before + 1, TIMEOUT)
            assert world.replies(ALICE) == []
            assert world.lessons(ALICE) == [lesson]
            assert all(m["content"] == "beep" for m in world.bot_dms(ALICE) if m != lesson)

    run(scenario)


def test_autocomplete_for_zone_course_time_and_days(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:

            async def choices(command: str, option: str, typed: str, **others: str) -> list[str]:
                payload = world.dc.make_interaction(
                    InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE,
                    ERIN,
                    command=f"mentor {command}",
                    options={**others, option: typed},
                    focused=option,
                )
                await world.dc.dispatch("INTERACTION_CREATE", payload)
                [answer] = await world.dc.wait_until(
                    lambda: world.dc.callbacks_for(int(payload["id"])), TIMEOUT
                )
                assert (
                    answer.type == InteractionCallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
                )
                return [c["value"] for c in answer.data["choices"]]

            assert "Europe/Berlin" in await choices("schedule", "timezone", "berl")
            assert (await choices("schedule", "timezone", "new_y"))[0] == "America/New_York"
            assert len(await choices("schedule", "timezone", "")) == 25
            assert await choices("start", "course", "") == ["data-engineering"]
            assert await choices("start", "course", "leader") == ["data-engineering"]
            assert (await choices("schedule", "time", "08"))[:2] == ["08", "08:00"]
            assert "weekdays" in await choices("schedule", "days", "w")
            # A lead's settings value follows the setting picked before it.
            assert await choices("settings", "value", "", setting="visibility") == [
                "private",
                "leads",
            ]
            assert "Asia/Tokyo" in await choices("settings", "value", "tok", setting="timezone")

    run(scenario)


def test_lesson_text_is_stored_as_sent(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            [lesson] = world.lessons(ALICE)
            shown = message_text(lesson)
            rendered = world.app.service.render_delivery(world.deliveries(ALICE)[0].id or 0)
            assert not isinstance(rendered, str)
            for section in rendered.sections:
                assert section.body in shown

    run(scenario)
