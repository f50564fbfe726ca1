"""Fan-out of 10,000 due deliveries through an adapter that enforces a rate limit and
answers a share of requests with 429.

Target: at least 95 % of the allowed rate, 0 duplicates, 0 missed.
Run: .venv/bin/python bench/fanout.py [--deliveries N] [--rate R] [--share-429 S]
                                      [--db sqlite|postgresql]

Every request, refused or not, spends a token of the global budget, so with a share S
of per-recipient 429s the delivered rate can reach at most (1 - S) of the limit; the
request rate is the one to hold against the target.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import database, make_app, seed
from bot.messages import OutgoingMessage, SendResult
from bot.ports import RateLimited
from bot.ratelimit import Limit


class ThrottledPlatform:
    """A stand-in platform: accepts ``rate`` messages a second (sliding one-second
    window) and refuses the excess with a global 429; a random share of the rest gets a
    per-recipient 429, as Slack and Discord do for a busy channel."""

    platform = "console"

    def __init__(self, rate: float, share_429: float) -> None:
        self.rate = rate
        self.share_429 = share_429
        self.accepted: Counter[str] = Counter()
        self.refused = 0
        self.window: list[float] = []
        self.first: float | None = None
        self.last = 0.0

    def rate_limits(self, message: OutgoingMessage) -> list[Limit]:
        return [
            # 20 ms of slack absorbs event-loop wake-up jitter without a real burst.
            Limit("bench:global", self.rate, burst=max(2, int(self.rate / 50))),
            # This platform names the per-recipient limit in its 429 (``scope``), so
            # that limit is ``exact``: its 429s are that recipient's alone. Were it
            # not, the core would blame them on the cells that were busy, the global
            # one in a fan-out (as it does for Slack, whose 429s do not say which limit
            # was met), and 5 % of them would cut the fan-out to the pace's floor.
            Limit(f"bench:user:{message.user}", 5.0, burst=5, exact=True),
        ]

    async def start(self, sink: object) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, message: OutgoingMessage) -> SendResult:
        now = time.monotonic()
        self.window = [t for t in self.window if now - t < 1.0]
        if len(self.window) >= self.rate * 1.05:
            self.refused += 1
            raise RateLimited(0.05)  # over the global limit: everything waits
        if random.random() < self.share_429:
            self.refused += 1  # a per-recipient limit: only that recipient waits
            raise RateLimited(0.5, scope=f"bench:user:{message.user}")
        self.window.append(now)
        self.first = self.first or now
        self.last = now
        self.accepted[str(message.delivery_key)] += 1
        return SendResult(channel="bench", message_ids=(str(message.delivery_key),))


async def fan_out(app, platform: ThrottledPlatform, deliveries: int) -> float:  # type: ignore[no-untyped-def]
    app.dispatcher.adapters["console"] = platform
    app.dispatcher.concurrency = 32
    app.dispatcher.batch = 500
    start = time.perf_counter()
    while sum(platform.accepted.values()) < deliveries and time.perf_counter() - start < 600:
        if await app.dispatcher.run_once() == 0:
            await asyncio.sleep(0.01)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--share-429", type=float, default=0.05)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    now = datetime.now(UTC)
    with database(args.db) as url:
        app = make_app(url, now)
        seed(app, args.deliveries, args.deliveries, now)
        result = app.engine.planner.plan(now)
        app.service.clock = lambda: datetime.now(UTC)
        print(
            f"[{args.db}] queued {result.lessons:,} deliveries; limit {args.rate:g}/s, "
            f"{args.share_429:.0%} random 429s"
        )
        platform = ThrottledPlatform(args.rate, args.share_429)
        elapsed = asyncio.run(fan_out(app, platform, args.deliveries))
        sent = sum(platform.accepted.values())
        duplicates = sum(n - 1 for n in platform.accepted.values() if n > 1)
        missed = args.deliveries - len(platform.accepted)
        span = (platform.last - platform.first) if platform.first else elapsed
        achieved = (sent - 1) / span if span > 0 else 0.0
        print(
            f"[{args.db}] delivered {sent:,} in {elapsed:.1f}s (first to last: {span:.1f}s); "
            f"429s answered: {platform.refused:,}"
        )
        requests = (sent + platform.refused - 1) / span if span > 0 else 0.0
        print(
            f"[{args.db}] request rate {requests:.1f}/s = {requests / args.rate:.1%} of the "
            f"limit (target ≥ 95%); delivered {achieved:.1f}/s = {achieved / args.rate:.1%}; "
            f"duplicates {duplicates}; missed {missed}"
        )
        app.store.dispose()
    print(
        f"RESULT name=fanout db={args.db} deliveries={args.deliveries} limit_per_s={args.rate:g} "
        f"share_429={args.share_429:g} elapsed_s={elapsed:.1f} "
        f"request_rate_pct={100 * requests / args.rate:.1f} "
        f"delivered_per_s={achieved:.1f} refused_429={platform.refused} "
        f"duplicates={duplicates} missed={missed}"
    )


if __name__ == "__main__":
    main()
