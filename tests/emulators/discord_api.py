"""Loopback emulator of the Discord REST API and gateway.

The emulator is a small aiohttp server bound to ``127.0.0.1`` on an ephemeral port. It
speaks enough of Discord's HTTP API (v9/v10) and gateway protocol that the *real*
discord.py client can log in, receive events over a real websocket and answer
interactions, so tests exercise the same code paths production does, without network
access and without mocking discord.py internals.

Typical use from an async test (``asyncio.run`` inside a sync pytest function)::

    async with DiscordEmulator(guilds=[guild], users=[alice]) as dc:
        with point_discord_py_at(dc):
            client = discord.Client(intents=..., guild_ready_timeout=0.05)
            await client.login("token")
            task = asyncio.create_task(client.connect())
            await client.wait_until_ready()
            await dc.dispatch("MESSAGE_CREATE", dc.make_message(alice.id, "hi"))
            ...
            await client.close()

Or from purely synchronous code, with the server running on a background thread::

    dc = DiscordEmulator().start_in_thread()
    try:
        ...  # talk to dc.api_base; dc.run_sync(dc.dispatch(...)); dc.wait_for_sync(...)
    finally:
        dc.stop()

Everything the client sends is recorded (``dc.requests``, ``dc.gateway_received``) and
can be awaited without sleep-polling (``dc.wait_for``, ``dc.wait_for_gateway``,
``dc.wait_ready``). Faults (429s, 5xx, arbitrary error bodies) and a global rate limit
can be injected to test resilience.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import re
import secrets
import threading
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import BodyPartReader, WSMsgType, web

__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_APPLICATION_ID",
    "DEFAULT_BOT_USER_ID",
    "ApiError",
    "ChannelType",
    "DiscordEmulator",
    "FakeChannel",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "FaultRule",
    "GatewayConnectionInfo",
    "GatewayFrame",
    "Intents",
    "InteractionCallback",
    "InteractionCallbackType",
    "InteractionType",
    "MessageFlags",
    "Op",
    "RecordedFile",
    "RecordedRequest",
    "channel_payload",
    "command_data",
    "component_data",
    "dm_channel_payload",
    "guild_payload",
    "interaction_payload",
    "iso_timestamp",
    "member_payload",
    "message_payload",
    "modal_data",
    "point_discord_py_at",
    "role_payload",
    "snowflake",
    "user_payload",
]

T = TypeVar("T")

DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_APPLICATION_ID = 1_200_000_000_000_000_001
DEFAULT_BOT_USER_ID = DEFAULT_APPLICATION_ID
DEFAULT_OWNER_ID = 1_200_000_000_000_000_009
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
MAX_CONTENT_LENGTH = 2000

# Permission bits used when computing member permissions; ADMINISTRATOR implies everything.
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 51) - 1
DEFAULT_EVERYONE_PERMISSIONS = (
    (1 << 6)  # ADD_REACTIONS
    | (1 << 10)  # VIEW_CHANNEL
    | (1 << 11)  # SEND_MESSAGES
    | (1 << 14)  # EMBED_LINKS
    | (1 << 15)  # ATTACH_FILES
    | (1 << 16)  # READ_MESSAGE_HISTORY
    | (1 << 31)  # USE_APPLICATION_COMMANDS
)


class Op:
    """Gateway opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes)."""

    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


class Intents:
    """Gateway intent bits the emulator understands when filtering dispatches."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class InteractionType:
    """Values of ``interaction.type``."""

    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    APPLICATION_COMMAND_AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class InteractionCallbackType:
    """Values of the ``type`` field POSTed to ``/interactions/{id}/{token}/callback``."""

    PONG = 1
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    APPLICATION_COMMAND_AUTOCOMPLETE_RESULT = 8
    MODAL = 9
    PREMIUM_REQUIRED = 10
    LAUNCH_ACTIVITY = 12


class MessageFlags:
    """Message flag bits the emulator interprets."""

    EPHEMERAL = 1 << 6
    LOADING = 1 << 7


class ChannelType:
    """Channel type numbers used by the builders."""

    GUILD_TEXT = 0
    DM = 1
    GUILD_VOICE = 2
    GUILD_CATEGORY = 4


_VALID_CALLBACK_TYPES = frozenset({1, 4, 5, 6, 7, 8, 9, 10, 12})
_COMMAND_NAME_RE = re.compile(r"^[-_\w]{1,32}$")
_MENTION_RE = re.compile(r"<@!?(\d+)>")
_API_PREFIX_RE = re.compile(r"^/api(?:/v(?P<version>\d+))?(?P<rest>/.*)?$")

# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------

_snowflake_lock = threading.Lock()
_snowflake_counter = itertools.count()


def snowflake(at: float | None = None) -> int:
    """Return a unique, time-ordered Discord snowflake.

    Real snowflakes matter because discord.py derives ``created_at`` from ids and uses
    the age of a message id to pick rate-limit buckets for deletes.
    """
    ms = int((time.time() if at is None else at) * 1000)
    with _snowflake_lock:
        increment = next(_snowflake_counter) & 0xFFF
    return ((ms - DISCORD_EPOCH_MS) << 22) | (1 << 17) | increment


def iso_timestamp(at: float | None = None) -> str:
    """Format a unix time the way Discord does (ISO 8601 with microseconds and offset)."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return moment.isoformat()


def _jsonable_id(value: int | str | None) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------------------------------
# Configurable state
# ---------------------------------------------------------------------------------------


@dataclass
class FakeUser:
    """A Discord user known to the emulator.

    ``blocks_dms`` makes messages to the user's DM channel fail with 403/50007, the error
    Discord returns when a user closed DMs or shares no server with the bot.
    """

    id: int
    username: str
    bot: bool = False
    global_name: str | None = None
    blocks_dms: bool = False
    avatar: str | None = None


@dataclass
class FakeRole:
    """A guild role; ``permissions`` is the raw permission bit set."""

    id: int
    name: str
    permissions: int = 0
    position: int = 1
    managed: bool = False


@dataclass
class FakeChannel:
    """A guild channel (text by default)."""

    id: int
    name: str
    type: int = ChannelType.GUILD_TEXT
    position: int = 0
    parent_id: int | None = None
    topic: str | None = None


@dataclass
class FakeMember:
    """Guild membership of a user; ``roles`` holds role ids (``@everyone`` is implicit)."""

    user: FakeUser
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: float | None = None


@dataclass
class FakeGuild:
    """A guild with channels, roles and members.

    The ``@everyone`` role always exists with the guild's id, as on Discord; its
    permissions come from ``everyone_permissions``.
    """

    id: int
    name: str
    owner_id: int = DEFAULT_OWNER_ID
    channels: list[FakeChannel] = field(default_factory=list)
    members: list[FakeMember] = field(default_factory=list)
    roles: list[FakeRole] = field(default_factory=list)
    everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS

    @property
    def everyone_role(self) -> FakeRole:
        return FakeRole(
            id=self.id, name="@everyone", permissions=self.everyone_permissions, position=0
        )

    def all_roles(self) -> list[FakeRole]:
        return [self.everyone_role, *self.roles]

    def member(self, user_id: int) -> FakeMember | None:
        return next((m for m in self.members if m.user.id == user_id), None)

    def channel(self, channel_id: int) -> FakeChannel | None:
        return next((c for c in self.channels if c.id == channel_id), None)

    def permissions_for(self, user_id: int, role_ids: Iterable[int] | None = None) -> int:
        """Compute base guild permissions like Discord: owner/admin get everything."""
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        if role_ids is None:
            member = self.member(user_id)
            role_ids = member.roles if member else []
        wanted = set(role_ids)
        value = self.everyone_permissions
        for role in self.roles:
            if role.id in wanted:
                value |= role.permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value


# ---------------------------------------------------------------------------------------
# Payload builders
# ---------------------------------------------------------------------------------------


def user_payload(user: FakeUser | Mapping[str, Any]) -> dict[str, Any]:
    """Serialise a user with every key discord.py's ``BaseUser._update`` indexes."""
    if isinstance(user, Mapping):
        return dict(user)
    return {
        "id": str(user.id),
        "username": user.username,
        "discriminator": "0",
        "global_name": user.global_name,
        "avatar": user.avatar,
        "bot": user.bot,
        "system": False,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
    }


def role_payload(role: FakeRole) -> dict[str, Any]:
    return {
        "id": str(role.id),
        "name": role.name,
        "permissions": str(role.permissions),
        "position": role.position,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "managed": role.managed,
        "mentionable": False,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }


def channel_payload(channel: FakeChannel, guild_id: int | None = None) -> dict[str, Any]:
    """Serialise a guild channel (keys required by discord.py's TextChannel parser)."""
    payload: dict[str, Any] = {
        "id": str(channel.id),
        "type": channel.type,
        "name": channel.name,
        "position": channel.position,
        "permission_overwrites": [],
        "parent_id": _jsonable_id(channel.parent_id),
        "nsfw": False,
        "flags": 0,
    }
    if channel.type == ChannelType.GUILD_TEXT:
        payload.update(topic=channel.topic, last_message_id=None, rate_limit_per_user=0)
    if guild_id is not None:
        payload["guild_id"] = str(guild_id)
    return payload


def dm_channel_payload(channel_id: int, recipient: FakeUser | Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "type": ChannelType.DM,
        "last_message_id": None,
        "flags": 0,
        "recipients": [user_payload(recipient)],
    }


def member_payload(
    member: FakeMember,
    guild: FakeGuild | None = None,
    *,
    with_user: bool = True,
    with_permissions: bool = False,
) -> dict[str, Any]:
    """Serialise a guild member.

    ``with_permissions`` adds the ``permissions`` string that Discord only includes on
    interaction payloads (discord.py reads it into ``Member._permissions``).
    """
    payload: dict[str, Any] = {
        "roles": [str(r) for r in member.roles],
        "nick": member.nick,
        "avatar": None,
        "banner": None,
        "joined_at": iso_timestamp(member.joined_at or 1_600_000_000.0),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None,
    }
    if with_user:
        payload["user"] = user_payload(member.user)
    if with_permissions:
        perms = guild.permissions_for(member.user.id, member.roles) if guild else 0
        payload["permissions"] = str(perms)
    return payload


