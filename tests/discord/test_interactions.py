"""How interactions are answered: at once when the core is quick, deferred within
Discord's 3 seconds when it is slow, quietly when it has nothing to say, and in
several messages when an answer is larger than one Discord message."""

from __future__ import annotations

import asyncio
import contextlib

from adapters.discord import DiscordAdapter
from bot.config import Settings, bundled_content_dir
from bot.messages import IncomingEvent, OutgoingMessage
from bot.ports import Respond
from bot.ratelimit import Limit
from mentorbot.bootstrap import App, build, choose_adapters, serve
from tests.conftest import Clock
from tests.discord.world import (
    ACME,
    ALICE,
    CAROL,
    DAVE,
    ERIN,
    TIMEOUT,
    TOKEN,
    make_emulator,
    message_text,
    run,
    running,
)
from tests.emulators.discord_api import InteractionCallbackType, InteractionType, MessageFlags

DEFERRED = InteractionCallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE


class SlowHub:
    """The real hub behind a delay, as when the database is busy."""

    def __init__(self, app: App, delay: float) -> None:
        self.app = app
        self.delay = delay

    async def handle(self, event: IncomingEvent, respond: Respond) -> None:
        await asyncio.sleep(self.delay)
        await self.app.hub.handle(event, respond)


class SilentHub:
    """A core that has nothing to say."""

    async def handle(self, event: IncomingEvent, respond: Respond) -> None:
        return None


def test_slow_core_is_deferred_then_the_placeholder_shows_the_answer(
    sqlite_url: str, clock: Clock
) -> None:
    async def scenario() -> None:
        async with running(
            sqlite_url,
            clock,
            emulator={"interaction_ack_deadline": 3.0},
            adapter={"ack_after": 0.05},
            sink=lambda app: SlowHub(app, 0.3),
        ) as world:
            started = await world.command(ALICE, "start")
            [deferred] = started.callbacks
            assert deferred.type == DEFERRED and deferred.ephemeral
            [placeholder] = started.messages
            assert "Welcome to" in placeholder["content"]
            assert not int(placeholder["flags"]) & MessageFlags.LOADING
            assert int(placeholder["flags"]) & MessageFlags.EPHEMERAL
            assert len(world.lessons(ALICE)) == 1

            [lesson] = world.lessons(ALICE)
            pressed = await world.press(ALICE, lesson, "snooze")
            assert pressed.callbacks[0].type == DEFERRED
            assert "OK, I'll remind you" in pressed.text

    run(scenario)


def test_quick_core_answers_in_one_response(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock, emulator={"interaction_ack_deadline": 3.0}) as world:
            answer = await world.command(ALICE, "help")
            [callback] = answer.callbacks
            assert callback.type == InteractionCallbackType.CHANNEL_MESSAGE_WITH_SOURCE
            assert callback.ephemeral
            assert callback.data["allowed_mentions"] == {"parse": []}

    run(scenario)


def test_nothing_to_say_is_acknowledged_quietly(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock, sink=lambda app: SilentHub()) as world:
            answer = await world.command(ALICE, "help")
            assert [c.type for c in answer.callbacks] == [DEFERRED]
            assert answer.messages == []  # the "thinking…" placeholder was removed
            await world.dc.wait_for("DELETE", r"/webhooks/\d+/[^/]+/messages/@original")

    run(scenario)


def test_a_long_answer_is_split_over_several_messages(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            paragraph = "Delegating well means giving context, not just tasks. " * 27
            for number in range(8):
                await world.dm(ALICE, f"Part {number}. {paragraph}")
                clock.advance(minutes=10)  # apart: separate replies, not one answer
            history = await world.command(ALICE, "history")
            assert len(history.messages) >= 2
            assert history.ephemeral
            for message in history.messages:
                embeds = message["embeds"]
                assert 1 <= len(embeds) <= 10
                total = sum(
                    len(e.get("title") or "") + len(e.get("description") or "") for e in embeds
                )
                assert total <= 6000
            text = "\n".join(message_text(m) for m in history.messages)
            for number in range(8):
                assert f"Part {number}." in text
            # The first message is the interaction response, the others follow-ups.
            assert [c.type for c in history.callbacks] == [
                InteractionCallbackType.CHANNEL_MESSAGE_WITH_SOURCE
            ]

    run(scenario)


def test_interactions_arriving_together_are_acknowledged_before_the_core(
    sqlite_url: str, clock: Clock
) -> None:
    """With 4 interactions already waiting for a slow core, the next ones are deferred
    at once instead of queueing their acknowledgement behind the others."""

    async def scenario() -> None:
        async with running(
            sqlite_url,
            clock,
            emulator={"interaction_ack_deadline": 3.0},
            sink=lambda app: SlowHub(app, 0.5),
        ) as world:
            dc = world.dc
            users = [ALICE, CAROL, DAVE, ERIN]
            payloads = [
                dc.make_interaction(
                    InteractionType.APPLICATION_COMMAND,
                    users[n % len(users)],
                    guild_id=None,
                    command="mentor help",
                )
                for n in range(10)
            ]
            before = world.adapter.handled
            await asyncio.gather(*(dc.dispatch("INTERACTION_CREATE", p) for p in payloads))
            await world.adapter.wait_handled(before + len(payloads), TIMEOUT)
            kinds = [dc.callbacks_for(int(p["id"]))[0].type for p in payloads]
            assert kinds.count(DEFERRED) == 6
            for payload in payloads:
                [shown] = dc.interaction_messages(int(payload["id"]))
                assert "I'm mentorbot" in shown["content"]
                assert not int(shown["flags"]) & MessageFlags.LOADING

    run(scenario)


def test_the_bootstrap_serves_the_adapter(sqlite_url: str, clock: Clock) -> None:
    """``mentorbot run`` wiring: DISCORD_TOKEN picks the adapter, ``serve`` runs it."""

    async def scenario() -> None:
        async with make_emulator() as dc:
            settings = Settings(
                database_url=sqlite_url,
                content_dir=bundled_content_dir(),
                discord_token=TOKEN,
                discord_api_url=f"{dc.base_url}/api",
                discord_gateway_url=dc.gateway_url,
                port=0,  # should serve() open an HTTP port, let the OS pick a free one
            )
            app = build(settings, clock=clock)
            [adapter] = choose_adapters(app, None)
            assert isinstance(adapter, DiscordAdapter)
            lesson = OutgoingMessage(platform="discord", workspace="1", user="2", text="hi")
            # A first DM also opens the DM channel: two requests from the global budget,
            # whose documented 50/s is where the pace starts and its ceiling.
            budget = Limit("discord:global", 50.0, burst=5, ceiling=50.0)
            assert adapter.rate_limits(lesson) == [budget, budget]
            known = OutgoingMessage(
                platform="discord", workspace="1", user="2", text="hi", channel="99"
            )
            assert adapter.rate_limits(known) == [budget]
            served = asyncio.create_task(serve(app, [adapter], tick=False))
            await adapter.wait_ready(TIMEOUT)
            assert app.dispatcher.adapters["discord"] is adapter
            payload = dc.make_interaction(
                InteractionType.APPLICATION_COMMAND, ALICE, guild_id=ACME, command="mentor start"
            )
            before = adapter.handled
            await dc.dispatch("INTERACTION_CREATE", payload)
            await adapter.wait_handled(before + 1, TIMEOUT)
            assert "Welcome to" in dc.interaction_messages(int(payload["id"]))[0]["content"]
            assert len(dc.messages(dc.dm_channel_id(ALICE))) == 1
            served.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await served
            assert adapter.client is not None and adapter.client.is_closed()

    run(scenario)
