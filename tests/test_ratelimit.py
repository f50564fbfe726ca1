"""The shared rate limiter: holds the rate with a burst of 1, honours a block."""

from __future__ import annotations

import asyncio
import itertools
import time

from bot.ratelimit import Limit, RateLimiter


def test_burst_of_one_holds_the_rate_without_bursting() -> None:
    limiter = RateLimiter()
    limit = [Limit("k", per_second=200.0, burst=1)]

    async def run() -> list[float]:
        stamps = []
        for _ in range(60):
            await limiter.acquire(limit)
            stamps.append(time.monotonic())
        return stamps

    stamps = asyncio.run(run())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # 59 intervals of 5 ms at least: a burst of 1 never goes faster than the rate.
    assert stamps[-1] - stamps[0] >= 59 * 0.005 * 0.98
    assert min(gaps) >= 0.005 * 0.9


def test_block_after_a_429_pauses_then_resumes_at_the_rate() -> None:
    limiter = RateLimiter()
    limit = [Limit("k", per_second=1000.0, burst=5)]

    async def run() -> float:
        await limiter.acquire(limit)
        limiter.block(limit, 0.05)
        start = time.monotonic()
        await limiter.acquire(limit)
        return time.monotonic() - start

    assert asyncio.run(run()) >= 0.045
