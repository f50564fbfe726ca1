"""Loopback emulator of the Slack Web API and Socket Mode, for tests and benchmarks.

The real ``slack_sdk`` clients (``WebClient``, ``AsyncWebClient``, the Socket Mode clients) and
``slack_bolt`` apps are pointed at this server instead of ``https://slack.com/api/``, so tests
exercise the genuine request encoding, retry handlers, response validation and Socket Mode
acknowledgement logic rather than mocks of them.

The server runs on ``127.0.0.1`` with an ephemeral port inside a background thread that owns its
own event loop. That keeps it independent from whatever loop a test runs (or does not run), so the
same emulator serves sync and async tests alike. Blocking helpers (``wait_for``, ``wait_for_ack``,
``socket_send_envelope``) must not be called from inside a running event loop that also hosts the
client under test, because they would starve it; use the ``async_*`` variants there.

Typical use::

    with SlackEmulator() as slack:
        client = WebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.base_url)
        client.chat_postMessage(channel="C00000001", text="hi")
        (call,) = slack.wait_for("chat.postMessage")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import itertools
import json
import math
import mimetypes
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import WSCloseCode, WSMsgType, web

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_APP_TOKEN",
    "DEFAULT_BOT_TOKEN",
    "DEFAULT_CHANNEL_ID",
    "DEFAULT_SIGNING_SECRET",
    "DEFAULT_TEAM_DOMAIN",
    "DEFAULT_TEAM_ID",
    "DEFAULT_TEAM_NAME",
    "DEFAULT_USER_ID",
    "OAuthGrant",
    "RecordedCall",
    "SlackEmulator",
    "Team",
    "Token",
    "UploadedFile",
    "User",
    "app_home_opened_event",
    "block_actions_body",
    "block_actions_payload",
    "bot_ids_for_team",
    "event_callback_body",
    "event_callback_payload",
    "message_event",
    "sign_request",
    "slash_command_body",
    "slash_command_payload",
    "view_submission_body",
    "view_submission_payload",
]

DEFAULT_TEAM_ID = "T00000001"
DEFAULT_TEAM_NAME = "Emulated Workspace"
DEFAULT_TEAM_DOMAIN = "emulated"
DEFAULT_APP_ID = "A00000001"
DEFAULT_BOT_TOKEN = "xoxb-00000001-emulated-bot-token"
DEFAULT_APP_TOKEN = "xapp-1-A00000001-emulated-app-token"
DEFAULT_USER_ID = "U00000001"
DEFAULT_USER_NAME = "alex"
DEFAULT_CHANNEL_ID = "C00000001"
DEFAULT_SIGNING_SECRET = "emulated-signing-secret"
DEFAULT_BOT_SCOPES = (
    "chat:write",
    "commands",
    "im:history",
    "im:write",
    "users:read",
    "files:write",
)

# Real ts values look like "1700000000.000100"; a fixed epoch keeps test output reproducible.
_TS_EPOCH = 1_700_000_000
# Parameters slack_sdk sends JSON-encoded inside form bodies; decoded so tests can assert on dicts.
_JSON_FIELDS = frozenset(
    {"attachments", "blocks", "files", "metadata", "outputs", "user_auth_blocks", "view"}
)
_NO_TOKEN_METHODS = frozenset({"oauth.v2.access"})
_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
_SOCKET_HOST = "applink-emulator-0"

T = TypeVar("T")


def bot_ids_for_team(team_id: str) -> tuple[str, str]:
    """Return the ``(bot_user_id, bot_id)`` the emulator derives for a team.

    Derived rather than random so tests and payload builders agree on the ids without sharing
    state with a running emulator.
    """
    suffix = team_id[1:] if team_id[:1] in {"T", "E"} else team_id
    return f"UB{suffix}", f"B{suffix}"


# ---------------------------------------------------------------------------------------------
# State records
# ---------------------------------------------------------------------------------------------


@dataclass
class Team:
    """A workspace the emulator knows; its bot identity is what ``auth.test`` reports."""

    id: str
    name: str
    domain: str
    bot_user_id: str
    bot_id: str


@dataclass
class User:
    """A workspace member, rendered by ``users.info`` in Slack's shape."""

    id: str
    team_id: str
    name: str
    real_name: str = ""
    tz: str = "UTC"
    is_admin: bool = False
    is_owner: bool = False
    is_bot: bool = False
    email: str | None = None
    deleted: bool = False
    bot_id: str | None = None

    def to_api(self, *, include_locale: bool = False) -> dict[str, Any]:
        """Render the user the way ``users.info`` does, including the derived tz fields."""
        try:
            zone = ZoneInfo(self.tz)
            now = datetime.now(zone)
            offset = int(now.utcoffset().total_seconds()) if now.utcoffset() else 0
            tz_label = now.tzname() or self.tz
        except (ZoneInfoNotFoundError, ValueError):
            offset, tz_label = 0, self.tz
        profile: dict[str, Any] = {
            "real_name": self.real_name,
            "real_name_normalized": self.real_name,
            "display_name": self.name,
            "display_name_normalized": self.name,
            "team": self.team_id,
            "image_72": f"https://avatars.invalid/{self.id}_72.png",
        }
        if self.email:
            profile["email"] = self.email
        if self.bot_id:
            profile["bot_id"] = self.bot_id
        data: dict[str, Any] = {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "deleted": self.deleted,
            "color": "9f69e7",
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": tz_label,
            "tz_offset": offset,
            "profile": profile,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": self.is_owner,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": _TS_EPOCH,
        }
        if include_locale:
            data["locale"] = "en-US"
        return data


@dataclass(frozen=True)
class Token:
    """An access token: ``kind`` is ``bot`` (xoxb), ``user`` (xoxp) or ``app`` (xapp)."""

    token: str
    kind: str
    team_id: str | None = None
    user_id: str | None = None
    bot_id: str | None = None
    scopes: tuple[str, ...] = ()


@dataclass
class OAuthGrant:
    """A one-shot ``code`` that ``oauth.v2.access`` exchanges for an installation."""

    code: str
    team_id: str
    installer_user_id: str
    scope: str = ",".join(DEFAULT_BOT_SCOPES)
    user_scope: str | None = None
    bot_token: str | None = None
    redirect_uri: str | None = None


@dataclass(frozen=True)
class RecordedCall:
    """One request the emulator answered.

    ``params`` merges query string, form, multipart and JSON bodies (JSON-encoded fields such as
    ``blocks`` already decoded) minus ``token``, which is kept separately whichever way it came.
    ``method`` is the Web API method, or ``file_upload`` / ``response_url`` for those endpoints.
    """

    method: str
    params: dict[str, Any]
    token: str | None
    time: float
    http_method: str = "POST"
    status: int = 200
    response: Any = None


