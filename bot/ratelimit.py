"""Token buckets keyed by platform scope (a Slack channel, a workspace, Discord's global
budget). Adapters say which buckets a message draws from; the dispatcher waits here, so
every platform gets the same pacing and the same reaction to a 429."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limit:
    key: str
    per_second: float
    burst: int = 1


@dataclass
class _Bucket:
    rate: float
    burst: int
    tokens: float
    updated: float
    blocked_until: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._now = time.monotonic

    def _bucket(self, limit: Limit) -> _Bucket:
        bucket = self._buckets.get(limit.key)
        if bucket is None:
            bucket = _Bucket(limit.per_second, limit.burst, float(limit.burst), self._now())
            self._buckets[limit.key] = bucket
        return bucket

    async def acquire(self, limits: list[Limit]) -> None:
        """Wait until every bucket in ``limits`` has a token, then take one from each."""
        for limit in sorted(limits, key=lambda item: item.key):
            bucket = self._bucket(limit)
            async with bucket.lock:
                while True:
                    now = self._now()
                    if now < bucket.blocked_until:
                        await asyncio.sleep(bucket.blocked_until - now)
                        continue
                    bucket.tokens = min(
                        bucket.burst, bucket.tokens + (now - bucket.updated) * bucket.rate
                    )
                    bucket.updated = now
                    if bucket.tokens >= 1:
                        bucket.tokens -= 1
                        break
                    await asyncio.sleep((1 - bucket.tokens) / bucket.rate)

    def block(self, limits: list[Limit], seconds: float) -> None:
        """After a 429: nothing draws from these buckets for ``seconds``."""
        until = self._now() + seconds
        for limit in limits:
            bucket = self._bucket(limit)
            bucket.blocked_until = max(bucket.blocked_until, until)
            bucket.tokens = 0
