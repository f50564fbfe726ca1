"""The ticker's stop: a tick in progress finishes, and a normal exit logs no error."""

from __future__ import annotations

import asyncio
import logging

import pytest

from scheduler.ticker import Ticker


def test_stopping_lets_the_running_tick_finish_without_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished: list[bool] = []

    async def scenario() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def tick() -> None:
            started.set()
            await release.wait()
            finished.append(True)

        ticker = Ticker(tick, 60)
        ticker.start()
        await asyncio.wait_for(started.wait(), 5)
        ticker.stop()  # as shutdown does, while the tick is mid-way
        for _ in range(5):
            await asyncio.sleep(0.01)  # the scheduler shuts down meanwhile
        release.set()
        for _ in range(5):
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    assert finished == [True]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]


def test_stopping_right_after_start_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """A console session on piped input can end before the first tick has begun."""
    ticks: list[int] = []

    async def scenario(turns: int) -> None:
        async def tick() -> None:
            ticks.append(turns)
            await asyncio.sleep(0.05)

        ticker = Ticker(tick, 60)
        ticker.start()
        for _ in range(turns):
            await asyncio.sleep(0)
        ticker.stop()
        await asyncio.sleep(0.1)

    with caplog.at_level(logging.DEBUG):
        for turns in range(6):
            asyncio.run(scenario(turns))
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]
    assert ticks, "some runs got as far as a tick"
