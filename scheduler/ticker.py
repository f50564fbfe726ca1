"""The clock of the delivery engine. APScheduler only says "now"; the database decides
what is due, so one interval job serves any number of learners and a restart loses
nothing. Every replica may tick: claims in the core are atomic."""

from __future__ import annotations

import asyncio
import contextlib
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

    async def _run(self) -> None:
        # The tick runs in its own task: APScheduler cancels the job it is running when
        # it shuts down, and a stop must let the tick finish its sends (shutdown drains
        # it), not tear it down and log a CancelledError on every normal exit.
        tick = asyncio.ensure_future(self._guarded())
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(tick)

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
