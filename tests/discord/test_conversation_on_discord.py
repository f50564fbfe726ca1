"""The router on Discord, through the real discord.py client and the emulator, on SQLite
and PostgreSQL: typed commands in a DM, message replies, the ask buttons, and the
``/mentor open`` / ``answer`` / ``move`` subcommands."""

from __future__ import annotations

from tests.conftest import Clock
from tests.discord.world import ALICE, message_text, run, running


def test_dm_commands_message_replies_ask_buttons_and_numbered_answers(
    store_url: str, clock: Clock
) -> None:
    async def scenario() -> None:
        async with running(store_url, clock) as world:
            await world.command(ALICE, "start")
            for typed, expected in (
                ("/MENTOR HELP", "Commands (type them after /mentor)"),
                ("help", "Commands (type them after /mentor)"),
                ("/mentr history", "Did you mean `/mentor history`?"),
            ):
                said = await world.dm(ALICE, typed)
                assert expected in message_text(said[-1])
            assert world.replies(ALICE) == []

            [ask] = await world.dm(ALICE, "ok")
            assert "Is this your answer to" in message_text(ask)
            pressed = await world.press(ALICE, ask, "yes")
            assert "your answer to" in pressed.text
            [reply] = world.replies(ALICE)
            assert (reply.kind, reply.text) == ("answer", "ok")

            clock.advance(minutes=10)
            await world.command(ALICE, "next", guild=None)
            day1, _day2 = world.lessons(ALICE)
            # A message reply to day 1's lesson adds to day 1's answer, not day 2.
            [added] = await world.dm(ALICE, "More on day one.", reply_to_id=int(day1["id"]))
            assert "Added to your answer" in message_text(added)

            listing = await world.command(ALICE, "open")
            assert "2. “Have you ever taken ownership of a system?”" in listing.text
            answered = await world.command(
                ALICE, "answer", options={"question": 2, "text": "Yes, the ingestion service."}
            )
            assert "your answer to" in answered.text
            texts = sorted(r.text for r in world.replies(ALICE))
            assert texts == ["Yes, the ingestion service.", "ok\n\nMore on day one."]

            moved = await world.command(ALICE, "move", options={"reply": 2, "to": "note"})
            assert "Reply 2 is now a note" in moved.text

    run(scenario)
