"""A test backend for the core: a real implementation of the adapter port that keeps
every message in an inbox, plus a ``Chat`` that plays one learner."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from bot.commands import is_command
from bot.messages import EventKind, IncomingEvent, OutgoingMessage, SendResult
from bot.planner import next_due
from bot.text import strip_learner_marks
from mentorbot.bootstrap import App

if TYPE_CHECKING:
    from tests.conftest import Clock

_ids = itertools.count(1)


class InboxAdapter:
    def __init__(self, platform: str = "console") -> None:
        self.platform = platform
        self.sent: list[OutgoingMessage] = []
        self.fail_with: list[Exception] = []
        # Fail exactly the messages this picks (e.g. only digests), as often as they come.
        self.fail_when: Callable[[OutgoingMessage], Exception | None] = lambda _m: None

    async def start(self, sink: object) -> None:  # driven by Chat instead
        return None

    async def stop(self) -> None:
        return None

    async def send(self, message: OutgoingMessage) -> SendResult:
        if self.fail_with:
            raise self.fail_with.pop(0)
        failure = self.fail_when(message)
        if failure is not None:
            raise failure
        self.sent.append(message)
        return SendResult(channel=f"dm-{message.user}", message_ids=(f"msg-{next(_ids)}",))

    async def find_delivered(self, message: OutgoingMessage) -> SendResult | None:
        """Like a platform's history: did a message with this delivery key arrive?"""
        for sent in self.sent:
            if message.delivery_key and sent.delivery_key == message.delivery_key:
                return SendResult(channel=f"dm-{sent.user}", message_ids=("found",))
        return None

    def of_kind(self, kind: str, user: str | None = None) -> list[OutgoingMessage]:
        return [m for m in self.sent if m.kind == kind and (user is None or m.user == user)]


class Chat:
    """One learner talking to the bot; ``say`` returns everything the bot said back."""

    def __init__(
        self,
        app: App,
        user: str = "ana",
        workspace: str = "local",
        platform: str = "console",
        lead: bool = False,
    ) -> None:
        self.app = app
        self.user = user
        self.workspace = workspace
        self.platform = platform
        self.lead = lead
        adapter = app.dispatcher.adapters.get(platform)
        if not isinstance(adapter, InboxAdapter):
            adapter = InboxAdapter(platform)
            app.dispatcher.adapters[platform] = adapter
        self.adapter = adapter

    def event(self, kind: EventKind, text: str = "", **extra: object) -> IncomingEvent:
        return IncomingEvent(
            platform=self.platform,
            workspace=self.workspace,
            user=self.user,
            user_name=self.user.title(),
            kind=kind,
            text=text,
            platform_is_lead=self.lead,
            **extra,  # type: ignore[arg-type]
        )

    def send(self, event: IncomingEvent) -> list[OutgoingMessage]:
        out: list[OutgoingMessage] = []
        before = len(self.adapter.sent)

        async def respond(messages: list[OutgoingMessage]) -> None:
            out.extend(messages)

        async def run() -> None:
            await self.app.hub.handle(event, respond)

        asyncio.run(run())
        delivered = self.adapter.sent[before:]
        # Keep the order a user sees: answers, lessons, then any continue prompt.
        first = [m for m in out if m.kind != "continue"]
        last = [m for m in out if m.kind == "continue"]
        return first + delivered + last

    def say(self, text: str, **extra: object) -> list[OutgoingMessage]:
        kind = EventKind.COMMAND if is_command(text) else EventKind.MESSAGE
        return self.send(self.event(kind, text, **extra))

    def text(self, text: str, **extra: object) -> str:
        """What the learner sees, as plain text."""
        return "\n---\n".join(strip_learner_marks(m.plain_text()) for m in self.say(text, **extra))


@contextmanager
def sqlite_locked(url: str, seconds: float) -> Iterator[None]:
    """Hold the SQLite write lock from another connection; it is released ``seconds``
    after the block starts, so work inside must wait for it (and then succeed)."""
    import sqlalchemy as sa

    locker = sa.create_engine(url)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locker.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            locked.set()
            release.wait(5)
            conn.exec_driver_sql("ROLLBACK")

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait(5)
    threading.Timer(seconds, release.set).start()
    try:
        yield
    finally:
        release.set()
        holder.join()
        locker.dispose()


def due_instants(app: App, clock: Clock, end: datetime) -> Iterator[datetime]:
    """Tick, then move ``clock`` to the next instant something falls due, up to ``end``,
    as `mentorbot simulate` does; yields each instant, so a test can act there."""
    while True:
        asyncio.run(app.engine.tick())
        upcoming = app.store.run(lambda session: next_due(session, clock.now))
        if upcoming is None or upcoming > end:
            return
        clock.now = upcoming
        yield upcoming
