"""The Discord adapter: discord.py events in, ``IncomingEvent``s to the core; the core's
answers and deliveries out, as interaction responses and DMs.

It holds no business rule. It decides only Discord things: which intents to ask for,
how to answer an interaction inside Discord's 3-second window, how a message is split
to fit Discord's limits, which Discord error means what, and where in a guild to leave
a note when a learner's DMs are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import discord
from discord import app_commands

from adapters.cache import Bounded, TTLCache
from adapters.discord.components import ActionButton, build_view, reply_modal, submitted_text
from adapters.discord.errors import UNKNOWN_CHANNEL, translate
from adapters.discord.render import (
    Part,
    nonce,
    parse_footer,
    parse_modal_custom_id,
    reference,
    render,
)
from adapters.discord.slash import MentorGroup, command_text, raw_command_words
from bot.commands import is_command
from bot.config import Settings
from bot.db import Store
from bot.hub import ERROR_TEXT
from bot.mentions import MAX_MENTIONS, TooManyMentions, has_lead_role, takes_people
from bot.messages import EventKind, IncomingEvent, OutgoingMessage, SendResult, UserRef
from bot.ports import EventSink, PermanentSendError, SendError, TemporarySendError
from bot.ratelimit import Limit
from bot.text import strip_learner_marks

log = logging.getLogger(__name__)

PLATFORM = "discord"
# Discord drops an interaction that is not acknowledged within 3 s of its creation; the
# clock here starts when the event reaches us, so keep a good margin.
ACK_AFTER = 2.0
# When this many interactions are already waiting for a slow core, a new one is deferred
# at once: it would queue behind them, and its acknowledgement should not.
DEFER_WHEN_BUSY = 4
# The core counts as slow when it took longer than this to answer lately, or when an
# interaction has been waiting this long, or before it has answered anything. A quick
# core's answer is the acknowledgement: deferring first would cost a second request
# (the "thinking…" placeholder, then its edit) and show the answer later.
SLOW_ANSWER = 0.25
# A pasted text longer than Discord's message limit arrives as a ``message.txt`` file;
# read text files up to this size as part of the reply.
TEXT_ATTACHMENT_LIMIT = 256 * 1024
HISTORY_SCAN = 50  # recent DM messages searched by ``find_delivered``
DRAIN_TIMEOUT = 10.0
# The answer to a command whose result the core sends to the learner's DM (an export):
# the interaction itself must still say where it went.
SENT_TO_DM = "I sent it to your DMs: {link}"
DM_BLOCKED_NOTE = (
    "{mention} I tried to send you your mentorbot lesson, but your direct messages are "
    "closed for this server. To get lessons, open this server's **Privacy Settings** and "
    "turn on **Direct Messages**, then send me any message."
)

# The gateway intents the bot always needs. GUILDS: guild names, roles and channels
# (lead detection, the DMs-closed note). DM_MESSAGES: DMs and their edits. Message
# content is *not* needed: Discord always includes the content of DMs with the bot.
INTENTS = discord.Intents.none()
INTENTS.guilds = True
INTENTS.dm_messages = True
# User mentions in command text: ``<@id>`` or the older ``<@!id>``.
MENTION = re.compile(r"<@!?(\d+)>")
# Mentioned users Discord did not resolve are looked up (for a lead's command that takes
# people, naming at most bot.mentions.MAX_MENTIONS) for at most this long: past that the
# core gets the ids without the details. Answers are kept a while, found or not.
MENTION_LOOKUP_TIMEOUT = 5.0
USER_CACHE_SECONDS = 600.0
USERS_KEPT = 10_000
PRIVILEGED_INTENTS_HINT = (
    "Discord refused the Server Members intent: DISCORD_MEMBERS_INTENT is on, but the "
    "intent is not enabled for this application. Turn on Bot -> Privileged Gateway "
    "Intents -> Server Members Intent in the Developer Portal, or set "
    "DISCORD_MEMBERS_INTENT=off (auto-enrol then does nothing on Discord)."
)


def gateway_intents(settings: Settings) -> discord.Intents:
    """The intents to identify with. Server Members is privileged (Discord refuses the
    connection unless it is enabled in the Developer Portal), so it is asked for only
    when DISCORD_MEMBERS_INTENT is on; it is what makes Discord report members joining,
    which auto-enrol needs."""
    intents = discord.Intents.none()
    intents.value = INTENTS.value
    intents.members = settings.discord_members_intent
    return intents


def _api_base(url: str) -> str:
    """``Route.BASE`` for DISCORD_API_URL, which may or may not name ``/api/vN``."""
    base = url.rstrip("/")
    if re.search(r"/api/v\d+$", base):
        return base
    if base.endswith("/api"):
        return f"{base}/v{discord.http.INTERNAL_API_VERSION}"
    return f"{base}/api/v{discord.http.INTERNAL_API_VERSION}"


def _user_name(user: discord.abc.User) -> str:
    return getattr(user, "global_name", None) or user.name


def _mentioned(interaction: discord.Interaction) -> tuple[UserRef, ...]:
    """The users a command mentions, as Discord resolved them (so bots can be told
    apart): user options and mentions picked inside text options both land here. The
    name is the one people see in that server: nickname, else display name."""
    data: Any = interaction.data or {}
    resolved = data.get("resolved") or {}
    users = resolved.get("users") or {}
    members = resolved.get("members") or {}
    refs = []
    for user_id, raw in users.items():
        if not isinstance(raw, dict):
            continue
        member = members.get(user_id)
        nick = member.get("nick") if isinstance(member, dict) else None
        refs.append(
            UserRef(
                id=str(user_id),
                name=nick or raw.get("global_name") or raw.get("username"),
                is_bot=bool(raw.get("bot")),
            )
        )
    return tuple(refs)


def _user_ref(user: discord.abc.User) -> UserRef:
    return UserRef(id=str(user.id), name=_user_name(user), is_bot=user.bot)


def _mention_ids(text: str) -> list[str]:
    """The user ids mentioned in ``text``, first mention first, each once."""
    return list(dict.fromkeys(MENTION.findall(text)))


def _message_options(part: Part, delivery_id: int | None, workspace: str) -> dict[str, Any]:
    """The keyword arguments that post one rendered part with discord.py."""
    options: dict[str, Any] = {"content": part.content, "embeds": part.embeds}
    view = build_view(part.actions, delivery_id, workspace)
    if view is not None:
        options["view"] = view
    if part.files:
        options["files"] = part.discord_files()
    return options


class _MentorClient(discord.Client):
    """A client that knows the adapter, so dynamic buttons can reach it."""

    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        super().__init__(**options)
        self.button_handler = adapter
        self.adapter = adapter

    async def setup_hook(self) -> None:
        await self.adapter._setup(self)


class _MentorTree(app_commands.CommandTree[_MentorClient]):
    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await self.client.adapter._on_command_error(interaction, error)


class _InteractionReplier:
    """Shows the core's answers for one interaction.

    The first answer is the interaction response when it is ready in time; if the
    core is slow, the interaction is deferred (ephemeral "thinking…") after
    ``ack_after`` seconds and the first answer then replaces that placeholder. Further
    answers are follow-ups. Answers the core does not mark ephemeral go to the DM.
    """

    def __init__(
        self, adapter: DiscordAdapter, interaction: discord.Interaction, ack_after: float
    ) -> None:
        self.adapter = adapter
        self.interaction = interaction
        self.ack_after = ack_after
        self.lock = asyncio.Lock()
        self.deferred = False
        self.placeholder_used = False
        self.shown = False  # something was said in the interaction itself
        self.dm_links: list[str] = []  # answers sent to the DM instead
        self._timer: asyncio.Task[None] | None = None

    def start_timer(self) -> None:
        self._timer = asyncio.create_task(self._defer_later())

    async def _defer_later(self) -> None:
        await asyncio.sleep(self.ack_after)
        await self.defer()

    async def defer(self) -> None:
        """Acknowledge now with an ephemeral "thinking…" placeholder, if not answered."""
        async with self.lock:
            if not self.interaction.response.is_done():
                await self.interaction.response.defer(ephemeral=True, thinking=True)
                self.deferred = True

    async def respond(self, messages: list[OutgoingMessage]) -> None:
        self.adapter._answered(self)
        async with self.lock:
            in_guild = self.interaction.guild_id is not None
            for message in messages:
                if in_guild and not message.ephemeral:
                    # Not meant to vanish (a data export): it belongs in the DM.
                    try:
                        self.dm_links.append(await self.adapter._post_dm(message))
                        continue
                    except discord.HTTPException:
                        log.info("DMs closed for %s: answering in the channel", message.user)
                workspace = message.workspace or self._workspace()
                ephemeral = message.ephemeral or in_guild
                for part in render(message):
                    await self._post(part, message.delivery_id, workspace, ephemeral=ephemeral)
                    self.shown = True

    def _workspace(self) -> str:
        return str(self.interaction.guild_id) if self.interaction.guild_id else ""

    async def _post(
        self, part: Part, delivery_id: int | None, workspace: str, *, ephemeral: bool
    ) -> None:
        options = _message_options(part, delivery_id, workspace)
        response = self.interaction.response
        if not response.is_done():
            await response.send_message(
                **options, ephemeral=ephemeral, allowed_mentions=discord.AllowedMentions.none()
            )
        elif self.deferred and not self.placeholder_used:
            self.placeholder_used = True
            if "files" in options:  # an edit takes new files as attachments
                options["attachments"] = options.pop("files")
            await self.interaction.edit_original_response(**options)
        else:
            await self.interaction.followup.send(
                **options, ephemeral=ephemeral, allowed_mentions=discord.AllowedMentions.none()
            )

    async def finish(self) -> None:
        """Stop the timer; point to the DM if that is where the answer went, else
        acknowledge quietly if the core had nothing to say."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        if self.dm_links and not self.shown:
            pointer = Part(content=SENT_TO_DM.format(link=self.dm_links[0]))
            async with self.lock:
                await self._post(pointer, None, "", ephemeral=True)
            return
        async with self.lock:
            response = self.interaction.response
            if not response.is_done():
                if self.interaction.type is discord.InteractionType.component:
                    await response.defer()  # acknowledges the press, changes nothing
                    return
                await response.defer(ephemeral=True, thinking=True)
                self.deferred = True
            if self.deferred and not self.placeholder_used:
                await self.interaction.delete_original_response()


