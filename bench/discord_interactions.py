"""Discord adapter benchmark: interaction latency and DM delivery throughput.

Runs the real app (SQLite in a temporary folder), the real ``DiscordAdapter`` and the
real discord.py client against the loopback Discord emulator, and prints:

1. interaction response latency with ``--concurrency`` interactions in flight at once
   (from the emulator dispatching INTERACTION_CREATE to it receiving the interaction
   callback), p50 and p99 over ``--rounds`` rounds; target p99 < 100 ms;
2. DM delivery throughput of one scheduling tick for ``--learners`` learners against
   the emulator's global limit of ``--limit`` requests/second; target at least 95 %
   of the limit, with every lesson delivered exactly once.

The emulator runs on its own thread and event loop, like a separate server. Nothing
here asserts on timings: it prints figures.

    .venv/bin/python bench/discord_interactions.py [--learners 300] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.discord import DiscordAdapter
from bot.config import Settings, bundled_content_dir
from mentorbot.bootstrap import App, build
from tests.emulators.discord_api import (
    DiscordEmulator,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeUser,
    InteractionType,
)

TOKEN = "bench-token"
GUILD = 1_500_000_000_000_000_001
CHANNEL = 1_500_000_000_000_000_002
FIRST_USER = 1_500_000_000_000_001_000


class Clock:
    """The app's clock, moved by hand to make lessons due (a Wednesday morning, UTC)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


class Bench:
    def __init__(self, learners: int, folder: Path) -> None:
        self.users = [FakeUser(FIRST_USER + n, f"learner{n}") for n in range(learners)]
        guild = FakeGuild(
            id=GUILD,
            name="Bench",
            channels=[FakeChannel(CHANNEL, "general")],
            members=[FakeMember(u) for u in self.users],
        )
        self.dc = DiscordEmulator(
            guilds=[guild], users=self.users, token=TOKEN, heartbeat_interval_ms=30_000
        )
        self.folder = folder
        self.clock = Clock()
        self.app: App | None = None
        self.adapter: DiscordAdapter | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.dc.start_in_thread()
        settings = Settings(
            database_url=f"sqlite:///{self.folder / 'bench.db'}",
            content_dir=bundled_content_dir(),
            discord_token=TOKEN,
            discord_api_url=self.dc.base_url,
            discord_gateway_url=self.dc.gateway_url,
        )
        self.app = build(settings, clock=self.clock)
        self.adapter = DiscordAdapter(settings, self.app.store, guild_ready_timeout=0.05)
        self.app.dispatcher.adapters["discord"] = self.adapter
        self.task = asyncio.create_task(self.adapter.start(self.app.hub))
        await self.adapter.wait_ready(30)

    async def stop(self) -> None:
        if self.adapter is not None:
            await self.adapter.stop()
        if self.task is not None:
            await self.task
        if self.app is not None:
            self.app.store.dispose()
        self.dc.stop()

    async def interact(self, payloads: list[dict[str, Any]]) -> list[float]:
        """Dispatch all at once; return each one's dispatch-to-callback latency (s)."""
        assert self.adapter is not None
        before = self.adapter.handled
        sent_at: dict[int, float] = {}

        async def one(payload: dict[str, Any]) -> None:
            sent_at[int(payload["id"])] = time.monotonic()
            await self.dc.dispatch("INTERACTION_CREATE", payload)

        await asyncio.gather(*(one(p) for p in payloads))
        await self.adapter.wait_handled(before + len(payloads), timeout=120)
        await self.adapter.drain()
        latencies = []
        for itx, started in sent_at.items():
            callbacks = self.dc.callbacks_for(itx)
            latencies.append(callbacks[0].time - started)
        return latencies

    def command(self, user: FakeUser, name: str) -> dict[str, Any]:
        return self.dc.make_interaction(
            InteractionType.APPLICATION_COMMAND, user.id, guild_id=GUILD, command=f"mentor {name}"
        )

    async def latency(self, concurrency: int, rounds: int) -> None:
        users = self.users[:concurrency]
        await self.interact([self.command(u, "help") for u in users])  # warm-up: learners exist
        samples: list[float] = []
        for _ in range(rounds):
            samples += await self.interact([self.command(u, "progress") for u in users])
        ms = [s * 1000 for s in samples]
        print(f"interactions: {len(ms)} in {rounds} rounds of {concurrency} concurrent")
        print(
            f"  response latency p50 {percentile(ms, 0.50):.1f} ms, "
            f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms "
            f"(mean {statistics.fmean(ms):.1f} ms; target p99 < 100 ms)"
        )

    async def throughput(self, limit: int) -> None:
        assert self.app is not None
        # Enrol everyone (day 1 goes out now, unpaced), then make day 2 due for all.
        for start in range(0, len(self.users), 50):
            batch = self.users[start : start + 50]
            await self.interact([self.command(u, "start") for u in batch])
        self.dc.rate_limit(limit)
        self.clock.now += timedelta(days=1, hours=1, minutes=1)
        mark = len(self.dc.requests)
        began = time.monotonic()
        await self.app.engine.tick()
        elapsed = time.monotonic() - began
        posts = [
            r
            for r in self.dc.requests[mark:]
            if r.method == "POST" and r.path.startswith("/channels/")
        ]
        ok = [p for p in posts if p.status == 200]
        limited = sum(p.status == 429 for p in posts)
        window = (ok[-1].time - ok[0].time) if len(ok) > 1 else elapsed
        rate = (len(ok) - 1) / window if window > 0 else float("nan")
        per_user = Counter(
            int(m["channel_id"])
            for u in self.users
            for m in self.dc.messages(self.dc.dm_channel_id(u.id))
            if "day 2 of" in str(m.get("embeds"))
        )
        duplicates = sum(count - 1 for count in per_user.values() if count > 1)
        missing = len(self.users) - len(per_user)
        stats = self.app.dispatcher.stats
        overall = len(ok) / elapsed
        print(f"DM deliveries: {len(ok)} lessons to {len(self.users)} learners in {elapsed:.2f} s")
        print(
            f"  throughput {overall:.1f} messages/s for the whole tick (planning included) = "
            f"{100 * overall / limit:.1f} % of the {limit}/s limit (target >= 95 %); "
            f"{rate:.1f}/s between the first and last message"
        )
        print(
            f"  429s answered by the emulator: {limited}; rows put back by the core: "
            f"{stats.rate_limited}; duplicates: {duplicates}; missing: {missing}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        bench = Bench(max(args.learners, args.concurrency), Path(folder))
        await bench.start()
        try:
            await bench.latency(args.concurrency, args.rounds)
            await bench.throughput(args.limit)
        finally:
            await bench.stop()


if __name__ == "__main__":
    asyncio.run(main())
