"""Mentions in lead commands reach the core with who each person is, bots included, so
the core can refuse to enrol or promote a bot: from user options and picks in text
options (Discord resolves those), from ids typed by hand (looked up), and from typed
commands in a DM."""

from __future__ import annotations

from typing import Any

from adapters.discord.slash import people_words
from bot.mentions import MAX_MENTIONS, TooManyMentions
from bot.messages import IncomingEvent, UserRef
from bot.ports import Respond
from mentorbot.bootstrap import App
from tests.conftest import Clock
from tests.discord.world import (
    ACME,
    ALICE,
    BOB,
    CAROL,
    DAVE,
    GLOBEX,
    World,
    message_text,
    run,
    running,
)
from tests.emulators.discord_api import (
    FakeMember,
    FakeUser,
    InteractionType,
    command_data,
    member_payload,
    user_payload,
)

ROBOT = 1_400_000_000_000_000_098
GHOST = 1_400_000_000_000_000_097  # an id no Discord user has


class RecordingHub:
    """The real hub, keeping every event it was handed."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.events: list[IncomingEvent] = []

    async def handle(self, event: IncomingEvent, respond: Respond) -> None:
        self.events.append(event)
        await self.app.hub.handle(event, respond)


def recorded(world: World) -> IncomingEvent:
    sink = world.adapter._sink
    assert isinstance(sink, RecordingHub)
    return sink.events[-1]


def add_robot(world: World) -> FakeUser:
    robot = world.dc.add_user(FakeUser(ROBOT, "helperbot", global_name="Helper", bot=True))
    world.dc.guilds[ACME].members.append(FakeMember(robot))
    return robot


async def picked(
    world: World,
    user: int,
    command: str,
    options: dict[str, Any],
    resolved: tuple[int, ...],
    nicks: dict[int, str] | None = None,
) -> str:
    """``/mentor <command>`` with ``resolved`` users picked from Discord's list, as
    Discord sends it (their user objects, and member objects holding nicknames)."""
    dc = world.dc
    guild = dc.guilds[ACME]
    members = {
        str(u): member_payload(
            FakeMember(dc.users[u], nick=(nicks or {}).get(u)),
            guild,
            with_user=False,
            with_permissions=True,
        )
        for u in resolved
    }
    data = command_data(
        f"mentor {command}",
        options,
        command_id=int(dc.commands()[0]["id"]),
        resolved={
            "users": {str(u): user_payload(dc.users[u]) for u in resolved},
            "members": members,
        },
    )
    payload = dc.make_interaction(
        InteractionType.APPLICATION_COMMAND, user, guild_id=ACME, data=data
    )
    return (await world.interact(payload)).text


def test_people_words_split_mentions_however_they_were_typed() -> None:
    assert people_words("<@1><@!2>, <@3>  @ana,@ben") == [
        "<@1>",
        "<@!2>",
        "<@3>",
        "@ana",
        "@ben",
    ]
    assert people_words(None) == [] and people_words("  ") == []


def test_each_lead_command_passes_who_was_mentioned(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock, sink=RecordingHub) as world:
            robot = add_robot(world)
            bob = UserRef(str(BOB), "Bobby", False)
            bot = UserRef(str(robot.id), "Helper", True)

            text = await picked(
                world,
                ALICE,
                "assign",
                {"people": f"<@{BOB}><@{robot.id}>"},  # picked with no space between
                (BOB, robot.id),
                nicks={BOB: "Bobby"},
            )
            assert recorded(world).mentioned == (bob, bot)
            assert f"Enrolled <@{BOB}>" in text
            assert f"<@{robot.id}> is a bot, so I left it out." in text

            text = await picked(
                world, ALICE, "unassign", {"people": f"<@{robot.id}> <@{BOB}>"}, (robot.id, BOB)
            )
            assert set(recorded(world).mentioned) == {
                UserRef(str(BOB), "bob", False),
                bot,
            }
            assert f"Stopped deliveries for <@{BOB}>" in text
            assert f"<@{robot.id}> is a bot, so I left it out." in text

            await picked(world, ALICE, "replies", {"person": (6, str(robot.id))}, (robot.id,))
            assert recorded(world).mentioned == (bot,)
            assert f"<@{robot.id}>" in recorded(world).text

            text = await picked(
                world,
                ALICE,
                "leads",
                {"action": "add", "people": f"<@{DAVE}>, <@{robot.id}>"},
                (DAVE, robot.id),
            )
            assert recorded(world).mentioned == (UserRef(str(DAVE), "dave", False), bot)
            assert f"<@{DAVE}> can now use lead commands." in text
            assert f"<@{robot.id}> is a bot, so I left it out." in text
            assert world.learners(ROBOT) == []

    run(scenario)


def test_ids_typed_by_hand_are_looked_up(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock, sink=RecordingHub) as world:
            robot = add_robot(world)
            # Typed rather than picked: Discord resolves nothing, the adapter asks it.
            text = await picked(
                world, ALICE, "assign", {"people": f"<@!{robot.id}> <@{GHOST}> <@{DAVE}>"}, ()
            )
            assert recorded(world).mentioned == (
                UserRef(str(robot.id), "Helper", True),
                UserRef(str(DAVE), "dave", False),
            )
            assert f"<@{robot.id}> is a bot, so I left it out." in text
            assert f"<@{DAVE}>" in text
            assert len(world.dc.requests_to("GET", rf"/users/{robot.id}$")) == 1
            assert len(world.dc.requests_to("GET", rf"/users/{GHOST}$")) == 1  # a 404
            assert world.learners(ROBOT) == []

            # Both answers are remembered, the 404 too: the same ids again ask nothing.
            await picked(world, ALICE, "unassign", {"people": f"<@{robot.id}> <@{GHOST}>"}, ())
            assert recorded(world).mentioned == (UserRef(str(robot.id), "Helper", True),)
            assert len(world.dc.requests_to("GET", rf"/users/{robot.id}$")) == 1
            assert len(world.dc.requests_to("GET", rf"/users/{GHOST}$")) == 1

    run(scenario)


def test_a_command_typed_in_the_dm_carries_its_mentions(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock, sink=RecordingHub) as world:
            robot = add_robot(world)
            await world.command(ALICE, "start")  # so the DM belongs to Acme
            await world.dm(
                ALICE, f"/mentor assign <@{robot.id}> <@{BOB}>", mention_ids=[robot.id, BOB]
            )
            assert set(recorded(world).mentioned) == {
                UserRef(str(robot.id), "Helper", True),
                UserRef(str(BOB), "bob", False),
            }

            # A mention the message did not carry is looked up, for a lead only. A DM
            # names no server, so Alice's lead role there does not count: she is a lead
            # in her DMs once a lead has made her one.
            await world.dm(ALICE, f"/mentor unassign <@{robot.id}>")
            assert recorded(world).mentioned == ()
            await picked(world, DAVE, "leads", {"action": "add", "people": f"<@{ALICE}>"}, (ALICE,))
            await world.dm(ALICE, f"/mentor unassign <@{robot.id}>")
            assert recorded(world).mentioned == (UserRef(str(robot.id), "Helper", True),)

    run(scenario)


def strangers(count: int) -> str:
    """``count`` mentions of ids no one resolved, as typed into a text option."""
    return " ".join(f"<@{GHOST - 1000 - n}>" for n in range(count))


def user_lookups(world: World) -> int:
    return len(world.dc.requests_to("GET", r"/users/\d+$"))


def test_a_non_leads_command_naming_hundreds_of_people_looks_up_nobody(
    sqlite_url: str, clock: Clock
) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            answer = await picked(world, BOB, "assign", {"people": strangers(150)}, ())
            assert "Only leads can use `/mentor assign`" in answer
            await world.command(CAROL, "start", guild=GLOBEX)  # Bob's DMs are closed
            [reply] = await world.dm(CAROL, f"/mentor assign {strangers(80)}")
            assert "Only leads can use `/mentor assign`" in message_text(reply)
            assert user_lookups(world) == 0

    run(scenario)


def test_a_lead_naming_more_than_50_people_is_asked_to_split_the_list(
    sqlite_url: str, clock: Clock
) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            too_many = str(TooManyMentions(MAX_MENTIONS + 1))
            assert too_many == (
                "That names 51 people, and one command can take at most 50. "
                "Please split the list over several commands."
            )
            answer = await picked(world, ALICE, "assign", {"people": strangers(51)}, ())
            assert answer == too_many
            await picked(world, DAVE, "leads", {"action": "add", "people": f"<@{ALICE}>"}, (ALICE,))
            [reply] = await world.dm(ALICE, f"/mentor unassign {strangers(51)}")
            assert message_text(reply) == too_many
            assert user_lookups(world) == 0
            assert world.learners(GHOST - 1000) == []

            # At the cap, every one of them is looked up (each once).
            await picked(world, ALICE, "assign", {"people": strangers(50)}, ())
            assert user_lookups(world) == 50

    run(scenario)
