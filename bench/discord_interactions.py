"""Discord adapter benchmark: interaction latency and DM delivery throughput.

Runs the real app (SQLite in a temporary folder, or a fresh PostgreSQL schema with
``--database postgres``), the real ``DiscordAdapter`` and the real discord.py client
against the loopback Discord emulator, and prints:

1. interaction latency with ``--concurrency`` interactions arriving at once, over
   ``--rounds`` rounds: p50/p99 from the emulator sending INTERACTION_CREATE to it
   receiving the interaction callback (the acknowledgement Discord wants within 3 s;
   target p99 < 100 ms), and to the answer being shown (the same moment when the
   adapter answers directly; later when it deferred first);
2. DM delivery throughput of one scheduling tick for ``--learners`` learners against
   the emulator's global limit of ``--limit`` requests/second (target: at least 95 %
   of the limit), with every lesson delivered exactly once.

The emulator runs on its own thread and event loop, like a separate server (it shares
the CPU and the GIL with the bot, so figures are pessimistic). Nothing here asserts
on timings: it prints figures.

    .venv/bin/python bench/discord_interactions.py [--database postgres] [--learners 300]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.discord import DiscordAdapter
from adapters.discord.adapter import ACK_AFTER, DEFER_WHEN_BUSY
from bench.common import database
from bot.config import Settings, bundled_content_dir
from mentorbot.bootstrap import App, build, settle_heap
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


def report_latency(samples: list[tuple[float, float]], figures: dict[str, str]) -> None:
    """Print p50/p99 of (ack, answer shown) seconds and put them in ``figures``."""
    for label, index in (("acknowledged", 0), ("answer shown", 1)):
        ms = [sample[index] * 1000 for sample in samples]
        print(
            f"  {label:>12}: p50 {percentile(ms, 0.50):.1f} ms, "
            f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms "
            f"(mean {statistics.fmean(ms):.1f} ms; target p99 < 100 ms)"
        )
        key = "ack" if index == 0 else "answer"
        figures[f"{key}_p50_ms"] = f"{percentile(ms, 0.50):.1f}"
        figures[f"{key}_p99_ms"] = f"{percentile(ms, 0.99):.1f}"


async def start_app(
    database_url: str,
    api_url: str,
    gateway_url: str,
    clock: Clock | None = None,
    **adapter_options: Any,
) -> tuple[App, DiscordAdapter, asyncio.Task[None]]:
    """The real app with the real Discord adapter, connected to an emulator and ready."""
    settings = Settings(
        database_url=database_url,
        content_dir=bundled_content_dir(),
        discord_token=TOKEN,
        discord_api_url=api_url,
        discord_gateway_url=gateway_url,
    )
    app = build(settings, clock=clock) if clock is not None else build(settings)
    adapter = DiscordAdapter(settings, app.store, guild_ready_timeout=0.05, **adapter_options)
    app.dispatcher.adapters["discord"] = adapter
    task = asyncio.create_task(adapter.start(app.hub))
    await adapter.wait_ready(30)
    settle_heap()  # as mentorbot.bootstrap.serve does once it runs
    return app, adapter, task


async def stop_app(
    app: App | None, adapter: DiscordAdapter | None, task: asyncio.Task[None] | None
) -> None:
    if adapter is not None:
        await adapter.stop()
    if task is not None:
        await task
    if app is not None:
        app.store.dispose()


class Bench:
    def __init__(
        self,
        learners: int,
        database_url: str,
        ack_after: float = ACK_AFTER,
        defer_when_busy: int = DEFER_WHEN_BUSY,
    ) -> None:
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
        self.database_url = database_url
        self.ack_after = ack_after
        self.defer_when_busy = defer_when_busy
        self.clock = Clock()
        self.app: App | None = None
        self.adapter: DiscordAdapter | None = None
        self.task: asyncio.Task[None] | None = None
        self.spread: list[float] = []  # seconds from the first to the last frame of a round
        self.figures: dict[str, str] = {}  # for the RESULT line

    async def start(self) -> None:
        self.dc.start_in_thread()
        self.app, self.adapter, self.task = await start_app(
            self.database_url,
            self.dc.base_url,
            self.dc.gateway_url,
            self.clock,
            ack_after=self.ack_after,
            defer_when_busy=self.defer_when_busy,
        )

    async def stop(self) -> None:
        await stop_app(self.app, self.adapter, self.task)
        self.dc.stop()

    async def interact(self, payloads: list[dict[str, Any]]) -> list[tuple[float, float]]:
        """Dispatch all at once; for each, seconds from the emulator sending the
        INTERACTION_CREATE frame to it receiving the interaction callback (the
        acknowledgement, what Discord's 3-second rule is about), and to the answer
        being shown (the same moment unless the adapter deferred: then the edit that
        replaces the "thinking…" placeholder)."""
        assert self.adapter is not None
        before = self.adapter.handled
        await asyncio.gather(*(self.dc.dispatch("INTERACTION_CREATE", p) for p in payloads))
        await self.adapter.wait_handled(before + len(payloads), timeout=120)
        await self.adapter.drain()
        wanted = {str(p["id"]) for p in payloads}
        sent_at = {
            int(frame.data["id"]): frame.time
            for frame in list(self.dc.gateway_sent)
            if frame.event == "INTERACTION_CREATE" and frame.data["id"] in wanted
        }
        tokens = {int(p["id"]): str(p["token"]) for p in payloads}
        webhook_times: dict[str, float] = {}
        for request in self.dc.requests_to(None, r"/webhooks/.*"):
            webhook_times.setdefault(request.path.split("/")[3], request.time)
        timings = []
        for itx, started in sent_at.items():
            ack = self.dc.callbacks_for(itx)[0]
            answered = ack.time if ack.type == 4 else webhook_times[tokens[itx]]
            timings.append((ack.time - started, answered - started))
        self.spread.append(max(sent_at.values()) - min(sent_at.values()))
        return timings

    def command(self, user: FakeUser, name: str) -> dict[str, Any]:
        return self.dc.make_interaction(
            InteractionType.APPLICATION_COMMAND, user.id, guild_id=GUILD, command=f"mentor {name}"
        )

    async def latency(self, concurrency: int, rounds: int) -> None:
        users = self.users[:concurrency]
        # Warm-up, so every learner exists: the first alone (it creates the workspace),
        # then the rest together.
        await self.interact([self.command(users[0], "help")])
        await self.interact([self.command(u, "help") for u in users[1:]])
        samples: list[tuple[float, float]] = []
        for _ in range(rounds):
            samples += await self.interact([self.command(u, "progress") for u in users])
        spread = statistics.fmean(self.spread[1:]) * 1000
        print(
            f"interactions: {len(samples)} in {rounds} rounds of {concurrency} concurrent "
            f"(each round's frames leave the emulator within {spread:.0f} ms)"
        )
        report_latency(samples, self.figures)
        self.figures["interactions"] = str(len(samples))

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
        self.figures.update(
            learners=str(len(self.users)),
            limit_per_s=str(limit),
            throughput_pct=f"{100 * overall / limit:.1f}",
            refused_429=str(limited),
            duplicates=str(duplicates),
            missing=str(missing),
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--ack-after",
        type=float,
        default=ACK_AFTER,
        help="seconds before an unanswered interaction is deferred (0: always defer first)",
    )
    parser.add_argument(
        "--defer-when-busy",
        type=int,
        default=DEFER_WHEN_BUSY,
        help="defer at once when this many interactions already wait for the core",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with database(args.database) as url:
        print(
            f"database: {args.database}; interactions deferred after {args.ack_after:g} s, "
            f"or at once when {args.defer_when_busy} already wait for the core"
        )
        bench = Bench(
            max(args.learners, args.concurrency), url, args.ack_after, args.defer_when_busy
        )
        await bench.start()
        try:
            await bench.latency(args.concurrency, args.rounds)
            await bench.throughput(args.limit)
        finally:
            await bench.stop()
    figures = " ".join(f"{key}={value}" for key, value in bench.figures.items())
    print(
        f"RESULT name=discord_interactions db={args.database} concurrency={args.concurrency} "
        f"{figures}"
    )


if __name__ == "__main__":
    asyncio.run(main())
