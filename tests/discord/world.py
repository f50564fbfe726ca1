"""A running mentorbot with the real Discord adapter, against the Discord emulator.

``World`` is the real app (``build``) and the real ``DiscordAdapter`` (a real discord.py
client over real sockets) talking to ``tests.emulators.discord_api``. Helpers play the
learner's side: run a slash command, press a button, submit the reply form, write or
edit a DM. Each helper waits for the adapter to finish handling the event (its
``handled`` counter), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from adapters.discord import DiscordAdapter
from bot.config import Settings, bundled_content_dir
from bot.models import Delivery, Learner, Reply, Workspace
from bot.ports import EventSink
from mentorbot.bootstrap import App, build
from tests.emulators.discord_api import (
    DiscordEmulator,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    InteractionType,
    MessageFlags,
)

TOKEN = "mentorbot-test-token"
TIMEOUT = 15.0

ACME = 1_400_000_000_000_000_001
ACME_GENERAL = 1_400_000_000_000_000_002
ACME_RULES = 1_400_000_000_000_000_003
LEAD_ROLE_ID = 1_400_000_000_000_000_004
GLOBEX = 1_400_000_000_000_000_101
GLOBEX_GENERAL = 1_400_000_000_000_000_102
LEAD_ROLE = "Mentor Leads"
MANAGE_GUILD = 1 << 5

ALICE = 1_400_000_000_000_000_010  # Acme and Globex, lead by role in Acme
BOB = 1_400_000_000_000_000_011  # Acme, DMs closed
CAROL = 1_400_000_000_000_000_012  # Globex
DAVE = 1_400_000_000_000_000_013  # Acme, Manage Server
ERIN = 1_400_000_000_000_000_014  # no guild in common: only writes DMs


def make_emulator(**overrides: Any) -> DiscordEmulator:
    alice = FakeUser(ALICE, "alice", global_name="Alice")
    bob = FakeUser(BOB, "bob", blocks_dms=True)
    carol = FakeUser(CAROL, "carol")
    dave = FakeUser(DAVE, "dave")
    erin = FakeUser(ERIN, "erin")
    acme = FakeGuild(
        id=ACME,
        name="Acme",
        channels=[
            FakeChannel(ACME_GENERAL, "general", position=0),
            FakeChannel(ACME_RULES, "rules", position=1),
        ],
        roles=[FakeRole(LEAD_ROLE_ID, LEAD_ROLE)],
        members=[
            FakeMember(alice, roles=[LEAD_ROLE_ID]),
            FakeMember(bob),
            FakeMember(dave),
        ],
    )
    acme.roles.append(FakeRole(LEAD_ROLE_ID + 1, "Admins", permissions=MANAGE_GUILD))
    acme.members[2].roles.append(LEAD_ROLE_ID + 1)
    globex = FakeGuild(
        id=GLOBEX,
        name="Globex",
        channels=[FakeChannel(GLOBEX_GENERAL, "general")],
        members=[FakeMember(alice), FakeMember(carol)],
    )
    options: dict[str, Any] = {
        "guilds": [acme, globex],
        "users": [alice, bob, carol, dave, erin],
        "token": TOKEN,
        "heartbeat_interval_ms": 30_000,
    }
    options.update(overrides)
    return DiscordEmulator(**options)


@dataclass
class Answer:
    """What the user saw for one interaction: the callback and every message it made."""

    interaction_id: int
    callbacks: list[Any]
    messages: list[dict[str, Any]]

    @property
    def text(self) -> str:
        return "\n".join(message_text(m) for m in self.messages)

    @property
    def ephemeral(self) -> bool:
        return bool(self.messages) and all(
            int(m.get("flags") or 0) & MessageFlags.EPHEMERAL for m in self.messages
        )


def message_text(message: dict[str, Any]) -> str:
    """Content, embed titles, descriptions and footers of a stored message, as text."""
    lines = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        lines += [embed.get("title") or "", embed.get("description") or ""]
    return "\n".join(line for line in lines if line)


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message.get("components") or [] for c in row["components"]]


@dataclass
class World:
    dc: DiscordEmulator
    app: App
    settings: Settings
    adapter: DiscordAdapter
    task: asyncio.Task[None]
    adapter_options: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ running

    async def _until_handled(self, action: Callable[[], Awaitable[Any]], events: int = 1) -> Any:
        before = self.adapter.handled
        result = await action()
        await self.adapter.wait_handled(before + events, TIMEOUT)
        return result

    async def interact(self, payload: dict[str, Any]) -> Answer:
        await self._until_handled(lambda: self.dc.dispatch("INTERACTION_CREATE", payload))
        await self.adapter.drain(TIMEOUT)
        itx = int(payload["id"])
        return Answer(itx, self.dc.callbacks_for(itx), self.dc.interaction_messages(itx))

    async def command(
        self,
        user: int,
        command: str,
        guild: int | None = ACME,
        options: dict[str, Any] | None = None,
    ) -> Answer:
        """``/mentor <command>`` from ``user`` in ``guild`` (None: in the DM)."""
        payload = self.dc.make_interaction(
            InteractionType.APPLICATION_COMMAND,
            user,
            guild_id=guild,
            command=f"mentor {command}",
            options=options,
        )
        return await self.interact(payload)

    async def press(
        self, user: int, message: dict[str, Any], action: str, guild: int | None = None
    ) -> Answer:
        """Press the button for ``action`` on a stored message."""
        [custom_id] = [c for c in custom_ids(message) if c.split(":")[1] == action]
        payload = self.dc.make_interaction(
            InteractionType.MESSAGE_COMPONENT,
            user,
            guild_id=guild,
            message_id=int(message["id"]),
            custom_id=custom_id,
        )
        return await self.interact(payload)

    async def submit(self, user: int, custom_id: str, text: str) -> Answer:
        payload = self.dc.make_interaction(
            InteractionType.MODAL_SUBMIT, user, custom_id=custom_id, text_values={"answer": text}
        )
        return await self.interact(payload)

    async def dm(self, user: int, text: str, **extra: Any) -> list[dict[str, Any]]:
        """``user`` writes ``text`` in their DM; returns what the bot posted after it."""
        before = len(self.bot_dms(user))
        payload = self.dc.make_message(user, text, **extra)
        await self._until_handled(lambda: self.dc.dispatch("MESSAGE_CREATE", payload))
        return self.bot_dms(user)[before:]

    async def edit(self, user: int, message: dict[str, Any], text: str) -> list[dict[str, Any]]:
        before = len(self.bot_dms(user))
        edited = {**message, "content": text, "edited_timestamp": message["timestamp"]}
        await self._until_handled(lambda: self.dc.dispatch("MESSAGE_UPDATE", edited))
        return self.bot_dms(user)[before:]

    async def join(self, guild: int, member: FakeMember) -> None:
        """``member`` joins ``guild`` (GUILD_MEMBER_ADD); needs the Server Members intent,
        without which Discord, and the emulator, never send the event to wait for."""
        await self._until_handled(lambda: self.dc.add_member(guild, member))

    def bot_dms(self, user: int) -> list[dict[str, Any]]:
        channel = self.dc.dm_channel_id(user)
        bot = str(self.dc.bot_user.id)
        return [m for m in self.dc.messages(channel) if m["author"]["id"] == bot]

    def lessons(self, user: int) -> list[dict[str, Any]]:
        """Bot DMs carrying a lesson title."""
        return [
            m
            for m in self.bot_dms(user)
            if any("day" in (e.get("title") or "") for e in m.get("embeds") or [])
        ]

    async def restart(self, **options: Any) -> DiscordAdapter:
        """Stop the adapter (its client closes) and start a brand-new one."""
        await self.adapter.stop()
        await asyncio.wait_for(self.task, TIMEOUT)
        self.adapter, self.task = await start_adapter(
            self.app, self.settings, **{**self.adapter_options, **options}
        )
        return self.adapter

    # ------------------------------------------------------------------ the store

    def db(self, work: Callable[[Session], Any]) -> Any:
        return self.app.store.run(work)

    def replies(self, user: int, workspace: int | str | None = None) -> list[Reply]:
        def work(session: Session) -> list[Reply]:
            query = (
                select(Reply)
                .join(Learner, Learner.id == Reply.learner_id)  # type: ignore[arg-type]
                .join(Workspace, Workspace.id == Learner.workspace_id)  # type: ignore[arg-type]
                .where(Learner.user_id == str(user), Workspace.platform == "discord")
            )
            if workspace is not None:
                query = query.where(Workspace.external_id == str(workspace))
            rows = list(session.exec(query.order_by(Reply.id)).all())  # type: ignore[arg-type]
            for row in rows:
                session.expunge(row)
            return rows

        return list(self.db(work))

    def deliveries(self, user: int) -> list[Delivery]:
        def work(session: Session) -> list[Delivery]:
            query = (
                select(Delivery)
                .join(Learner, Learner.id == Delivery.learner_id)  # type: ignore[arg-type]
                .where(Learner.user_id == str(user))
                .order_by(Delivery.id)  # type: ignore[arg-type]
            )
            rows = list(session.exec(query).all())
            for row in rows:
                session.expunge(row)
            return rows

        return list(self.db(work))

    def learners(self, user: int) -> list[tuple[str, str]]:
        """(workspace external id, role) of every learner row for ``user``."""

        def work(session: Session) -> list[tuple[str, str]]:
            rows = session.exec(
                select(Workspace.external_id, Learner.role)
                .join(Learner, Learner.workspace_id == Workspace.id)  # type: ignore[arg-type]
                .where(Learner.user_id == str(user))
            ).all()
            return [(str(a), str(b)) for a, b in rows]

        return list(self.db(work))


async def start_adapter(
    app: App, settings: Settings, sink: EventSink | None = None, **options: Any
) -> tuple[DiscordAdapter, asyncio.Task[None]]:
    """Start a real adapter for ``app`` (events to ``sink``, by default the app's hub)
    and wait until it is connected and its commands are synced."""
    options.setdefault("guild_ready_timeout", 0.05)
    adapter = DiscordAdapter(settings, app.store, **options)
    app.dispatcher.adapters["discord"] = adapter
    task = asyncio.create_task(adapter.start(sink or app.hub), name="discord-adapter")
    ready = asyncio.create_task(adapter.wait_ready(TIMEOUT))
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        task.result()  # surfaces why the adapter could not start
        raise RuntimeError("the adapter stopped before it was ready")
    ready.result()
    return adapter, task


@contextlib.asynccontextmanager
async def running(
    database_url: str,
    clock: Callable[[], Any] | None = None,
    *,
    emulator: dict[str, Any] | None = None,
    adapter: dict[str, Any] | None = None,
    sink: Callable[[App], EventSink] | None = None,
    **settings_changes: Any,
) -> AsyncIterator[World]:
    """The emulator, the app and a started adapter; everything closed afterwards."""
    async with make_emulator(**(emulator or {})) as dc:
        settings = Settings(
            database_url=database_url,
            content_dir=bundled_content_dir(),
            discord_token=TOKEN,
            discord_api_url=dc.base_url,
            discord_gateway_url=dc.gateway_url,
            discord_lead_role=LEAD_ROLE,
            **settings_changes,
        )
        app = build(settings, clock=clock)
        options = dict(adapter or {})
        events = sink(app) if sink is not None else None
        started, task = await start_adapter(app, settings, events, **options)
        world = World(dc, app, settings, started, task, options)
        try:
            yield world
            assert not dc.errors, f"the emulator raised: {dc.errors!r}"
        finally:
            await world.adapter.stop()
            try:
                await asyncio.wait_for(world.task, TIMEOUT)
            finally:
                app.store.dispose()


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    """Run an async scenario from a plain pytest test (no pytest-asyncio here)."""
    asyncio.run(asyncio.wait_for(scenario(), timeout))
