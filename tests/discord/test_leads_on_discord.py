"""Lead commands and files on Discord: mentions picked in options, a digest posted in a
server channel with its chart, and a learner's data export as an ephemeral file."""

from __future__ import annotations

import json

from tests.conftest import Clock
from tests.discord.world import (
    ACME,
    ACME_GENERAL,
    ACME_RULES,
    ALICE,
    BOB,
    DAVE,
    message_text,
    run,
    running,
)
from tests.emulators.discord_api import FakeUser, InteractionType, command_data, user_payload


def test_export_my_data_goes_to_the_dm_and_the_command_says_so(
    sqlite_url: str, clock: Clock
) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            await world.dm(ALICE, "My answer.")
            answer = await world.command(ALICE, "export-my-data")
            [export] = [m for m in world.bot_dms(ALICE) if m.get("attachments")]
            [file] = export["attachments"]
            assert file["filename"] == "mentorbot-my-data.json"
            [post] = world.dc.requests_to("POST", rf"/channels/{export['channel_id']}/messages")[
                -1:
            ]
            [upload] = post.files
            assert "My answer." in json.dumps(json.loads(upload.data))
            # The command itself points there, privately.
            assert answer.ephemeral
            assert answer.text.startswith("I sent it to your DMs: ")
            assert export["id"] in answer.text

            # With DMs closed, the export is shown privately in the channel instead.
            world.dc.set_blocks_dms(ALICE)
            fallback = await world.command(ALICE, "export-my-data")
            assert fallback.ephemeral
            [callback] = fallback.callbacks
            assert [f.filename for f in callback.files] == ["mentorbot-my-data.json"]

    run(scenario)


def test_a_lead_assigns_people_and_gets_a_digest_in_a_channel(
    sqlite_url: str, clock: Clock
) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            dc = world.dc
            robot = dc.add_user(FakeUser(1_400_000_000_000_000_098, "helperbot", bot=True))
            mentioned = (BOB, DAVE, robot.id)
            data = command_data(
                "mentor assign",
                {"people": " ".join(f"<@{u}>" for u in mentioned)},
                command_id=int(dc.commands()[0]["id"]),
                resolved={"users": {str(u): user_payload(dc.users[u]) for u in mentioned}},
            )
            payload = dc.make_interaction(
                InteractionType.APPLICATION_COMMAND, ALICE, guild_id=ACME, data=data
            )
            assigned = await world.interact(payload)
            assert assigned.ephemeral
            assert f"Enrolled <@{BOB}>, <@{DAVE}>" in assigned.text
            assert f"<@{robot.id}> is a bot, so I left it out." in assigned.text
            # Dave's welcome DM went out; Bob's DMs are closed.
            assert any(f"Hi <@{DAVE}>" in message_text(m) for m in world.bot_dms(DAVE))

            team = await world.command(ALICE, "team")
            assert "Your team" in team.text and "2 learners." in team.text
            daves = await world.command(DAVE, "team")  # Dave is a lead too (Manage Server)
            assert "Your team" in daves.text

            digest = await world.command(
                ALICE, "digest", options={"channel": (7, str(ACME_GENERAL)), "frequency": "weekly"}
            )
            assert f"A weekly digest will be posted in <#{ACME_GENERAL}>" in digest.text
            before = [m["id"] for m in dc.messages(ACME_GENERAL)]
            clock.advance(days=5, hours=1, minutes=1)  # Monday 09:01
            await world.app.engine.tick()
            [posted] = [m for m in dc.messages(ACME_GENERAL) if m["id"] not in before]
            assert "weekly mentoring digest" in message_text(posted).lower()
            [chart] = posted["attachments"]
            assert chart["filename"] == "answered-per-day.png"
            assert posted["embeds"][-1]["image"]["url"] == "attachment://answered-per-day.png"
            [post] = dc.requests_to("POST", rf"/channels/{ACME_GENERAL}/messages")[-1:]
            assert post.json["allowed_mentions"] == {"parse": []}  # names, never pings

    run(scenario)


def test_a_digest_channel_the_bot_cannot_use_is_reported_to_the_lead(
    sqlite_url: str, clock: Clock
) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            await world.command(
                ALICE, "digest", options={"channel": (7, str(ACME_RULES)), "frequency": "weekly"}
            )
            world.dc.fail_next(
                "POST", rf"/channels/{ACME_RULES}/messages", status=403, code=50001, times=5
            )
            clock.advance(days=5, hours=1, minutes=1)
            await world.app.engine.tick()
            await world.app.engine.tick()
            notes = [message_text(m) for m in world.bot_dms(ALICE)]
            assert any(
                f"couldn't post the weekly digest in <#{ACME_RULES}>: I can't see that channel"
                in note
                for note in notes
            ), notes

    run(scenario)
