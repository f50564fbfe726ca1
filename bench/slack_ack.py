"""Slack adapter benchmark: how fast ``/mentor`` is acknowledged, and how fast deliveries
reach Slack under its rate limit. Prints figures; judges nothing.

1. Ack latency: rounds of 50 concurrent, signed ``/mentor`` requests over loopback HTTP
   to the real AsyncApp (the real core and a SQLite file behind it). Each round starts
   while the previous round's work (users.info, the database, lesson posts) still runs,
   as it would in a busy minute. Slack needs the ack within 3 s; the target is p99 under
   100 ms.
2. Delivery throughput: 100 lesson-days for 50 learners (two each), sent by the core's
   dispatcher to the emulator, which limits chat.postMessage to 1 message per second per
   conversation (Slack's rule) and answers 429 beyond it. Run with the default pacing
   (1/s per conversation, 10/s per workspace), with the workspace pace raised, and with
   a margin under Slack's per-conversation pace.

Run: ``.venv/bin/python bench/slack_ack.py`` (``make bench`` runs every bench script).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the emulator lives with the tests

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlmodel import col, func, select  # noqa: E402

from adapters.slack import SlackAdapter  # noqa: E402
from bot.config import Settings, bundled_content_dir  # noqa: E402
from bot.messages import EventKind, IncomingEvent, OutgoingMessage  # noqa: E402
from bot.models import Delivery  # noqa: E402
from mentorbot.bootstrap import App, build, settle_heap  # noqa: E402
from mentorbot.web import LISTEN_BACKLOG  # noqa: E402
from tests.emulators.slack_api import (  # noqa: E402
    DEFAULT_BOT_TOKEN,
    DEFAULT_SIGNING_SECRET,
    DEFAULT_TEAM_ID,
    SlackEmulator,
    sign_request,
    slash_command_body,
)

CONCURRENCY = 50
ROUNDS = ("start", "progress", "help", "next", "history", "schedule")
LEARNERS = 50


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def user_id(n: int) -> str:
    return f"U{n:08d}"


class Running:
    """The app with its Slack adapter served on an ephemeral loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> Running:
        self.app: App = build(self.settings)
        # The emulator limits neither users.info nor conversations.open, and neither
        # the acks nor the posts' pace is about them: the workspace allows any pace.
        self.adapter = SlackAdapter(
            self.settings,
            self.app.store,
            self.app.dispatcher.limiter,
            api_rates={"users.info": 1e6, "conversations.open": 1e6},
        )
        self.app.dispatcher.adapters["slack"] = self.adapter
        self.serving = asyncio.create_task(self.adapter.start(self.app.hub))
        application = web.Application()
        application.add_routes(self.adapter.routes())
        self.runner = web.AppRunner(application, access_log=None)
        await self.runner.setup()
        # As mentorbot.web and mentorbot.bootstrap.serve set the server up.
        await web.TCPSite(self.runner, "127.0.0.1", 0, backlog=LISTEN_BACKLOG).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/slack/events"
        settle_heap()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.adapter.stop()
        await self.serving
        await self.runner.cleanup()
        self.app.store.dispose()