class DiscordAdapter:
    """Runs a discord.py client for the core. See docs/discord.md for the set-up."""

    platform = PLATFORM

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        courses: Callable[[], Sequence[tuple[str, str]]] | None = None,
        ack_after: float = ACK_AFTER,
        defer_when_busy: int = DEFER_WHEN_BUSY,
        guild_ready_timeout: float = 2.0,
        max_ratelimit_timeout: float = 30.0,
    ) -> None:
        """The adapter keeps nothing in ``store``; it reads there who a lead made a lead,
        so that only leads' commands cost user lookups (without a store, every lead
        command is looked up). ``courses`` lists (id, title) for autocomplete; by
        default the catalog is read once from ``settings.content_dir`` at start."""
        if not settings.discord_token:
            raise ValueError("DISCORD_TOKEN is not set")
        self.settings = settings
        self.store = store
        # User id -> what Discord said about them; None: Discord knows no such user.
        self._users: TTLCache[str, UserRef | None] = TTLCache(USERS_KEPT, USER_CACHE_SECONDS)
        self.ack_after = ack_after
        self.defer_when_busy = defer_when_busy
        self._waiting_interactions = 0
        # When each interaction still waiting for the core's answer began (oldest
        # first), and how long the core took to answer lately (None: not known yet).
        self._waiting_since: dict[object, float] = {}
        self._answer_seconds: float | None = None
        self.guild_ready_timeout = guild_ready_timeout
        self.max_ratelimit_timeout = max_ratelimit_timeout
        self._courses_provider = courses
        self._courses: Sequence[tuple[str, str]] = ()
        self._sink: EventSink | None = None
        self._client: _MentorClient | None = None
        self._tree: _MentorTree | None = None
        self._ready = asyncio.Event()
        # User id -> DM channel id; bounded, so every learner ever written to does
        # not stay in the process (a forgotten one costs one lookup).
        self._dm_channels: Bounded = Bounded()
        self._saved_urls: tuple[str, Any] | None = None
        self._inflight = 0
        self.handled = 0  # platform events fully processed: for health checks and tests
        self._changed = asyncio.Condition()

    # ------------------------------------------------------------------ lifecycle

    @property
    def client(self) -> discord.Client | None:
        return self._client

    async def start(self, sink: EventSink) -> None:
        """Log in, sync ``/mentor``, and serve events until ``stop``."""
        self._sink = sink
        self._ready.clear()
        self._load_courses()
        self._point_at_endpoints()
        # mentorbot never joins voice: skip discord.py's warnings about voice libraries.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        client = _MentorClient(
            self,
            intents=gateway_intents(self.settings),
            # Even with the Server Members intent the member list is never needed: the
            # join event carries the member, and interactions carry roles and
            # permissions. Fetching and caching every member of large servers would
            # only delay start-up and hold memory.
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            guild_ready_timeout=self.guild_ready_timeout,
            max_ratelimit_timeout=self.max_ratelimit_timeout,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self._tree = _MentorTree(client)
        self._tree.add_command(MentorGroup(self))
        client.add_dynamic_items(ActionButton)
        client.event(self.on_ready)
        client.event(self.on_message)
        client.event(self.on_raw_message_edit)
        client.event(self.on_interaction)
        client.event(self.on_guild_join)
        client.event(self.on_guild_remove)
        client.event(self.on_member_join)
        self._client = client
        try:
            await client.start(self.settings.discord_token or "")
        except discord.PrivilegedIntentsRequired:
            # discord.py's message does not say which setting asked for the intent.
            log.error(PRIVILEGED_INTENTS_HINT)
            raise
        finally:
            if not client.is_closed():
                await client.close()
            self._restore_endpoints()

    async def stop(self) -> None:
        """Let events in progress finish (their answers must not be lost), then close."""
        await self.drain(DRAIN_TIMEOUT)
        client = self._client
        if client is not None and not client.is_closed():
            await client.close()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the client is connected, has its guilds and ``/mentor`` is synced."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Until no platform event is being handled (bounded by ``timeout``)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self._inflight == 0)

    async def wait_handled(self, count: int, timeout: float = 10.0) -> None:
        """Until ``handled`` reaches ``count``."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.handled >= count)

    def _load_courses(self) -> None:
        if self._courses_provider is not None:
            self._courses = list(self._courses_provider())
            return
        from bot.course import load_catalog

        catalog, _problems = load_catalog(self.settings.content_dir)
        if catalog is not None:
            self._courses = [(c.id, c.title) for c in catalog.courses.values()]

    def _point_at_endpoints(self) -> None:
        """DISCORD_API_URL / DISCORD_GATEWAY_URL: a Discord-compatible server for this
        process (discord.py reads them from class attributes)."""
        api, gateway = self.settings.discord_api_url, self.settings.discord_gateway_url
        if not (api or gateway):
            return
        import yarl

        socket = discord.gateway.DiscordWebSocket
        if self._saved_urls is None:
            self._saved_urls = (discord.http.Route.BASE, socket.DEFAULT_GATEWAY)
        if api:
            discord.http.Route.BASE = _api_base(api)
        if gateway:
            socket.DEFAULT_GATEWAY = yarl.URL(gateway)

    def _restore_endpoints(self) -> None:
        if self._saved_urls is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = (
                self._saved_urls
            )
            self._saved_urls = None

    async def _setup(self, client: _MentorClient) -> None:
        """After login, before the gateway: register ``/mentor`` with Discord.

        With DISCORD_GUILD_ID the commands go to that guild only (they appear at
        once, for development); otherwise globally.
        """
        tree = self._tree
        if tree is None:
            return
        try:
            if self.settings.discord_guild_id:
                guild = discord.Object(int(self.settings.discord_guild_id))
                tree.copy_global_to(guild=guild)
                synced = await tree.sync(guild=guild)
                log.info("synced %d command(s) to guild %s", len(synced), guild.id)
            else:
                synced = await tree.sync()
                log.info("synced %d global command(s)", len(synced))
        except (discord.HTTPException, ValueError):
            # DMs and buttons still work without it; say so loudly rather than stop.
            log.exception("could not sync /mentor commands with Discord")

    async def on_ready(self) -> None:
        client = self._client
        if client is not None and client.user is not None:
            log.info("connected to Discord as %s in %d guild(s)", client.user, len(client.guilds))
        self._ready.set()

    async def on_guild_join(self, guild: discord.Guild) -> None:
        # Nothing to store: the core creates the workspace on its first event.
        async with self._tracking():
            log.info("joined guild %s (%s)", guild.name, guild.id)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        # The workspace and its learners stay: the guild may add the bot back.
        async with self._tracking():
            log.info("left guild %s (%s)", guild.name, guild.id)

    async def on_member_join(self, member: discord.Member) -> None:
        """Someone joined a guild (Discord reports this only with the Server Members
        intent, DISCORD_MEMBERS_INTENT=on). The core decides: with the guild's
        ``auto-enrol`` on it enrols them and queues their welcome DM. Bots are never
        learners, so they are not reported at all."""
        async with self._tracking():
            if member.bot:
                return
            guild = member.guild
            event = IncomingEvent(
                platform=PLATFORM,
                workspace=str(guild.id),
                user=str(member.id),
                kind=EventKind.JOINED,
                workspace_name=guild.name,
                user_name=member.display_name,
            )
            try:
                await self._deliver(event, self._unanswerable(event))
            except Exception:
                # There is no one to tell: a join has no interaction or DM to answer.
                log.exception("could not handle %s joining guild %s", member.id, guild.id)

    @staticmethod
    def _unanswerable(event: IncomingEvent) -> Callable[..., Awaitable[None]]:
        """``respond`` for an event nobody is waiting on (a member joining): what the
        core says is only logged, so an apology for a failure still leaves a trace."""

        async def respond(messages: list[OutgoingMessage]) -> None:
            for message in messages:
                log.warning(
                    "no one to show this to (%s event, user %s, guild %s): %s",
                    event.kind,
                    event.user,
                    event.workspace,
                    strip_learner_marks(message.plain_text())[:200],
                )

        return respond

    # ------------------------------------------------------------------ events in

    async def _deliver(self, event: IncomingEvent, respond: Callable[..., Awaitable[None]]) -> None:
        sink = self._sink
        if sink is None:
            return
        await sink.handle(event, respond)

    @contextlib.asynccontextmanager
    async def _tracking(self) -> Any:
        """Count an event in flight and, once done, as handled."""
        async with self._changed:
            self._inflight += 1
        try:
            yield
        finally:
            async with self._changed:
                self._inflight -= 1
                self.handled += 1
                self._changed.notify_all()

    def _interaction_event(
        self,
        interaction: discord.Interaction,
        kind: EventKind,
        text: str,
        *,
        delivery_id: int | None = None,
        workspace: str | None = None,
    ) -> IncomingEvent:
        user = interaction.user
        guild = interaction.guild
        in_guild = interaction.guild_id is not None
        return IncomingEvent(
            platform=PLATFORM,
            workspace=str(interaction.guild_id) if in_guild else (workspace or ""),
            user=str(user.id),
            kind=kind,
            text=text,
            workspace_name=getattr(guild, "name", None) if in_guild else None,
            user_name=_user_name(user),
            delivery_id=delivery_id,
            platform_is_lead=in_guild and self._is_lead(interaction),
            mentioned=_mentioned(interaction),
        )

    def _is_lead(self, interaction: discord.Interaction) -> bool:
        """Manage Server (or Administrator), or the DISCORD_LEAD_ROLE role by name or id."""
        perms = interaction.permissions
        if perms.administrator or perms.manage_guild:
            return True
        wanted = (self.settings.discord_lead_role or "").strip()
        if not wanted:
            return False
        roles = getattr(interaction.user, "roles", ()) or ()
        return any(str(role.id) == wanted or role.name == wanted for role in roles)

    async def _handle_interaction(
        self, interaction: discord.Interaction, event: IncomingEvent
    ) -> None:
        replier = _InteractionReplier(self, interaction, self.ack_after)
        loop = asyncio.get_running_loop()
        began = loop.time()
        busy = self._waiting_interactions >= self.defer_when_busy and self._core_is_slow(began)
        self._waiting_interactions += 1
        self._waiting_since[replier] = began
        try:
            if busy:
                # Others are already waiting for a slow core, so this one will wait too:
                # acknowledge before queueing behind them.
                await replier.defer()
            else:
                replier.start_timer()
            if event.kind is EventKind.COMMAND:
                # After the timer starts: a lookup must not hold up the acknowledgement.
                event = await self._with_mentions(event)
            await self._deliver(event, replier.respond)
        except TooManyMentions as refusal:
            await replier.respond([self._answer(event, str(refusal))])
        except Exception:
            log.exception("could not answer a Discord interaction")
            with contextlib.suppress(Exception):
                await replier.respond([self._apology(event)])
        finally:
            self._waiting_interactions -= 1
            self._waiting_since.pop(replier, None)  # the core had nothing to say
            with contextlib.suppress(discord.HTTPException):
                await replier.finish()

    def _core_is_slow(self, now: float) -> bool:
        """Whether a new interaction should expect to wait: the core answered slowly
        lately (or has not answered yet), or one now waiting has waited too long."""
        if self._answer_seconds is None or self._answer_seconds > SLOW_ANSWER:
            return True
        oldest = next(iter(self._waiting_since.values()), now)
        return now - oldest > SLOW_ANSWER

    def _answered(self, replier: _InteractionReplier) -> None:
        """The core's first answer to an interaction: remember how long it took to come,
        weighing the latest answers most. What the core does after answering (sending
        a lesson at the platform's pace) is not waiting for it."""
        began = self._waiting_since.pop(replier, None)
        if began is None:
            return
        seconds = asyncio.get_running_loop().time() - began
        known = self._answer_seconds
        self._answer_seconds = seconds if known is None else 0.7 * known + 0.3 * seconds

    async def _with_mentions(self, event: IncomingEvent) -> IncomingEvent:
        """``event`` with a ``UserRef`` for every user its command text mentions.

        The core refuses bots only if it is told which mentioned users are bots.
        Discord resolves users picked in an option, but not an id typed or pasted as
        ``<@id>``, nor a typed command in a DM beyond its message's mentions; those are
        looked up (the client's cache, then ours, then Discord). A user Discord does not
        know is left without details: the core then treats the id as a person.

        Lookups cost API calls, so they are made only for a command that takes people,
        from someone the core will let run it; a command naming more than MAX_MENTIONS
        people raises ``TooManyMentions`` instead.
        """
        ids = _mention_ids(event.text)
        if not ids or not takes_people(event.text):
            return event
        if not event.platform_is_lead and not await self._has_lead_role(event):
            return event
        if len(ids) > MAX_MENTIONS:
            raise TooManyMentions(len(ids))
        known = {ref.id: ref for ref in event.mentioned}
        missing = [i for i in ids if i not in known]
        if not missing:
            return event
        found = await self._look_up_users(missing)
        refs = [*event.mentioned, *(found[i] for i in missing if i in found)]
        return replace(event, mentioned=tuple(refs))

    async def _has_lead_role(self, event: IncomingEvent) -> bool:
        """Did a lead make the sender a lead? In a DM (no guild) any guild counts."""
        store = self.store
        if store is None:
            return True  # cannot tell: look up, as the core may well accept the command
        return await asyncio.to_thread(
            store.run,
            lambda session: has_lead_role(session, PLATFORM, event.workspace, event.user),
        )

    async def _look_up_users(self, ids: Sequence[str]) -> dict[str, UserRef]:
        client = self._client
        if client is None:
            return {}
        found: dict[str, UserRef] = {}
        to_fetch: list[int] = []
        for user_id in ids:
            cached = client.get_user(int(user_id))
            if cached is not None:
                found[user_id] = _user_ref(cached)
            elif user_id in self._users:
                ref = self._users.get(user_id)
                if ref is not None:
                    found[user_id] = ref
            else:
                to_fetch.append(int(user_id))
        if not to_fetch:
            return found
        tasks = [asyncio.create_task(client.fetch_user(i)) for i in to_fetch]
        done, pending = await asyncio.wait(tasks, timeout=MENTION_LOOKUP_TIMEOUT)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("gave up looking up %d mentioned user(s)", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)
        for user_id, task in zip(to_fetch, tasks, strict=True):
            if task not in done:
                continue
            error = task.exception()
            if error is None:
                ref = _user_ref(task.result())
                found[ref.id] = ref
                self._users.put(ref.id, ref)
            elif isinstance(error, discord.NotFound):
                self._users.put(str(user_id), None)  # a stranger's id costs one call
            else:
                log.warning("could not look up a mentioned user: %r", error)
        return found

    @staticmethod
    def _answer(event: IncomingEvent, text: str) -> OutgoingMessage:
        """A one-line answer of the adapter's own, seen only by the sender."""
        return OutgoingMessage(
            platform=PLATFORM, workspace=event.workspace, user=event.user, text=text, ephemeral=True
        )

    @classmethod
    def _apology(cls, event: IncomingEvent) -> OutgoingMessage:
        return cls._answer(event, ERROR_TEXT)

    async def run_command(self, interaction: discord.Interaction, words: Sequence[str]) -> None:
        """A ``/mentor`` subcommand: the core gets the same text a typed command has."""
        async with self._tracking():
            event = self._interaction_event(interaction, EventKind.COMMAND, command_text(words))
            await self._handle_interaction(interaction, event)

    def course_choices(self) -> Sequence[tuple[str, str]]:
        return self._courses

    async def _on_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """A ``/mentor`` interaction discord.py could not match to our group (Discord
        still shows a subcommand or option from an older sync): hand its words to the
        core, which answers unknown commands like everywhere else."""
        data: Any = interaction.data or {}
        unmatched = isinstance(
            error,
            app_commands.CommandNotFound
            | app_commands.CommandSignatureMismatch
            | app_commands.TransformerError,
        )
        if (
            interaction.type is not discord.InteractionType.application_command
            or data.get("name") != "mentor"
            or not unmatched
        ):
            log.error("error in a Discord command", exc_info=error)
            return
        async with self._tracking():
            text = command_text(raw_command_words(data))
            event = self._interaction_event(interaction, EventKind.COMMAND, text)
            await self._handle_interaction(interaction, event)

    async def on_button(
        self,
        interaction: discord.Interaction,
        action: str,
        delivery_id: int | None,
        workspace: str,
        command: str | None,
    ) -> None:
        """A pressed button: the reply button opens the form, the rest run their command."""
        async with self._tracking():
            if command is None:
                await interaction.response.send_modal(reply_modal(delivery_id, workspace))
                return
            event = self._interaction_event(
                interaction, EventKind.ACTION, command, delivery_id=delivery_id, workspace=workspace
            )
            await self._handle_interaction(interaction, event)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Reply forms are read here, from the raw submission (see components.py)."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: Any = interaction.data or {}
        target = parse_modal_custom_id(str(data.get("custom_id", "")))
        if target is None:
            return
        delivery_id, workspace = target
        async with self._tracking():
            text = submitted_text(data) or ""
            event = self._interaction_event(
                interaction, EventKind.MESSAGE, text, delivery_id=delivery_id, workspace=workspace
            )
            await self._handle_interaction(interaction, event)

    def _from_person(self, message: discord.Message) -> bool:
        """A DM written by a person: not the bot, not another bot, not a system message."""
        client = self._client
        me = client.user if client is not None else None
        return (
            message.guild is None
            and not message.author.bot
            and message.webhook_id is None
            and (me is None or message.author.id != me.id)
            and message.type in (discord.MessageType.default, discord.MessageType.reply)
        )

    async def _message_text(self, message: discord.Message) -> str:
        """The message's text plus any text file attached to it (Discord turns a long
        paste into a ``message.txt`` attachment)."""
        pieces = [message.content] if message.content else []
        for attachment in message.attachments:
            kind = (attachment.content_type or "").split(";")[0].strip()
            textual = kind.startswith("text/") or attachment.filename.endswith((".txt", ".md"))
            if not textual or attachment.size > TEXT_ATTACHMENT_LIMIT:
                continue
            try:
                raw = await attachment.read()
            except (discord.HTTPException, OSError):
                log.warning("could not read attachment %s of a DM", attachment.id)
                continue
            pieces.append(raw.decode("utf-8", errors="replace"))
        return "\n\n".join(pieces)

    def _dm_event(self, message: discord.Message, kind: EventKind, text: str) -> IncomingEvent:
        reference_id = message.reference.message_id if message.reference else None
        return IncomingEvent(
            platform=PLATFORM,
            workspace="",  # a DM names no guild: the core finds the learner's workspace
            user=str(message.author.id),
            kind=kind,
            text=text,
            user_name=_user_name(message.author),
            message_id=str(message.id),
            answers_message=str(reference_id) if reference_id else None,
            mentioned=tuple(_user_ref(user) for user in message.mentions),
        )

    def _dm_responder(self, message: discord.Message) -> Callable[..., Awaitable[None]]:
        async def respond(messages: list[OutgoingMessage]) -> None:
            first = True
            for outgoing in messages:
                for part in render(outgoing):
                    options = _message_options(part, outgoing.delivery_id, outgoing.workspace)
                    if first:
                        options["reference"] = message.to_reference(fail_if_not_exists=False)
                        options["mention_author"] = False
                        first = False
                    await message.channel.send(**options)

        return respond

    async def on_message(self, message: discord.Message) -> None:
        """A DM: a typed ``/mentor`` command, or an answer."""
        async with self._tracking():
            if not self._from_person(message):
                return
            self._dm_channels[str(message.author.id)] = message.channel.id
            text = await self._message_text(message)
            kind = EventKind.COMMAND if is_command(text) else EventKind.MESSAGE
            event = self._dm_event(message, kind, text)
            respond = self._dm_responder(message)
            try:
                try:
                    if kind is EventKind.COMMAND:
                        event = await self._with_mentions(event)
                except TooManyMentions as refusal:
                    await respond([self._answer(event, str(refusal))])
                    return
                await self._deliver(event, respond)
            except discord.HTTPException:
                log.exception("could not answer a DM from %s", message.author.id)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edited DM updates the stored answer it was (edits with unchanged text,
        e.g. link previews being added, are ignored)."""
        async with self._tracking():
            message = payload.message
            if payload.guild_id is not None or not self._from_person(message):
                return
            before = payload.cached_message
            if before is not None and before.content == message.content:
                return
            text = await self._message_text(message)
            try:
                await self._deliver(
                    self._dm_event(message, EventKind.EDIT, text), self._dm_responder(message)
                )
            except discord.HTTPException:
                log.exception("could not answer an edit from %s", message.author.id)

    # ------------------------------------------------------------------ messages out

    def rate_limits(self, message: OutgoingMessage) -> list[Limit]:
        """Discord's per-bot global budget (50 requests/s by default), counted in
        requests: a first DM to someone also opens the DM channel, so it draws twice.
        A burst of a tenth of a second's budget absorbs wake-up jitter without
        front-loading a whole second, which Discord's window answers with 429s.
        Discord publishes this limit and discord.py waits out most 429s itself, so
        the configured rate is also the ceiling: the pace never probes above it, and
        only comes down for the 429s that reach the core."""
        rate = self.settings.discord_rate
        limit = Limit("discord:global", rate, burst=max(1, int(rate / 10)), ceiling=rate)
        known = message.channel or self._dm_channels.get(message.user)
        return [limit] if known else [limit, limit]

    def _require_client(self) -> _MentorClient:
        client = self._client
        if client is None or client.is_closed() or client.user is None:
            raise TemporarySendError("the Discord client is not connected")
        return client

    def _is_guild_channel(self, channel: str | None) -> bool:
        """Whether ``channel`` is a server channel (a digest's), not a DM; server
        channels are all cached thanks to the GUILDS intent."""
        client = self._client
        if client is None or not channel or not channel.isdigit():
            return False
        return isinstance(client.get_channel(int(channel)), discord.abc.GuildChannel)

    async def _dm_channel(self, message: OutgoingMessage, *, fresh: bool = False) -> Any:
        """Where a delivery goes: ``message.channel`` when the core names one (the DM it
        remembers, or a server channel for a digest), else the learner's DM, opened now."""
        client = self._require_client()
        known = None if fresh else (message.channel or self._dm_channels.get(message.user))
        if known and str(known).isdigit():
            # Server channels are cached (GUILDS intent); a DM needs no lookup to post in.
            cached = client.get_channel(int(known))
            if isinstance(cached, discord.abc.Messageable):
                return cached
            return client.get_partial_messageable(int(known), type=discord.ChannelType.private)
        channel = await client.create_dm(discord.Object(int(message.user)))
        self._dm_channels[message.user] = channel.id
        return channel

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Post a delivery to the learner's DM; one Discord message per ``Part``.

        Each part carries a nonce derived from the delivery, with ``enforce_nonce``, so
        a retry after a timeout does not post it twice.
        """
        try:
            return await self._send(message)
        except SendError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    async def _send(self, message: OutgoingMessage) -> SendResult:
        if not message.user.isdigit():
            raise PermanentSendError("not a Discord user id", code="unknown_user")
        parts = render(message, mark=True)
        channel = await self._dm_channel(message)
        try:
            ids = await self._post_parts(channel, parts, message)
        except discord.NotFound as exc:
            if exc.code != UNKNOWN_CHANNEL or self._is_guild_channel(message.channel):
                raise
            # A remembered DM channel that Discord no longer knows: open it again.
            self._dm_channels.pop(message.user, None)
            channel = await self._dm_channel(message, fresh=True)
            ids = await self._post_parts(channel, parts, message)
        return SendResult(channel=str(channel.id), message_ids=tuple(ids))

    async def _post_parts(
        self, channel: Any, parts: list[Part], message: OutgoingMessage
    ) -> list[str]:
        ids: list[str] = []
        for number, part in enumerate(parts, start=1):
            options = _message_options(part, message.delivery_id, message.workspace)
            sent = await channel.send(**options, nonce=nonce(message, number))
            ids.append(str(sent.id))
        return ids

    async def _post_dm(self, message: OutgoingMessage) -> str:
        """An answer the core did not mark ephemeral, given in a guild: to the DM.
        Returns the link to the first message posted."""
        channel = await self._dm_channel(message)
        links: list[str] = []
        for part in render(message):
            options = _message_options(part, message.delivery_id, message.workspace)
            links.append((await channel.send(**options)).jump_url)
        return links[0] if links else ""

    async def find_delivered(self, message: OutgoingMessage) -> SendResult | None:
        """After a crash: did this delivery reach the DM? Looks for every part's footer
        among the bot's recent DM messages; anything less is "cannot tell" (None), and
        the resend's nonces keep already-posted parts from doubling."""
        client = self._require_client()
        me = client.user
        ref = reference(message)
        channel = await self._dm_channel(message)
        found: dict[int, str] = {}
        total = 0
        async for posted in channel.history(limit=HISTORY_SCAN):
            if me is None or posted.author.id != me.id:
                continue
            for embed in posted.embeds:
                marker = parse_footer(embed.footer.text if embed.footer else None)
                if marker is not None and marker[0] == ref:
                    found[marker[1]] = str(posted.id)
                    total = marker[2]
        if not found or len(found) != total:
            return None
        return SendResult(
            channel=str(channel.id), message_ids=tuple(found[i] for i in sorted(found))
        )

    async def notify_dm_blocked(self, message: OutgoingMessage) -> None:
        """Tell the learner, in their guild, that their DMs are closed (the core calls
        this once per learner). Best effort: never raises."""
        try:
            await self._notify_dm_blocked(message)
        except Exception:
            log.warning("could not post the DMs-closed note for %s", message.user, exc_info=True)

    async def _notify_dm_blocked(self, message: OutgoingMessage) -> None:
        client = self._client
        if client is None or not message.workspace.isdigit() or not message.user.isdigit():
            return
        guild = client.get_guild(int(message.workspace))
        if guild is None:
            log.info("DMs-closed note skipped: not in guild %s", message.workspace)
            return
        text = DM_BLOCKED_NOTE.format(mention=f"<@{message.user}>")
        mentions = discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(int(message.user))]
        )
        for channel in self._note_channels(guild):
            try:
                await channel.send(text, allowed_mentions=mentions)
                return
            except discord.Forbidden:
                continue
        log.info("DMs-closed note skipped: no channel in guild %s accepts it", guild.id)

    @staticmethod
    def _note_channels(guild: discord.Guild) -> list[discord.TextChannel]:
        """The system channel first, then text channels in sidebar order, keeping only
        those the bot may post in (when its permissions are known)."""
        me = guild.me
        ordered = sorted(guild.text_channels, key=lambda c: (c.position, c.id))
        if guild.system_channel is not None:
            ordered = [guild.system_channel, *[c for c in ordered if c != guild.system_channel]]

        def allowed(channel: discord.TextChannel) -> bool:
            if me is None:
                return True
            perms = channel.permissions_for(me)
            return perms.view_channel and perms.send_messages

        return [c for c in ordered if allowed(c)][:5]
