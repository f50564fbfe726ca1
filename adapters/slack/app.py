"""The Slack adapter: slack_bolt's ``AsyncApp`` on the core's event loop.

Slack wants an answer within 3 seconds, so every listener acknowledges first and does
the work in a task afterwards (``process_before_response`` is on, so the HTTP answer or
Socket Mode ack leaves as soon as ``ack()`` returns, not after a polling interval).
Work for one learner runs in order, one event at a time, so "a second message is added
to the same answer" holds even when Slack delivers two messages at once.

Modes, chosen from the settings:
- single workspace: ``SLACK_BOT_TOKEN``;
- multi-workspace: ``SLACK_CLIENT_ID`` + ``SLACK_CLIENT_SECRET``, installs kept in the
  project database (``adapters.slack.installation``);
- transport: Socket Mode when ``SLACK_APP_TOKEN`` is set, HTTP (``/slack/events``,
  signed with ``SLACK_SIGNING_SECRET``) when the signing secret is set; both may run.

Over HTTP, the adapter checks every request itself (``adapters.slack.verify``) and
hands it to Bolt parsed.

Nothing here decides behaviour: every command, reply, edit, button and workspace join
goes to the hub as an ``IncomingEvent`` and whatever the core answers is rendered as
Block Kit. What only Slack knows is filled in here: who a mentioned ``<@U…>`` is (so the
core can refuse bots; asked only for a lead's command that takes people, see
``bot.mentions``), who counts as a lead (admins, owners, the installer), and how a file
reaches a conversation (files cannot be ephemeral, so they go to the DM).

Every Web API call waits on the budgets the dispatcher's sends draw from (in the
database, shared by replicas): a delivery's post and the calls it needs (opening the DM,
uploads) are booked together (``rate_limits``), and the calls events need (users.info,
views.publish) wait on their method's budget (``_api``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from adapters.cache import Bounded, TTLCache
from adapters.slack.errors import (
    FILE_SCOPE_ERRORS,
    TOKEN_ERRORS,
    error_code,
    explain_channel_refusal,
    outcome_unknown,
    to_send_error,
)
from adapters.slack.installation import ThreadedInstallationStore, ThreadedStateStore
from adapters.slack.render import (
    ACTION_PREFIX,
    REPLY_CALLBACK,
    Part,
    from_slack_text,
    home_view,
    question_from_blocks,
    read_button_value,
    render_parts,
    reply_modal,
    to_mrkdwn,
)
from adapters.slack.translate import read_dm, submitted_answer
from adapters.slack.verify import (
    MAX_BODY_BYTES,
    RecentKeys,
    RequestGuard,
    parse_body,
    payload_problem,
    read_capped,
)
from bot.config import Settings
from bot.crypto import OAUTH_NEEDS_KEY, load_cipher
from bot.db import Store
from bot.mentions import MAX_MENTIONS, TooManyMentions, has_lead_role, takes_people
from bot.messages import (
    Action,
    Attachment,
    EventKind,
    IncomingEvent,
    OutgoingMessage,
    SendResult,
    UserRef,
)
from bot.ports import EventSink, PermanentSendError, RateLimited, Respond, SendError
from bot.ratelimit import Limit, RateLimiter

log = logging.getLogger(__name__)

PLATFORM = "slack"
COMMAND = "/mentor"
EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
DEFAULT_API_URL = "https://slack.com/api/"
BOT_SCOPES = ("chat:write", "commands", "files:write", "im:history", "im:write", "users:read")
METADATA_EVENT = "mentorbot_delivery"
HISTORY_PAGES = 5  # how far back find_delivered looks: 5 x 200 messages of one DM
WORKSPACE_BURST = 5
# Slack's rate-limit tiers of the Web API methods mentorbot calls besides
# chat.postMessage (whose limits, per conversation and per workspace, come from the
# settings: see ``rate_limits``), as (calls a second, burst). Slack applies a tier per
# method, per workspace, per app, and names a floor, not a number: Tier 3 is "50+ per
# minute" (sporadic bursts welcome), Tier 4 "100+ per minute" (generous bursts). Each
# method's page names its tier: conversations.open and conversations.history Tier 3;
# users.info, views.publish, files.getUploadURLExternal, files.completeUploadExternal
# Tier 4 (https://api.slack.com/apis/rate-limits, https://api.slack.com/methods/NAME).
# The floor is where the learned pace starts, with no ceiling since more may be
# allowed, and a small burst. One exception: apps distributed outside the Slack
# Marketplace and created or newly installed since 2025-05-29 get conversations.history
# at 1 call a minute (Slack's changelog of that day); its 429s bring the pace down,
# though not below bot.ratelimit.FLOOR of the floor (2.5 a minute).
TIER_3 = 50 / 60
TIER_4 = 100 / 60
API_TIERS: Mapping[str, tuple[float, int]] = MappingProxyType(
    {
        "conversations.open": (TIER_3, 3),
        "conversations.history": (TIER_3, 3),
        "users.info": (TIER_4, 5),
        "views.publish": (TIER_4, 5),
        "files.getUploadURLExternal": (TIER_4, 5),
        "files.completeUploadExternal": (TIER_4, 5),
    }
)
UPLOAD_METHODS = ("files.getUploadURLExternal", "files.completeUploadExternal")
API_TIMEOUT_SECONDS = 15
DRAIN_SECONDS = 10.0  # how long stop() lets in-flight events finish
EVENT_ID_MEMORY_SECONDS = 15 * 60  # Slack retries an event 3 times within about 5 minutes
TOKEN_CACHE_SECONDS = 300.0
# users.info answers and installers are remembered this long: an admin who is demoted,
# or a person who is deactivated, stops counting as a lead or a learner within minutes.
PROFILE_CACHE_SECONDS = 600.0
PROFILES_KEPT = 10_000
MENTION_LOOKUPS = 4  # users.info calls in flight for one command's mentions
# A user mention as Slack escapes it in command text: <@U123> or <@U123|name>.
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")
SLACKBOT = "USLACKBOT"  # users.info does not call Slackbot a bot
START_ACTION = Action("start", "Start", "start", "primary")
# When Slack's request arrived, for the events built after the ack (users.info may come
# first), so the core measures its answer time from the learner's action.
_RECEIVED: ContextVar[datetime | None] = ContextVar("slack_received", default=None)
T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """What ``users.info`` says about a person (remembered for PROFILE_CACHE_SECONDS)."""

    name: str | None = None
    timezone: str | None = None
    is_lead: bool = False  # workspace admin or owner (the installer is added per event)
    is_bot: bool = False
    active: bool = True  # False: deactivated, or not a member of this workspace
    guest: bool = False  # a single- or multi-channel guest, not a full member


def read_profile(data: dict[str, Any]) -> Profile:
    """A Slack user object (users.info, team_join) in the adapter's words."""
    details = data.get("profile") or {}
    return Profile(
        name=details.get("display_name") or details.get("real_name") or data.get("name"),
        timezone=data.get("tz") or None,
        is_lead=bool(data.get("is_admin") or data.get("is_owner")),
        is_bot=bool(data.get("is_bot")) or data.get("id") == SLACKBOT,
        active=not data.get("deleted"),
        guest=bool(data.get("is_restricted") or data.get("is_ultra_restricted")),
    )