@dataclass
class UploadedFile:
    """A file going through the getUploadURLExternal -> upload -> completeUploadExternal flow."""

    id: str
    filename: str
    length: int
    team_id: str | None
    user_id: str | None
    alt_txt: str | None = None
    title: str | None = None
    content: bytes | None = None
    completed: bool = False
    channels: list[str] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        """Render the file object returned by ``files.completeUploadExternal``."""
        mimetype = mimetypes.guess_type(self.filename)[0] or "application/octet-stream"
        ext = self.filename.rsplit(".", 1)[-1].lower() if "." in self.filename else "binary"
        return {
            "id": self.id,
            "created": _TS_EPOCH,
            "timestamp": _TS_EPOCH,
            "name": self.filename,
            "title": self.title or self.filename,
            "mimetype": mimetype,
            "filetype": ext,
            "user": self.user_id,
            "user_team": self.team_id,
            "size": len(self.content) if self.content is not None else self.length,
            "is_external": False,
            "url_private": f"https://files.invalid/{self.id}/{self.filename}",
            "permalink": f"https://emulated.invalid/files/{self.user_id}/{self.id}",
            "channels": list(self.channels),
            "alt_txt": self.alt_txt,
        }


class _ApiError(Exception):
    """Raised by method handlers to answer ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, status: int = 200) -> None:
        super().__init__(error)
        self.error = error
        self.status = status


@dataclass
class _Fault:
    status: int
    error: str
    retry_after: int | None
    remaining: int
    where: Callable[[dict[str, Any]], bool] | None = None


class _TokenBucket:
    """Refill ``rate`` tokens per second up to ``capacity``; Slack rate limits behave like this."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = time.monotonic()

    def take(self) -> float:
        """Consume one token; return 0 on success or the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def _truthy(value: Any) -> bool:
    """slack_sdk turns booleans into "1"/"0" for forms and keeps them for JSON; accept both."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes"}