def signed_requests(
    slack: SlackEmulator, users: list[str], text: str
) -> list[tuple[str, dict[str, str]]]:
    """Bodies and headers for ``/mentor <text>`` from each user, signed as Slack signs."""
    out: list[tuple[str, dict[str, str]]] = []
    for user in users:
        body = slash_command_body(
            "/mentor",
            text,
            user_id=user,
            user_name=user.lower(),
            response_url=slack.new_response_url(),
        )
        headers = {
            **sign_request(DEFAULT_SIGNING_SECRET, body),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        out.append((body, headers))
    return out


def fire(url: str, requests: list[tuple[str, dict[str, str]]], together: bool) -> list[float]:
    """Runs in a separate process, so the load generator does not share the server's
    CPU and GIL: send the requests (all at once, or one after another) and return each
    one's time to the HTTP answer, in milliseconds."""

    async def one(http: aiohttp.ClientSession, body: str, headers: dict[str, str]) -> float:
        began = time.perf_counter()
        async with http.post(url, data=body.encode(), headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"answered HTTP {response.status}: {await response.text()}")
        return (time.perf_counter() - began) * 1000

    async def main() -> list[float]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            if together:
                return list(await asyncio.gather(*(one(http, b, h) for b, h in requests)))
            return [await one(http, b, h) for b, h in requests]

    return asyncio.run(main())


async def ack_latency(slack: SlackEmulator, settings: Settings, figures: dict[str, str]) -> None:
    loop = asyncio.get_running_loop()
    users = [user_id(n) for n in range(1, CONCURRENCY + 1)]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as client:
        async with Running(settings) as running:

            async def send(
                requests: list[tuple[str, dict[str, str]]], together: bool
            ) -> list[float]:
                return await loop.run_in_executor(client, fire, running.url, requests, together)

            await send(signed_requests(slack, [user_id(0)], "help"), False)  # warm-up
            await running.adapter.drain()
            alone = await send(signed_requests(slack, users[:20], "help"), False)
            await running.adapter.drain()
            print(
                "\n/mentor ack latency, one request at a time: "
                f"p50 {percentile(alone, 50):.1f} ms, max {max(alone):.1f} ms"
            )
            print(f"/mentor ack latency: {len(ROUNDS)} rounds x {CONCURRENCY} concurrent requests")
            everything: list[float] = []
            for text in ROUNDS:
                began = time.perf_counter()
                samples = await send(signed_requests(slack, users, text), True)
                wall = time.perf_counter() - began
                everything.extend(samples)
                print(
                    f"  /mentor {text:<9} p50 {percentile(samples, 50):6.1f} ms   "
                    f"p99 {percentile(samples, 99):6.1f} ms   max {max(samples):6.1f} ms   "
                    f"(round {wall * 1000:.0f} ms)"
                )
            began = time.perf_counter()
            await running.adapter.drain()
            settle = time.perf_counter() - began
    print(
        f"  all {len(everything)} acks: p50 {percentile(everything, 50):.1f} ms, "
        f"p90 {percentile(everything, 90):.1f} ms, p99 {percentile(everything, 99):.1f} ms, "
        f"max {max(everything):.1f} ms, mean {statistics.fmean(everything):.1f} ms"
    )
    print(
        f"  background work (users.info, database, lessons) done {settle:.2f} s after the last ack"
    )
    print(f"  lessons posted: {len(slack.calls_to('chat.postMessage'))} chat.postMessage calls")
    figures.update(
        acks=str(len(everything)),
        ack_p50_ms=f"{percentile(everything, 50):.1f}",
        ack_p99_ms=f"{percentile(everything, 99):.1f}",
        ack_max_ms=f"{max(everything):.1f}",
    )


async def throughput(slack: SlackEmulator, settings: Settings, label: str) -> tuple[float, int]:
    """Sends the queued lesson-days; returns messages a second and 429s from Slack."""
    slack.reset()
    slack.rate_limit("chat.postMessage", per_second=1.0, burst=1)
    async with Running(settings) as running:
        dispatcher = running.app.dispatcher
        dispatcher.accepting = False  # queue without sending, then time the sending alone

        async def silent(_: list[OutgoingMessage]) -> None:
            return None

        for n in range(1, LEARNERS + 1):
            for text in ("/mentor start", "/mentor next"):
                event = IncomingEvent(
                    platform="slack",
                    workspace=DEFAULT_TEAM_ID,
                    user=user_id(n),
                    kind=EventKind.COMMAND,
                    text=text,
                )
                await running.app.hub.handle(event, silent)
        dispatcher.accepting = True
        began = time.perf_counter()
        passes = 0
        while True:
            passes += 1
            await dispatcher.run_once()
            pending = running.app.store.run(
                lambda s: s.exec(
                    select(func.count())
                    .select_from(Delivery)
                    .where(col(Delivery.status).in_(("pending", "sending")))
                ).one()
            )
            if not pending:
                break
            await asyncio.sleep(0.05)  # rows put back after a 429 wait for their retry time
        elapsed = time.perf_counter() - began
        calls = slack.calls_to("chat.postMessage")
        sent = [c for c in calls if c.status == 200]
        limited = [c for c in calls if c.status == 429]
        stats = dispatcher.stats
        print(
            f"  {label}: {len(sent)} messages in {elapsed:.2f} s "
            f"= {len(sent) / elapsed:.1f} msg/s; "
            f"429s from Slack: {len(limited)}; dispatcher sent={stats.sent} "
            f"rate_limited={stats.rate_limited} retried={stats.retried} passes={passes}"
        )
    return len(sent) / elapsed, len(limited)


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    print(
        f"mentorbot Slack benchmark — Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}"
    )
    with tempfile.TemporaryDirectory() as tmp, SlackEmulator() as slack:
        for n in range(LEARNERS + 1):
            slack.add_user(user_id(n), name=f"learner{n}", tz="Europe/Berlin")
        base = Settings(
            database_url=f"sqlite:///{Path(tmp) / 'ack.db'}",
            content_dir=bundled_content_dir(),
            slack_bot_token=DEFAULT_BOT_TOKEN,
            slack_signing_secret=DEFAULT_SIGNING_SECRET,
            slack_api_url=slack.base_url,
        )
        figures: dict[str, str] = {}
        await ack_latency(slack, base, figures)
        print(
            f"\ndelivery throughput: {LEARNERS * 2} lesson-days to {LEARNERS} learners; "
            "the emulator allows 1 chat.postMessage/s per conversation"
        )
        paces = [
            (1.0, 10.0, "default pacing: 1/s per DM, 10/s per workspace", "default"),
            (1.0, 100.0, "workspace pace raised: 1/s per DM, 100/s per workspace", "raised"),
            (
                0.9,
                100.0,
                "a margin under Slack's pace: 0.9/s per DM, 100/s per workspace",
                "margin",
            ),
        ]
        for number, (per_dm, per_workspace, label, key) in enumerate(paces):
            settings = replace(
                base,
                database_url=f"sqlite:///{Path(tmp) / f'pace{number}.db'}",
                slack_channel_rate=per_dm,
                slack_workspace_rate=per_workspace,
            )
            rate, refused = await throughput(slack, settings, label)
            figures[f"{key}_msg_per_s"] = f"{rate:.1f}"
            figures[f"{key}_429s"] = str(refused)
    print(f"RESULT name=slack_ack {' '.join(f'{k}={v}' for k, v in figures.items())}")


if __name__ == "__main__":
    asyncio.run(main())