def guild_payload(
    guild: FakeGuild,
    *,
    for_gateway: bool = True,
    extra_members: Iterable[FakeMember] = (),
) -> dict[str, Any]:
    """Serialise a guild.

    ``for_gateway`` produces a GUILD_CREATE body (channels, members, ``member_count``);
    ``member_count`` equal to the member list keeps discord.py from requesting chunks.
    """
    payload: dict[str, Any] = {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_progress_bar_enabled": False,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "preferred_locale": "en-US",
        "features": [],
        "roles": [role_payload(r) for r in guild.all_roles()],
        "emojis": [],
        "stickers": [],
        "application_id": None,
        "vanity_url_code": None,
    }
    if for_gateway:
        members = [*guild.members, *extra_members]
        payload.update(
            unavailable=False,
            large=False,
            joined_at=iso_timestamp(1_600_000_000.0),
            member_count=len(members),
            members=[member_payload(m, guild) for m in members],
            channels=[channel_payload(c) for c in guild.channels],
            threads=[],
            voice_states=[],
            presences=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
    return payload


def message_payload(
    *,
    channel_id: int,
    author: FakeUser | Mapping[str, Any],
    content: str,
    guild_id: int | None = None,
    message_id: int | None = None,
    reply_to: Mapping[str, Any] | None = None,
    member: Mapping[str, Any] | None = None,
    mentions: Sequence[FakeUser | Mapping[str, Any]] = (),
    attachments: Sequence[Mapping[str, Any]] = (),
    embeds: Sequence[Mapping[str, Any]] = (),
    components: Sequence[Mapping[str, Any]] = (),
    flags: int = 0,
    webhook_id: int | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """Build a MESSAGE_CREATE body (a DM when ``guild_id`` is None).

    ``reply_to`` is the referenced message payload; it produces a reply (type 19) with
    ``message_reference`` and ``referenced_message`` as Discord sends them. Whether the
    author is a bot comes from ``author.bot``.
    """
    payload: dict[str, Any] = {
        "id": str(message_id if message_id is not None else snowflake(timestamp)),
        "channel_id": str(channel_id),
        "author": user_payload(author),
        "content": content,
        "timestamp": iso_timestamp(timestamp),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [user_payload(u) for u in mentions],
        "mention_roles": [],
        "attachments": [dict(a) for a in attachments],
        "embeds": [dict(e) for e in embeds],
        "components": [dict(c) for c in components],
        "pinned": False,
        "type": 0,
        "flags": flags,
    }
    if guild_id is not None:
        payload["guild_id"] = str(guild_id)
        if member is not None:
            payload["member"] = {k: v for k, v in member.items() if k != "user"}
    if webhook_id is not None:
        payload["webhook_id"] = str(webhook_id)
    if reply_to is not None:
        payload["type"] = 19
        reference: dict[str, Any] = {
            "type": 0,
            "message_id": str(reply_to["id"]),
            "channel_id": str(reply_to["channel_id"]),
        }
        if reply_to.get("guild_id") is not None:
            reference["guild_id"] = str(reply_to["guild_id"])
        payload["message_reference"] = reference
        payload["referenced_message"] = {
            k: v for k, v in reply_to.items() if k != "referenced_message"
        }
    return payload


def _option_type(value: Any) -> int:
    """Infer an application-command option type from a Python value."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    return 3


def command_data(
    command: str,
    options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    *,
    command_id: int | None = None,
    command_guild_id: int | None = None,
    focused: str | None = None,
    command_type: int = 1,
    resolved: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build ``interaction.data`` for a (sub)command.

    ``command`` is the full path as typed, e.g. ``"mentor schedule"``; words after the
    first become subcommand-group / subcommand options, which is how Discord nests them.
    ``options`` maps option names to values (types inferred: str 3, int 4, bool 5,
    float 10; pass ``(type, value)`` to force one) or is a raw option list. ``focused``
    marks the option being autocompleted. ``command_guild_id`` must be set for guild
    commands, otherwise discord.py's CommandTree only searches global commands.
    """
    root, *path = command.split()
    if options is None:
        leaf: list[dict[str, Any]] = []
    elif isinstance(options, Mapping):
        leaf = []
        for name, raw in options.items():
            if isinstance(raw, tuple):
                kind, value = raw
            else:
                kind, value = _option_type(raw), raw
            option: dict[str, Any] = {"name": name, "type": kind, "value": value}
            if name == focused:
                option["focused"] = True
            leaf.append(option)
    else:
        leaf = [dict(o) for o in options]

    nested = leaf
    for depth, name in reversed(list(enumerate(path))):
        is_group = depth < len(path) - 1
        nested = [{"name": name, "type": 2 if is_group else 1, "options": nested}]

    data: dict[str, Any] = {
        "id": str(command_id if command_id is not None else snowflake()),
        "name": root,
        "type": command_type,
        "options": nested,
    }
    if command_guild_id is not None:
        data["guild_id"] = str(command_guild_id)
    if resolved is not None:
        data["resolved"] = dict(resolved)
    return data


def component_data(
    custom_id: str, *, component_type: int = 2, values: Sequence[str] | None = None
) -> dict[str, Any]:
    """Build ``interaction.data`` for a button (type 2) or select menu click."""
    data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
    if values is not None or component_type != 2:
        data["values"] = list(values or [])
    return data


def modal_data(custom_id: str, text_values: Mapping[str, str]) -> dict[str, Any]:
    """Build ``interaction.data`` for a modal submit: one action row per text input."""
    rows = [
        {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
        for key, value in text_values.items()
    ]
    return {"custom_id": custom_id, "components": rows}


def interaction_payload(
    type: int,
    *,
    application_id: int,
    user: FakeUser | Mapping[str, Any],
    channel: Mapping[str, Any],
    guild_id: int | None = None,
    member: Mapping[str, Any] | None = None,
    permissions: int | str | None = None,
    app_permissions: int | str = ALL_PERMISSIONS,
    data: Mapping[str, Any] | None = None,
    message: Mapping[str, Any] | None = None,
    interaction_id: int | None = None,
    token: str | None = None,
    locale: str = "en-US",
    command: str | None = None,
    options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    command_id: int | None = None,
    command_guild_id: int | None = None,
    focused: str | None = None,
    custom_id: str | None = None,
    component_type: int = 2,
    values: Sequence[str] | None = None,
    text_values: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build an INTERACTION_CREATE body that discord.py parses without KeyErrors.

    discord.py's ``Interaction._from_data`` indexes ``id``, ``type``, ``token``,
    ``version``, ``application_id`` and ``attachment_size_limit``; guild interactions
    carry ``member`` (with a ``permissions`` string), DM interactions carry ``user``.

    ``data`` is derived from the convenience arguments when omitted:
    APPLICATION_COMMAND / AUTOCOMPLETE use ``command``/``options``/``focused``,
    MESSAGE_COMPONENT uses ``custom_id``/``component_type``/``values`` and MODAL_SUBMIT
    uses ``custom_id``/``text_values``.
    """
    if data is None:
        if type in (
            InteractionType.APPLICATION_COMMAND,
            InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE,
        ):
            if command is None:
                raise ValueError("command interactions need command= or data=")
            data = command_data(
                command,
                options,
                command_id=command_id,
                command_guild_id=command_guild_id,
                focused=focused,
            )
        elif type == InteractionType.MESSAGE_COMPONENT:
            if custom_id is None:
                raise ValueError("component interactions need custom_id= or data=")
            data = component_data(custom_id, component_type=component_type, values=values)
        elif type == InteractionType.MODAL_SUBMIT:
            if custom_id is None:
                raise ValueError("modal submits need custom_id= or data=")
            data = modal_data(custom_id, text_values or {})

    user_data = user_payload(user)
    payload: dict[str, Any] = {
        "id": str(interaction_id if interaction_id is not None else snowflake()),
        "application_id": str(application_id),
        "type": type,
        "token": token or f"itx-{secrets.token_urlsafe(24)}",
        "version": 1,
        "channel": dict(channel),
        "channel_id": str(channel["id"]),
        "locale": locale,
        "app_permissions": str(app_permissions),
        "entitlements": [],
        "entitlement_sku_ids": [],
        "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
    }
    if data is not None:
        payload["data"] = dict(data)
    if guild_id is not None:
        member_data = dict(member) if member is not None else {}
        member_data.setdefault("user", user_data)
        member_data.setdefault("roles", [])
        member_data.setdefault("joined_at", iso_timestamp(1_600_000_000.0))
        member_data.setdefault("deaf", False)
        member_data.setdefault("mute", False)
        member_data.setdefault("flags", 0)
        member_data.setdefault("pending", False)
        if permissions is not None:
            member_data["permissions"] = str(permissions)
        member_data.setdefault("permissions", str(DEFAULT_EVERYONE_PERMISSIONS))
        payload.update(
            guild_id=str(guild_id),
            member=member_data,
            guild={"id": str(guild_id), "locale": "en-US", "features": []},
            guild_locale="en-US",
            context=0,
            authorizing_integration_owners={"0": str(guild_id)},
        )
    else:
        payload.update(
            user=user_data,
            context=1,
            authorizing_integration_owners={"0": "0"},
        )
    if message is not None:
        payload["message"] = dict(message)
    return payload


# ---------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------


@dataclass
class RecordedFile:
    """One file part of a multipart request (``files[n]`` as discord.py names them)."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    """One REST request as it arrived.

    ``path`` has the ``/api/vN`` prefix stripped (e.g. ``/channels/1/messages``);
    ``json`` is the JSON body, or the parsed ``payload_json`` part of a multipart body;
    ``status`` is the status the emulator answered with; ``time`` is ``time.monotonic()``.
    """

    method: str
    path: str
    json: Any
    headers: dict[str, str]
    time: float
    query: dict[str, str] = field(default_factory=dict)
    files: list[RecordedFile] = field(default_factory=list)
    status: int = 0
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass
class GatewayFrame:
    """A gateway payload received from (or sent to) a client."""

    op: int
    data: Any
    event: str | None
    seq: int | None
    time: float
    connection_id: int


@dataclass
class GatewayConnectionInfo:
    """A websocket connection the client opened (path and query reveal resume/compress)."""

    id: int
    path: str
    query: dict[str, str]
    time: float
    compression: str | None = None


@dataclass
class InteractionCallback:
    """An interaction response POSTed to ``/interactions/{id}/{token}/callback``."""

    interaction_id: int
    token: str
    type: int
    data: dict[str, Any]
    files: list[RecordedFile]
    time: float

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlags.EPHEMERAL)


@dataclass
class FaultRule:
    """A pending injected failure (see :meth:`DiscordEmulator.fail_next`)."""

    method: str | None
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    remaining: int
    global_: bool
    body: Any
    headers: dict[str, str]

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, "*", method)) and bool(self.pattern.fullmatch(path))


class ApiError(Exception):
    """Raised inside route handlers to answer with a Discord-shaped JSON error."""

    def __init__(
        self, status: int, message: str, code: int = 0, errors: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = dict(self.errors)
        return body


def _form_error(field_name: str, code: str, message: str) -> ApiError:
    errors = {field_name: {"_errors": [{"code": code, "message": message}]}}
    return ApiError(400, "Invalid Form Body", 50035, errors)


# ---------------------------------------------------------------------------------------
# Internal state objects
# ---------------------------------------------------------------------------------------


class _Notifier:
    """Wakes sync and async waiters whenever emulator state changes.

    Async waiters may live on any event loop (the emulator can run on its own thread),
    so they are woken with ``call_soon_threadsafe`` rather than sharing one
    ``asyncio.Condition``; sync waiters use a ``threading.Condition``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._async_wakers: set[Callable[[], None]] = set()

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()
            wakers = list(self._async_wakers)
        for wake in wakers:
            wake()

    def wait_sync(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
                self._cond.wait(remaining)

    async def wait(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the waiter's loop already closed
                loop.call_soon_threadsafe(event.set)

        with self._cond:
            self._async_wakers.add(wake)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event.clear()
                    result = predicate()
                    if result:
                        return result
                    await event.wait()
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from None
        finally:
            with self._cond:
                self._async_wakers.discard(wake)


class _GatewayConnection:
    """One accepted websocket, with its own zlib stream and a send lock.

    ``zlib-stream`` keeps a single compression context for the whole connection and
    ends each message with a Z_SYNC_FLUSH marker, so sends must not interleave.
    """

    def __init__(
        self, conn_id: int, ws: web.WebSocketResponse, compress: str | None, enabled: bool
    ) -> None:
        self.id = conn_id
        self.ws = ws
        self.session: _GatewaySession | None = None
        self._lock = asyncio.Lock()
        self._zlib = zlib.compressobj() if enabled and compress == "zlib-stream" else None

    @property
    def open(self) -> bool:
        return not self.ws.closed

    @property
    def compressed(self) -> bool:
        return self._zlib is not None

    async def send(self, frame: Mapping[str, Any]) -> bool:
        text = json.dumps(frame, separators=(",", ":"))
        async with self._lock:
            if self.ws.closed:
                return False
            try:
                if self._zlib is not None:
                    blob = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(blob)
                else:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return False
        return True


@dataclass
class _GatewaySession:
    session_id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    connection: _GatewayConnection | None = None
    # Serialises sequence numbering with RESUME replay so no event is lost or reordered.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Interaction:
    id: int
    token: str
    type: int
    channel_id: int | None
    guild_id: int | None
    user_id: int | None
    message_id: int | None
    created: float
    response_type: int | None = None
    original_message_id: int | None = None


Handler = Callable[[RecordedRequest, dict[str, str]], Awaitable[web.StreamResponse]]


# ---------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------


class DiscordEmulator:
    """Loopback Discord REST + gateway server for tests.

    Configure it with an application id, the bot user, guilds and users; point
    discord.py at it with :func:`point_discord_py_at`; then drive the client with
    :meth:`dispatch` and assert on :attr:`requests`, :attr:`interaction_callbacks`,
    :meth:`messages` and :attr:`gateway_received`.
    """

    def __init__(
        self,
        *,
        application_id: int = DEFAULT_APPLICATION_ID,
        bot_user: FakeUser | None = None,
        owner: FakeUser | None = None,
        guilds: Iterable[FakeGuild] = (),
        users: Iterable[FakeUser] = (),
        token: str | None = None,
        heartbeat_interval_ms: int = 41_250,
        privileged_intents: int = Intents.PRIVILEGED,
        enforce_intents: bool = True,
        nonce_window: float = 300.0,
        interaction_ack_deadline: float | None = None,
        dm_requires_mutual_guild: bool = False,
        bucket_limit: int = 50,
        compress_gateway: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        """Create an emulator (not started).

        ``token``: when set, REST calls must send ``Authorization: Bot <token>`` and
        IDENTIFY must carry it (401 / close 4004 otherwise); when None anything goes.
        ``privileged_intents``: privileged intents "enabled in the developer portal";
        identifying with others closes the socket with 4014 like Discord.
        ``enforce_intents``: drop dispatches the session's intents would not receive and
        blank message content without MESSAGE_CONTENT, to catch missing intents.
        ``interaction_ack_deadline``: seconds after dispatch within which a callback must
        arrive (Discord uses 3); None disables the check so slow CI cannot flake.
        ``bucket_limit``: the ``X-RateLimit-Limit`` advertised on successful responses.
        ``compress_gateway``: honour ``compress=zlib-stream``; False always sends text.
        """
        self.application_id = application_id
        self.bot_user = bot_user or FakeUser(DEFAULT_BOT_USER_ID, "mentorbot", bot=True)
        self.owner = owner or FakeUser(DEFAULT_OWNER_ID, "owner")
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        self.enforce_intents = enforce_intents
        self.nonce_window = nonce_window
        self.interaction_ack_deadline = interaction_ack_deadline
        self.dm_requires_mutual_guild = dm_requires_mutual_guild
        self.bucket_limit = bucket_limit
        self.compress_gateway = compress_gateway
        self.host = host

        self.guilds: dict[int, FakeGuild] = {}
        self.users: dict[int, FakeUser] = {}
        self.requests: list[RecordedRequest] = []
        self.gateway_received: list[GatewayFrame] = []
        self.gateway_sent: list[GatewayFrame] = []
        self.gateway_connections: list[GatewayConnectionInfo] = []
        self.interaction_callbacks: list[InteractionCallback] = []
        self.errors: list[BaseException] = []

        self._lock = threading.Lock()
        self._notifier = _Notifier()
        self._channels: dict[int, dict[str, Any]] = {}
        self._channel_guild: dict[int, int | None] = {}
        self._dm_channels: dict[int, int] = {}
        self._messages: dict[int, dict[str, Any]] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._message_interaction: dict[int, int] = {}
        self._attachments: dict[int, bytes] = {}
        self._nonces: dict[tuple[int, str], tuple[float, int]] = {}
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        self._command_ids: dict[tuple[int | None, int, str], int] = {}
        self._interactions: dict[int, _Interaction] = {}
        self._interactions_by_token: dict[str, _Interaction] = {}
        self._faults: list[FaultRule] = []
        self._global_limit: int | None = None
        self._global_window: deque[float] = deque()
        self._sessions: dict[str, _GatewaySession] = {}
        self._current_session: _GatewaySession | None = None
        self._connections: dict[int, _GatewayConnection] = {}
        self._connection_ids = itertools.count(1)
        self._ready_count = 0
        self._resumed_count = 0
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []

        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

        self.add_user(self.bot_user)
        self.add_user(self.owner)
        for user in users:
            self.add_user(user)
        for guild in guilds:
            self.add_guild(guild)
        self._register_routes()

    # -- configuration ---------------------------------------------------------------

    def add_user(self, user: FakeUser) -> FakeUser:
        self.users[user.id] = user
        return user

    def add_guild(self, guild: FakeGuild) -> FakeGuild:
        """Register a guild, its channels and its members' users (no gateway event)."""
        self.guilds[guild.id] = guild
        for channel in guild.channels:
            self._channels[channel.id] = channel_payload(channel, guild.id)
            self._channel_guild[channel.id] = guild.id
        for member in guild.members:
            self.users.setdefault(member.user.id, member.user)
        return guild

    def set_blocks_dms(self, user_id: int, blocked: bool = True) -> None:
        self._require_user(user_id).blocks_dms = blocked

    def dm_channel_id(self, user_id: int) -> int:
        """Return the stable DM channel id between the bot and a user, creating it."""
        user = self._require_user(user_id)
        channel_id = self._dm_channels.get(user_id)
        if channel_id is None:
            channel_id = snowflake()
            self._dm_channels[user_id] = channel_id
            self._channels[channel_id] = dm_channel_payload(channel_id, user)
            self._channel_guild[channel_id] = None
        return channel_id

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("emulator not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """Value for ``discord.http.Route.BASE``."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """Value for ``DiscordWebSocket.DEFAULT_GATEWAY`` (and ``/gateway`` answers)."""
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        """Sent in READY; a distinct path so tests can see the client used it."""
        return f"ws://{self.host}:{self.port}/gateway/resume"

    async def start(self) -> DiscordEmulator:
        """Start serving on the running loop (ephemeral port)."""
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        self._loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway_handler)
        app.router.add_get("/gateway/resume", self._gateway_handler)
        app.router.add_get(
            "/attachments/{channel_id}/{attachment_id}/{filename}", self._attachment_handler
        )
        app.router.add_route("*", "/{tail:.*}", self._rest_handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        """Close gateway sockets (code 1001) and stop the server."""
        for conn in list(self._connections.values()):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"emulator shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start_in_thread(self, timeout: float = 10.0) -> DiscordEmulator:
        """Run the server on a private event loop in a daemon thread (for sync tests)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # surfaced to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="discord-emulator", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError("emulator thread did not start")
        if failure:
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread`."""
        if self._thread is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.close(), self._loop)
        try:
            future.result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> DiscordEmulator:
        return self.start_in_thread()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def run_sync(self, awaitable: Awaitable[T], timeout: float = 10.0) -> T:
        """Run a coroutine on the emulator's loop from another thread and wait for it.

        For sync tests using :meth:`start_in_thread`, e.g.
        ``dc.run_sync(dc.dispatch("MESSAGE_CREATE", payload))``.
        """
        if self._loop is None:
            raise RuntimeError("emulator not started")
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._loop:
                raise RuntimeError("run_sync called on the emulator's own loop; await instead")

        async def runner() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(runner(), self._loop).result(timeout)

    async def _on_server_loop(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run ``factory()`` on the server loop, hopping threads when awaited elsewhere."""
        if self._loop is None:
            raise RuntimeError("emulator not started")
        if asyncio.get_running_loop() is self._loop:
            return await factory()

        async def runner() -> T:
            return await factory()

        future = asyncio.run_coroutine_threadsafe(runner(), self._loop)
        return await asyncio.wrap_future(future)

    # -- recording and waiting --------------------------------------------------------

    def requests_to(self, method: str | None, path_regex: str) -> list[RecordedRequest]:
        """Recorded requests whose method matches (None/"*" = any) and path fullmatches."""
        pattern = re.compile(path_regex)
        wanted = method.upper() if method else None
        with self._lock:
            snapshot = list(self.requests)
        return [
            r for r in snapshot if wanted in (None, "*", r.method) and pattern.fullmatch(r.path)
        ]

    async def wait_for(
        self, method: str | None, path_regex: str, count: int = 1, timeout: float = 5.0
    ) -> list[RecordedRequest]:
        """Wait until at least ``count`` matching requests were answered; return them."""

        def found() -> list[RecordedRequest] | None:
            matches = self.requests_to(method, path_regex)
            return matches if len(matches) >= count else None

        return await self._notifier.wait(found, timeout, f"{count}x {method} {path_regex}")

    def wait_for_sync(
        self, method: str | None, path_regex: str, count: int = 1, timeout: float = 5.0
    ) -> list[RecordedRequest]:
        """Thread-blocking variant of :meth:`wait_for` for sync tests."""

        def found() -> list[RecordedRequest] | None:
            matches = self.requests_to(method, path_regex)
            return matches if len(matches) >= count else None

        return self._notifier.wait_sync(found, timeout, f"{count}x {method} {path_regex}")

    def gateway_ops(self, op: int) -> list[GatewayFrame]:
        """Frames with opcode ``op`` received from clients."""
        with self._lock:
            return [f for f in self.gateway_received if f.op == op]

    async def wait_for_gateway(
        self, op: int, count: int = 1, timeout: float = 5.0
    ) -> list[GatewayFrame]:
        """Wait until clients sent ``count`` frames with opcode ``op`` (e.g. Op.RESUME)."""

        def found() -> list[GatewayFrame] | None:
            frames = self.gateway_ops(op)
            return frames if len(frames) >= count else None

        return await self._notifier.wait(found, timeout, f"{count}x gateway op {op}")

    def wait_for_gateway_sync(
        self, op: int, count: int = 1, timeout: float = 5.0
    ) -> list[GatewayFrame]:
        def found() -> list[GatewayFrame] | None:
            frames = self.gateway_ops(op)
            return frames if len(frames) >= count else None

        return self._notifier.wait_sync(found, timeout, f"{count}x gateway op {op}")

    async def wait_ready(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until READY and every GUILD_CREATE were sent ``count`` times.

        discord.py fires ``on_ready`` only ``guild_ready_timeout`` seconds after the last
        GUILD_CREATE, so also pass a small ``guild_ready_timeout`` to the client.
        """
        await self._notifier.wait(lambda: self._ready_count >= count, timeout, f"{count} READY")

    def wait_ready_sync(self, count: int = 1, timeout: float = 5.0) -> None:
        self._notifier.wait_sync(lambda: self._ready_count >= count, timeout, f"{count} READY")

    async def wait_resumed(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` RESUMED dispatches were sent."""
        await self._notifier.wait(lambda: self._resumed_count >= count, timeout, f"{count} RESUMED")

    async def wait_until(
        self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition"
    ) -> Any:
        """Wait until ``predicate()`` is truthy, re-checked on every emulator change."""
        return await self._notifier.wait(predicate, timeout, what)

    # -- fault injection ---------------------------------------------------------------

    def fail_next(
        self,
        method: str | None,
        path_regex: str,
        status: int = 429,
        retry_after: float = 0.5,
        times: int = 1,
        global_: bool = False,
        *,
        code: int = 0,
        message: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> FaultRule:
        """Answer the next ``times`` matching requests with ``status`` instead.

        429s carry the body ``{"message", "retry_after", "global"}`` plus the headers
        discord.py checks (it re-raises 429s without a ``Via`` header as a Cloudflare
        ban). Other statuses get ``{"message": message or "<status>: <reason>", "code"}``
        unless ``body`` is given. Note discord.py retries 500/502/504/524 after sleeping
        1s, 3s, ...; other 5xx raise ``DiscordServerError`` immediately.
        """
        if status == 429:
            default_body: Any = {
                "message": message or "You are being rate limited.",
                "retry_after": retry_after,
                "global": global_,
            }
            if code:
                default_body["code"] = code
        else:
            reason = _reason(status)
            default_body = {"message": message or f"{status}: {reason}", "code": code}
        rule = FaultRule(
            method=method.upper() if method else None,
            pattern=re.compile(path_regex),
            status=status,
            retry_after=retry_after,
            remaining=times,
            global_=global_,
            body=default_body if body is None else body,
            headers=dict(headers or {}),
        )
        with self._lock:
            self._faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def rate_limit(self, per_second: int | None = 50) -> None:
        """Enforce a global limit of ``per_second`` requests (None disables).

        Exceeding it answers 429 with ``"global": true`` like Discord's per-bot global
        limit; interaction callbacks and interaction webhooks are exempt, as on Discord.
        """
        with self._lock:
            self._global_limit = per_second
            self._global_window.clear()

    # -- state inspection ---------------------------------------------------------------

    def messages(self, channel_id: int, *, include_ephemeral: bool = False) -> list[dict[str, Any]]:
        """Messages stored in a channel, oldest first."""
        result = [self._messages[m] for m in self._channel_messages.get(channel_id, [])]
        if include_ephemeral:
            return result
        return [m for m in result if not int(m.get("flags", 0)) & MessageFlags.EPHEMERAL]

    def message(self, message_id: int) -> dict[str, Any] | None:
        return self._messages.get(message_id)

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """Application commands last synced globally (None) or for a guild."""
        return list(self._commands.get(guild_id, []))

    def interaction_messages(self, interaction_id: int) -> list[dict[str, Any]]:
        """Original response and follow-ups created for an interaction, oldest first."""
        return [
            self._messages[mid]
            for mid, iid in self._message_interaction.items()
            if iid == interaction_id and mid in self._messages
        ]

    def callbacks_for(self, interaction_id: int) -> list[InteractionCallback]:
        return [c for c in self.interaction_callbacks if c.interaction_id == interaction_id]

    @property
    def session_id(self) -> str | None:
        return self._current_session.session_id if self._current_session else None

    # -- emulator-aware payload builders --------------------------------------------------

    def make_message(
        self,
        author_id: int,
        content: str,
        *,
        channel_id: int | None = None,
        reply_to_id: int | None = None,
        mention_ids: Sequence[int] = (),
        **kwargs: Any,
    ) -> dict[str, Any]:
        """MESSAGE_CREATE body from a known user; defaults to their DM with the bot."""
        author = self._require_user(author_id)
        if channel_id is None:
            channel_id = self.dm_channel_id(author_id)
        guild_id = self._channel_guild.get(channel_id)
        member = None
        if guild_id is not None:
            fake_member = self.guilds[guild_id].member(author_id)
            if fake_member is not None:
                member = member_payload(fake_member, with_user=False)
        reply_to = None
        if reply_to_id is not None:
            reply_to = self._messages.get(reply_to_id)
            if reply_to is None:
                raise KeyError(f"unknown message {reply_to_id}")
        return message_payload(
            channel_id=channel_id,
            author=author,
            content=content,
            guild_id=guild_id,
            member=member,
            reply_to=reply_to,
            mentions=[self._require_user(u) for u in mention_ids],
            **kwargs,
        )

    def make_interaction(
        self,
        type: int,
        user_id: int,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        message_id: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """INTERACTION_CREATE body filled from emulator state.

        Guild interactions get the member (roles, computed ``permissions``) and channel;
        DM interactions get the user's DM channel. ``message_id`` attaches a stored
        message (component interactions). For commands the synced command's id and
        guild scope are looked up, so CommandTree finds guild-scoped commands.
        Remaining keyword arguments go to :func:`interaction_payload`.
        """
        user = self._require_user(user_id)
        member = None
        if guild_id is not None:
            guild = self._require_guild(guild_id)
            if channel_id is None:
                text = [c for c in guild.channels if c.type == ChannelType.GUILD_TEXT]
                if not text:
                    raise ValueError(f"guild {guild_id} has no text channel")
                channel_id = text[0].id
            fake_member = guild.member(user_id) or FakeMember(user)
            member = member_payload(fake_member, guild, with_permissions=True)
        elif channel_id is None:
            channel_id = self.dm_channel_id(user_id)
        channel = self._channels.get(channel_id)
        if channel is None:
            raise KeyError(f"unknown channel {channel_id}")
        if message_id is not None:
            stored = self._messages.get(message_id)
            if stored is None:
                raise KeyError(f"unknown message {message_id}")
            kwargs["message"] = stored
        command = kwargs.get("command")
        if command and "data" not in kwargs:
            found = self._find_command(command.split()[0], guild_id)
            if found is not None:
                kwargs.setdefault("command_id", int(found["id"]))
                if found.get("guild_id") is not None:
                    kwargs.setdefault("command_guild_id", int(found["guild_id"]))
        return interaction_payload(
            type,
            application_id=self.application_id,
            user=user,
            channel=channel,
            guild_id=guild_id,
            member=member,
            **kwargs,
        )

    def _find_command(self, name: str, guild_id: int | None) -> dict[str, Any] | None:
        scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self._commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        return None

    # -- gateway control -------------------------------------------------------------------

    async def dispatch(
        self, event: str, data: Mapping[str, Any], *, force: bool = False
    ) -> int | None:
        """Send a DISPATCH event to the current session; return its sequence number.

        Events sent while the client is disconnected are kept and replayed on RESUME.
        With ``enforce_intents`` events the session did not subscribe to are dropped
        (returns None) unless ``force``. MESSAGE_CREATE/UPDATE and INTERACTION_CREATE
        also update the emulator's store so later REST calls (replies, callbacks) work.
        """
        payload = dict(data)

        async def run() -> int | None:
            session = self._current_session
            if session is None:
                raise RuntimeError("no gateway session yet; await wait_ready() first")
            self._observe_dispatch(event, payload)
            shaped = payload if force else self._apply_intents(session, event, payload)
            if shaped is None:
                return None
            return await self._emit(session, event, shaped)

        return await self._on_server_loop(run)

    async def drop_connection(self, code: int = 4000) -> None:
        """Close the current gateway socket with ``code``; the session stays resumable.

        discord.py resumes after codes other than 1000/4004/4010-4014 (and after 1000
        sent by the server); 4004/4010-4014 make it give up.
        """

        async def run() -> None:
            session = self._current_session
            conn = session.connection if session else None
            if session is None or conn is None:
                raise RuntimeError("no connected gateway session")
            session.connection = None
            await conn.ws.close(code=code, message=b"dropped by test")

        await self._on_server_loop(run)

    async def invalidate_session(self, resumable: bool = False) -> None:
        """Send INVALID_SESSION (op 9) to the current connection."""

        async def run() -> None:
            session = self._current_session
            if session is None or session.connection is None:
                raise RuntimeError("no connected gateway session")
            conn = session.connection
            if not resumable:
                self._sessions.pop(session.session_id, None)
            await self._send(conn, {"op": Op.INVALID_SESSION, "d": resumable})

        await self._on_server_loop(run)

    async def request_reconnect(self) -> None:
        """Send RECONNECT (op 7); discord.py closes and resumes."""

        async def run() -> None:
            session = self._current_session
            if session is None or session.connection is None:
                raise RuntimeError("no connected gateway session")
            await self._send(session.connection, {"op": Op.RECONNECT, "d": None})

        await self._on_server_loop(run)

    async def join_guild(self, guild: FakeGuild) -> int | None:
        """Register a guild and dispatch GUILD_CREATE for it (bot joined)."""
        self.add_guild(guild)
        payload = guild_payload(guild, extra_members=self._bot_member_if_missing(guild))
        payload.pop("unavailable", None)
        return await self.dispatch("GUILD_CREATE", payload)

    async def leave_guild(self, guild_id: int) -> int | None:
        """Forget a guild and dispatch GUILD_DELETE (bot removed)."""
        self.guilds.pop(guild_id, None)
        return await self.dispatch("GUILD_DELETE", {"id": str(guild_id)})

    async def add_member(self, guild_id: int, member: FakeMember) -> int | None:
        """Add a member and dispatch GUILD_MEMBER_ADD (needs the GUILD_MEMBERS intent)."""
        guild = self._require_guild(guild_id)
        guild.members.append(member)
        self.add_user(member.user)
        payload = member_payload(member, guild)
        payload["guild_id"] = str(guild_id)
        return await self.dispatch("GUILD_MEMBER_ADD", payload)

    # -- internals: helpers -----------------------------------------------------------------

    def _require_user(self, user_id: int) -> FakeUser:
        user = self.users.get(user_id)
        if user is None:
            raise KeyError(f"unknown user {user_id}; add it with users=[...] or add_user()")
        return user

    def _require_guild(self, guild_id: int) -> FakeGuild:
        guild = self.guilds.get(guild_id)
        if guild is None:
            raise KeyError(f"unknown guild {guild_id}")
        return guild

    def _bot_member_if_missing(self, guild: FakeGuild) -> list[FakeMember]:
        if guild.member(self.bot_user.id) is None:
            return [FakeMember(self.bot_user)]
        return []

    def _notify(self) -> None:
        self._notifier.notify()

    # -- internals: gateway ---------------------------------------------------------------

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=0, timeout=2.0, autoping=True)
        await ws.prepare(request)
        conn = _GatewayConnection(
            next(self._connection_ids),
            ws,
            request.query.get("compress"),
            self.compress_gateway,
        )
        self._connections[conn.id] = conn
        with self._lock:
            self.gateway_connections.append(
                GatewayConnectionInfo(
                    id=conn.id,
                    path=request.path,
                    query=dict(request.query),
                    time=time.monotonic(),
                    compression="zlib-stream" if conn.compressed else None,
                )
            )
        self._notify()
        if request.query.get("encoding", "json") != "json":
            await ws.close(code=4002, message=b"only encoding=json is emulated")
            return ws
        await self._send(
            conn, {"op": Op.HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
        )
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        frame = json.loads(msg.data)
                    except ValueError:
                        await ws.close(code=4002, message=b"Error while decoding payload.")
                        break
                    await self._on_gateway_frame(conn, frame)
                elif msg.type is WSMsgType.BINARY:
                    await ws.close(code=4002, message=b"binary frames are not accepted")
                    break
        finally:
            self._connections.pop(conn.id, None)
            session = conn.session
            if session is not None and session.connection is conn:
                session.connection = None
            self._notify()
        return ws

    async def _send(self, conn: _GatewayConnection, frame: dict[str, Any]) -> bool:
        sent = await conn.send(frame)
        if sent:
            with self._lock:
                self.gateway_sent.append(
                    GatewayFrame(
                        op=frame["op"],
                        data=frame.get("d"),
                        event=frame.get("t"),
                        seq=frame.get("s"),
                        time=time.monotonic(),
                        connection_id=conn.id,
                    )
                )
        return sent

    async def _emit(self, session: _GatewaySession, event: str, data: Any) -> int:
        async with session.lock:
            session.seq += 1
            seq = session.seq
            frame = {"op": Op.DISPATCH, "t": event, "s": seq, "d": data}
            session.events.append(frame)
            conn = session.connection
            if conn is not None and conn.open:
                await self._send(conn, frame)
        self._notify()
        return seq

    async def _on_gateway_frame(self, conn: _GatewayConnection, frame: Mapping[str, Any]) -> None:
        op = frame.get("op")
        data = frame.get("d")
        with self._lock:
            self.gateway_received.append(
                GatewayFrame(
                    op=op if isinstance(op, int) else -1,
                    data=data,
                    event=None,
                    seq=None,
                    time=time.monotonic(),
                    connection_id=conn.id,
                )
            )
        self._notify()
        if op == Op.HEARTBEAT:
            await self._send(conn, {"op": Op.HEARTBEAT_ACK, "d": None})
        elif op == Op.IDENTIFY:
            await self._identify(conn, data or {})
        elif op == Op.RESUME:
            await self._resume(conn, data or {})
        elif op in (Op.PRESENCE_UPDATE, Op.VOICE_STATE_UPDATE):
            if conn.session is None:
                await conn.ws.close(code=4003, message=b"Not authenticated.")
        elif op == Op.REQUEST_GUILD_MEMBERS:
            await self._request_members(conn, data or {})
        else:
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    def _token_ok(self, token: Any) -> bool:
        if self.token is None:
            return True
        return token in (self.token, f"Bot {self.token}")

    async def _identify(self, conn: _GatewayConnection, data: Mapping[str, Any]) -> None:
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        if not self._token_ok(data.get("token")):
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(data.get("intents") or 0)
        if intents & Intents.PRIVILEGED & ~self.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = data.get("shard")
        session = _GatewaySession(
            session_id=secrets.token_hex(16),
            intents=intents,
            shard=list(shard) if shard else None,
        )
        self._sessions[session.session_id] = session
        self._current_session = session
        session.connection = conn
        conn.session = session
        ready: dict[str, Any] = {
            "v": 10,
            "user": {**user_payload(self.bot_user), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "geo_ordered_rtc_regions": [],
            "_trace": ["discord-emulator"],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._emit(session, "READY", ready)
        for guild in list(self.guilds.values()):
            payload = guild_payload(guild, extra_members=self._bot_member_if_missing(guild))
            await self._emit(session, "GUILD_CREATE", payload)
        self._ready_count += 1
        self._notify()

    async def _resume(self, conn: _GatewayConnection, data: Mapping[str, Any]) -> None:
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or not self._token_ok(data.get("token")):
            await self._send(conn, {"op": Op.INVALID_SESSION, "d": False})
            return
        async with session.lock:
            old = session.connection
            if old is not None and old is not conn and old.open:
                await old.ws.close(code=4000, message=b"session resumed elsewhere")
            session.connection = conn
            conn.session = session
            self._current_session = session
            last_seq = int(data.get("seq") or 0)
            for frame in session.events:
                if frame["s"] > last_seq:
                    await self._send(conn, frame)
        await self._emit(session, "RESUMED", {"_trace": ["discord-emulator"]})
        self._resumed_count += 1
        self._notify()

    async def _request_members(self, conn: _GatewayConnection, data: Mapping[str, Any]) -> None:
        session = conn.session
        if session is None:
            await conn.ws.close(code=4003, message=b"Not authenticated.")
            return
        guild = self.guilds.get(int(data.get("guild_id") or 0))
        if guild is None:
            return
        members = [*guild.members, *self._bot_member_if_missing(guild)]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [member_payload(m, guild) for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._emit(session, "GUILD_MEMBERS_CHUNK", chunk)

    def _application_flags(self) -> int:
        flags = 0
        if self.privileged_intents & Intents.GUILD_PRESENCES:
            flags |= 1 << 13  # GATEWAY_PRESENCE_LIMITED
        if self.privileged_intents & Intents.GUILD_MEMBERS:
            flags |= 1 << 15  # GATEWAY_GUILD_MEMBERS_LIMITED
        if self.privileged_intents & Intents.MESSAGE_CONTENT:
            flags |= 1 << 19  # GATEWAY_MESSAGE_CONTENT_LIMITED
        return flags

    def _apply_intents(
        self, session: _GatewaySession, event: str, data: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Mimic Discord's intent gating: drop unsubscribed events, blank content."""
        if not self.enforce_intents:
            return data
        intents = session.intents
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"):
            in_guild = data.get("guild_id") is not None
            needed = Intents.GUILD_MESSAGES if in_guild else Intents.DIRECT_MESSAGES
            if not intents & needed:
                return None
            author_id = str((data.get("author") or {}).get("id"))
            mentioned = any(
                str(u.get("id")) == str(self.bot_user.id) for u in data.get("mentions") or []
            )
            if (
                in_guild
                and not intents & Intents.MESSAGE_CONTENT
                and author_id != str(self.bot_user.id)
                and not mentioned
            ):
                data = {
                    **data,
                    "content": "",
                    "embeds": [],
                    "attachments": [],
                    "components": [],
                }
        elif event.startswith("GUILD_MEMBER"):
            if not intents & Intents.GUILD_MEMBERS and event != "GUILD_MEMBERS_CHUNK":
                return None
        elif event in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE") and not (
            intents & Intents.GUILDS
        ):
            return None
        return data

    def _observe_dispatch(self, event: str, data: Mapping[str, Any]) -> None:
        """Keep the REST-side store consistent with events pushed by tests."""
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and "id" in data:
            author = data.get("author")
            if isinstance(author, Mapping) and author.get("id") is not None:
                author_id = int(author["id"])
                if author_id not in self.users:
                    self.add_user(
                        FakeUser(author_id, str(author.get("username")), bool(author.get("bot")))
                    )
            self._store_message(dict(data))
        elif event == "INTERACTION_CREATE":
            message = data.get("message")
            message_id = int(message["id"]) if isinstance(message, Mapping) else None
            if message_id is not None and message_id not in self._messages:
                self._store_message(dict(message))
            user = data.get("user") or (data.get("member") or {}).get("user") or {}
            interaction = _Interaction(
                id=int(data["id"]),
                token=str(data["token"]),
                type=int(data["type"]),
                channel_id=int(data["channel_id"]) if data.get("channel_id") else None,
                guild_id=int(data["guild_id"]) if data.get("guild_id") else None,
                user_id=int(user["id"]) if user.get("id") else None,
                message_id=message_id,
                created=time.monotonic(),
            )
            self._interactions[interaction.id] = interaction
            self._interactions_by_token[interaction.token] = interaction

    def store_message(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Put a message into the store without dispatching it.

        Useful to stage state that predates the test, e.g. a bot message carrying a
        persistent view's buttons "sent before the restart".
        """
        stored = dict(message)
        self._store_message(stored)
        return self._messages[int(stored["id"])]

    def _store_message(self, message: dict[str, Any]) -> None:
        message_id = int(message["id"])
        channel_id = int(message["channel_id"])
        if message_id in self._messages:
            self._messages[message_id].update(message)
            return
        self._messages[message_id] = message
        self._channel_messages.setdefault(channel_id, []).append(message_id)

    # -- internals: REST plumbing -------------------------------------------------------------

    def _register_routes(self) -> None:
        snowflake_re = r"\d+"

        def add(method: str, template: str, handler: Handler) -> None:
            regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>{snowflake_re})", template)
            regex = regex.replace(f"(?P<token>{snowflake_re})", r"(?P<token>[^/]+)")
            regex = regex.replace(f"(?P<emoji>{snowflake_re})", r"(?P<emoji>[^/]+)")
            regex = regex.replace(
                f"(?P<message_ref>{snowflake_re})", r"(?P<message_ref>@original|\d+)"
            )
            self._routes.append((method, re.compile(regex), template, handler))

        add("GET", "/users/@me", self._get_me)
        add("GET", "/users/{user_id}", self._get_user)
        add("POST", "/users/@me/channels", self._create_dm)
        add("GET", "/oauth2/applications/@me", self._get_application)
        add("GET", "/applications/@me", self._get_application)
        add("GET", "/gateway", self._get_gateway)
        add("GET", "/gateway/bot", self._get_gateway_bot)
        add("GET", "/applications/{app_id}/commands", self._get_commands)
        add("PUT", "/applications/{app_id}/commands", self._put_commands)
        add("POST", "/applications/{app_id}/commands", self._post_command)
        add("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self._get_commands)
        add("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands)
        add("POST", "/applications/{app_id}/guilds/{guild_id}/commands", self._post_command)
        add("GET", "/channels/{channel_id}", self._get_channel)
        add("GET", "/channels/{channel_id}/messages", self._list_messages)
        add("POST", "/channels/{channel_id}/messages", self._post_message)
        add("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message)
        add("PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_message)
        add("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message)
        add("POST", "/channels/{channel_id}/typing", self._no_content)
        add(
            "PUT",
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            self._no_content,
        )
        add(
            "DELETE",
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            self._no_content,
        )
        add("POST", "/interactions/{interaction_id}/{token}/callback", self._interaction_callback)
        add("POST", "/webhooks/{app_id}/{token}", self._webhook_execute)
        add("GET", "/webhooks/{app_id}/{token}/messages/{message_ref}", self._webhook_get)
        add("PATCH", "/webhooks/{app_id}/{token}/messages/{message_ref}", self._webhook_patch)
        add("DELETE", "/webhooks/{app_id}/{token}/messages/{message_ref}", self._webhook_delete)
        add("GET", "/guilds/{guild_id}", self._get_guild)
        add("GET", "/guilds/{guild_id}/channels", self._get_guild_channels)
        add("GET", "/guilds/{guild_id}/roles", self._get_guild_roles)
        add("GET", "/guilds/{guild_id}/members", self._list_members)
        add("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member)

    @staticmethod
    def _json(
        data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        # discord.py compares the content-type header to "application/json" exactly;
        # aiohttp's json_response would append "; charset=utf-8" and break parsing.
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        return web.Response(status=status, body=json.dumps(data).encode(), headers=all_headers)

    def _bucket_headers(self, template: str, method: str) -> dict[str, str]:
        bucket = hashlib.sha1(f"{method} {template}".encode()).hexdigest()[:16]
        return {
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Limit": str(self.bucket_limit),
            "X-RateLimit-Remaining": str(max(self.bucket_limit - 1, 1)),
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
        }

    async def _read_body(self, request: web.Request) -> tuple[Any, list[RecordedFile], bytes]:
        if request.content_type.startswith("multipart/"):
            payload: Any = None
            files: list[RecordedFile] = []
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):  # nested multipart: ignore
                    continue
                raw = await part.read(decode=False)
                if part.name == "payload_json":
                    payload = json.loads(raw.decode() or "null")
                else:
                    files.append(
                        RecordedFile(
                            name=part.name or "",
                            filename=part.filename,
                            content_type=part.headers.get("Content-Type"),
                            data=bytes(raw),
                        )
                    )
            return payload, files, b""
        body = await request.read()
        if body and request.content_type == "application/json":
            return json.loads(body.decode()), [], body
        return None, [], body

    def _check_global_limit(self, exempt: bool) -> float | None:
        """Return retry_after when the global limit is exceeded, else record the hit."""
        with self._lock:
            limit = self._global_limit
            if limit is None or exempt:
                return None
            now = time.monotonic()
            while self._global_window and now - self._global_window[0] >= 1.0:
                self._global_window.popleft()
            if len(self._global_window) >= limit:
                return max(1.0 - (now - self._global_window[0]), 0.001)
            self._global_window.append(now)
            return None

    def _take_fault(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._faults:
                if rule.remaining > 0 and rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._faults.remove(rule)
                    return rule
        return None

    def _fault_response(self, rule: FaultRule, template: str | None, method: str) -> web.Response:
        headers: dict[str, str] = {}
        if rule.status == 429:
            headers["Retry-After"] = str(max(1, math.ceil(rule.retry_after)))
            headers["Via"] = "1.1 google"
            if rule.global_:
                headers["X-RateLimit-Global"] = "true"
                headers["X-RateLimit-Scope"] = "global"
            else:
                headers.update(self._bucket_headers(template or "?", method))
                headers["X-RateLimit-Remaining"] = "0"
                headers["X-RateLimit-Reset-After"] = f"{rule.retry_after:.3f}"
                headers["X-RateLimit-Reset"] = f"{time.time() + rule.retry_after:.3f}"
                headers["X-RateLimit-Scope"] = "user"
        headers.update(rule.headers)
        if isinstance(rule.body, bytes | str):
            return web.Response(status=rule.status, body=rule.body, headers=headers)
        return self._json(rule.body, rule.status, headers)

    def _global_429(self, retry_after: float) -> web.Response:
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": True,
        }
        headers = {
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Global": "true",
            "X-RateLimit-Scope": "global",
            "Via": "1.1 google",
        }
        return self._json(body, 429, headers)

    def _match_route(
        self, method: str, path: str
    ) -> tuple[Handler | None, dict[str, str], str | None, bool]:
        """Return (handler, params, template, path_known)."""
        path_known = False
        for route_method, pattern, template, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            path_known = True
            if route_method == method:
                return handler, match.groupdict(), template, True
        return None, {}, None, path_known

    async def _rest_handler(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        match = _API_PREFIX_RE.match(request.path)
        path = (match.group("rest") or "/") if match else request.path
        method = request.method.upper()
        try:
            payload, files, raw = await self._read_body(request)
        except ValueError:
            payload, files, raw = None, [], b""
        record = RecordedRequest(
            method=method,
            path=path,
            json=payload,
            headers=dict(request.headers),
            time=arrived,
            query=dict(request.query),
            files=files,
            body=raw,
        )
        response = await self._answer(record, api=match is not None)
        record.status = response.status
        with self._lock:
            self.requests.append(record)
        self._notify()
        return response

    async def _answer(self, record: RecordedRequest, *, api: bool) -> web.StreamResponse:
        if not api:
            return self._json({"message": "404: Not Found", "code": 0}, 404)
        method, path = record.method, record.path
        handler, params, template, path_known = self._match_route(method, path)
        interaction_route = path.startswith(("/interactions/", "/webhooks/"))
        fault = self._take_fault(method, path)
        if fault is not None:
            return self._fault_response(fault, template, method)
        if handler is None or template is None:
            if path_known:
                return self._json({"message": "405: Method Not Allowed", "code": 0}, 405)
            return self._json({"message": "404: Not Found", "code": 0}, 404)
        if (
            self.token is not None
            and not interaction_route
            and record.header("Authorization") != f"Bot {self.token}"
        ):
            return self._json({"message": "401: Unauthorized", "code": 0}, 401)
        retry_after = self._check_global_limit(exempt=interaction_route)
        if retry_after is not None:
            return self._global_429(round(retry_after, 3))
        try:
            response = await handler(record, params)
        except ApiError as exc:
            response = self._json(exc.body(), exc.status)
        except Exception as exc:
            # An emulator bug: keep it visible to tests (dc.errors) instead of only in logs.
            self.errors.append(exc)
            response = self._json({"message": f"emulator error: {exc!r}", "code": 0}, 500)
        if response.status < 400:
            for key, value in self._bucket_headers(template, method).items():
                response.headers.setdefault(key, value)
        return response

    async def _attachment_handler(self, request: web.Request) -> web.StreamResponse:
        data = self._attachments.get(int(request.match_info["attachment_id"]))
        if data is None:
            return self._json({"message": "404: Not Found", "code": 0}, 404)
        return web.Response(body=data, content_type="application/octet-stream")

    # -- internals: REST routes --------------------------------------------------------------

    async def _no_content(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        if "channel_id" in params:
            self._require_channel(int(params["channel_id"]))
        return web.Response(status=204)

    async def _get_me(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        body = {**user_payload(self.bot_user), "verified": True, "mfa_enabled": False}
        body.update(locale="en-US", email=None)
        return self._json(body)

    async def _get_user(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        user = self.users.get(int(params["user_id"]))
        if user is None:
            raise ApiError(404, "Unknown User", 10013)
        return self._json(user_payload(user))

    async def _get_application(
        self, record: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        return self._json(
            {
                "id": str(self.application_id),
                "name": self.bot_user.username,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "hook": True,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": user_payload(self.owner),
                "team": None,
                "flags": self._application_flags(),
                "rpc_origins": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "approximate_guild_count": len(self.guilds),
                "bot": user_payload(self.bot_user),
            }
        )

    async def _get_gateway(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        return self._json({"url": self.gateway_url})

    async def _get_gateway_bot(
        self, record: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return self._json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    # commands

    def _command_scope(self, params: dict[str, str]) -> int | None:
        if int(params["app_id"]) != self.application_id:
            raise ApiError(403, "Missing Access", 50001)
        if "guild_id" not in params:
            return None
        guild_id = int(params["guild_id"])
        if guild_id not in self.guilds:
            raise ApiError(403, "Missing Access", 50001)
        return guild_id

    def _normalise_command(self, raw: Mapping[str, Any], scope: int | None) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise _form_error("0", "DICT_TYPE_CONVERT", "Only dictionaries may be used.")
        name = str(raw.get("name", ""))
        kind = int(raw.get("type", 1))
        if not _COMMAND_NAME_RE.match(name) or (kind == 1 and name != name.lower()):
            raise _form_error("name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name.")
        description = str(raw.get("description", ""))
        if kind == 1 and not 1 <= len(description) <= 100:
            raise _form_error("description", "BASE_TYPE_BAD_LENGTH", "Must be 1-100 long.")
        key = (scope, kind, name)
        command_id = self._command_ids.setdefault(key, snowflake())
        command = {
            "id": str(command_id),
            "application_id": str(self.application_id),
            "version": str(snowflake()),
            "type": kind,
            "name": name,
            "description": description,
            "options": list(raw.get("options") or []),
            "default_member_permissions": raw.get("default_member_permissions"),
            "dm_permission": raw.get("dm_permission", True),
            "contexts": raw.get("contexts"),
            "integration_types": raw.get("integration_types", [0]),
            "nsfw": bool(raw.get("nsfw", False)),
            "name_localizations": raw.get("name_localizations"),
            "description_localizations": raw.get("description_localizations"),
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        return command

    async def _get_commands(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        return self._json(self._commands.get(self._command_scope(params), []))

    async def _put_commands(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        scope = self._command_scope(params)
        if not isinstance(record.json, list):
            raise ApiError(400, "Invalid Form Body", 50035)
        commands = [self._normalise_command(raw, scope) for raw in record.json]
        self._commands[scope] = commands
        return self._json(commands)

    async def _post_command(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        scope = self._command_scope(params)
        command = self._normalise_command(record.json or {}, scope)
        current = self._commands.get(scope, [])
        others = [c for c in current if c["id"] != command["id"]]
        self._commands[scope] = [*others, command]
        # Discord answers 201 when the upsert created a command, 200 when it replaced one.
        return self._json(command, 201 if len(others) == len(current) else 200)

    # channels and messages

    def _require_channel(self, channel_id: int) -> dict[str, Any]:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise ApiError(404, "Unknown Channel", 10003)
        return channel

    async def _create_dm(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        body = record.json or {}
        try:
            user_id = int(body["recipient_id"])
        except (KeyError, TypeError, ValueError):
            raise _form_error("recipient_id", "BASE_TYPE_REQUIRED", "Required.") from None
        if user_id not in self.users or user_id == self.bot_user.id:
            raise ApiError(400, "Invalid Recipient(s)", 50033)
        return self._json(self._channels[self.dm_channel_id(user_id)])

    async def _get_channel(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        return self._json(self._require_channel(int(params["channel_id"])))

    def _check_can_send(self, channel_id: int) -> None:
        channel = self._require_channel(channel_id)
        if channel["type"] != ChannelType.DM:
            return
        recipients = channel.get("recipients") or []
        recipient = self.users.get(int(recipients[0]["id"])) if recipients else None
        if recipient is None:
            return
        shares_guild = any(g.member(recipient.id) for g in self.guilds.values())
        if (
            recipient.blocks_dms
            or recipient.bot
            or (self.dm_requires_mutual_guild and not shares_guild)
        ):
            raise ApiError(403, "Cannot send messages to this user", 50007)

    def _build_attachments(
        self,
        channel_id: int,
        payload: Mapping[str, Any],
        files: Sequence[RecordedFile],
        existing: Sequence[Mapping[str, Any]] = (),
    ) -> list[dict[str, Any]] | None:
        """Turn ``payload.attachments`` + uploaded parts into attachment objects.

        New files are referenced by their index (``files[n]``); entries whose id names an
        existing attachment keep it (that is how edits retain files). Returns None when
        the payload does not touch attachments.
        """
        uploads = {}
        for index, part in enumerate(files):
            m = re.fullmatch(r"files\[(\d+)\]", part.name)
            uploads[int(m.group(1)) if m else index] = part
        listed = payload.get("attachments")
        if listed is None and not uploads:
            return None
        if listed is None:
            listed = [{"id": i} for i in sorted(uploads)]
        by_id = {str(a["id"]): a for a in existing}
        result: list[dict[str, Any]] = []
        for entry in listed:
            entry_id = str(entry.get("id"))
            if entry_id in by_id:
                result.append(dict(by_id[entry_id]))
                continue
            part = uploads.get(int(entry_id)) if entry_id.isdigit() else None
            if part is None:
                raise _form_error("attachments", "ATTACHMENT_NOT_FOUND", "Unknown attachment.")
            attachment_id = snowflake()
            filename = entry.get("filename") or part.filename or f"file{entry_id}"
            self._attachments[attachment_id] = part.data
            url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
            item: dict[str, Any] = {
                "id": str(attachment_id),
                "filename": filename,
                "size": len(part.data),
                "url": url,
                "proxy_url": url,
                "content_type": part.content_type,
            }
            if entry.get("description"):
                item["description"] = entry["description"]
            result.append(item)
        return result

    def _mentions(self, content: str) -> list[dict[str, Any]]:
        found = []
        for user_id in dict.fromkeys(int(x) for x in _MENTION_RE.findall(content)):
            user = self.users.get(user_id)
            if user is not None:
                found.append(user_payload(user))
        return found

    def _new_message(
        self,
        channel_id: int,
        payload: Mapping[str, Any],
        files: Sequence[RecordedFile],
        *,
        message_type: int = 0,
        extra: Mapping[str, Any] | None = None,
        allow_empty: bool = False,
    ) -> dict[str, Any]:
        """Create and store a message authored by the bot, validating like Discord."""
        content = payload.get("content") or ""
        if not isinstance(content, str):
            content = str(content)
        if len(content) > MAX_CONTENT_LENGTH:
            raise _form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        attachments = self._build_attachments(channel_id, payload, files) or []
        embeds = list(payload.get("embeds") or [])
        components = list(payload.get("components") or [])
        has_body = any(
            (
                content,
                embeds,
                components,
                attachments,
                payload.get("sticker_ids"),
                payload.get("poll"),
            )
        )
        if not has_body and not allow_empty:
            raise ApiError(400, "Cannot send an empty message", 50006)
        guild_id = self._channel_guild.get(channel_id)
        message = message_payload(
            channel_id=channel_id,
            author=self.bot_user,
            content=content,
            guild_id=guild_id,
            attachments=attachments,
            embeds=embeds,
            components=components,
            flags=int(payload.get("flags") or 0),
        )
        message["type"] = message_type
        message["tts"] = bool(payload.get("tts"))
        message["mentions"] = self._mentions(content)
        if payload.get("nonce") is not None:
            message["nonce"] = payload["nonce"]
        if payload.get("poll"):
            message["poll"] = payload["poll"]
        reference = payload.get("message_reference")
        if reference:
            referenced = self._messages.get(int(reference.get("message_id") or 0))
            if referenced is None and reference.get("fail_if_not_exists", True):
                raise _form_error(
                    "message_reference",
                    "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                    "Unknown message",
                )
            message["type"] = 19 if message_type == 0 else message_type
            message["message_reference"] = {
                "type": int(reference.get("type", 0)),
                "message_id": str(reference.get("message_id")),
                "channel_id": str(reference.get("channel_id") or channel_id),
                **({"guild_id": str(guild_id)} if guild_id else {}),
            }
            if referenced is not None:
                message["referenced_message"] = {
                    k: v for k, v in referenced.items() if k != "referenced_message"
                }
        if extra:
            message.update(extra)
        self._store_message(message)
        return message

    async def _post_message(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        channel_id = int(params["channel_id"])
        self._check_can_send(channel_id)
        payload = record.json or {}
        nonce = payload.get("nonce")
        if nonce is not None and payload.get("enforce_nonce"):
            key = (channel_id, str(nonce))
            seen = self._nonces.get(key)
            now = time.monotonic()
            if seen is not None and now - seen[0] <= self.nonce_window:
                original = self._messages.get(seen[1])
                if original is not None:
                    return self._json(original)
        message = self._new_message(channel_id, payload, record.files)
        if nonce is not None:
            self._nonces[(channel_id, str(nonce))] = (time.monotonic(), int(message["id"]))
        return self._json(message)

    def _require_message(self, channel_id: int, message_id: int) -> dict[str, Any]:
        self._require_channel(channel_id)
        message = self._messages.get(message_id)
        if message is None or int(message["channel_id"]) != channel_id:
            raise ApiError(404, "Unknown Message", 10008)
        return message

    async def _get_message(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        message = self._require_message(int(params["channel_id"]), int(params["message_id"]))
        return self._json(message)

    async def _list_messages(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        channel_id = int(params["channel_id"])
        self._require_channel(channel_id)
        try:
            limit = min(max(int(record.query.get("limit", 50)), 1), 100)
        except ValueError:
            raise _form_error("limit", "NUMBER_TYPE_COERCE", "Value is not int.") from None
        found = self.messages(channel_id)
        if "before" in record.query:
            found = [m for m in found if int(m["id"]) < int(record.query["before"])]
        if "after" in record.query:
            found = [m for m in found if int(m["id"]) > int(record.query["after"])]
            return self._json(list(reversed(found[:limit])))
        return self._json(list(reversed(found))[:limit])

    def _apply_edit(
        self,
        message: dict[str, Any],
        payload: Mapping[str, Any],
        files: Sequence[RecordedFile],
    ) -> dict[str, Any]:
        if "content" in payload:
            content = payload["content"] or ""
            if len(content) > MAX_CONTENT_LENGTH:
                raise _form_error(
                    "content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
                )
            message["content"] = content
            message["mentions"] = self._mentions(content)
        for key in ("embeds", "components"):
            if key in payload:
                message[key] = list(payload[key] or [])
        if "flags" in payload and payload["flags"] is not None:
            keep = int(message.get("flags", 0)) & MessageFlags.EPHEMERAL
            message["flags"] = int(payload["flags"]) | keep
        attachments = self._build_attachments(
            int(message["channel_id"]), payload, files, message.get("attachments") or []
        )
        if attachments is not None:
            message["attachments"] = attachments
        message["flags"] = int(message.get("flags", 0)) & ~MessageFlags.LOADING
        message["edited_timestamp"] = iso_timestamp()
        return message

    async def _patch_message(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        message = self._require_message(int(params["channel_id"]), int(params["message_id"]))
        if str(message["author"]["id"]) != str(self.bot_user.id):
            raise ApiError(403, "Cannot edit a message authored by another user", 50005)
        return self._json(self._apply_edit(message, record.json or {}, record.files))

    def _forget_message(self, message_id: int) -> None:
        message = self._messages.pop(message_id, None)
        if message is not None:
            ids = self._channel_messages.get(int(message["channel_id"]), [])
            with contextlib.suppress(ValueError):
                ids.remove(message_id)

    async def _delete_message(
        self, record: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        self._require_message(int(params["channel_id"]), int(params["message_id"]))
        self._forget_message(int(params["message_id"]))
        return web.Response(status=204)

    # interactions

    def _interaction_for_callback(self, interaction_id: int, token: str) -> _Interaction:
        interaction = self._interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            raise ApiError(404, "Unknown interaction", 10062)
        deadline = self.interaction_ack_deadline
        if deadline is not None and time.monotonic() - interaction.created > deadline:
            raise ApiError(404, "Unknown interaction", 10062)
        return interaction

    def _interaction_message(
        self,
        interaction: _Interaction,
        data: Mapping[str, Any],
        files: Sequence[RecordedFile],
        *,
        allow_empty: bool = False,
    ) -> dict[str, Any]:
        if interaction.channel_id is None:
            raise ApiError(400, "Interaction has no channel", 50035)
        if interaction.channel_id not in self._channels:
            # Channels the emulator was not told about (e.g. group DMs) still get messages.
            self._channels[interaction.channel_id] = {
                "id": str(interaction.channel_id),
                "type": ChannelType.DM,
                "recipients": [],
            }
            self._channel_guild[interaction.channel_id] = interaction.guild_id
        message_type = 20 if interaction.type == InteractionType.APPLICATION_COMMAND else 0
        extra: dict[str, Any] = {
            "webhook_id": str(self.application_id),
            "application_id": str(self.application_id),
        }
        invoker = self.users.get(interaction.user_id or 0)
        if invoker is not None:
            extra["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user_payload(invoker),
                "authorizing_integration_owners": {},
            }
        message = self._new_message(
            interaction.channel_id,
            data,
            files,
            message_type=message_type,
            extra=extra,
            allow_empty=allow_empty,
        )
        self._message_interaction[int(message["id"])] = interaction.id
        return message

    async def _interaction_callback(
        self, record: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        interaction = self._interaction_for_callback(int(params["interaction_id"]), params["token"])
        if interaction.response_type is not None:
            raise ApiError(400, "Interaction has already been acknowledged.", 40060)
        body = record.json or {}
        kind = body.get("type")
        data = dict(body.get("data") or {})
        if kind not in _VALID_CALLBACK_TYPES:
            raise _form_error("type", "BASE_TYPE_CHOICES", "Value must be a valid type.")
        if not _callback_allowed(interaction, kind):
            raise ApiError(400, "Interaction response type is not valid for this interaction")

        message: dict[str, Any] | None = None
        if kind == InteractionCallbackType.CHANNEL_MESSAGE_WITH_SOURCE:
            message = self._interaction_message(interaction, data, record.files)
        elif kind == InteractionCallbackType.DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE:
            flags = MessageFlags.LOADING | (int(data.get("flags") or 0) & MessageFlags.EPHEMERAL)
            message = self._interaction_message(
                interaction, {"content": "", "flags": flags}, [], allow_empty=True
            )
        elif kind == InteractionCallbackType.UPDATE_MESSAGE:
            target = self._messages.get(interaction.message_id or 0)
            if target is None:
                raise ApiError(404, "Unknown Message", 10008)
            message = self._apply_edit(target, data, record.files)
        elif kind == InteractionCallbackType.DEFERRED_UPDATE_MESSAGE:
            message = self._messages.get(interaction.message_id or 0)

        interaction.response_type = kind
        if message is not None:
            interaction.original_message_id = int(message["id"])
        with self._lock:
            self.interaction_callbacks.append(
                InteractionCallback(
                    interaction_id=interaction.id,
                    token=interaction.token,
                    type=kind,
                    data=data,
                    files=list(record.files),
                    time=record.time,
                )
            )

        if record.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        flags = int(data.get("flags") or 0)
        answer: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & MessageFlags.EPHEMERAL),
            }
        }
        if message is not None:
            answer["interaction"]["response_message_id"] = message["id"]
        if kind in (4, 5, 7) and message is not None:
            answer["resource"] = {"type": kind, "message": message}
        return self._json(answer)

    def _interaction_for_webhook(self, params: dict[str, str]) -> _Interaction:
        interaction = self._interactions_by_token.get(params["token"])
        if (
            int(params["app_id"]) != self.application_id
            or interaction is None
            or interaction.response_type is None
        ):
            raise ApiError(404, "Unknown Webhook", 10015)
        return interaction

    def _webhook_target(self, interaction: _Interaction, ref: str) -> dict[str, Any]:
        if ref == "@original":
            message_id = interaction.original_message_id
        else:
            message_id = int(ref)
            owner = self._message_interaction.get(message_id)
            if owner != interaction.id and message_id != interaction.original_message_id:
                message_id = None
        message = self._messages.get(message_id or 0)
        if message is None:
            raise ApiError(404, "Unknown Message", 10008)
        return message

    async def _webhook_execute(
        self, record: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        interaction = self._interaction_for_webhook(params)
        message = self._interaction_message(interaction, record.json or {}, record.files)
        if record.query.get("wait", "").lower() in ("1", "true"):
            return self._json(message)
        return web.Response(status=204)

    async def _webhook_get(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        interaction = self._interaction_for_webhook(params)
        return self._json(self._webhook_target(interaction, params["message_ref"]))

    async def _webhook_patch(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        interaction = self._interaction_for_webhook(params)
        message = self._webhook_target(interaction, params["message_ref"])
        return self._json(self._apply_edit(message, record.json or {}, record.files))

    async def _webhook_delete(
        self, record: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        interaction = self._interaction_for_webhook(params)
        message = self._webhook_target(interaction, params["message_ref"])
        self._forget_message(int(message["id"]))
        return web.Response(status=204)

    # guilds

    async def _get_guild(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        guild = self.guilds.get(int(params["guild_id"]))
        if guild is None:
            raise ApiError(404, "Unknown Guild", 10004)
        body = guild_payload(guild, for_gateway=False)
        if record.query.get("with_counts", "").lower() in ("1", "true"):
            body.update(
                approximate_member_count=len(guild.members),
                approximate_presence_count=0,
            )
        return self._json(body)

    async def _get_guild_channels(
        self, record: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        guild = self.guilds.get(int(params["guild_id"]))
        if guild is None:
            raise ApiError(404, "Unknown Guild", 10004)
        return self._json([channel_payload(c, guild.id) for c in guild.channels])

    async def _get_guild_roles(
        self, record: RecordedRequest, params: dict[str, str]
    ) -> web.Response:
        guild = self.guilds.get(int(params["guild_id"]))
        if guild is None:
            raise ApiError(404, "Unknown Guild", 10004)
        return self._json([role_payload(r) for r in guild.all_roles()])

    async def _list_members(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        guild = self.guilds.get(int(params["guild_id"]))
        if guild is None:
            raise ApiError(404, "Unknown Guild", 10004)
        limit = min(max(int(record.query.get("limit", 1)), 1), 1000)
        after = int(record.query.get("after", 0))
        members = sorted(guild.members, key=lambda m: m.user.id)
        chosen = [m for m in members if m.user.id > after][:limit]
        return self._json([member_payload(m, guild) for m in chosen])

    async def _get_member(self, record: RecordedRequest, params: dict[str, str]) -> web.Response:
        guild = self.guilds.get(int(params["guild_id"]))
        if guild is None:
            raise ApiError(404, "Unknown Guild", 10004)
        member = guild.member(int(params["user_id"]))
        if member is None:
            raise ApiError(404, "Unknown Member", 10007)
        return self._json(member_payload(member, guild))


def _callback_allowed(interaction: _Interaction, kind: int) -> bool:
    """Whether Discord accepts callback ``kind`` for this interaction's type."""
    itype = interaction.type
    if itype == InteractionType.APPLICATION_COMMAND_AUTOCOMPLETE:
        return kind == InteractionCallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
    if kind == InteractionCallbackType.APPLICATION_COMMAND_AUTOCOMPLETE_RESULT:
        return False
    if kind in (
        InteractionCallbackType.DEFERRED_UPDATE_MESSAGE,
        InteractionCallbackType.UPDATE_MESSAGE,
    ):
        # Only interactions attached to a message (components, modals opened from one).
        return interaction.message_id is not None and itype in (
            InteractionType.MESSAGE_COMPONENT,
            InteractionType.MODAL_SUBMIT,
        )
    return not (kind == InteractionCallbackType.MODAL and itype == InteractionType.MODAL_SUBMIT)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@contextlib.contextmanager
def point_discord_py_at(emulator: DiscordEmulator) -> Iterator[None]:
    """Point discord.py's REST and gateway at the emulator, restoring them afterwards.

    Exactly two class attributes are patched:

    * ``discord.http.Route.BASE``: every REST route *and* every interaction/webhook route
      (``discord.webhook.async_`` builds its URLs with the same ``Route`` class);
    * ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``: a plain ``Client`` never
      calls ``GET /gateway``; it connects straight to this URL (``AutoShardedClient``
      asks ``GET /gateway/bot``, which the emulator also answers with its own URL).

    The API version in the path follows ``discord.http.INTERNAL_API_VERSION``.
    """
    import discord.gateway
    import discord.http
    import yarl

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = f"{emulator.base_url}/api/v{discord.http.INTERNAL_API_VERSION}"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emulator.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
