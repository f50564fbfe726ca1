"""A running mentorbot with the Slack adapter, served over real HTTP on loopback.

``SlackRig`` builds the real app (``mentorbot.bootstrap.build`` on a real database),
starts the adapter, serves its routes on an ephemeral port and sends it requests signed
exactly as Slack signs them. Background work is awaited with ``adapter.drain()``, so no
test sleeps to wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from sqlmodel import Session, col, select

from adapters.slack import SlackAdapter
from bot.config import Settings
from bot.messages import IncomingEvent
from bot.models import Delivery, Learner, Reply, Workspace
from bot.ports import Respond
from mentorbot.bootstrap import App, build
from tests.emulators.slack_api import (
    DEFAULT_SIGNING_SECRET,
    DEFAULT_TEAM_ID,
    DEFAULT_USER_ID,
    RecordedCall,
    SlackEmulator,
    block_actions_body,
    event_callback_body,
    sign_request,
    slash_command_body,
    view_submission_body,
)

T = TypeVar("T")
FORM = "application/x-www-form-urlencoded"


class GatedHub:
    """The real hub behind a gate: with the gate shut, events wait before the core sees
    them, which proves an acknowledgement never waits for the core."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.gate = asyncio.Event()
        self.gate.set()
        self.seen: list[IncomingEvent] = []

    async def handle(self, event: IncomingEvent, respond: Respond) -> None:
        await self.gate.wait()
        self.seen.append(event)
        await self.hub.handle(event, respond)


class SlackRig:
    def __init__(
        self,
        settings: Settings,
        slack: SlackEmulator,
        clock: Callable[[], Any],
        **options: Any,
    ) -> None:
        """``options`` go to the adapter (``api_rates``)."""
        self.settings = settings
        self.slack = slack
        self.clock = clock
        self.options = options
        self.secret = settings.slack_signing_secret or DEFAULT_SIGNING_SECRET

    async def __aenter__(self) -> SlackRig:
        self.app: App = build(self.settings, clock=self.clock)
        self.adapter = SlackAdapter(
            self.settings, self.app.store, limiter=self.app.dispatcher.limiter, **self.options
        )
        self.app.dispatcher.adapters["slack"] = self.adapter
        self.hub = GatedHub(self.app.hub)
        self._serving = asyncio.create_task(self.adapter.start(self.hub))
        application = web.Application()
        application.add_routes(self.adapter.routes())
        self.runner = web.AppRunner(application, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        await self.adapter.stop()
        await self._serving
        await self.runner.cleanup()
        self.app.store.dispose()

    # ------------------------------------------------------------------ requests

    async def post(
        self,
        body: str,
        *,
        content_type: str = FORM,
        headers: dict[str, str] | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
        path: str = "/slack/events",
    ) -> tuple[int, str]:
        """POST ``body``; signed with the app's secret unless ``headers`` are given."""
        if headers is None:
            headers = sign_request(secret or self.secret, body, timestamp)
        async with self.http.post(
            self.url + path, data=body.encode(), headers={**headers, "Content-Type": content_type}
        ) as response:
            return response.status, await response.text()

    async def raw(
        self, head: bytes, chunks: Iterable[bytes] = (), timeout: float = 5.0
    ) -> tuple[int, bytes]:
        """Send ``head`` (request line and headers, as bytes on the wire) and then
        ``chunks`` over a plain socket, and read the answer, without waiting for the
        server to close: for requests no HTTP client would send, or would finish."""
        host, port = self.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(head)
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
            status_line, *lines = (
                (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout))
                .decode("latin-1")
                .split("\r\n")
            )
            headers = dict(line.lower().split(": ", 1) for line in lines if ": " in line)
            length = int(headers.get("content-length", "0"))
            body = await asyncio.wait_for(reader.readexactly(length), timeout)
            return int(status_line.split()[1]), body
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def command(self, text: str, **payload: Any) -> tuple[int, str]:
        payload.setdefault("response_url", self.slack.new_response_url())
        return await self.post(slash_command_body("/mentor", text, **payload))

    async def event(self, event: dict[str, Any], **envelope: Any) -> tuple[int, str]:
        return await self.post(
            event_callback_body(event, **envelope), content_type="application/json"
        )

    async def press(self, button: dict[str, Any], **payload: Any) -> tuple[int, str]:
        """Press a button as rendered in a posted message's blocks."""
        payload.setdefault("response_url", self.slack.new_response_url())
        return await self.post(
            block_actions_body(button["action_id"], value=button["value"], **payload)
        )

    async def submit(self, callback_id: str, values: dict[str, Any], **payload: Any) -> Any:
        return await self.post(view_submission_body(callback_id, values, **payload))

    async def settle(self) -> None:
        """Wait until the adapter has finished everything it acknowledged."""
        await self.adapter.drain()

    # ------------------------------------------------------------------ the database

    def db(self, work: Callable[[Session], T]) -> T:
        return self.app.store.run(work)

    def replies(self) -> list[Reply]:
        return self.db(lambda s: list(s.exec(select(Reply).order_by(col(Reply.id))).all()))

    def deliveries(self) -> list[Delivery]:
        return self.db(lambda s: list(s.exec(select(Delivery).order_by(col(Delivery.id))).all()))

    def learners(self) -> list[Learner]:
        return self.db(lambda s: list(s.exec(select(Learner).order_by(col(Learner.id))).all()))

    def workspaces(self) -> list[str]:
        return self.db(lambda s: sorted(w.external_id for w in s.exec(select(Workspace)).all()))


# ---------------------------------------------------------------------- emulator helpers


def posts(slack: SlackEmulator, channel: str | None = None) -> list[RecordedCall]:
    """Successful chat.postMessage calls, optionally to one channel."""
    return [
        c
        for c in slack.calls_to("chat.postMessage")
        if c.status == 200
        and c.response.get("ok")
        and (channel is None or c.response.get("channel") == channel)
    ]


def lessons(slack: SlackEmulator) -> list[RecordedCall]:
    """Posts that carry a delivery (they have mentorbot metadata)."""
    return [c for c in posts(slack) if (c.params.get("metadata") or {}).get("event_payload")]


def responses(slack: SlackEmulator) -> list[dict[str, Any]]:
    """Bodies posted to response_url (ephemeral answers to commands and buttons)."""
    return [c.params for c in slack.calls_to("response_url")]


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Buttons of a message by their action_id."""
    return {
        element["action_id"]: element
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
    }


def block_text(blocks: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for block in blocks:
        text = block.get("text")
        if isinstance(text, dict):
            out.append(text.get("text", ""))
        for element in block.get("elements", []):
            label = element.get("text")
            if isinstance(label, dict):
                out.append(label.get("text", ""))
    return "\n".join(out)


def dm_of(slack: SlackEmulator, user: str = DEFAULT_USER_ID, team: str = DEFAULT_TEAM_ID) -> str:
    return slack.dm_channel_id(user, team)
