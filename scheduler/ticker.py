"""The clock of the delivery engine. APScheduler only says "now"; the database decides
what is due, so one interval job serves any number of learners and a restart loses
nothing. Every replica may tick: claims in the core are atomic.

The engine also wakes by itself when something falls due between ticks; the tick is
the safety net that catches whatever nobody told this process about."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)


class Ticker:
    def __init__(self, tick: Callable[[], Awaitable[None]], every_seconds: float) -> None:
        self._tick = tick
        self.every_seconds = every_seconds
        self._scheduler: AsyncIOScheduler | None = None
        self._current: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        """The scheduler's job only starts a tick in a task of its own and returns:
        stopping the scheduler cancels the jobs it is running, and a tick cancelled
        mid-send would leave messages on the wire unrecorded. The engine's drain waits
        for the tick instead. A tick still running when the next is due is not doubled."""
        if self._current is not None and not self._current.done():
            return
        self._current = asyncio.create_task(self._guarded(), name="delivery-tick")

    async def _guarded(self) -> None:
        try:
            await self._tick()
        except Exception:  # one bad tick must not stop the next
            log.exception("delivery tick failed; the next tick will try again")

    def start(self) -> None:
        """Start ticking on the running asyncio loop; the first tick is immediate."""
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_job(
            self._run,
            "interval",
            seconds=self.every_seconds,
            id="mentorbot-tick",
            next_run_time=datetime.now(UTC),
            max_instances=1,  # a slow tick is never overlapped by the next
            coalesce=True,  # after a stall, one catch-up tick, not a burst
            misfire_grace_time=None,
        )
        self._scheduler.start()

    def stop(self) -> None:
        """No new ticks from now on. The shutdown itself waits one turn of the loop, so
        a job APScheduler has just handed to the loop has started (and sits in the
        shield above) before it is cancelled, instead of dying unstarted with an error."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.pause()
            asyncio.get_running_loop().call_soon(scheduler.shutdown, False)
