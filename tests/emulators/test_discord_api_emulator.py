"""The real discord.py client, over real sockets, against the Discord emulator.

These tests pin down both sides: that the emulator answers the way discord.py expects
(so bot tests built on it are meaningful) and the discord.py behaviours the bot relies
on (rate-limit retries, error codes, interaction routing, gateway resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.emulators.discord_api import (
    DEFAULT_BOT_USER_ID,
    DiscordEmulator,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    InteractionCallbackType,
    InteractionType,
    MessageFlags,
    Op,
    message_payload,
    point_discord_py_at,
)

TOKEN = "emulator-token"
GUILD_ID = 1_300_000_000_000_000_001
CHANNEL_ID = 1_300_000_000_000_000_002
MENTOR_ROLE_ID = 1_300_000_000_000_000_003
ALICE_ID = 1_300_000_000_000_000_010
BOB_ID = 1_300_000_000_000_000_011
MANAGE_GUILD = 1 << 5
TIMEOUT = 10.0


def make_emulator(**overrides: Any) -> DiscordEmulator:
    """A guild with one text channel, a mentor role, Alice (member) and Bob (blocks DMs)."""
    alice = FakeUser(ALICE_ID, "alice", global_name="Alice")
    bob = FakeUser(BOB_ID, "bob", blocks_dms=True)
    guild = FakeGuild(
        id=GUILD_ID,
        name="Leadership Circle",
        channels=[FakeChannel(CHANNEL_ID, "general")],
        roles=[FakeRole(MENTOR_ROLE_ID, "mentors", permissions=MANAGE_GUILD)],
        members=[FakeMember(alice, roles=[MENTOR_ROLE_ID])],
    )
    options: dict[str, Any] = {
        "guilds": [guild],
        "users": [alice, bob],
        "token": TOKEN,
        "heartbeat_interval_ms": 200,
    }
    options.update(overrides)
    return DiscordEmulator(**options)


def make_client() -> discord.Client:
    intents = discord.Intents.default()
    intents.message_content = True
    intents.members = True
    # A small guild_ready_timeout: on_ready fires that long after the last GUILD_CREATE.
    return discord.Client(intents=intents, guild_ready_timeout=0.05)


@contextlib.asynccontextmanager
async def connected(dc: DiscordEmulator, client: discord.Client) -> AsyncIterator[discord.Client]:
    """Log the client in against the emulator, wait for on_ready, always close it."""
    with point_discord_py_at(dc):
        await client.login(TOKEN)
        runner = asyncio.create_task(client.connect())
        try:
            ready = asyncio.create_task(client.wait_until_ready())
            done, _ = await asyncio.wait(
                {ready, runner}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if ready not in done:
                ready.cancel()
                if runner in done:
                    runner.result()  # surface the connection error
                raise TimeoutError("client never became ready")
            yield client
            assert not dc.errors, f"emulator raised: {dc.errors!r}"
        finally:
            await client.close()
            try:
                await asyncio.wait_for(runner, TIMEOUT)
            except (asyncio.CancelledError, TimeoutError):
                runner.cancel()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_client_logs_in_and_becomes_ready() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc, connected(dc, make_client()) as client:
            login = [(r.method, r.path) for r in dc.requests[:2]]
            assert login == [("GET", "/users/@me"), ("GET", "/oauth2/applications/@me")]
            assert dc.requests[0].header("Authorization") == f"Bot {TOKEN}"
            # A plain Client never asks /gateway: it dials DEFAULT_GATEWAY directly.
            assert not dc.requests_to("GET", r"/gateway(/bot)?")

            connection = dc.gateway_connections[0]
            assert connection.path == "/gateway"
            assert connection.query["encoding"] == "json"
            assert connection.query["v"] == "10"
            assert connection.query["compress"] == "zlib-stream"
            assert connection.compression == "zlib-stream"

            identify = dc.gateway_ops(Op.IDENTIFY)
            assert len(identify) == 1
            assert identify[0].data["token"] == TOKEN
            assert identify[0].data["intents"] == client.intents.value

            assert client.user is not None and client.user.id == DEFAULT_BOT_USER_ID
            assert client.application_id == dc.application_id
            guild = client.get_guild(GUILD_ID)
            assert guild is not None and guild.name == "Leadership Circle"
            assert guild.get_channel(CHANNEL_ID).name == "general"
            alice = guild.get_member(ALICE_ID)
            assert alice is not None
            assert [r.id for r in alice.roles if not r.is_default()] == [MENTOR_ROLE_ID]
            assert guild.me is not None
            assert guild.chunked  # member_count matches, so no REQUEST_GUILD_MEMBERS

            # discord.py heartbeats right after HELLO and then every 200 ms; each is ACKed.
            await dc.wait_for_gateway(Op.HEARTBEAT, count=2, timeout=TIMEOUT)
            await dc.wait_until(
                lambda: [f for f in dc.gateway_sent if f.op == Op.HEARTBEAT_ACK],
                timeout=TIMEOUT,
            )
            assert client.latency != float("inf")

    run(scenario)


def test_on_message_fires_for_dm_and_reply_is_stored() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc:
            client = make_client()
            inbox: asyncio.Queue[discord.Message] = asyncio.Queue()

            @client.event
            async def on_message(message: discord.Message) -> None:
                if message.author.id != DEFAULT_BOT_USER_ID:
                    await inbox.put(message)

            async with connected(dc, client):
                first = dc.make_message(ALICE_ID, "hello mentor")
                seq = await dc.dispatch("MESSAGE_CREATE", first)
                assert seq is not None
                message = await asyncio.wait_for(inbox.get(), TIMEOUT)
                assert message.content == "hello mentor"
                assert isinstance(message.channel, discord.DMChannel)
                assert message.channel.id == dc.dm_channel_id(ALICE_ID)
                assert message.author.id == ALICE_ID and not message.author.bot

                reply = await message.reply("Welcome aboard!")
                stored = dc.message(reply.id)
                assert stored is not None and stored["type"] == 19
                assert stored["message_reference"]["message_id"] == first["id"]
                assert reply.reference is not None and reply.reference.message_id == message.id

                # A user reply to the bot's message carries message_reference too.
                answer = dc.make_message(ALICE_ID, "thanks", reply_to_id=reply.id)
                await dc.dispatch("MESSAGE_CREATE", answer)
                threaded = await asyncio.wait_for(inbox.get(), TIMEOUT)
                assert threaded.reference is not None
                assert threaded.reference.message_id == reply.id
                assert [m["content"] for m in dc.messages(message.channel.id)] == [
                    "hello mentor",
                    "Welcome aboard!",
                    "thanks",
                ]

                # Bot authors are flagged so the bot can ignore other bots.
                bot_user = FakeUser(1_300_000_000_000_000_099, "otherbot", bot=True)
                dc.add_user(bot_user)
                await dc.dispatch(
                    "MESSAGE_CREATE",
                    message_payload(
                        channel_id=CHANNEL_ID, guild_id=GUILD_ID, author=bot_user, content="beep"
                    ),
                )
                from_bot = await asyncio.wait_for(inbox.get(), TIMEOUT)
                assert from_bot.author.bot and from_bot.guild is not None

    run(scenario)


def test_user_send_creates_dm_channel_and_message_with_file() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc, connected(dc, make_client()) as client:
            user = await client.fetch_user(ALICE_ID)
            sent = await user.send(
                "Week 1 is ready",
                file=discord.File(io.BytesIO(b"# Week 1\nLead by example."), "week1.md"),
            )

            [create_dm] = dc.requests_to("POST", r"/users/@me/channels")
            assert int(create_dm.json["recipient_id"]) == ALICE_ID
            assert sent.channel.id == dc.dm_channel_id(ALICE_ID)

            [post] = dc.requests_to("POST", rf"/channels/{sent.channel.id}/messages")
            assert post.header("Content-Type").startswith("multipart/form-data")
            assert post.json["content"] == "Week 1 is ready"
            assert [(f.name, f.filename, f.data) for f in post.files] == [
                ("files[0]", "week1.md", b"# Week 1\nLead by example.")
            ]
            assert sent.content == "Week 1 is ready"
            assert sent.attachments[0].filename == "week1.md"
            assert await sent.attachments[0].read() == b"# Week 1\nLead by example."

            again = await user.send("Second note")
            assert again.channel.id == sent.channel.id
            stored = dc.messages(sent.channel.id)
            assert [m["content"] for m in stored] == ["Week 1 is ready", "Second note"]
            assert all(m["author"]["id"] == str(DEFAULT_BOT_USER_ID) for m in stored)

            edited = await again.edit(content="Second note (edited)")
            assert edited.edited_at is not None
            assert dc.message(again.id)["content"] == "Second note (edited)"
            history = [m.content async for m in sent.channel.history(limit=10)]
            assert history == ["Second note (edited)", "Week 1 is ready"]

    run(scenario)


def test_slash_command_group_syncs_and_responds_ephemerally() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc:
            client = make_client()
            tree = app_commands.CommandTree(client)
            mentor = app_commands.Group(name="mentor", description="Mentoring tools")
            handled: asyncio.Future[discord.Interaction] = asyncio.Future()

            @mentor.command(name="schedule", description="Pick your weekly check-in time")
            @app_commands.describe(time="HH:MM, 24h")
            async def schedule(interaction: discord.Interaction, time: str) -> None:
                await interaction.response.send_message(f"Scheduled for {time}", ephemeral=True)
                await interaction.followup.send("I'll remind you.", ephemeral=True)
                await interaction.edit_original_response(content=f"Scheduled for {time} (saved)")
                handled.set_result(interaction)

            @schedule.autocomplete("time")
            async def time_choices(
                interaction: discord.Interaction, current: str
            ) -> list[app_commands.Choice[str]]:
                slots = ("09:00", "12:30", "18:00")
                return [
                    app_commands.Choice(name=s, value=s) for s in slots if s.startswith(current)
                ]

            tree.add_command(mentor, guild=discord.Object(GUILD_ID))

            async with connected(dc, client):
                synced = await tree.sync(guild=discord.Object(GUILD_ID))
                [put] = dc.requests_to("PUT", rf"/applications/\d+/guilds/{GUILD_ID}/commands")
                assert put.json[0]["name"] == "mentor"
                assert [c.name for c in synced] == ["mentor"]
                assert synced[0].id == int(dc.commands(GUILD_ID)[0]["id"])
                assert synced[0].guild_id == GUILD_ID

                itx = dc.make_interaction(
                    InteractionType.APPLICATION_COMMAND,
                    ALICE_ID,
                    guild_id=GUILD_ID,
                    command="mentor schedule",
                    options={"time": "09:00"},
                )
                assert itx["data"]["guild_id"] == str(GUILD_ID)
                await dc.dispatch("INTERACTION_CREATE", itx)
                interaction = await asyncio.wait_for(handled, TIMEOUT)

                assert isinstance(interaction.user, discord.Member)
                assert interaction.permissions.manage_guild  # from the mentors role
                assert interaction.namespace.time == "09:00"

                [callback] = dc.callbacks_for(int(itx["id"]))
                assert callback.type == InteractionCallbackType.CHANNEL_MESSAGE_WITH_SOURCE
                assert callback.flags == MessageFlags.EPHEMERAL and callback.ephemeral
                assert callback.data["content"] == "Scheduled for 09:00"

                token = itx["token"]
                [followup] = dc.requests_to("POST", rf"/webhooks/{dc.application_id}/{token}")
                assert followup.json["flags"] & MessageFlags.EPHEMERAL
                await dc.wait_for("PATCH", rf"/webhooks/\d+/{token}/messages/@original")
                original, extra = dc.interaction_messages(int(itx["id"]))
                assert original["content"] == "Scheduled for 09:00 (saved)"
                assert original["flags"] & MessageFlags.EPHEMERAL
                assert extra["content"] == "I'll remind you."
                # Ephemeral messages are not visible in the channel history.
                assert dc.messages(CHANNEL_ID) == []

                # Discord refuses a second acknowledgement of the same interaction.
                url = f"{dc.api_base}/interactions/{itx['id']}/{token}/callback"
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(url, json={"type": 4, "data": {"content": "again"}}) as resp,
                ):
                    assert resp.status == 400
                    assert (await resp.json())["code"] == 40060

                auto = dc.make_interaction(
                    InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE,
                    ALICE_ID,
                    guild_id=GUILD_ID,
                    command="mentor schedule",
                    options={"time": "1"},
                    focused="time",
                )
                await dc.dispatch("INTERACTION_CREATE", auto)
                [choices] = await dc.wait_until(
                    lambda: dc.callbacks_for(int(auto["id"])), timeout=TIMEOUT
                )
                assert (
                    choices.type == InteractionCallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
                )
                assert [c["value"] for c in choices.data["choices"]] == ["12:30", "18:00"]

    run(scenario)


class DoneView(discord.ui.View):
    """Persistent view: survives restarts because its button has a fixed custom_id."""

    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.clicked_by: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @discord.ui.button(label="Done", style=discord.ButtonStyle.success, custom_id="mentor:done")
    async def done(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="Marked done. Nice work!", view=None)
        self.clicked_by.set_result(interaction.user.id)


def test_persistent_view_handles_component_interaction() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc, connected(dc, make_client()) as client:
            # A message "sent before the restart", carrying the button's raw component.
            button = {"type": 2, "style": 3, "label": "Done", "custom_id": "mentor:done"}
            old = dc.store_message(
                message_payload(
                    channel_id=dc.dm_channel_id(ALICE_ID),
                    author=dc.bot_user,
                    content="Did you practise active listening this week?",
                    components=[{"type": 1, "components": [button]}],
                )
            )
            view = DoneView()
            client.add_view(view)

            click = dc.make_interaction(
                InteractionType.MESSAGE_COMPONENT,
                ALICE_ID,
                message_id=int(old["id"]),
                custom_id="mentor:done",
            )
            await dc.dispatch("INTERACTION_CREATE", click)
            assert await asyncio.wait_for(view.clicked_by, TIMEOUT) == ALICE_ID

            [callback] = await dc.wait_until(
                lambda: dc.callbacks_for(int(click["id"])), timeout=TIMEOUT
            )
            assert callback.type == InteractionCallbackType.UPDATE_MESSAGE
            updated = dc.message(int(old["id"]))
            assert updated["content"] == "Marked done. Nice work!"
            assert updated["components"] == []

    run(scenario)


class CheckInModal(discord.ui.Modal, title="Weekly check-in"):
    reflection = discord.ui.TextInput(
        label="What did you try this week?",
        custom_id="reflection",
        style=discord.TextStyle.paragraph,
    )

    def __init__(self) -> None:
        super().__init__(custom_id="mentor:checkin")
        self.submitted: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Thanks for reflecting!", ephemeral=True)
        self.submitted.set_result(self.reflection.value)


def test_modal_is_opened_and_submit_is_handled_in_dm() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc:
            client = make_client()
            tree = app_commands.CommandTree(client)
            modals: list[CheckInModal] = []

            @tree.command(name="checkin", description="Weekly reflection")
            async def checkin(interaction: discord.Interaction) -> None:
                modal = CheckInModal()
                modals.append(modal)
                await interaction.response.send_modal(modal)

            async with connected(dc, client):
                await tree.sync()  # global commands: PUT /applications/{id}/commands
                assert dc.requests_to("PUT", rf"/applications/{dc.application_id}/commands")
                assert [c["name"] for c in dc.commands()] == ["checkin"]

                command = dc.make_interaction(
                    InteractionType.APPLICATION_COMMAND, ALICE_ID, command="checkin"
                )
                assert "user" in command and "member" not in command  # DM shape
                await dc.dispatch("INTERACTION_CREATE", command)
                [opened] = await dc.wait_until(
                    lambda: dc.callbacks_for(int(command["id"])), timeout=TIMEOUT
                )
                assert opened.type == InteractionCallbackType.MODAL
                assert opened.data["custom_id"] == "mentor:checkin"
                assert opened.data["title"] == "Weekly check-in"

                submit = dc.make_interaction(
                    InteractionType.MODAL_SUBMIT,
                    ALICE_ID,
                    custom_id=opened.data["custom_id"],
                    text_values={"reflection": "I delegated the sprint demo."},
                )
                await dc.dispatch("INTERACTION_CREATE", submit)
                value = await asyncio.wait_for(modals[0].submitted, TIMEOUT)
                assert value == "I delegated the sprint demo."
                [thanks] = await dc.wait_until(
                    lambda: dc.callbacks_for(int(submit["id"])), timeout=TIMEOUT
                )
                assert thanks.type == InteractionCallbackType.CHANNEL_MESSAGE_WITH_SOURCE
                assert thanks.ephemeral

    run(scenario)


def test_429_retry_after_is_honoured_and_request_retried() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc, connected(dc, make_client()) as client:
            channel = await (await client.fetch_user(ALICE_ID)).create_dm()
            dc.fail_next("POST", r"/channels/\d+/messages", status=429, retry_after=0.3)
            message = await channel.send("Reminder: check-in today")

            posts = dc.requests_to("POST", r"/channels/\d+/messages")
            assert [p.status for p in posts] == [429, 200]
            assert posts[1].time - posts[0].time >= 0.25
            assert [m["id"] for m in dc.messages(channel.id)] == [str(message.id)]

            # Global limits are honoured the same way (discord.py pauses every route).
            dc.fail_next("GET", r"/users/\d+", status=429, retry_after=0.2, global_=True)
            assert (await client.fetch_user(ALICE_ID)).id == ALICE_ID
            assert [r.status for r in dc.requests_to("GET", rf"/users/{ALICE_ID}")][-2:] == [
                429,
                200,
            ]

    run(scenario)


def test_dm_to_user_with_closed_dms_raises_forbidden_50007() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc, connected(dc, make_client()) as client:
            bob = await client.fetch_user(BOB_ID)
            with pytest.raises(discord.Forbidden) as caught:
                await bob.send("Your week 1 lesson")
            assert caught.value.status == 403
            assert caught.value.code == 50007
            assert "Cannot send messages to this user" in caught.value.text
            # Opening the DM channel itself succeeds, as on Discord.
            assert dc.requests_to("POST", r"/users/@me/channels")[0].status == 200

    run(scenario)


def test_nonce_with_enforce_nonce_dedupes_messages() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc, connected(dc, make_client()) as client:
            channel = await (await client.fetch_user(ALICE_ID)).create_dm()
            first = await channel.send("Week 2 unlocked", nonce="lesson-2-alice")
            second = await channel.send("Week 2 unlocked", nonce="lesson-2-alice")
            other = await channel.send("Week 3 unlocked", nonce="lesson-3-alice")

            posts = dc.requests_to("POST", rf"/channels/{channel.id}/messages")
            assert len(posts) == 3
            assert posts[0].json["enforce_nonce"] is True
            assert first.id == second.id != other.id
            assert [m["content"] for m in dc.messages(channel.id)] == [
                "Week 2 unlocked",
                "Week 3 unlocked",
            ]

    run(scenario)


def test_dropped_connection_is_resumed_and_missed_events_replayed() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc:
            client = make_client()
            inbox: asyncio.Queue[str] = asyncio.Queue()
            resumed = asyncio.Event()

            @client.event
            async def on_message(message: discord.Message) -> None:
                await inbox.put(message.content)

            @client.event
            async def on_resumed() -> None:
                resumed.set()

            async with connected(dc, client):
                session_id = dc.session_id
                last_seq = dc.gateway_sent[-1].seq if dc.gateway_sent[-1].seq else 0
                await dc.drop_connection(code=4000)
                # Dispatched while the client is away: must be replayed after RESUME.
                await dc.dispatch("MESSAGE_CREATE", dc.make_message(ALICE_ID, "while away"))

                [resume] = await dc.wait_for_gateway(Op.RESUME, timeout=TIMEOUT)
                assert resume.data["session_id"] == session_id
                assert resume.data["seq"] >= last_seq
                await dc.wait_resumed(timeout=TIMEOUT)
                await asyncio.wait_for(resumed.wait(), TIMEOUT)
                assert dc.gateway_connections[-1].path == "/gateway/resume"
                assert len(dc.gateway_ops(Op.IDENTIFY)) == 1

                await dc.dispatch("MESSAGE_CREATE", dc.make_message(ALICE_ID, "after resume"))
                got = [await asyncio.wait_for(inbox.get(), TIMEOUT) for _ in range(2)]
                assert got == ["while away", "after resume"]

    run(scenario)


def test_guild_events_and_intent_gating() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc:
            client = make_client()
            joined: asyncio.Queue[discord.Member] = asyncio.Queue()
            guilds: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

            @client.event
            async def on_member_join(member: discord.Member) -> None:
                await joined.put(member)

            @client.event
            async def on_guild_join(guild: discord.Guild) -> None:
                await guilds.put(("join", guild.id))

            @client.event
            async def on_guild_remove(guild: discord.Guild) -> None:
                await guilds.put(("remove", guild.id))

            async with connected(dc, client):
                carol = FakeUser(1_300_000_000_000_000_012, "carol")
                await dc.add_member(GUILD_ID, FakeMember(carol))
                member = await asyncio.wait_for(joined.get(), TIMEOUT)
                assert member.id == carol.id and member.guild.id == GUILD_ID

                second = FakeGuild(
                    id=1_300_000_000_000_000_100,
                    name="Team Leads",
                    channels=[FakeChannel(1_300_000_000_000_000_101, "leads")],
                )
                await dc.join_guild(second)
                assert await asyncio.wait_for(guilds.get(), TIMEOUT) == ("join", second.id)
                await dc.leave_guild(second.id)
                assert await asyncio.wait_for(guilds.get(), TIMEOUT) == ("remove", second.id)
                assert client.get_guild(second.id) is None

        # Without the privileged members intent Discord never sends GUILD_MEMBER_ADD.
        async with make_emulator() as dc:
            client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
            async with connected(dc, client):
                carol = FakeUser(1_300_000_000_000_000_013, "dave")
                assert await dc.add_member(GUILD_ID, FakeMember(carol)) is None

        # Privileged intents not enabled for the application: close 4014.
        async with make_emulator(privileged_intents=0) as dc:
            with point_discord_py_at(dc):
                client = make_client()
                await client.login(TOKEN)
                try:
                    with pytest.raises(discord.PrivilegedIntentsRequired):
                        await asyncio.wait_for(client.connect(), TIMEOUT)
                finally:
                    await client.close()
            assert dc.gateway_ops(Op.IDENTIFY)

    run(scenario)


def test_raw_http_errors_faults_and_global_rate_limit() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc, aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bot {TOKEN}"}
            async with http.get(f"{dc.api_base}/nope", headers=auth) as resp:
                assert resp.status == 404
                assert resp.headers["Content-Type"] == "application/json"
                assert await resp.json() == {"message": "404: Not Found", "code": 0}
            async with http.delete(f"{dc.api_base}/users/@me", headers=auth) as resp:
                assert resp.status == 405
            async with http.get(f"{dc.api_base}/users/@me") as resp:
                assert resp.status == 401

            async with http.get(f"{dc.api_base}/users/@me", headers=auth) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "application/json"
                assert int(resp.headers["X-RateLimit-Remaining"]) > 0
                assert resp.headers["X-RateLimit-Bucket"]

            dc.fail_next("GET", r"/users/@me", status=503)
            async with http.get(f"{dc.api_base}/users/@me", headers=auth) as resp:
                assert resp.status == 503
                assert await resp.json() == {"message": "503: Service Unavailable", "code": 0}

            dc.fail_next("GET", r"/guilds/\d+", status=429, retry_after=1.5)
            async with http.get(f"{dc.api_base}/guilds/{GUILD_ID}", headers=auth) as resp:
                assert resp.status == 429
                assert resp.headers["Via"]  # discord.py treats 429s without Via as a ban
                assert resp.headers["Retry-After"] == "2"
                assert resp.headers["X-RateLimit-Remaining"] == "0"
                assert float(resp.headers["X-RateLimit-Reset-After"]) == 1.5
                body = await resp.json()
                assert body == {
                    "message": "You are being rate limited.",
                    "retry_after": 1.5,
                    "global": False,
                }

            dc.rate_limit(per_second=3)
            statuses = []
            for _ in range(5):
                async with http.get(f"{dc.api_base}/guilds/{GUILD_ID}", headers=auth) as resp:
                    statuses.append(resp.status)
                    if resp.status == 429:
                        assert (await resp.json())["global"] is True
                        assert resp.headers["X-RateLimit-Global"] == "true"
            assert statuses == [200, 200, 200, 429, 429]
            dc.rate_limit(None)

            async with http.get(
                f"{dc.api_base}/guilds/{GUILD_ID}/members/{ALICE_ID}", headers=auth
            ) as resp:
                member = await resp.json()
                assert member["roles"] == [str(MENTOR_ROLE_ID)]
            async with http.get(f"{dc.api_base}/guilds/{GUILD_ID}/channels", headers=auth) as r:
                assert [c["name"] for c in await r.json()] == ["general"]
            async with http.get(f"{dc.api_base}/guilds/{GUILD_ID}/members/1", headers=auth) as r:
                assert (r.status, (await r.json())["code"]) == (404, 10007)

            counted = await dc.wait_for("GET", rf"/guilds/{GUILD_ID}", count=6)
            assert [r.status for r in counted] == [429, 200, 200, 200, 429, 429]

    run(scenario)


def test_threaded_mode_serves_sync_callers_and_other_loops() -> None:
    dc = make_emulator().start_in_thread()
    try:
        request = urllib.request.Request(
            f"{dc.api_base}/users/@me", headers={"Authorization": f"Bot {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            assert json.loads(resp.read())["id"] == str(DEFAULT_BOT_USER_ID)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{dc.api_base}/nowhere", timeout=TIMEOUT)
        assert caught.value.code == 404
        assert len(dc.wait_for_sync("GET", r"/nowhere", timeout=TIMEOUT)) == 1

        async def scenario() -> None:
            client = make_client()
            inbox: asyncio.Queue[str] = asyncio.Queue()

            @client.event
            async def on_message(message: discord.Message) -> None:
                await inbox.put(message.content)

            async with connected(dc, client):
                # dispatch() hops onto the emulator's own loop transparently.
                await dc.dispatch("MESSAGE_CREATE", dc.make_message(ALICE_ID, "cross-thread"))
                assert await asyncio.wait_for(inbox.get(), TIMEOUT) == "cross-thread"
                user = await client.fetch_user(ALICE_ID)
                await user.send("hi from another loop")
                await dc.wait_for("POST", r"/channels/\d+/messages", timeout=TIMEOUT)

        asyncio.run(asyncio.wait_for(scenario(), 60))
        dc.wait_ready_sync(timeout=TIMEOUT)
        posted = dc.wait_for_sync("POST", r"/channels/\d+/messages", timeout=TIMEOUT)
        assert posted[0].json["content"] == "hi from another loop"
    finally:
        dc.stop()


def test_deferred_response_then_edit_original_clears_loading() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc:
            client = make_client()
            tree = app_commands.CommandTree(client)
            finished: asyncio.Future[None] = asyncio.Future()

            @tree.command(name="progress", description="Show course progress")
            async def progress(interaction: discord.Interaction) -> None:
                await interaction.response.defer(ephemeral=True, thinking=True)
                await interaction.edit_original_response(content="You finished 3 of 8 lessons.")
                finished.set_result(None)

            async with connected(dc, client):
                await tree.sync()
                itx = dc.make_interaction(
                    InteractionType.APPLICATION_COMMAND,
                    ALICE_ID,
                    guild_id=GUILD_ID,
                    command="progress",
                )
                assert "guild_id" not in itx["data"]  # a global command used in a guild
                await dc.dispatch("INTERACTION_CREATE", itx)
                await asyncio.wait_for(finished, TIMEOUT)
                [deferred] = dc.callbacks_for(int(itx["id"]))
                assert deferred.type == InteractionCallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
                assert deferred.ephemeral
                [original] = dc.interaction_messages(int(itx["id"]))
                assert original["content"] == "You finished 3 of 8 lessons."
                assert not original["flags"] & MessageFlags.LOADING
                assert original["flags"] & MessageFlags.EPHEMERAL

    run(scenario)


def test_reconnect_request_resumes_and_invalid_session_reidentifies() -> None:
    async def scenario() -> None:
        async with make_emulator() as dc:
            client = make_client()
            inbox: asyncio.Queue[str] = asyncio.Queue()

            async def identify_now(shard_id: int | None, *, initial: bool = False) -> None:
                """discord.py sleeps 5 s before every non-initial IDENTIFY; skip that."""

            client.before_identify_hook = identify_now  # type: ignore[method-assign]

            @client.event
            async def on_message(message: discord.Message) -> None:
                await inbox.put(message.content)

            async with connected(dc, client):
                first_session = dc.session_id
                await dc.request_reconnect()
                await dc.wait_resumed(timeout=TIMEOUT)
                assert dc.session_id == first_session

                await dc.invalidate_session(resumable=False)
                await dc.wait_ready(count=2, timeout=TIMEOUT)
                assert len(dc.gateway_ops(Op.IDENTIFY)) == 2
                assert dc.session_id != first_session

                await dc.dispatch("MESSAGE_CREATE", dc.make_message(ALICE_ID, "new session"))
                assert await asyncio.wait_for(inbox.get(), TIMEOUT) == "new session"

    run(scenario)
