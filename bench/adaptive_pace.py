"""Adaptive pace against a workspace limit the bot cannot see.

The loopback Slack emulator limits ``chat.postMessage`` per workspace to a hidden rate
R (a token bucket one second deep) and answers the excess with 429 + Retry-After. The
real Slack adapter sends one DM each to many learners, paced by the shared rate limiter
(its cells in a SQLite database) and reacting to 429s the way the dispatcher does: the
limiter blocks and cuts the busy cells, and the message is sent again after
Retry-After. The configured workspace rate (where the pace starts) is deliberately
wrong: above R for R = 5/s, below it for R = 40/s.

Reported per R: the share of R delivered in the second half of the run (in the first
the pace is still ramping from the configured rate; the whole run is reported too), the
share of requests answered 429, duplicates and missed messages.
Targets: >= 90 % of R, < 1 % 429s, 0 duplicates, 0 missed.
Run: .venv/bin/python bench/adaptive_pace.py [--scale F]   (about two minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.slack.app import SlackAdapter
from bot.config import Settings, bundled_content_dir
from bot.db import Store
from bot.messages import OutgoingMessage
from bot.ports import RateLimited
from bot.ratelimit import RateLimiter, learned
from tests.emulators.slack_api import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_SIGNING_SECRET,
    DEFAULT_TEAM_ID,
    SlackEmulator,
)

CONCURRENCY = 32  # sends waiting at once; at 40/s each has 0.8 s for its round trip
# (hidden limit R, configured start, seconds): at 5/s a 429 is a bigger share of the
# requests, so that run is longer to cover more than one probing cycle.
RUNS = ((5.0, 10.0, 75.0), (40.0, 10.0, 45.0))


async def run(slack: SlackEmulator, tmp: Path, hidden: float, start: float, seconds: float) -> str:
    learners = int(hidden * seconds * 1.3) + 50  # more than the window can carry
    for n in range(learners):
        slack.add_user(f"UB{hidden:g}x{n}", name=f"learner{n}")
    slack.clear_rate_limits()
    slack.rate_limit("chat.postMessage", hidden, per="team")
    settings = Settings(
        database_url=f"sqlite:///{tmp / f'pace{hidden:g}.db'}",
        content_dir=bundled_content_dir(),
        slack_bot_token=DEFAULT_BOT_TOKEN,
        slack_signing_secret=DEFAULT_SIGNING_SECRET,
        slack_api_url=slack.base_url,
        slack_channel_rate=1.0,
        slack_workspace_rate=start,
    )
    store = Store(settings.database_url)
    store.upgrade()
    limiter = RateLimiter(store)
    # Every learner is new, so each first message also opens a DM. The emulator does not
    # limit conversations.open and this measures the posts' pace, so the adapter is told
    # the workspace allows openings at any pace (they start at Slack's Tier 3 floor).
    adapter = SlackAdapter(settings, store, limiter, api_rates={"conversations.open": 1e6})
    queue: asyncio.Queue[OutgoingMessage] = asyncio.Queue()
    for n in range(learners):
        queue.put_nowait(
            OutgoingMessage(
                "slack",
                DEFAULT_TEAM_ID,
                f"UB{hidden:g}x{n}",
                f"lesson for learner {n}",
                kind="lesson",
                delivery_id=n + 1,
                delivery_key=f"bench:{hidden:g}:{n}",
            )
        )
    sent: list[float] = []
    refused: list[float] = []
    pending: set[asyncio.Future[None]] = set()  # messages waiting out a Retry-After
    began = time.monotonic()
    deadline = began + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            try:
                message = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            limits = adapter.rate_limits(message)
            pacing = asyncio.ensure_future(limiter.acquire(limits))
            waiting.add(pacing)
            try:
                await pacing
            except asyncio.CancelledError:
                return  # the window closed while it waited: never sent
            finally:
                waiting.discard(pacing)
            if time.monotonic() >= deadline:
                queue.put_nowait(message)
                return
            try:
                await adapter.send(message)
            except RateLimited as exc:
                refused.append(time.monotonic())
                await limiter.block(limits, exc.retry_after, scope=exc.scope)

                async def later(message: OutgoingMessage = message, wait: float = exc.retry_after):
                    await asyncio.sleep(wait)
                    queue.put_nowait(message)

                pending.add(asyncio.ensure_future(later()))
                continue
            sent.append(time.monotonic())

    waiting: set[asyncio.Future[None]] = set()  # sends waiting for their slot
    workers = [asyncio.ensure_future(worker()) for _ in range(CONCURRENCY)]
    try:
        await asyncio.wait(workers, timeout=seconds)
    finally:
        for pacing in list(waiting):
            pacing.cancel()  # sends on the wire finish and are counted; the rest stop
        await asyncio.gather(*workers)
        for waiting in pending:
            waiting.cancel()  # still owed at the end of the window, not lost
        await adapter.stop()
    elapsed = seconds
    workspace = adapter.rate_limits(OutgoingMessage("slack", DEFAULT_TEAM_ID, "UB", "x"))[1]
    pace = store.run(lambda s: learned(s, workspace))
    store.dispose()

    posted: Counter[str] = Counter()
    for n in range(learners):
        channel = slack.dm_channel_id(f"UB{hidden:g}x{n}")
        for found in slack.messages(channel):
            key = ((found.get("metadata") or {}).get("event_payload") or {}).get("delivery_key")
            posted[str(key)] += 1
    duplicates = sum(count - 1 for count in posted.values() if count > 1)
    # Every message the bot counted as sent must be on Slack exactly once, and every
    # message on Slack must be one the bot counted.
    missed = abs(len(sent) - len(posted))
    requests = len(sent) + len(refused)
    found_at = refused[0] if refused else began + elapsed
    half = began + elapsed / 2
    steady = [t for t in sent if half <= t < deadline]
    steady_share = len(steady) / (elapsed / 2) / hidden
    overall = len([t for t in sent if t < deadline]) / elapsed / hidden
    share_429 = len(refused) / max(1, requests)
    print(
        f"hidden limit {hidden:g}/s, configured start {start:g}/s, {elapsed:.0f} s: "
        f"sent {len(sent)}, 429s {len(refused)} of {requests} requests ({share_429:.2%}); "
        f"first 429 after {found_at - began:.1f} s; share of R in the second half "
        f"{steady_share:.1%}, over the whole run {overall:.1%}; learned pace {pace:.2f}/s; "
        f"duplicates {duplicates}, missed {missed}"
    )
    ok = steady_share >= 0.9 and share_429 < 0.01 and duplicates == 0 and missed == 0
    return (
        f"RESULT name=adaptive_pace hidden_rate={hidden:g} start_rate={start:g} "
        f"seconds={elapsed:.0f} sent={len(sent)} requests={requests} "
        f"share_of_rate={steady_share:.3f} share_of_rate_overall={overall:.3f} "
        f"share_429={share_429:.4f} learned_rate={pace:.2f} "
        f"duplicates={duplicates} missed={missed} target_met={'yes' if ok else 'no'}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every run's length")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = []
    with tempfile.TemporaryDirectory() as tmp, SlackEmulator() as slack:
        for hidden, start, seconds in RUNS:
            results.append(await run(slack, Path(tmp), hidden, start, seconds * args.scale))
    for line in results:
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
