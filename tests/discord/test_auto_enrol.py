"""Auto-enrol on Discord: with DISCORD_MEMBERS_INTENT=on the adapter asks for the Server
Members intent and reports people joining a guild, and the core welcomes them when the
guild has ``auto-enrol`` on. Without the setting the privileged intent is never asked
for, so a Developer Portal with it switched off keeps working."""

from __future__ import annotations

import logging

import discord
import pytest
from sqlmodel import Session, select

from adapters.discord import gateway_intents
from bot.config import Settings, bundled_content_dir
from bot.models import Learner
from mentorbot.bootstrap import build
from tests.conftest import Clock
from tests.discord.world import (
    ACME,
    ALICE,
    DAVE,
    TOKEN,
    World,
    make_emulator,
    message_text,
    run,
    running,
    start_adapter,
)
from tests.emulators.discord_api import FakeMember, FakeUser, Intents, Op

FRANK = 1_400_000_000_000_000_020
GRACE = 1_400_000_000_000_000_021
ROBOT = 1_400_000_000_000_000_099


def identified_intents(world: World) -> int:
    [identify] = world.dc.gateway_ops(Op.IDENTIFY)
    return int(identify.data["intents"])


def display_name(world: World, user: int) -> str | None:
    def work(session: Session) -> str | None:
        learner = session.exec(select(Learner).where(Learner.user_id == str(user))).one()
        return learner.display_name

    return world.db(work)


def test_intents_follow_the_setting() -> None:
    off = gateway_intents(Settings())
    on = gateway_intents(Settings(discord_members_intent=True))
    assert (off.guilds, off.dm_messages, off.members) == (True, True, False)
    assert (on.guilds, on.dm_messages, on.members) == (True, True, True)
    assert on.value & ~off.value == Intents.GUILD_MEMBERS
    assert not (on.message_content or on.presences)


def test_a_member_joining_is_welcomed_when_auto_enrol_is_on(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock, discord_members_intent=True) as world:
            assert identified_intents(world) & Intents.GUILD_MEMBERS
            dc = world.dc

            # auto-enrol is off by default: a join enrols no one.
            await world.join(ACME, FakeMember(dc.add_user(FakeUser(GRACE, "grace"))))
            assert world.bot_dms(GRACE) == []
            assert not any(d.kind == "welcome" for d in world.deliveries(GRACE))

            turned_on = await world.command(
                DAVE, "settings", options={"setting": "auto-enrol", "value": "on"}
            )
            assert turned_on.ephemeral and "Saved: auto-enrol = on." in turned_on.text

            frank = dc.add_user(FakeUser(FRANK, "frank", global_name="Frank"))
            await world.join(ACME, FakeMember(frank, nick="Franky"))
            [welcome] = world.bot_dms(FRANK)
            text = message_text(welcome)
            assert f"Hi <@{FRANK}>!" in text
            assert "This workspace enrolled you" in text
            assert world.learners(FRANK) == [(str(ACME), "learner")]
            assert display_name(world, FRANK) == "Franky"  # the name shown in that server
            [delivery] = world.deliveries(FRANK)
            assert delivery.kind == "welcome" and delivery.status == "sent"

            # A bot joining is not a learner: nothing is stored, nothing is sent.
            posts_before = len(dc.requests_to("POST", r"/channels/\d+/messages"))
            await world.join(ACME, FakeMember(dc.add_user(FakeUser(ROBOT, "helperbot", bot=True))))
            assert world.learners(ROBOT) == []
            assert len(dc.requests_to("POST", r"/channels/\d+/messages")) == posts_before

    run(scenario)


def test_without_the_setting_the_intent_is_not_requested(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            assert not identified_intents(world) & Intents.GUILD_MEMBERS
            await world.command(DAVE, "settings", options={"setting": "auto-enrol", "value": "on"})
            # Discord would not send the join at all; the emulator drops it likewise.
            dc = world.dc
            assert await dc.add_member(ACME, FakeMember(dc.add_user(FakeUser(FRANK, "f")))) is None
            await world.command(ALICE, "team")  # a later event is handled normally
            assert world.learners(FRANK) == []
            assert world.bot_dms(FRANK) == []

    run(scenario)


def test_intent_not_enabled_in_the_portal_stops_with_a_clear_reason(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with make_emulator(privileged_intents=0) as dc:
            settings = Settings(
                database_url=sqlite_url,
                content_dir=bundled_content_dir(),
                discord_token=TOKEN,
                discord_api_url=dc.base_url,
                discord_gateway_url=dc.gateway_url,
                discord_members_intent=True,
            )
            app = build(settings)
            try:
                with pytest.raises(discord.PrivilegedIntentsRequired):
                    await start_adapter(app, settings)
            finally:
                app.store.dispose()

    with caplog.at_level(logging.ERROR, logger="adapters.discord.adapter"):
        run(scenario)
    assert any("DISCORD_MEMBERS_INTENT" in r.getMessage() for r in caplog.records)
