"""The meeting point of adapters and the core, on one asyncio loop.

Adapters hand events to ``Hub.handle``; the synchronous core runs in a worker thread
so a slow database never stalls a platform's heartbeat. Answers go back through the
adapter's ``respond``; queued deliveries go out through the dispatcher at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.db import DatabaseBusyError, Store
from bot.messages import IncomingEvent, OutgoingMessage, SendResult
from bot.outbox import claim, mark_failed, mark_sent, release
from bot.ports import Adapter, PermanentSendError, RateLimited, Respond, SendError
from bot.service import MentorService

log = logging.getLogger(__name__)


def process_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Dispatcher:
    """Claims outbox rows, sends them through the learner's platform, records the result."""

    store: Store
    service: MentorService
    adapters: dict[str, Adapter] = field(default_factory=dict)
    owner: str = field(default_factory=process_identity)
    lease: timedelta = timedelta(minutes=2)

    async def send_ids(self, ids: list[int]) -> None:
        if not ids:
            return
        now = datetime.now(UTC)
        claimed = await asyncio.to_thread(
            self.store.run,
            lambda s: claim(s, owner=self.owner, now=now, lease=self.lease, ids=ids),
        )
        for delivery_id in claimed:
            await self._send_one(delivery_id)

    async def _send_one(self, delivery_id: int) -> None:
        message = await asyncio.to_thread(self.service.render_delivery, delivery_id)
        if message is None:
            await self._finish_failed(delivery_id, "content or learner no longer exists")
            return
        adapter = self.adapters.get(message.platform)
        if adapter is None:
            await self._release(delivery_id, 60, f"no {message.platform} adapter running")
            return
        try:
            result: SendResult = await adapter.send(message)
        except RateLimited as exc:
            await self._release(delivery_id, exc.retry_after, str(exc))
            return
        except PermanentSendError as exc:
            await self._finish_failed(delivery_id, str(exc))
            return
        except SendError as exc:
            await self._release(delivery_id, 30, str(exc))
            return
        await asyncio.to_thread(
            self.store.run,
            lambda s: mark_sent(
                s,
                delivery_id,
                owner=self.owner,
                channel=result.channel,
                message_ids=result.message_ids,
            ),
        )

    async def _finish_failed(self, delivery_id: int, reason: str) -> None:
        log.warning("delivery %s failed: %s", delivery_id, reason)
        await asyncio.to_thread(
            self.store.run, lambda s: mark_failed(s, delivery_id, reason=reason)
        )

    async def _release(self, delivery_id: int, after: float, reason: str) -> None:
        retry_at = datetime.now(UTC) + timedelta(seconds=after)
        await asyncio.to_thread(
            self.store.run, lambda s: release(s, delivery_id, retry_at=retry_at, reason=reason)
        )


BUSY_TEXT = (
    "The database is busy right now, so I could not save that and nothing changed. "
    "Please send it again in a minute."
)
ERROR_TEXT = "Sorry, something went wrong on my side and nothing was saved. Please try again."


def _apology(event: IncomingEvent, text: str) -> OutgoingMessage:
    return OutgoingMessage(
        platform=event.platform,
        workspace=event.workspace,
        user=event.user,
        text=text,
        ephemeral=True,
    )


@dataclass
class Hub:
    service: MentorService
    dispatcher: Dispatcher

    async def handle(self, event: IncomingEvent, respond: Respond) -> None:
        try:
            outcome = await asyncio.to_thread(self.service.handle, event)
        except DatabaseBusyError:
            log.warning("database busy: dropped a %s event from %s", event.kind, event.platform)
            await respond([_apology(event, BUSY_TEXT)])
            return
        except Exception:
            log.exception("could not handle %s event from %s", event.kind, event.platform)
            await respond([_apology(event, ERROR_TEXT)])
            return
        # Answers first (a welcome before the lesson), except the ones that follow a
        # delivery, which must not appear before the lesson they refer to.
        before = [m for m in outcome.replies if m.kind != "continue"]
        after = [m for m in outcome.replies if m.kind == "continue"]
        if before:
            await respond(before)
        await self.dispatcher.send_ids(outcome.deliveries)
        if after:
            await respond(after)