def _decode_json_fields(params: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_FIELDS:
        value = params.get(key)
        if isinstance(value, str) and value.strip()[:1] in {"{", "["}:
            # A non-JSON value is passed through untouched, as Slack would reject it anyway.
            with contextlib.suppress(json.JSONDecodeError):
                params[key] = json.loads(value)
    return params


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------


class SlackEmulator:
    """Slack Web API + Socket Mode served from a loopback aiohttp server in its own thread.

    Configuration (teams, users, tokens, OAuth codes, channel errors) survives ``reset()``;
    traffic and runtime state (calls, messages, views, files, acks, faults, limits) does not.
    With ``seed_defaults`` a workspace ``DEFAULT_TEAM_ID`` with bot token ``DEFAULT_BOT_TOKEN``,
    app-level token ``DEFAULT_APP_TOKEN`` and a human member ``DEFAULT_USER_ID`` exist up front.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        app_id: str = DEFAULT_APP_ID,
        client_id: str | None = None,
        client_secret: str | None = None,
        seed_defaults: bool = True,
    ) -> None:
        self.host = host
        self.app_id = app_id
        # When set, oauth.v2.access rejects other credentials, so install-flow misconfiguration
        # shows up in tests the way it would against Slack.
        self.client_id = client_id
        self.client_secret = client_secret

        self._cond = threading.Condition(threading.RLock())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

        self._teams: dict[str, Team] = {}
        self._users: dict[str, User] = {}
        self._tokens: dict[str, Token] = {}
        self._revoked: set[str] = set()
        self._oauth_codes: dict[str, OAuthGrant] = {}
        self._channel_errors: dict[str, str] = {}
        self._ids = itertools.count(1)
        # Open connections are transport state, not traffic, so reset() leaves them alone.
        self._sockets: list[web.WebSocketResponse] = []
        self._reset_runtime_state()

        self._handlers: dict[str, Callable[[dict[str, Any], Token | None], dict[str, Any]]] = {
            "auth.test": self._api_auth_test,
            "conversations.open": self._api_conversations_open,
            "conversations.history": self._api_conversations_history,
            "conversations.replies": self._api_conversations_replies,
            "chat.postMessage": self._api_chat_post_message,
            "chat.postEphemeral": self._api_chat_post_ephemeral,
            "chat.update": self._api_chat_update,
            "chat.delete": self._api_chat_delete,
            "users.info": self._api_users_info,
            "views.open": self._api_views_open,
            "views.push": self._api_views_push,
            "views.update": self._api_views_update,
            "views.publish": self._api_views_publish,
            "oauth.v2.access": self._api_oauth_v2_access,
            "files.getUploadURLExternal": self._api_files_get_upload_url_external,
            "files.completeUploadExternal": self._api_files_complete_upload_external,
            "apps.connections.open": self._api_apps_connections_open,
        }

        if seed_defaults:
            self.add_team(DEFAULT_TEAM_ID, DEFAULT_TEAM_NAME, domain=DEFAULT_TEAM_DOMAIN)
            self.add_bot_token(DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID)
            self.add_app_token(DEFAULT_APP_TOKEN)
            self.add_user(
                DEFAULT_USER_ID,
                name=DEFAULT_USER_NAME,
                real_name="Alex Example",
                tz="Europe/Berlin",
            )

    def _reset_runtime_state(self) -> None:
        self._calls: list[RecordedCall] = []
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._dm_channels: dict[tuple[str, str], str] = {}
        self._views: dict[str, dict[str, Any]] = {}
        self._home_views: dict[tuple[str, str], dict[str, Any]] = {}
        self._files: dict[str, UploadedFile] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._rate_limits: dict[str, tuple[float, float, str]] = {}
        self._delays: dict[str, float] = {}
        self._buckets: dict[tuple[str, str | None, str], _TokenBucket] = {}
        self._ts_counter = itertools.count(1)
        self._tickets: set[str] = set()
        self._acks: dict[str, dict[str, Any]] = {}
        self._socket_inbox: list[dict[str, Any]] = []
        self._envelopes_sent: list[dict[str, Any]] = []
        self._round_robin = itertools.count()

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> SlackEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> SlackEmulator:
        """Bind an ephemeral port and serve from a daemon thread; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("SlackEmulator already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # surfaced to start()'s caller below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="slack-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            self._loop = None
            raise RuntimeError("SlackEmulator failed to start") from failure[0]
        return self

    def stop(self) -> None:
        """Close Socket Mode connections, shut the server down and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            self._loop = None
            self._thread = None
            self._runner = None
            self._port = None

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_post("/response_url/{rid}", self._handle_response_url)
        app.router.add_get("/link/", self._handle_socket)
        app.router.add_get("/link", self._handle_socket)
        # A short shutdown timeout: tests stop the emulator often and nothing needs draining.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def _close_sockets(self) -> None:
        with self._cond:
            sockets = list(self._sockets)
        for ws in sockets:
            # A client that vanished without a close frame must not stall shutdown.
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), timeout=2)

    async def _shutdown(self) -> None:
        await self._close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def port(self) -> int:
        """The bound TCP port (only valid while started)."""
        if self._port is None:
            raise RuntimeError("SlackEmulator is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Value for ``WebClient(base_url=...)``.

        slack_sdk joins it with ``urllib.parse.urljoin(base_url, method)``, so it must end in
        ``/api/`` exactly like the default ``https://slack.com/api/``.
        """
        return f"{self.url}/api/"

    def reset(self) -> None:
        """Forget traffic and runtime state; keep teams, users, tokens and configured errors."""
        with self._cond:
            self._reset_runtime_state()
            self._cond.notify_all()

    # -- configuration --------------------------------------------------------------------------

    def add_team(
        self,
        team_id: str,
        name: str,
        *,
        domain: str | None = None,
        bot_user_id: str | None = None,
        bot_id: str | None = None,
    ) -> Team:
        """Register a workspace plus its bot user (so ``users.info`` on the bot works)."""
        derived_user, derived_bot = bot_ids_for_team(team_id)
        team = Team(
            id=team_id,
            name=name,
            domain=domain or name.lower().replace(" ", "-"),
            bot_user_id=bot_user_id or derived_user,
            bot_id=bot_id or derived_bot,
        )
        with self._cond:
            self._teams[team_id] = team
            self._users[team.bot_user_id] = User(
                id=team.bot_user_id,
                team_id=team_id,
                name="mentorbot",
                real_name="Mentor Bot",
                is_bot=True,
                bot_id=team.bot_id,
            )
        return team

    def add_user(
        self,
        user_id: str,
        *,
        team_id: str = DEFAULT_TEAM_ID,
        name: str | None = None,
        real_name: str | None = None,
        tz: str = "UTC",
        is_admin: bool = False,
        is_owner: bool = False,
        is_bot: bool = False,
        email: str | None = None,
        deleted: bool = False,
    ) -> User:
        """Register a member of ``team_id``; unknown users answer ``user_not_found``."""
        user = User(
            id=user_id,
            team_id=team_id,
            name=name or user_id.lower(),
            real_name=real_name if real_name is not None else (name or user_id),
            tz=tz,
            is_admin=is_admin,
            is_owner=is_owner,
            is_bot=is_bot,
            email=email,
            deleted=deleted,
        )
        with self._cond:
            if team_id not in self._teams:
                raise KeyError(f"unknown team {team_id!r}; add_team() it first")
            self._users[user_id] = user
        return user

    def add_bot_token(
        self, token: str, team_id: str, *, scopes: Iterable[str] = DEFAULT_BOT_SCOPES
    ) -> Token:
        """Map a bot token to a team; ``auth.test`` then reports that team's bot identity."""
        with self._cond:
            team = self._teams[team_id]
            record = Token(token, "bot", team_id, team.bot_user_id, team.bot_id, tuple(scopes))
            self._tokens[token] = record
            self._revoked.discard(token)
        return record

    def add_user_token(
        self, token: str, team_id: str, user_id: str, *, scopes: Iterable[str] = ()
    ) -> Token:
        """Map a user token (xoxp) to a member; calls made with it act as that user."""
        record = Token(token, "user", team_id, user_id, None, tuple(scopes))
        with self._cond:
            self._tokens[token] = record
            self._revoked.discard(token)
        return record

    def add_app_token(self, token: str) -> Token:
        """Register an app-level token (xapp) accepted by ``apps.connections.open``."""
        record = Token(token, "app", scopes=("connections:write",))
        with self._cond:
            self._tokens[token] = record
            self._revoked.discard(token)
        return record

    def revoke_token(self, token: str) -> None:
        """Make later calls with ``token`` fail with ``token_revoked`` (uninstall scenarios)."""
        with self._cond:
            self._revoked.add(token)

    def add_oauth_code(
        self,
        code: str,
        team_id: str = DEFAULT_TEAM_ID,
        *,
        installer_user_id: str = DEFAULT_USER_ID,
        scope: str = ",".join(DEFAULT_BOT_SCOPES),
        user_scope: str | None = None,
        bot_token: str | None = None,
        redirect_uri: str | None = None,
    ) -> OAuthGrant:
        """Register a single-use code for ``oauth.v2.access`` (a new bot token is minted)."""
        grant = OAuthGrant(
            code=code,
            team_id=team_id,
            installer_user_id=installer_user_id,
            scope=scope,
            user_scope=user_scope,
            bot_token=bot_token,
            redirect_uri=redirect_uri,
        )
        with self._cond:
            if team_id not in self._teams:
                raise KeyError(f"unknown team {team_id!r}; add_team() it first")
            self._oauth_codes[code] = grant
        return grant

    def set_channel_error(self, channel_id: str, error: str = "not_in_channel") -> None:
        """Make every method addressing ``channel_id`` fail, e.g. ``not_in_channel``."""
        with self._cond:
            self._channel_errors[channel_id] = error

    def clear_channel_error(self, channel_id: str) -> None:
        """Undo ``set_channel_error``."""
        with self._cond:
            self._channel_errors.pop(channel_id, None)

    # -- fault injection ------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
        error: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error instead of handling them.

        429 carries an integer ``Retry-After`` (slack_sdk ``int()``-parses it) and ``ratelimited``;
        5xx carry a JSON error body; ``status=200`` with ``error`` fakes a business error.
        With ``where``, only calls whose parameters it accepts meet the fault.
        """
        if error is None:
            error = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}.get(
                status, "fatal_error"
            )
        with self._cond:
            self._faults.setdefault(method, []).append(
                _Fault(status, error, retry_after if status == 429 else None, times, where)
            )

    def rate_limit(
        self, method: str, per_second: float, burst: float | None = None, per: str = "channel"
    ) -> None:
        """Token-bucket limit ``method`` per (team, channel), or with ``per="team"`` per
        workspace (a limit the client cannot see); excess calls get 429 + Retry-After."""
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        if per not in ("channel", "team"):
            raise ValueError("per is 'channel' or 'team'")
        with self._cond:
            self._rate_limits[method] = (per_second, burst or max(1.0, per_second), per)
            self._buckets = {k: v for k, v in self._buckets.items() if k[0] != method}

    def delay_responses(self, method: str, seconds: float) -> None:
        """Handle ``method`` at once but answer ``seconds`` later: a slow network after
        Slack has already acted, the window in which a client that goes away cannot
        know its call took effect. ``0`` removes the delay."""
        with self._cond:
            if seconds > 0:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    def clear_rate_limits(self) -> None:
        """Drop all ``rate_limit`` settings."""
        with self._cond:
            self._rate_limits.clear()
            self._buckets.clear()

    # -- inspection -----------------------------------------------------------------------------

    @property
    def calls(self) -> list[RecordedCall]:
        """Snapshot of every answered request, oldest first."""
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        """Recorded calls of one method, oldest first."""
        with self._cond:
            return [c for c in self._calls if c.method == method]

    def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[RecordedCall], bool] | None = None,
    ) -> list[RecordedCall]:
        """Block until ``count`` calls of ``method`` (matching ``where``) were answered.

        Returns all matching calls so far. Wakes on each recorded call instead of polling, so
        tests of background work are both fast and deterministic.
        """

        def matching() -> list[RecordedCall]:
            return [c for c in self._calls if c.method == method and (where is None or where(c))]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                seen = sorted({c.method for c in self._calls})
                raise TimeoutError(
                    f"expected {count} call(s) to {method} within {timeout}s, "
                    f"got {len(matching())}; methods seen: {seen}"
                )
            return matching()

    def wait_until(
        self, condition: Callable[[list[RecordedCall]], bool], timeout: float = 5.0
    ) -> list[RecordedCall]:
        """Block until ``condition(calls)`` holds for the calls answered so far (woken by
        each new call); returns them."""
        with self._cond:
            if not self._cond.wait_for(lambda: condition(self._calls), timeout=timeout):
                raise TimeoutError(f"condition not met within {timeout}s")
            return list(self._calls)

    async def async_wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[RecordedCall], bool] | None = None,
    ) -> list[RecordedCall]:
        """``wait_for`` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_for, method, count, timeout, where)

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Copies of the messages stored for ``channel`` (thread replies too), oldest first."""
        with self._cond:
            return copy.deepcopy(self._messages.get(channel, []))

    @property
    def ephemeral_messages(self) -> list[dict[str, Any]]:
        """Copies of messages sent via ``chat.postEphemeral`` (never in history, as on Slack)."""
        with self._cond:
            return copy.deepcopy(self._ephemerals)

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        """Modal views opened/pushed/updated, by view id."""
        with self._cond:
            return copy.deepcopy(self._views)

    def home_view(self, user_id: str, team_id: str = DEFAULT_TEAM_ID) -> dict[str, Any] | None:
        """The App Home view last published for a user, if any."""
        with self._cond:
            view = self._home_views.get((team_id, user_id))
            return copy.deepcopy(view) if view is not None else None

    @property
    def files(self) -> dict[str, UploadedFile]:
        """Files known to the upload flow, by file id."""
        with self._cond:
            return dict(self._files)

    def dm_channel_id(self, user_id: str, team_id: str = DEFAULT_TEAM_ID) -> str:
        """The stable DM channel id ``conversations.open`` returns for (team, user)."""
        with self._cond:
            return self._dm_for(team_id, user_id)

    def new_response_url(self) -> str:
        """Mint a ``response_url`` served by the emulator; POSTs to it are recorded as calls."""
        return f"{self.url}/response_url/{uuid.uuid4().hex}"

    # -- Socket Mode ----------------------------------------------------------------------------

    @property
    def socket_connection_count(self) -> int:
        """Number of currently open Socket Mode connections."""
        with self._cond:
            return len(self._sockets)

    def wait_for_socket_connection(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``count`` Socket Mode clients are connected."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._sockets) >= count, timeout=timeout):
                raise TimeoutError(f"expected {count} Socket Mode connection(s) within {timeout}s")

    def socket_send_envelope(
        self,
        type: str,
        payload: Mapping[str, Any],
        envelope_id: str | None = None,
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        to_all: bool = False,
        timeout: float = 5.0,
    ) -> str:
        """Push an envelope (``events_api``, ``slash_commands``, ``interactive``) to a client.

        Like Slack, one connection receives it (round robin) unless ``to_all``. Waits up to
        ``timeout`` for a connection, because clients return from connect() before the server
        side has registered the socket. Returns the envelope id to pass to ``wait_for_ack``.
        """
        self._ensure_not_on_loop()
        envelope_id = envelope_id or str(uuid.uuid4())
        if accepts_response_payload is None:
            accepts_response_payload = type == "slash_commands" or (
                type == "interactive"
                and payload.get("type") in {"view_submission", "block_suggestion"}
            )
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "payload": dict(payload),
            "type": type,
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api":
            envelope["retry_attempt"] = retry_attempt or 0
            envelope["retry_reason"] = retry_reason or ""
        elif retry_attempt is not None:
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason or ""
        self.wait_for_socket_connection(1, timeout)
        with self._cond:
            sockets = list(self._sockets)
            targets = sockets if to_all else [sockets[next(self._round_robin) % len(sockets)]]
            self._envelopes_sent.append(copy.deepcopy(envelope))
        text = json.dumps(envelope)
        for ws in targets:
            self._run_on_loop(ws.send_str(text), timeout)
        return envelope_id

    async def async_socket_send_envelope(
        self, type: str, payload: Mapping[str, Any], envelope_id: str | None = None, **kwargs: Any
    ) -> str:
        """``socket_send_envelope`` without blocking the caller's event loop."""
        return await asyncio.to_thread(
            lambda: self.socket_send_envelope(type, payload, envelope_id, **kwargs)
        )

    def socket_send_disconnect(
        self, reason: str = "refresh_requested", timeout: float = 5.0
    ) -> None:
        """Tell connected clients to reconnect, as Slack does periodically."""
        self._ensure_not_on_loop()
        message = json.dumps(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": _SOCKET_HOST}}
        )
        with self._cond:
            sockets = list(self._sockets)
        for ws in sockets:
            self._run_on_loop(ws.send_str(message), timeout)

    def socket_close_connections(self, timeout: float = 5.0) -> None:
        """Close every Socket Mode connection from the server side and wait until they are gone.

        Exercises client reconnection; also lets slack_sdk's builtin client shut down promptly,
        since its reader thread otherwise sits in a 3 s ``recv()`` that ``close()`` waits for.
        """
        self._ensure_not_on_loop()
        self._run_on_loop(self._close_sockets(), timeout)
        with self._cond:
            if not self._cond.wait_for(lambda: not self._sockets, timeout=timeout):
                raise TimeoutError("Socket Mode connections did not close")

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Block until the client acknowledged ``envelope_id``; return the ack message.

        slack_sdk acks with ``{"envelope_id": ...}`` plus ``"payload"`` when the Bolt listener
        passed something to ``ack()``.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: envelope_id in self._acks, timeout=timeout):
                raise TimeoutError(f"no ack for envelope {envelope_id} within {timeout}s")
            return copy.deepcopy(self._acks[envelope_id])

    async def async_wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """``wait_for_ack`` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_for_ack, envelope_id, timeout)

    @property
    def socket_messages(self) -> list[dict[str, Any]]:
        """Every JSON message clients sent over Socket Mode (acks included), oldest first."""
        with self._cond:
            return copy.deepcopy(self._socket_inbox)

    @property
    def envelopes_sent(self) -> list[dict[str, Any]]:
        """Envelopes pushed via ``socket_send_envelope``, oldest first."""
        with self._cond:
            return copy.deepcopy(self._envelopes_sent)

    def _ensure_not_on_loop(self) -> None:
        if self._thread is not None and threading.get_ident() == self._thread.ident:
            raise RuntimeError("blocking SlackEmulator helpers cannot run on the emulator thread")

    def _run_on_loop(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._loop is None:
            raise RuntimeError("SlackEmulator is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- HTTP plumbing --------------------------------------------------------------------------

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        """Merge query string and body; slack_sdk uses all of form, JSON, multipart and query."""
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "multipart/form-data":
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    params[key] = value.file.read()
                else:
                    params[key] = value
            return params
        raw = await request.read()
        if not raw:
            return params
        if request.content_type == "application/json":
            body = json.loads(raw.decode("utf-8"))
            if not isinstance(body, dict):
                raise _ApiError("invalid_json")
            params.update(body)
        else:
            params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        return params

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        token: str | None,
        received: float,
        http_method: str,
        status: int,
        response: Any,
    ) -> None:
        with self._cond:
            self._calls.append(
                RecordedCall(method, params, token, received, http_method, status, response)
            )
            self._cond.notify_all()

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        received = time.time()
        basic: tuple[str, str] | None = None
        header_token: str | None = None
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            header_token = authorization[len("Bearer ") :].strip() or None
        elif authorization.startswith("Basic "):
            decoded = base64.b64decode(authorization[len("Basic ") :]).decode("utf-8")
            client_id, _, client_secret = decoded.partition(":")
            basic = (client_id, client_secret)

        token = header_token
        headers: dict[str, str] = {}
        try:
            params = _decode_json_fields(await self._read_params(request))
        except (json.JSONDecodeError, UnicodeDecodeError, _ApiError):
            params = {}
            status, body = 200, {"ok": False, "error": "invalid_json"}
        else:
            body_token = params.pop("token", None)
            if token is None and isinstance(body_token, str):
                token = body_token
            with self._cond:
                status, body, headers = self._dispatch(method, params, token, basic)
        self._record(method, params, token, received, request.method, status, body)
        with self._cond:
            delay = self._delays.get(method, 0.0)
        if delay:
            await asyncio.sleep(delay)
        return web.json_response(body, status=status, headers=headers)

    def _dispatch(
        self,
        method: str,
        params: dict[str, Any],
        token: str | None,
        basic: tuple[str, str] | None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Faults first (they model the edge), then auth, rate limits and the method itself."""
        faults = self._faults.get(method) or []
        fault = next((f for f in faults if f.where is None or f.where(params)), None)
        if fault is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                faults.remove(fault)
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(int(fault.retry_after))
            return fault.status, {"ok": False, "error": fault.error}, headers

        handler = self._handlers.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        try:
            auth = self._authenticate(method, token)
            limited = self._check_rate_limit(method, auth, params)
            if limited is not None:
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(limited)}
            if method == "oauth.v2.access":
                params = {**params, "_basic": basic}
            return 200, handler(params, auth), {}
        except _ApiError as exc:
            return exc.status, {"ok": False, "error": exc.error}, {}

    def _authenticate(self, method: str, token: str | None) -> Token | None:
        if method in _NO_TOKEN_METHODS:
            return None
        if not token:
            raise _ApiError("not_authed")
        if token in self._revoked:
            raise _ApiError("token_revoked")
        record = self._tokens.get(token)
        if record is None:
            raise _ApiError("invalid_auth")
        if (record.kind == "app") != (method in _APP_TOKEN_METHODS):
            raise _ApiError("not_allowed_token_type")
        return record

    def _check_rate_limit(
        self, method: str, auth: Token | None, params: Mapping[str, Any]
    ) -> int | None:
        limit = self._rate_limits.get(method)
        if limit is None:
            return None
        per_second, burst, per = limit
        channel = str(params.get("channel") or params.get("channel_id") or "")
        key = (method, auth.team_id if auth else None, channel if per == "channel" else "")
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _TokenBucket(per_second, burst)
        wait = bucket.take()
        # Slack only ever sends whole seconds, and slack_sdk int()-parses the header.
        return None if wait == 0 else max(1, math.ceil(wait))

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        """The ``upload_url`` target: Slack accepts a raw body or a multipart ``file`` part."""
        received = time.time()
        file_id = request.match_info["file_id"]
        if request.content_type == "multipart/form-data":
            form = await request.post()
            content = b""
            for value in form.values():
                if isinstance(value, web.FileField):
                    content = value.file.read()
                    break
                content = str(value).encode("utf-8")
        else:
            content = await request.read()
        with self._cond:
            upload = self._files.get(file_id)
            if upload is not None:
                upload.content = content
        status, text = (200, f"OK - {len(content)}") if upload else (404, "file_not_found")
        self._record(
            "file_upload",
            {"file_id": file_id, "content": content},
            None,
            received,
            request.method,
            status,
            text,
        )
        return web.Response(status=status, text=text, content_type="text/plain")

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        received = time.time()
        raw = await request.read()
        try:
            params = json.loads(raw.decode("utf-8")) if raw else {}
        except json.JSONDecodeError:
            params = {"raw": raw.decode("utf-8", "replace")}
        params = params if isinstance(params, dict) else {"body": params}
        params["response_url"] = str(request.url)
        self._record("response_url", params, None, received, request.method, 200, "ok")
        return web.Response(text="ok", content_type="text/plain")

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._cond:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
            num_connections = len(self._sockets) + 1
        if not valid:
            return web.Response(status=401, text="invalid_ticket")
        # autoping answers the clients' "sdk-ping-pong:<t>" pings with matching pongs, which
        # the aiohttp client relies on to consider the connection alive.
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        hello = {
            "type": "hello",
            "num_connections": num_connections,
            "debug_info": {
                "host": _SOCKET_HOST,
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }
        await ws.send_str(json.dumps(hello))
        with self._cond:
            self._sockets.append(ws)
            self._cond.notify_all()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_socket_text(message.data)
        finally:
            with self._cond:
                if ws in self._sockets:
                    self._sockets.remove(ws)
                self._cond.notify_all()
        return ws

    def _on_socket_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except json.JSONDecodeError:
            message = {"raw": data}
        with self._cond:
            self._socket_inbox.append(message)
            if isinstance(message, dict) and "envelope_id" in message:
                self._acks[str(message["envelope_id"])] = message
            self._cond.notify_all()

    # -- helpers used by method handlers (called with the lock held) ----------------------------

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08X}"

    def _next_ts(self) -> str:
        n = next(self._ts_counter)
        return f"{_TS_EPOCH + n // 10000}.{(n % 10000) * 100:06d}"

    def _dm_for(self, team_id: str, user_id: str) -> str:
        key = (team_id, user_id)
        if key not in self._dm_channels:
            self._dm_channels[key] = self._next_id("D")
        return self._dm_channels[key]

    def _team_user(self, auth: Token | None, user_id: Any) -> User:
        user = self._users.get(str(user_id)) if user_id else None
        if user is None or (auth is not None and auth.team_id not in {None, user.team_id}):
            raise _ApiError("user_not_found")
        return user

    def _resolve_channel(self, auth: Token | None, channel: Any) -> str:
        if not channel or not isinstance(channel, str):
            raise _ApiError("channel_not_found")
        if channel in self._channel_errors:
            raise _ApiError(self._channel_errors[channel])
        if channel[:1] in {"U", "W"} and auth is not None and auth.team_id:
            if channel not in self._users:
                raise _ApiError("channel_not_found")
            channel = self._dm_for(auth.team_id, self._team_user(auth, channel).id)
            if channel in self._channel_errors:
                raise _ApiError(self._channel_errors[channel])
        return channel

    def _author(self, auth: Token | None) -> dict[str, Any]:
        if auth is None:
            return {}
        if auth.kind == "bot":
            return {
                "user": auth.user_id,
                "bot_id": auth.bot_id,
                "app_id": self.app_id,
                "team": auth.team_id,
            }
        return {"user": auth.user_id, "team": auth.team_id}

    def _find_message(self, channel: str, ts: Any) -> dict[str, Any]:
        for message in self._messages.get(channel, []):
            if message["ts"] == ts:
                return message
        raise _ApiError("message_not_found")

    def _store_message(self, channel: str, message: dict[str, Any]) -> dict[str, Any]:
        message["ts"] = self._next_ts()
        thread_ts = message.get("thread_ts")
        if thread_ts:
            for parent in self._messages.get(channel, []):
                if parent["ts"] == thread_ts:
                    parent["thread_ts"] = thread_ts
                    parent["reply_count"] = parent.get("reply_count", 0) + 1
                    users = parent.setdefault("reply_users", [])
                    if message.get("user") and message["user"] not in users:
                        users.append(message["user"])
                    parent["latest_reply"] = message["ts"]
                    break
        self._messages.setdefault(channel, []).append(message)
        return message

    @staticmethod
    def _content_fields(params: Mapping[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for key in ("text", "blocks", "attachments", "metadata", "username", "icon_emoji"):
            if params.get(key) not in (None, ""):
                fields[key] = copy.deepcopy(params[key])
        return fields

    # -- Web API methods ------------------------------------------------------------------------

    def _api_auth_test(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        assert auth is not None and auth.team_id is not None
        team = self._teams[auth.team_id]
        user = self._users.get(auth.user_id or "")
        response: dict[str, Any] = {
            "ok": True,
            "url": f"https://{team.domain}.slack.com/",
            "team": team.name,
            "user": user.name if user else auth.user_id,
            "team_id": team.id,
            "user_id": auth.user_id,
            "is_enterprise_install": False,
        }
        if auth.bot_id:
            response["bot_id"] = auth.bot_id
        return response

    def _api_conversations_open(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        assert auth is not None and auth.team_id is not None
        if params.get("channel"):
            channel = self._resolve_channel(auth, params["channel"])
            return {"ok": True, "no_op": True, "already_open": True, "channel": {"id": channel}}
        users = [u.strip() for u in str(params.get("users") or "").split(",") if u.strip()]
        if not users:
            raise _ApiError("users_list_not_supplied")
        members = [self._team_user(auth, u).id for u in users]
        if len(members) == 1:
            key = (auth.team_id, members[0])
            already = key in self._dm_channels
            channel = self._dm_for(*key)
            if channel in self._channel_errors:
                raise _ApiError(self._channel_errors[channel])
            payload: dict[str, Any] = {"id": channel}
            if _truthy(params.get("return_im", False)):
                payload.update({"is_im": True, "user": members[0], "created": _TS_EPOCH})
            return {"ok": True, "no_op": already, "already_open": already, "channel": payload}
        key = (auth.team_id, ",".join(sorted(members)))
        channel = self._dm_channels.get(key) or self._next_id("G")
        self._dm_channels[key] = channel
        return {"ok": True, "channel": {"id": channel, "is_mpim": True}}

    def _api_conversations_history(
        self, params: dict[str, Any], auth: Token | None
    ) -> dict[str, Any]:
        channel = self._resolve_channel(auth, params.get("channel"))
        top_level = [
            m
            for m in self._messages.get(channel, [])
            if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"
        ]
        inclusive = _truthy(params.get("inclusive", False))
        oldest = float(params.get("oldest") or 0)
        latest = float(params["latest"]) if params.get("latest") else math.inf

        def in_range(ts: str) -> bool:
            value = float(ts)
            if inclusive:
                return oldest <= value <= latest
            return oldest < value < latest

        selected = [m for m in reversed(top_level) if in_range(m["ts"])]
        return self._page(selected, params, "messages", _truthy(params.get("include_all_metadata")))

    def _api_conversations_replies(
        self, params: dict[str, Any], auth: Token | None
    ) -> dict[str, Any]:
        channel = self._resolve_channel(auth, params.get("channel"))
        ts = params.get("ts")
        thread = [
            m
            for m in self._messages.get(channel, [])
            if m["ts"] == ts or (m.get("thread_ts") == ts and ts)
        ]
        if not thread:
            raise _ApiError("thread_not_found")
        return self._page(thread, params, "messages", _truthy(params.get("include_all_metadata")))

    @staticmethod
    def _page(
        items: list[dict[str, Any]], params: Mapping[str, Any], key: str, with_metadata: bool
    ) -> dict[str, Any]:
        """Cursor pagination in Slack's shape (``response_metadata.next_cursor``)."""
        limit = int(params.get("limit") or 0)
        limit = min(limit, 999) if limit > 0 else 100
        cursor = str(params.get("cursor") or "")
        try:
            offset = int(base64.b64decode(cursor).decode().removeprefix("offset:")) if cursor else 0
        except ValueError as exc:
            raise _ApiError("invalid_cursor") from exc
        page = copy.deepcopy(items[offset : offset + limit])
        if not with_metadata:
            for message in page:
                message.pop("metadata", None)
        has_more = offset + limit < len(items)
        next_cursor = (
            base64.b64encode(f"offset:{offset + limit}".encode()).decode() if has_more else ""
        )
        return {
            "ok": True,
            key: page,
            "has_more": has_more,
            "pin_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _api_chat_post_message(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        channel = self._resolve_channel(auth, params.get("channel"))
        content = self._content_fields(params)
        if not any(k in content for k in ("text", "blocks", "attachments")):
            raise _ApiError("no_text")
        message: dict[str, Any] = {"type": "message", **self._author(auth), **content}
        if params.get("thread_ts"):
            message["thread_ts"] = str(params["thread_ts"])
            if _truthy(params.get("reply_broadcast", False)):
                message["subtype"] = "thread_broadcast"
        stored = self._store_message(channel, message)
        return {
            "ok": True,
            "channel": channel,
            "ts": stored["ts"],
            "message": copy.deepcopy(stored),
        }

    def _api_chat_post_ephemeral(
        self, params: dict[str, Any], auth: Token | None
    ) -> dict[str, Any]:
        channel = self._resolve_channel(auth, params.get("channel"))
        user = self._team_user(auth, params.get("user"))
        content = self._content_fields(params)
        if not any(k in content for k in ("text", "blocks", "attachments")):
            raise _ApiError("no_text")
        ts = self._next_ts()
        message = {"channel": channel, "user": user.id, "ts": ts, **content}
        if params.get("thread_ts"):
            message["thread_ts"] = str(params["thread_ts"])
        self._ephemerals.append(message)
        return {"ok": True, "message_ts": ts}

    def _api_chat_update(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        channel = self._resolve_channel(auth, params.get("channel"))
        message = self._find_message(channel, params.get("ts"))
        if auth is not None and message.get("user") != auth.user_id:
            raise _ApiError("cant_update_message")
        message.update(self._content_fields(params))
        message["edited"] = {"user": auth.user_id if auth else None, "ts": self._next_ts()}
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "text": message.get("text", ""),
            "message": copy.deepcopy(message),
        }

    def _api_chat_delete(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        channel = self._resolve_channel(auth, params.get("channel"))
        message = self._find_message(channel, params.get("ts"))
        self._messages[channel].remove(message)
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def _api_users_info(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        user = self._team_user(auth, params.get("user"))
        include_locale = _truthy(params.get("include_locale", False))
        return {"ok": True, "user": user.to_api(include_locale=include_locale)}

    def _materialize_view(
        self,
        auth: Token | None,
        view: Any,
        *,
        view_id: str | None = None,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if not isinstance(view, dict) or not view.get("type"):
            raise _ApiError("invalid_arguments")
        team_id = auth.team_id if auth else None
        view_id = view_id or self._next_id("V")
        return {
            "id": view_id,
            "team_id": team_id,
            "type": view["type"],
            "title": view.get("title"),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "blocks": copy.deepcopy(view.get("blocks", [])),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{_TS_EPOCH}.{uuid.uuid4().hex[:8]}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "previous_view_id": previous["id"] if previous else None,
            "root_view_id": (previous or {}).get("root_view_id") or view_id,
            "app_id": self.app_id,
            "app_installed_team_id": team_id,
            "bot_id": auth.bot_id if auth else None,
        }

    def _api_views_open(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        if not params.get("trigger_id") and not params.get("interactivity_pointer"):
            raise _ApiError("invalid_arguments")
        view = self._materialize_view(auth, params.get("view"))
        self._views[view["id"]] = view
        return {"ok": True, "view": copy.deepcopy(view)}

    def _api_views_push(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        if not params.get("trigger_id") and not params.get("interactivity_pointer"):
            raise _ApiError("invalid_arguments")
        previous = next(reversed(self._views.values()), None)
        view = self._materialize_view(auth, params.get("view"), previous=previous)
        self._views[view["id"]] = view
        return {"ok": True, "view": copy.deepcopy(view)}

    def _api_views_update(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        current: dict[str, Any] | None = None
        if params.get("view_id"):
            current = self._views.get(str(params["view_id"]))
        elif params.get("external_id"):
            current = next(
                (v for v in self._views.values() if v["external_id"] == params["external_id"]),
                None,
            )
        if current is None:
            raise _ApiError("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            raise _ApiError("hash_conflict")
        view = self._materialize_view(auth, params.get("view"), view_id=current["id"])
        view["previous_view_id"] = current["previous_view_id"]
        view["root_view_id"] = current["root_view_id"]
        self._views[view["id"]] = view
        return {"ok": True, "view": copy.deepcopy(view)}

    def _api_views_publish(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        assert auth is not None and auth.team_id is not None
        user = self._team_user(auth, params.get("user_id"))
        key = (auth.team_id, user.id)
        current = self._home_views.get(key)
        if current is not None and params.get("hash") and params["hash"] != current["hash"]:
            raise _ApiError("hash_conflict")
        view = self._materialize_view(
            auth, params.get("view"), view_id=current["id"] if current else None
        )
        if view["type"] != "home":
            raise _ApiError("invalid_arguments")
        self._home_views[key] = view
        return {"ok": True, "view": copy.deepcopy(view)}

    def _api_oauth_v2_access(self, params: dict[str, Any], auth: Token | None) -> dict[str, Any]:
        basic = params.pop("_basic", None)
        client_id = basic[0] if basic else params.get("client_id")
        client_secret = basic[1] if basic else params.get("client_secret")
        if self.client_id is not None and client_id != self.client_id:
            raise _ApiError("invalid_client_id")
        if self.client_secret is not None and client_secret != self.client_secret:
            raise _ApiError("bad_client_secret")
        grant = self._oauth_codes.get(str(params.get("code") or ""))
        if grant is None:
            raise _ApiError("invalid_code")
        if grant.redirect_uri is not None and params.get("redirect_uri") != grant.redirect_uri:
            raise _ApiError("bad_redirect_uri")
        del self._oauth_codes[grant.code]
        team = self._teams[grant.team_id]
        bot_token = grant.bot_token or f"xoxb-{team.id}-{next(self._ids)}-emulated"
        self.add_bot_token(bot_token, team.id, scopes=grant.scope.split(","))
        authed_user: dict[str, Any] = {"id": grant.installer_user_id}
        if grant.user_scope:
            user_token = f"xoxp-{team.id}-{next(self._ids)}-emulated"
            self.add_user_token(
                user_token, team.id, grant.installer_user_id, scopes=grant.user_scope.split(",")
            )
            authed_user.update(
                {"scope": grant.user_scope, "access_token": user_token, "token_type": "user"}
            )
        return {
            "ok": True,
            "app_id": self.app_id,
            "authed_user": authed_user,
            "scope": grant.scope,
            "token_type": "bot",
            "access_token": bot_token,
            "bot_user_id": team.bot_user_id,
            "team": {"id": team.id, "name": team.name},
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _api_files_get_upload_url_external(
        self, params: dict[str, Any], auth: Token | None
    ) -> dict[str, Any]:
        filename = params.get("filename")
        try:
            length = int(params.get("length", ""))
        except ValueError as exc:
            raise _ApiError("invalid_arguments") from exc
        if not filename or length < 0:
            raise _ApiError("invalid_arguments")
        file_id = self._next_id("F")
        self._files[file_id] = UploadedFile(
            id=file_id,
            filename=str(filename),
            length=length,
            team_id=auth.team_id if auth else None,
            user_id=auth.user_id if auth else None,
            alt_txt=params.get("alt_txt"),
        )
        return {"ok": True, "upload_url": f"{self.url}/upload/v1/{file_id}", "file_id": file_id}

    def _api_files_complete_upload_external(
        self, params: dict[str, Any], auth: Token | None
    ) -> dict[str, Any]:
        entries = params.get("files")
        if not isinstance(entries, list) or not entries:
            raise _ApiError("invalid_arguments")
        uploads: list[UploadedFile] = []
        for entry in entries:
            upload = self._files.get(str(entry.get("id")) if isinstance(entry, dict) else "")
            if upload is None or upload.content is None:
                raise _ApiError("file_not_found")
            upload.title = entry.get("title") or upload.title
            uploads.append(upload)
        channels = [c for c in str(params.get("channels") or "").split(",") if c]
        if params.get("channel_id"):
            channels.insert(0, str(params["channel_id"]))
        resolved = [self._resolve_channel(auth, c) for c in channels]
        for upload in uploads:
            upload.completed = True
            upload.channels.extend(resolved)
        for channel in resolved:
            message: dict[str, Any] = {
                "type": "message",
                **self._author(auth),
                "text": params.get("initial_comment") or "",
                "files": [u.to_api() for u in uploads],
                "upload": True,
            }
            if params.get("thread_ts"):
                message["thread_ts"] = str(params["thread_ts"])
            self._store_message(channel, message)
        return {"ok": True, "files": [u.to_api() for u in uploads]}

    def _api_apps_connections_open(
        self, params: dict[str, Any], auth: Token | None
    ) -> dict[str, Any]:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {
            "ok": True,
            "url": f"ws://{self.host}:{self.port}/link/?ticket={ticket}&app_id={self.app_id}",
        }


# ---------------------------------------------------------------------------------------------
# Requests Slack sends to the app (HTTP mode bodies and Socket Mode payloads)
# ---------------------------------------------------------------------------------------------


def sign_request(signing_secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers that make ``body`` pass Bolt's signature verification.

    Slack signs ``v0:{timestamp}:{raw body}`` with HMAC-SHA256; Bolt also rejects timestamps
    older than five minutes, hence the default of "now".
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(
        signing_secret.encode("utf-8"), f"v0:{ts}:{body}".encode(), hashlib.sha256
    ).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def _trigger_id() -> str:
    return f"{_TS_EPOCH}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def slash_command_payload(
    command: str = "/mentor",
    text: str = "",
    *,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    channel_id: str = DEFAULT_CHANNEL_ID,
    channel_name: str = "general",
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    api_app_id: str = DEFAULT_APP_ID,
    response_url: str | None = None,
    trigger_id: str | None = None,
    enterprise_id: str | None = None,
) -> dict[str, str]:
    """Slash command fields; all strings, as Slack form-encodes them (Socket Mode payload too)."""
    payload = {
        "token": "emulated-verification-token",
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url
        or f"https://hooks.slack.invalid/commands/{team_id}/1/{uuid.uuid4().hex}",
        "trigger_id": trigger_id or _trigger_id(),
    }
    if enterprise_id:
        payload["enterprise_id"] = enterprise_id
    return payload


def slash_command_body(command: str = "/mentor", text: str = "", **kwargs: Any) -> str:
    """Form-encoded HTTP body for a slash command; kwargs as for ``slash_command_payload``."""
    return urlencode(slash_command_payload(command, text, **kwargs))


def message_event(
    text: str,
    *,
    user: str = DEFAULT_USER_ID,
    channel: str = "D00000001",
    channel_type: str = "im",
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = DEFAULT_TEAM_ID,
) -> dict[str, Any]:
    """A ``message`` event as found under ``event`` in an event_callback."""
    ts = ts or f"{int(time.time())}.{uuid.uuid4().int % 10**6:06d}"
    event: dict[str, Any] = {
        "type": "message",
        "client_msg_id": str(uuid.uuid4()),
        "text": text,
        "user": user,
        "ts": ts,
        "team": team,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def app_home_opened_event(
    user: str = DEFAULT_USER_ID, *, channel: str = "D00000001", tab: str = "home"
) -> dict[str, Any]:
    """An ``app_home_opened`` event (what triggers ``views.publish`` of the Home tab)."""
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": channel,
        "tab": tab,
        "event_ts": f"{int(time.time())}.000100",
    }


def event_callback_payload(
    event: Mapping[str, Any],
    *,
    team_id: str = DEFAULT_TEAM_ID,
    api_app_id: str = DEFAULT_APP_ID,
    bot_user_id: str | None = None,
    event_id: str | None = None,
    event_time: int | None = None,
) -> dict[str, Any]:
    """Events API ``event_callback`` envelope; Bolt reads ``authorizations`` for the team."""
    return {
        "token": "emulated-verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": event_time or int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id or bot_ids_for_team(team_id)[0],
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


def event_callback_body(event: Mapping[str, Any], **kwargs: Any) -> str:
    """JSON HTTP body for an event; kwargs as for ``event_callback_payload``."""
    return json.dumps(event_callback_payload(event, **kwargs))


def _interaction_user(user_id: str, user_name: str, team_id: str) -> dict[str, str]:
    return {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id}


def block_actions_payload(
    action_id: str,
    *,
    value: str | None = None,
    block_id: str = "actions",
    action_type: str = "button",
    extra_action_fields: Mapping[str, Any] | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    api_app_id: str = DEFAULT_APP_ID,
    channel_id: str | None = "D00000001",
    message: Mapping[str, Any] | None = None,
    view: Mapping[str, Any] | None = None,
    state_values: Mapping[str, Any] | None = None,
    response_url: str | None = None,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """``block_actions`` interaction from a message (default) or, with ``view``, a modal/Home."""
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "type": action_type,
        "action_ts": f"{int(time.time())}.000100",
    }
    if action_type == "button":
        action["text"] = {"type": "plain_text", "text": "Button", "emoji": True}
    if value is not None:
        action["value"] = value
    action.update(extra_action_fields or {})
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _interaction_user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": "emulated-verification-token",
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": dict(state_values or {})},
        "actions": [action],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id", "V00000001")}
        payload["view"] = dict(view)
    else:
        msg = dict(message or {"type": "message", "ts": f"{_TS_EPOCH}.000100", "text": ""})
        payload["container"] = {
            "type": "message",
            "message_ts": msg.get("ts"),
            "channel_id": channel_id,
            "is_ephemeral": False,
        }
        payload["message"] = msg
        payload["response_url"] = (
            response_url or f"https://hooks.slack.invalid/actions/{team_id}/1/{uuid.uuid4().hex}"
        )
    if channel_id is not None and view is None:
        payload["channel"] = {"id": channel_id, "name": "directmessage"}
    return payload


def block_actions_body(action_id: str, **kwargs: Any) -> str:
    """Form body ``payload=<json>`` as Slack posts interactions; kwargs as for the payload."""
    return urlencode({"payload": json.dumps(block_actions_payload(action_id, **kwargs))})


def view_submission_payload(
    callback_id: str,
    values: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    private_metadata: str = "",
    blocks: list[dict[str, Any]] | None = None,
    view_id: str = "V00000001",
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    api_app_id: str = DEFAULT_APP_ID,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """``view_submission`` of a modal; ``values`` is ``{block_id: {action_id: {type, value}}}``."""
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": team_domain},
        "user": _interaction_user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": "emulated-verification-token",
        "trigger_id": trigger_id or _trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": list(blocks or []),
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": {k: dict(v) for k, v in (values or {}).items()}},
            "hash": f"{_TS_EPOCH}.abcdef01",
            "title": {"type": "plain_text", "text": "Modal", "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": api_app_id,
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": bot_ids_for_team(team_id)[1],
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_submission_body(
    callback_id: str, values: Mapping[str, Mapping[str, Any]] | None = None, **kwargs: Any
) -> str:
    """Form body ``payload=<json>`` for a view submission; kwargs as for the payload."""
    payload = view_submission_payload(callback_id, values, **kwargs)
    return urlencode({"payload": json.dumps(payload)})
