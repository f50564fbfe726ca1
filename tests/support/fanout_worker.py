"""A separate mentorbot process for crash and replica tests: runs delivery ticks with
the journal adapter until nothing is left to send (or a time limit)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlmodel import col, func, select

from bot.config import Settings, bundled_content_dir
from bot.models import Delivery
from mentorbot.bootstrap import build
from tests.support.journal import JournalAdapter


async def main(url: str, journal: Path, delay_after: float, concurrency: int, batch: int) -> None:
    app = build(Settings(database_url=url, content_dir=bundled_content_dir()))
    app.dispatcher.adapters["console"] = JournalAdapter(journal, delay_after)
    app.dispatcher.lease = timedelta(seconds=1)
    app.dispatcher.concurrency = concurrency
    app.dispatcher.batch = batch
    # Optional start barrier, so several workers really run at the same time.
    go = journal.with_suffix(".go")
    journal.with_suffix(f".ready-{os.getpid()}").touch()
    while os.environ.get("MENTORBOT_TEST_BARRIER") and not go.exists():
        await asyncio.sleep(0.01)
    started = time.monotonic()
    deadline = started + 60
    # With a barrier, another worker may still be planning: keep ticking a little while.
    linger = 1.5 if os.environ.get("MENTORBOT_TEST_BARRIER") else 0.0
    while time.monotonic() < deadline:
        await app.engine.tick()
        left = app.store.run(
            lambda s: s.exec(
                select(func.count())
                .select_from(Delivery)
                .where(col(Delivery.status).in_(("pending", "sending")))
            ).one()
        )
        if left == 0 and time.monotonic() - started >= linger:
            break
        await asyncio.sleep(0.1)
    app.store.dispose()


if __name__ == "__main__":
    url, journal, delay_after, concurrency, batch = sys.argv[1:6]
    asyncio.run(main(url, Path(journal), float(delay_after), int(concurrency), int(batch)))
