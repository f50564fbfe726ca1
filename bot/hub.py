"""The meeting point of adapters and the core, on one asyncio loop.

Adapters hand events to ``Hub.handle``; the synchronous core runs in a worker thread
so a slow database never stalls a platform's heartbeat. Answers go back through the
adapter's ``respond``; queued deliveries go out through the dispatcher at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from bot import metrics
from bot.db import DatabaseBusyError
from bot.dispatch import Dispatcher
from bot.logcontext import bound
from bot.messages import IncomingEvent, OutgoingMessage
from bot.ports import Respond
from bot.service import MentorService

log = logging.getLogger(__name__)


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
        with bound(platform=event.platform, workspace=event.workspace, learner=event.user):
            await self._handle(event, respond)

    async def _handle(self, event: IncomingEvent, respond: Respond) -> None:
        first = True

        async def timed(messages: list[OutgoingMessage]) -> None:
            nonlocal first
            if first:
                first = False
                waited = (datetime.now(UTC) - event.received_at).total_seconds()
                metrics.ACK_SECONDS.labels(event.platform).observe(max(0.0, waited))
            await original(messages)

        original, respond = respond, timed
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
        # A command may have queued or moved work (a snooze, a new schedule, a resume):
        # the engine looks again at when its next pass is due.
        self.dispatcher.wake()
        if after:
            await respond(after)
