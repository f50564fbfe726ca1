"""Memory of an idle process after it wrote to many distinct conversations.

Two fresh processes set up the same way (a store, the shared rate limiter, the Slack
adapter): one then paces a send to each of N distinct conversations (N = 100,000) through
the limiter, with the adapter remembering each learner's DM channel as a send does;
the other sends nothing. Both collect garbage, sit idle for a moment and report their
resident set size. Nothing per conversation may outlive its moment in the process:
target, the two within 10 MiB.

The sends stop at the limiter (their cells booked in the database, as for a real
send) and the adapter's caches; the HTTP round trip to Slack keeps nothing per
conversation and would take half an hour at this count.
Run: .venv/bin/python bench/memory.py [--conversations N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_MIB = 10.0
STEP = 200  # sends waiting at once, about what a fan-out keeps in flight


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def child(database: str, conversations: int) -> dict[str, float]:
    from adapters.slack.app import SlackAdapter
    from bot.config import Settings, bundled_content_dir
    from bot.db import Store
    from bot.messages import OutgoingMessage
    from bot.ratelimit import RateLimiter

    store = Store(database)
    store.upgrade()
    settings = Settings(
        database_url=database,
        content_dir=bundled_content_dir(),
        slack_bot_token="xoxb-bench",
        slack_signing_secret="bench",
        slack_api_url="http://127.0.0.1:9/",
        slack_channel_rate=1.0,
        slack_workspace_rate=1e6,  # the count, not the pace, is what is measured
    )
    limiter = RateLimiter(store)
    # Each message would open a DM first: at any pace here, as the posts go at any pace.
    adapter = SlackAdapter(settings, store, limiter, api_rates={"conversations.open": 1e6})
    started = time.perf_counter()
    step = STEP
    for first in range(0, conversations, step):

        async def one(n: int) -> None:
            message = OutgoingMessage("slack", "T1", f"U{n:07d}", "lesson", kind="lesson")
            await limiter.acquire(adapter.rate_limits(message))
            adapter._dm_channels[("T1", message.user)] = f"D{n:07d}"  # as _open_dm does

        await asyncio.gather(*(one(n) for n in range(first, min(conversations, first + step))))
    took = time.perf_counter() - started
    gc.collect()
    await asyncio.sleep(1.0)
    gc.collect()
    return {
        "rss_mib": rss_mib(),
        "seconds": took,
        "limiter_notes": limiter.notes(),
        "dm_channels": len(adapter._dm_channels),
    }


def measure(conversations: int, tmp: Path) -> dict[str, float]:
    database = f"sqlite:///{tmp / f'memory{conversations}.db'}"
    root = str(Path(__file__).resolve().parent.parent)
    code = (
        f"import asyncio, json, sys; sys.path.insert(0, {root!r}); import bench.memory as m; "
        f"print(json.dumps(asyncio.run(m.child({database!r}, {conversations}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=900
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        idle = measure(0, Path(tmp))
        busy = measure(args.conversations, Path(tmp))
    delta = busy["rss_mib"] - idle["rss_mib"]
    print(f"never sent: RSS {idle['rss_mib']:.1f} MiB")
    print(
        f"after {args.conversations:,} distinct conversations ({busy['seconds']:.0f} s): "
        f"RSS {busy['rss_mib']:.1f} MiB, {delta:+.1f} MiB; limiter notes left "
        f"{busy['limiter_notes']:.0f}, DM channels remembered {busy['dm_channels']:.0f}"
    )
    print(
        f"RESULT name=memory conversations={args.conversations} "
        f"rss_never_sent_mib={idle['rss_mib']:.1f} rss_after_mib={busy['rss_mib']:.1f} "
        f"delta_mib={delta:.1f} limiter_notes={busy['limiter_notes']:.0f} "
        f"dm_channels={busy['dm_channels']:.0f} "
        f"target_met={'yes' if delta <= TARGET_MIB else 'no'}"
    )


if __name__ == "__main__":
    main()