def mentioned_ids(text: str) -> list[str]:
    """The users a command's text mentions, each once, in order."""
    return list(dict.fromkeys(_USER_MENTION.findall(text)))


def _refuse(status: int, reason: str) -> web.Response:
    """A refused HTTP request: one log line, and the reason in the answer (a 500 with a
    traceback would say less and log far more)."""
    log.info("slack: refused a request (HTTP %d): %s", status, reason)
    response = web.json_response({"error": reason}, status=status)
    if status == 413:
        response.force_close()  # the rest of the body is not worth a kept-alive connection
    return response


def _bolt_request(body: str, payload: dict[str, Any], request: web.Request) -> AsyncBoltRequest:
    """Bolt's request for a body the adapter has read already. Bolt would parse the body
    again (and misreads some, see ``parse_body``), so it is handed an empty one and then
    the adapter's payload, with the raw body kept as Bolt keeps it."""
    bolt_request = AsyncBoltRequest(
        body="", query=request.query_string, headers=dict(request.headers)
    )
    bolt_request.raw_body = body
    bolt_request.body = payload
    bolt_request.context = build_async_context(AsyncBoltContext({}), payload)
    return bolt_request


async def _nobody(_messages: list[OutgoingMessage]) -> None:
    """Where answers to a workspace join would go: there is no one to answer."""


def _missing_files_scope(attachment: Attachment) -> str:
    return (
        f"I could not attach {attachment.filename}: this workspace's installation of "
        "mentorbot lacks the `files:write` permission. A workspace admin can reinstall the "
        "app to grant it."
    )


def _pointer(
    team: str, user: str, shared: list[dict[str, Any]], problem: str | None
) -> OutgoingMessage:
    """The ephemeral note that says where a file answer went."""
    if problem is not None and not shared:
        text = f"I sent you a direct message about that: {problem}"
    else:
        names = ", ".join(
            f"[{f['name']}]({f['permalink']})"
            if isinstance(f.get("permalink"), str) and f.get("name")
            else f"**{f.get('title') or f.get('name') or 'the file'}**"
            for f in shared
        )
        text = f"Files can't be shown only to you here, so I sent {names} to our direct messages."
    return OutgoingMessage(PLATFORM, team, user, text, ephemeral=True)


class _NoUnusedTokenNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment even when it is handed a client,
    then warns that the token is unused; the client already holds that same token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


BOLT_LOG = logging.getLogger("slack_bolt.mentorbot")
BOLT_LOG.addFilter(_NoUnusedTokenNotice())


class _CheckedSocketMode(AsyncSocketModeHandler):
    """Socket Mode with the shape check HTTP requests get (``payload_problem``): a
    payload Bolt would crash on is acknowledged, so Slack does not send it again, and
    logged in one line instead of a traceback."""

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        payload = req.payload
        problem = (
            payload_problem(payload) if isinstance(payload, dict) else "payload is not an object"
        )
        if problem is None:
            await super().handle(client, req)
            return
        log.info("slack: refused a Socket Mode %s: %s", req.type, problem)
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


class SlackAdapter:
    """Slack Events/Interactivity/Socket Mode in, Web API out."""

    platform = PLATFORM

    def __init__(
        self,
        settings: Settings,
        store: Store,
        limiter: RateLimiter | None = None,
        api_rates: Mapping[str, float] | None = None,
    ) -> None:
        """``limiter`` holds the budgets the adapter's own Web API calls wait on: the
        dispatcher's, so they share its in-process notes (else one on ``store``: the
        budgets themselves are in the database either way). ``api_rates`` changes where
        the pace of some of ``API_TIERS`` starts (per second), for a workspace known to
        allow more; the learned pace is kept in the database all the same."""
        self.settings = settings
        self.store = store
        self.limiter = limiter if limiter is not None else RateLimiter(store)
        self.api_tiers = {
            method: (float((api_rates or {}).get(method, rate)), burst)
            for method, (rate, burst) in API_TIERS.items()
        }
        self.multi_workspace = bool(settings.slack_client_id)
        if self.multi_workspace and not settings.slack_client_secret:
            raise ValueError("SLACK_CLIENT_ID is set but SLACK_CLIENT_SECRET is not")
        self.cipher = (
            load_cipher(settings.secret_key, why=OAUTH_NEEDS_KEY) if self.multi_workspace else None
        )
        if not self.multi_workspace and not settings.slack_bot_token:
            raise ValueError("Slack needs SLACK_BOT_TOKEN, or SLACK_CLIENT_ID and its secret")
        if not settings.slack_app_token and not settings.slack_signing_secret:
            raise ValueError(
                "Slack needs SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)"
            )
        api_url = settings.slack_api_url or DEFAULT_API_URL
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.hub: EventSink | None = None
        self._session: aiohttp.ClientSession | None = None
        # No retry handlers: a 429 or a dropped connection is the core's to handle.
        self.client = AsyncWebClient(
            token=None if self.multi_workspace else settings.slack_bot_token,
            base_url=self.api_url,
            retry_handlers=[],
            timeout=API_TIMEOUT_SECONDS,
        )
        self.installations: ThreadedInstallationStore | None = None
        self.guard = (
            RequestGuard(settings.slack_signing_secret) if settings.slack_signing_secret else None
        )
        self.bolt = self._build_bolt()
        self._socket: _CheckedSocketMode | None = None
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._lock_users: dict[tuple[str, str], int] = {}
        self._profiles: TTLCache[str, Profile] = TTLCache(PROFILES_KEPT, PROFILE_CACHE_SECONDS)
        self._installers: dict[str, tuple[str | None, float]] = {}
        # Bounded: a DM channel is one lookup away, and every learner ever written to
        # must not stay in the process.
        self._dm_channels: Bounded = Bounded()
        self._clients: dict[str, tuple[AsyncWebClient, float]] = {}
        self._event_ids = RecentKeys()
        # Per delivery key: parts already posted, and keys whose last post may have landed.
        self._posted: Bounded = Bounded()
        self._unsure: Bounded = Bounded()
        self._uploaded: Bounded = Bounded()  # delivery key -> attachment indices uploaded

    # ------------------------------------------------------------------ wiring

    def _build_bolt(self) -> AsyncApp:
        settings = self.settings
        options: dict[str, Any] = {
            "name": "mentorbot",
            "client": self.client,
            "signing_secret": settings.slack_signing_secret or "",
            # Bolt's own check is off: _handle_events, the one HTTP route into
            # async_dispatch, refuses every request RequestGuard does not accept (the
            # same signature over the same body, the same five minutes, and no replay)
            # before Bolt sees it, so Bolt's check would compute the same HMAC again.
            # Socket Mode requests are not signed; Bolt skips them either way.
            "request_verification_enabled": False,
            "process_before_response": True,
            "logger": BOLT_LOG,
        }
        if self.multi_workspace:
            client_id = settings.slack_client_id or ""
            client_secret = settings.slack_client_secret or ""
            assert self.cipher is not None
            self.installations = ThreadedInstallationStore(
                client_id, self.store.engine, cipher=self.cipher
            )
            options["oauth_settings"] = AsyncOAuthSettings(
                client_id=client_id,
                client_secret=client_secret,
                scopes=list(BOT_SCOPES),
                install_path=INSTALL_PATH,
                redirect_uri_path=REDIRECT_PATH,
                installation_store=self.installations,
                installation_store_bot_only=True,
                state_store=ThreadedStateStore(self.store.engine),
            )
            # Bolt's default authorize calls auth.test on every request; cache it per token.
            options["authorize"] = AsyncInstallationStoreAuthorize(
                logger=log,
                installation_store=self.installations,
                client_id=client_id,
                client_secret=client_secret,
                bot_only=True,
                cache_enabled=True,
                client=self.client,
            )
        app = AsyncApp(**options)
        app.command(COMMAND)(self._on_command)
        app.event("message")(self._on_message)
        app.event("app_home_opened")(self._on_home_opened)
        app.event("team_join")(self._on_team_join)
        app.action(re.compile("^" + re.escape(ACTION_PREFIX)))(self._on_action)
        app.view(REPLY_CALLBACK)(self._on_reply_submitted)
        if self.multi_workspace:
            app.event("app_uninstalled")(self._on_uninstalled)
            app.event("tokens_revoked")(self._on_tokens_revoked)
        return app

    def _ensure_session(self) -> aiohttp.ClientSession:
        """One connection pool for every Web API call; made on the running loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_SECONDS)
            )
            self.client.session = self._session
            for client, _ in self._clients.values():
                client.session = self._session
        return self._session

    def routes(self) -> list[web.RouteDef]:
        """HTTP endpoints for the core's web server: events when a signing secret is set,
        the install pages in multi-workspace mode."""
        routes: list[web.RouteDef] = []
        if self.guard is not None:
            routes.append(web.post(EVENTS_PATH, self._handle_events))
        if self.multi_workspace:
            routes.append(web.get(INSTALL_PATH, self._handle_install))
            routes.append(web.get(REDIRECT_PATH, self._handle_oauth_redirect))
        return routes

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sink: EventSink) -> None:
        """Serve until ``stop``: connect Socket Mode if configured, else just wait (HTTP
        requests arrive through ``routes``)."""
        self.hub = sink
        self._ensure_session()
        self._running = True
        self._ready.set()
        try:
            if self.settings.slack_app_token:
                self._socket = _CheckedSocketMode(
                    self.bolt, self.settings.slack_app_token, web_client=self.client
                )
                # slack_sdk retries an unreachable Slack forever, every 10 s; a stop
                # must not wait for it (shutdown would run into its timeout).
                connecting = asyncio.ensure_future(self._socket.connect_async())
                stopping = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not connecting.done():
                    connecting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await connecting
                else:
                    connecting.result()
                    log.info("slack: connected in Socket Mode")
            await self._stopping.wait()
        finally:
            await self._shutdown()
            self._running = False
            self._stopped.set()

    async def stop(self) -> None:
        self._stopping.set()
        if self._running:
            await self._stopped.wait()
        else:
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self._socket is not None:
            socket, self._socket = self._socket, None
            with contextlib.suppress(Exception):
                await socket.close_async()
        await self.drain(DRAIN_SECONDS)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every event taken in so far is fully handled (tests, shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tasks:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            await asyncio.wait(set(self._tasks), timeout=left)

    def _spawn(self, team: str, user: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` after the ack, in order with the same person's other events."""
        received = datetime.now(UTC)

        async def run() -> None:
            _RECEIVED.set(received)
            await self._ready.wait()
            key = (team, user)
            lock = self._locks.setdefault(key, asyncio.Lock())
            self._lock_users[key] = self._lock_users.get(key, 0) + 1
            try:
                async with lock:
                    await work()
            except Exception:
                log.exception("slack: could not handle an event from %s in %s", user, team)
            finally:
                self._lock_users[key] -= 1
                if not self._lock_users[key]:
                    del self._lock_users[key]
                    self._locks.pop(key, None)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ HTTP routes

    async def _handle_events(self, request: web.Request) -> web.StreamResponse:
        """``/slack/events``: commands, events and interactions in HTTP mode.

        Whatever arrives is refused with a 4xx and one log line unless it is small,
        signed, fresh, and shaped as Slack shapes its payloads: Bolt and the listeners
        below read fields without checking their types, and an exception there would
        be a 500 with a traceback for every odd request.
        """
        assert self.guard is not None
        self._ensure_session()
        raw = await read_capped(request, MAX_BODY_BYTES)
        if raw is None:
            return _refuse(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _refuse(400, "malformed request: body is not UTF-8")
        refusal = self.guard.refusal(body, request.headers)
        if refusal is not None:
            return _refuse(401, refusal)
        try:
            payload = parse_body(body, request.content_type)
            problem = payload_problem(payload)
            if problem is not None:
                raise ValueError(problem)
            bolt_request = _bolt_request(body, payload, request)
        except Exception as exc:  # a body Bolt cannot read must not become a 500
            return _refuse(400, f"malformed request: {exc}")
        response = await self.bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    async def _handle_install(self, request: web.Request) -> web.StreamResponse:
        flow = self.bolt.oauth_flow
        assert flow is not None
        self._ensure_session()
        return await to_aiohttp_response(
            await flow.handle_installation(await to_bolt_request(request))
        )

    async def _handle_oauth_redirect(self, request: web.Request) -> web.StreamResponse:
        flow = self.bolt.oauth_flow
        assert flow is not None
        self._ensure_session()
        response = await flow.handle_callback(await to_bolt_request(request))
        self._installers.clear()  # a (re)install may have a new installer
        return await to_aiohttp_response(response)

    # ------------------------------------------------------------------ listeners

    async def _on_command(
        self, ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        team, user = command.get("team_id") or "", command.get("user_id") or ""
        if not team or not user:
            return

        async def work() -> None:
            profile = await self._caller(client, team, user)
            text = from_slack_text(command.get("text") or "")
            respond = self._responder(
                client,
                team,
                user,
                response_url=command.get("response_url"),
                origin=command.get("channel_id"),
            )
            event = await self._command_event(
                client,
                team,
                user,
                text,
                profile,
                respond,
                workspace_name=command.get("team_domain"),
            )
            if event is not None:
                await self._handle(event, respond)

        self._spawn(team, user, work)

    async def _on_message(
        self,
        ack: AsyncAck,
        event: dict[str, Any],
        body: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        if self._repeated(body):
            return
        dm = read_dm(event, context.bot_user_id)
        team = context.team_id or body.get("team_id") or ""
        if dm is None or not team:
            return

        async def work() -> None:
            profile = await self._caller(client, team, dm.user)
            respond = self._responder(
                client, team, dm.user, channel=dm.channel, thread_ts=dm.thread_ts
            )
            message = {"message_id": dm.message_id, "answers_message": dm.answers_message}
            if dm.kind is not EventKind.COMMAND:
                incoming = self._event(team, dm.user, dm.kind, dm.text, profile, **message)
            else:
                found = await self._command_event(
                    client, team, dm.user, dm.text, profile, respond, **message
                )
                if found is None:
                    return
                incoming = found
            await self._handle(incoming, respond)

        self._spawn(team, dm.user, work)

    async def _on_home_opened(
        self,
        ack: AsyncAck,
        event: dict[str, Any],
        body: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        team, user = context.team_id or body.get("team_id") or "", event.get("user") or ""
        if self._repeated(body) or event.get("tab") != "home" or not user or not team:
            return

        async def work() -> None:
            await self._publish_home(client, team, user)

        self._spawn(team, user, work)

    async def _on_action(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user = (body.get("user") or {}).get("id") or ""
        team = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id") or ""
        actions = body.get("actions") or [{}]
        press = read_button_value(actions[0].get("value"))
        if press is None or not user or not team:
            log.info("slack: ignored a button this version did not render")
            return
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        view = body.get("view") or {}
        from_home = view.get("type") == "home"

        if press.opens_form:
            question = question_from_blocks((body.get("message") or {}).get("blocks"))
            modal = reply_modal(press.delivery_id, question, channel)
            trigger = body.get("trigger_id")

            async def open_form() -> None:
                await client.views_open(trigger_id=trigger, view=modal)

            self._spawn(team, user, open_form)
            return

        async def work() -> None:
            profile = await self._caller(client, team, user)
            event = self._event(
                team,
                user,
                EventKind.ACTION,
                press.command,
                profile,
                delivery_id=press.delivery_id,
                workspace_name=(body.get("team") or {}).get("domain"),
            )
            respond = self._responder(
                client,
                team,
                user,
                response_url=None if from_home else body.get("response_url"),
                channel=channel if channel and channel.startswith("D") else None,
                origin=None if from_home else channel,
            )
            await self._handle(event, respond)
            if from_home:
                await self._publish_home(client, team, user)

        self._spawn(team, user, work)

    async def _on_reply_submitted(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()  # closes the modal; the confirmation arrives in the DM
        user = (body.get("user") or {}).get("id") or ""
        team = (body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id") or ""
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            meta = {}
        delivery = meta.get("delivery") if isinstance(meta, dict) else None
        channel = meta.get("channel") if isinstance(meta, dict) else None
        if not isinstance(delivery, int) or isinstance(delivery, bool):
            delivery = None
        text = submitted_answer(view)
        if not user or not team:
            return

        async def work() -> None:
            profile = await self._caller(client, team, user)
            event = self._event(team, user, EventKind.MESSAGE, text, profile, delivery_id=delivery)
            dm = channel if isinstance(channel, str) and channel.startswith("D") else None
            await self._handle(event, self._responder(client, team, user, channel=dm))

        self._spawn(team, user, work)

    async def _on_team_join(
        self,
        ack: AsyncAck,
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
    ) -> None:
        """Someone joined the workspace. The core decides what that means (with the
        workspace's ``auto-enrol`` on, it enrols them and queues their welcome DM). Bots,
        deactivated accounts and guests are not members who take courses, so they are
        not reported; a lead can still assign a guest by name."""
        await ack()
        if self._repeated(body):
            return
        data = event.get("user")
        team = context.team_id or body.get("team_id") or ""
        user = data.get("id") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(user, str) or not user or not team:
            return
        profile = read_profile(data)
        self._remember(team, user, profile)  # the event carries what users.info would say
        if profile.is_bot or not profile.active or profile.guest:
            return

        async def work() -> None:
            joined = await self._with_installer(team, user, profile)
            await self._handle(self._event(team, user, EventKind.JOINED, "", joined), _nobody)

        self._spawn(team, user, work)

    async def _on_uninstalled(self, ack: AsyncAck, context: AsyncBoltContext) -> None:
        """The workspace removed the app: forget its installation and cached token, so
        deliveries to it fail as permanent instead of retrying forever."""
        await ack()
        assert self.installations is not None
        team = context.team_id
        await self.installations.async_delete_all(enterprise_id=context.enterprise_id, team_id=team)
        self._clients.pop(team or "", None)
        self._installers.pop(team or "", None)
        log.info("slack: uninstalled from %s", team)

    async def _on_tokens_revoked(
        self, ack: AsyncAck, event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        assert self.installations is not None
        if (event.get("tokens") or {}).get("bot"):
            await self.installations.async_delete_bot(
                enterprise_id=context.enterprise_id, team_id=context.team_id
            )
            self._clients.pop(context.team_id or "", None)

    # ------------------------------------------------------------------ to the core

    def _repeated(self, body: dict[str, Any]) -> bool:
        """Slack retries an event it thinks we missed; the same event_id is handled once."""
        event_id = body.get("event_id")
        if not event_id:
            return False
        now = time.time()
        return self._event_ids.seen(str(event_id), now + EVENT_ID_MEMORY_SECONDS, now)

    def _event(
        self,
        team: str,
        user: str,
        kind: EventKind,
        text: str,
        profile: Profile,
        **extra: Any,
    ) -> IncomingEvent:
        return IncomingEvent(
            platform=PLATFORM,
            workspace=team,
            user=user,
            kind=kind,
            text=text,
            user_name=profile.name,
            timezone=profile.timezone,
            platform_is_lead=profile.is_lead,
            received_at=_RECEIVED.get() or datetime.now(UTC),
            **extra,
        )

    async def _handle(self, event: IncomingEvent, respond: Respond) -> None:
        await self._ready.wait()
        assert self.hub is not None
        await self.hub.handle(event, respond)

    def _remember(self, team: str, user: str, profile: Profile) -> None:
        self._profiles.put(f"{team}:{user}", profile)

    async def _profile(self, client: AsyncWebClient, team: str, user: str) -> Profile | None:
        """Name, time zone, admin and bot flags from users.info, asked at most once per
        PROFILE_CACHE_SECONDS per person and team. None when Slack could not be asked
        (the event still counts, without the details)."""
        known = self._profiles.get(f"{team}:{user}")
        if known is not None:
            return known
        try:
            response = await self._api(team, ("users.info",), lambda: client.users_info(user=user))
        except Exception as exc:
            if error_code(exc) == "user_not_found":
                # Not a member of this workspace: remembered, so a stranger's id costs
                # one call, and answered exactly like an id that never existed.
                profile = Profile(active=False)
                self._remember(team, user, profile)
                return profile
            log.warning("slack: users.info for %s failed: %s", user, to_send_error(exc))
            return None
        profile = read_profile(response.get("user") or {})
        self._remember(team, user, profile)
        return profile

    async def _caller(self, client: AsyncWebClient, team: str, user: str) -> Profile:
        """The person an event comes from, with ``is_lead`` as this platform defines it."""
        profile = await self._profile(client, team, user) or Profile()
        return await self._with_installer(team, user, profile)

    async def _with_installer(self, team: str, user: str, profile: Profile) -> Profile:
        if profile.is_lead or not await self._is_installer(team, user):
            return profile
        return replace(profile, is_lead=True)

    async def _is_installer(self, team: str, user: str) -> bool:
        """Did ``user`` install the app in ``team``? Known only in OAuth mode, from the
        stored installation (the newest one when the app was reinstalled); a bot token
        alone does not say who installed it."""
        if self.installations is None:
            return False
        known = self._installers.get(team)
        if known is None or known[1] <= time.monotonic():
            try:
                found = await self.installations.async_find_installation(
                    enterprise_id=None, team_id=team
                )
            except Exception:
                log.exception("slack: could not read the installation of %s", team)
                return False
            known = (found.user_id if found else None, time.monotonic() + PROFILE_CACHE_SECONDS)
            self._installers[team] = known
        return known[0] == user

    async def _mentioned(
        self, client: AsyncWebClient, team: str, user: str, caller: Profile, text: str
    ) -> tuple[UserRef, ...]:
        """Who each ``<@U…>`` in a command is, so the core can leave out bots. A
        deactivated account, or an id that is not a member of this workspace, cannot take
        a course either, and ``UserRef`` has one flag for "not a person to enrol", so it
        is marked like a bot. If Slack cannot be asked, the id is passed on unflagged.

        Each lookup is a users.info call, so nobody is looked up for a command that
        takes no people, nor for a caller the core will refuse as not a lead; and a
        command naming more than MAX_MENTIONS people raises ``TooManyMentions``.
        """
        ids = mentioned_ids(text)
        if not ids or not takes_people(text):
            return ()
        if not caller.is_lead and not await self._has_lead_role(team, user):
            return ()
        if len(ids) > MAX_MENTIONS:
            raise TooManyMentions(len(ids))
        gate = asyncio.Semaphore(MENTION_LOOKUPS)

        async def look_up(user_id: str) -> UserRef:
            async with gate:
                profile = await self._profile(client, team, user_id)
            if profile is None:
                return UserRef(user_id)
            return UserRef(user_id, profile.name, profile.is_bot or not profile.active)

        return tuple(await asyncio.gather(*(look_up(i) for i in ids)))

    async def _has_lead_role(self, team: str, user: str) -> bool:
        """Did a lead make ``user`` a lead in ``team``? (The database says; Slack not.)"""
        return await asyncio.to_thread(
            self.store.run, lambda session: has_lead_role(session, PLATFORM, team, user)
        )

    async def _command_event(
        self,
        client: AsyncWebClient,
        team: str,
        user: str,
        text: str,
        profile: Profile,
        respond: Respond,
        **extra: Any,
    ) -> IncomingEvent | None:
        """A command for the core with its mentions looked up; None when the adapter
        has answered it already (it names too many people)."""
        try:
            mentioned = await self._mentioned(client, team, user, profile, text)
        except TooManyMentions as refusal:
            await respond([OutgoingMessage(PLATFORM, team, user, str(refusal), ephemeral=True)])
            return None
        return self._event(
            team, user, EventKind.COMMAND, text, profile, mentioned=mentioned, **extra
        )

    async def _publish_home(self, client: AsyncWebClient, team: str, user: str) -> None:
        """The Home tab shows the core's answer to ``progress``; a Start button when the
        core has no progress to show (the person is not enrolled)."""
        profile = await self._caller(client, team, user)
        shown: list[OutgoingMessage] = []

        async def capture(messages: list[OutgoingMessage]) -> None:
            shown.extend(messages)

        await self._handle(self._event(team, user, EventKind.COMMAND, "progress", profile), capture)
        enrolled = any(m.kind == "progress" for m in shown)
        view = home_view(shown, () if enrolled else (START_ACTION,))
        await self._api(
            team, ("views.publish",), lambda: client.views_publish(user_id=user, view=view)
        )

    # ------------------------------------------------------------------ answers

    def _responder(
        self,
        client: AsyncWebClient,
        team: str,
        user: str,
        *,
        response_url: str | None = None,
        channel: str | None = None,
        thread_ts: str | None = None,
        origin: str | None = None,
    ) -> Respond:
        """Where answers go: ephemeral ones back through ``response_url`` (a slash
        command or a button), the rest into the learner's DM, in the thread when the
        learner wrote in one. Answers with files go to the DM (see ``_answer_with_files``);
        ``origin`` is the conversation the person acted in, to tell whether they are
        looking at the DM already."""

        async def respond(messages: list[OutgoingMessage]) -> None:
            for message in messages:
                try:
                    if message.attachments:
                        await self._answer_with_files(
                            client,
                            team,
                            user,
                            message,
                            response_url=response_url,
                            origin=origin or channel,
                            thread_ts=thread_ts,
                        )
                        continue
                    if (
                        message.ephemeral
                        and response_url
                        and await self._post_response_url(response_url, message)
                    ):
                        continue
                    target = message.channel or channel or user
                    await self._post_parts(
                        client, target, render_parts(message), thread_ts, team=team, user=user
                    )
                except Exception as exc:
                    log.warning("slack: could not answer %s in %s: %s", user, team, exc)

        return respond

    async def _answer_with_files(
        self,
        client: AsyncWebClient,
        team: str,
        user: str,
        message: OutgoingMessage,
        *,
        response_url: str | None,
        origin: str | None,
        thread_ts: str | None,
    ) -> None:
        """Slack has no ephemeral files, so an answer that carries files (a data export)
        is posted with them in the person's DM, where only they can see it. Someone who
        asked from another conversation is told, only to them, where to find it."""
        dm = await self._open_dm(client, team, user)
        thread = thread_ts if origin == dm else None
        await self._post_parts(client, dm, render_parts(message), thread, team=team, user=user)
        shared: list[dict[str, Any]] = []
        problem: str | None = None
        for attachment in message.attachments:
            try:
                shared.append(await self._upload(client, team, dm, attachment, thread))
            except Exception as exc:
                code = error_code(exc)
                reason = _missing_files_scope(attachment) if code in FILE_SCOPE_ERRORS else None
                problem = reason or (
                    f"Sorry, I could not upload {attachment.filename} just now "
                    f"({to_send_error(exc)}). Please ask again in a minute."
                )
                log.warning("slack: could not upload a file for %s in %s: %s", user, team, exc)
                break
        if problem is not None:
            notice = OutgoingMessage(PLATFORM, team, user, problem, ephemeral=True)
            await self._post_parts(client, dm, render_parts(notice), thread, team=team, user=user)
        if response_url and origin != dm:
            await self._post_response_url(response_url, _pointer(team, user, shared, problem))

    async def _upload(
        self,
        client: AsyncWebClient,
        team: str,
        channel: str,
        attachment: Attachment,
        thread_ts: str | None = None,
        *,
        booked: bool = False,
    ) -> dict[str, Any]:
        """One file into one conversation through Slack's upload flow
        (files.getUploadURLExternal, the upload, files.completeUploadExternal); returns
        the file object Slack answered with. ``booked``: as for ``_api``."""
        upload: dict[str, Any] = {
            "filename": attachment.filename,
            "content": attachment.content,
            "title": attachment.title or attachment.filename,
        }
        if attachment.mime.startswith("image/") and attachment.title:
            upload["alt_txt"] = attachment.title  # read out by screen readers
        response = await self._api(
            team,
            UPLOAD_METHODS,
            lambda: client.files_upload_v2(
                file_uploads=[upload], channel=channel, thread_ts=thread_ts
            ),
            booked=booked,
        )
        files = response.get("files") or [{}]
        return dict(files[0]) if isinstance(files[0], dict) else {}

    async def _post_response_url(self, url: str, message: OutgoingMessage) -> bool:
        """Post an ephemeral answer; False when Slack refused it (the caller posts to the
        DM instead, so the answer is never lost)."""
        session = self._ensure_session()
        for part in render_parts(message):
            body = {
                "response_type": "ephemeral",
                "replace_original": False,
                "text": part.text,
                "blocks": part.blocks,
            }
            try:
                async with session.post(url, json=body) as response:
                    if response.status != 200:
                        log.warning("slack: response_url answered HTTP %s", response.status)
                        return False
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("slack: response_url failed: %s", exc)
                return False
        return True

    async def _post_parts(
        self,
        client: AsyncWebClient,
        channel: str,
        parts: list[Part],
        thread_ts: str | None = None,
        *,
        team: str,
        user: str,
    ) -> None:
        """Post an answer to someone's action in the conversation ``channel``. It draws
        from the same budgets as deliveries (the conversation's and the workspace's),
        booked ahead of any fan-out waiting for them: the person is looking at it."""
        conversation = OutgoingMessage(PLATFORM, team, user, "", channel=channel)
        limits = self._post_limits(conversation)
        for part in parts:
            await self.limiter.acquire(limits, urgent=True)
            try:
                await client.chat_postMessage(
                    channel=channel,
                    text=part.text,
                    blocks=part.blocks,
                    thread_ts=thread_ts,
                    unfurl_links=False,
                    unfurl_media=False,
                )
            except SlackApiError as exc:
                error = to_send_error(exc, limits[0].key)
                if isinstance(error, RateLimited):
                    await self.limiter.block(limits, error.retry_after, scope=error.scope)
                raise

    # ------------------------------------------------------------------ deliveries

    async def _client_for(self, team: str) -> AsyncWebClient:
        """The Web API client holding ``team``'s bot token."""
        self._ensure_session()
        if not self.multi_workspace:
            return self.client
        cached = self._clients.get(team)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        assert self.installations is not None
        bot = await self.installations.async_find_bot(enterprise_id=None, team_id=team)
        if bot is None or not bot.bot_token:
            raise PermanentSendError(
                f"mentorbot is not installed in Slack workspace {team}; add the app to the "
                "workspace again to resume",
                code="not_installed",
                workspace_gone=True,
            )
        client = AsyncWebClient(
            token=bot.bot_token,
            base_url=self.api_url,
            session=self._session,
            retry_handlers=[],
            timeout=API_TIMEOUT_SECONDS,
        )
        self._clients[team] = (client, time.monotonic() + TOKEN_CACHE_SECONDS)
        return client

    def _forget_token_on(self, team: str, exc: BaseException) -> None:
        if error_code(exc) in TOKEN_ERRORS:
            self._clients.pop(team, None)

    async def _dm_channel(
        self, client: AsyncWebClient, message: OutgoingMessage, *, booked: bool = False
    ) -> str:
        """Where a delivery goes: its channel (a digest's, or the DM already known), else
        the learner's DM. ``booked``: as for ``_api``."""
        if message.channel:
            return message.channel
        return await self._open_dm(client, message.workspace, message.user, booked=booked)

    async def _open_dm(
        self, client: AsyncWebClient, team: str, user: str, *, booked: bool = False
    ) -> str:
        """The DM channel id with ``user`` (files need a channel id, not a user id).
        ``booked``: as for ``_api``."""
        key = (team, user)
        known = self._dm_channels.get(key)
        if known is None:
            opened = await self._api(
                team,
                ("conversations.open",),
                lambda: client.conversations_open(users=user),
                booked=booked,
            )
            known = str(opened["channel"]["id"])
            self._dm_channels[key] = known
        return known

    def api_limit(self, team: str, method: str) -> Limit:
        """The budget of Web API ``method`` in ``team`` (see ``API_TIERS``), shared by
        every call of it, in a send or not, and by every replica. Slack's 429 for it
        concerns that method alone, so the limit is exact."""
        rate, burst = self.api_tiers[method]
        return Limit(f"slack:{team}:api:{method}", rate, burst, exact=True)

    def _api_scope(self, team: str, exc: BaseException) -> str | None:
        """The budget a failed Web API call drew from, read from the URL the call went
        to (one SDK call may make several: an upload gets a URL, then completes); None
        for a method without one of its own (chat.postMessage) or a failure that is not
        an API answer."""
        if not isinstance(exc, SlackApiError):
            return None
        url = str(getattr(exc.response, "api_url", "") or "")
        method = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return self.api_limit(team, method).key if method in self.api_tiers else None

    async def _api(
        self,
        team: str,
        methods: tuple[str, ...],
        call: Callable[[], Awaitable[T]],
        *,
        booked: bool = False,
    ) -> T:
        """Make ``call``, which calls Web API ``methods`` of ``team``, within their
        budgets: wait for a slot under each, and after a 429 hold back every replica's
        calls of the method that met it, for Retry-After, and cut its pace. A call a
        delivery makes was booked with the delivery's own slot (``booked``: see
        ``rate_limits``): it neither waits again nor blocks, the dispatcher does that
        with the 429 ``send`` reports. The exception itself is the caller's."""
        if booked:
            return await call()
        limits = [self.api_limit(team, method) for method in methods]
        await self.limiter.acquire(limits)
        try:
            return await call()
        except SlackApiError as exc:
            error = to_send_error(exc)
            if isinstance(error, RateLimited):
                met = self._api_scope(team, exc)
                blamed = [limit for limit in limits if limit.key == met] or limits
                await self.limiter.block(blamed, error.retry_after, scope=blamed[0].key)
            raise

    def _opens_dm(self, message: OutgoingMessage) -> bool:
        """Will ``send`` call conversations.open for this message (no channel known)?"""
        return not message.channel and (message.workspace, message.user) not in self._dm_channels

    def _checks_first(self, message: OutgoingMessage) -> bool:
        """Will ``send`` look at the DM's history first (the last attempt may have
        posted)? Only a DM's history is readable."""
        key = message.delivery_key
        in_channel = bool(message.channel) and not str(message.channel).startswith("D")
        return bool(key) and key in self._unsure and not in_channel

    def _uploads_left(self, message: OutgoingMessage) -> int:
        """Files of this message not uploaded by an earlier attempt."""
        done = self._uploaded.get(message.delivery_key, ()) if message.delivery_key else ()
        return sum(1 for index in range(len(message.attachments)) if index not in done)

    def rate_limits(self, message: OutgoingMessage) -> list[Limit]:
        """Every budget a send of ``message`` draws from, booked together, so no slot
        is spent waiting for another: the post's (below), then one draw per other Web
        API call ``send`` will make (opening the learner's DM when its channel is not
        known, the history check after an unsure attempt, a file's upload calls).

        Slack allows about one message a second per conversation, and more per
        workspace. A DM is keyed by the learner, so the key is the same before and after
        the DM's channel id is known. The configured rates are where the learned pace
        starts (Slack publishes no exact number), the optional maxima its ceiling."""
        team = message.workspace
        limits = self._post_limits(message)
        if self._opens_dm(message):
            limits.append(self.api_limit(team, "conversations.open"))
        if self._checks_first(message):
            limits.append(self.api_limit(team, "conversations.history"))
        for _ in range(self._uploads_left(message)):
            limits.extend(self.api_limit(team, method) for method in UPLOAD_METHODS)
        return limits

    def _post_limits(self, message: OutgoingMessage) -> list[Limit]:
        """The conversation's budget and the workspace's, for chat.postMessage."""
        team = message.workspace
        target = message.user
        if message.channel and not message.channel.startswith("D"):
            target = message.channel
        return [
            Limit(
                f"slack:{team}:{target}",
                self.settings.slack_channel_rate,
                1,
                self.settings.slack_channel_rate_max,
            ),
            Limit(
                f"slack:{team}",
                self.settings.slack_workspace_rate,
                WORKSPACE_BURST,
                self.settings.slack_workspace_rate_max,
            ),
        ]

    def _metadata(self, message: OutgoingMessage, part: int, parts: int) -> dict[str, Any]:
        payload: dict[str, Any] = {"delivery_key": message.delivery_key, "part": part}
        payload["parts"] = parts
        if message.delivery_id is not None:
            payload["delivery_id"] = message.delivery_id
        return {"event_type": METADATA_EVENT, "event_payload": payload}

    async def send(self, message: OutgoingMessage) -> SendResult:
        """Post a delivery to the learner's DM, or to its channel (a digest); then upload
        its files (a digest's chart) there. Returns the channel and every message's ts.

        A message too big for one Slack message goes out as several; if a send fails
        part-way, the parts and files already posted are remembered and not posted
        again. After a timeout or 5xx the message may have arrived anyway, so the next
        attempt looks at the DM's history first. A channel's history is not readable with
        the scopes mentorbot asks for, so there a 5xx that did post can repeat a digest;
        likewise a file whose upload timed out may be shared a second time.
        """
        parts = render_parts(message)
        if not parts and not message.attachments:
            raise PermanentSendError("the message is empty", code="empty_message")
        key = message.delivery_key
        conversation, workspace = (limit.key for limit in self._post_limits(message))
        in_channel = bool(message.channel) and not str(message.channel).startswith("D")
        checks_first = self._checks_first(message)
        team = message.workspace

        def failure(exc: BaseException, scope: str) -> SendError:
            """A failure in the core's words; a 429 is scoped to the budget of the method
            that met it (opening the DM, an upload), else to ``scope``."""
            self._forget_token_on(message.workspace, exc)
            error = to_send_error(exc, self._api_scope(team, exc) or scope)
            return explain_channel_refusal(error) if in_channel else error

        # Every call below was booked by the dispatcher with this message's slot (see
        # rate_limits); so was the DM's opening unless the DM was known then, and it is
        # forgotten only when 10,000 learners were written to in between.
        try:
            client = await self._client_for(message.workspace)
            channel = await self._dm_channel(client, message, booked=True)
            posted: dict[int, str] = dict(self._posted.get(key, {})) if key else {}
            if key and checks_first:
                found, _ = await self._history(client, team, channel, key, booked=True)
                posted.update(found)
        except Exception as exc:
            raise failure(exc, workspace) from exc
        for index, part in enumerate(parts):
            if index in posted:
                continue
            try:
                response = await client.chat_postMessage(
                    channel=channel,
                    text=part.text,
                    blocks=part.blocks,
                    metadata=self._metadata(message, index, len(parts)) if key else None,
                    unfurl_links=False,
                    unfurl_media=False,
                )
            except Exception as exc:
                if key:
                    self._posted[key] = posted
                    if outcome_unknown(exc):
                        self._unsure[key] = True
                raise failure(exc, conversation) from exc
            posted[index] = str(response["ts"])
            channel = str(response.get("channel") or channel)
        uploaded: set[int] = set(self._uploaded.get(key, ())) if key else set()
        for index, attachment in enumerate(message.attachments):
            if index in uploaded:
                continue
            try:
                await self._upload(client, team, channel, attachment, booked=True)
            except Exception as exc:
                if error_code(exc) in FILE_SCOPE_ERRORS:
                    await self._say_file_missing(client, channel, attachment)
                else:
                    if key:
                        self._posted[key] = posted
                        self._uploaded[key] = uploaded
                    raise failure(exc, conversation) from exc
            uploaded.add(index)
        if key:
            self._posted.pop(key, None)
            self._unsure.pop(key, None)
            self._uploaded.pop(key, None)
        return SendResult(channel=channel, message_ids=tuple(posted[i] for i in sorted(posted)))

    async def _say_file_missing(
        self, client: AsyncWebClient, channel: str, attachment: Attachment
    ) -> None:
        """An installation from before files:write was added: the message went out, so
        say in it what is missing rather than failing it (which would post the text again
        and again) and leave the file out."""
        log.warning("slack: no files:write in %s; %s left out", channel, attachment.filename)
        with contextlib.suppress(Exception):
            await client.chat_postMessage(
                channel=channel, text=to_mrkdwn(_missing_files_scope(attachment))
            )

    async def find_delivered(self, message: OutgoingMessage) -> SendResult | None:
        """After a crash: did this delivery reach the DM? Looks for its metadata in the
        DM's history. A partly posted message counts as not delivered, but the parts
        found are remembered so the resend posts only the missing ones."""
        key = message.delivery_key
        if not key or (message.channel and not message.channel.startswith("D")):
            return None  # only a DM's history is readable (im:history); channels are not
        try:
            client = await self._client_for(message.workspace)
            channel = await self._dm_channel(client, message)
            found, total = await self._history(client, message.workspace, channel, key)
        except Exception as exc:
            # A 429 or a 5xx says "ask again later", not "it did not arrive".
            raise to_send_error(
                exc, self.api_limit(message.workspace, "conversations.history").key
            ) from exc
        self._unsure.pop(key, None)  # just looked: the resend need not look again
        if not found:
            return None
        if total is not None and len(found) >= total:
            return SendResult(channel=channel, message_ids=tuple(found[i] for i in sorted(found)))
        self._posted[key] = found
        return None

    async def _history(
        self,
        client: AsyncWebClient,
        team: str,
        channel: str,
        key: str,
        *,
        booked: bool = False,
    ) -> tuple[dict[int, str], int | None]:
        """Parts of delivery ``key`` found in the DM (part index -> ts), and how many
        parts it has. ``booked``: the first page's call was booked (see ``_api``); any
        further page waits for its own slot."""
        found: dict[int, str] = {}
        total: int | None = None
        cursor: str | None = None
        for number in range(HISTORY_PAGES):
            page = await self._api(
                team,
                ("conversations.history",),
                lambda cursor=cursor: client.conversations_history(
                    channel=channel, include_all_metadata=True, limit=200, cursor=cursor
                ),
                booked=booked and number == 0,
            )
            for item in page.get("messages") or []:
                meta = item.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if meta.get("event_type") != METADATA_EVENT:
                    continue
                if payload.get("delivery_key") != key:
                    continue
                with contextlib.suppress(TypeError, ValueError):
                    found[int(payload.get("part", 0))] = str(item["ts"])
                    total = int(payload.get("parts", 1))
            if total is not None and len(found) >= total:
                break
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return found, total
