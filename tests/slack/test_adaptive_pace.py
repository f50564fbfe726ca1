"""The learned pace against the emulator's limits, on SQLite and PostgreSQL: the real
Slack adapter and the shared rate limiter send through slack_sdk to the loopback
emulator, which enforces a workspace limit the bot cannot see and answers 429s; the
outcome is what Slack received and the pace the database learned. No assertion is on
how long anything took."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa

from adapters.slack import SlackAdapter
from bot.config import Settings
from bot.db import Store
from bot.messages import OutgoingMessage
from bot.ports import RateLimited
from bot.ratelimit import RateLimiter, learned
from tests.conftest import Clock
from tests.emulators.slack_api import DEFAULT_TEAM_ID, SlackEmulator
from tests.slack.rig import SlackRig


@pytest.fixture
def paced(slack_settings: Settings, store_url: str) -> Iterator[Settings]:
    """Slack's own rates, on the parametrised database."""
    store = Store(store_url)
    store.upgrade()
    store.dispose()
    yield replace(
        slack_settings, database_url=store_url, slack_channel_rate=1.0, slack_workspace_rate=20.0
    )


def lesson(n: int) -> OutgoingMessage:
    return OutgoingMessage(
        "slack",
        DEFAULT_TEAM_ID,
        f"UP{n:04d}",
        f"lesson {n}",
        kind="lesson",
        delivery_id=n + 1,
        delivery_key=f"pace:{n}",
    )


class Sender:
    """One replica's sending path: its own store connection, limiter and adapter. A
    429 blocks and cuts through the limiter and the message goes again after
    Retry-After, as the dispatcher does. Every learner is new, so each first message
    also opens a DM: the emulator does not limit that here, and the adapter is told the
    workspace allows it, so the post's pace is what these tests see."""

    def __init__(self, settings: Settings) -> None:
        self.store = Store(settings.database_url)
        self.limiter = RateLimiter(self.store)
        self.adapter = SlackAdapter(
            settings, self.store, self.limiter, api_rates={"conversations.open": 1000.0}
        )
        self.refused = 0

    async def send(self, message: OutgoingMessage) -> None:
        limits = self.adapter.rate_limits(message)
        while True:
            await self.limiter.acquire(limits)
            try:
                await self.adapter.send(message)
                return
            except RateLimited as exc:
                self.refused += 1
                await self.limiter.block(limits, exc.retry_after, scope=exc.scope)
                await asyncio.sleep(exc.retry_after)

    def pace(self) -> float:
        workspace = self.adapter.rate_limits(lesson(0))[1]
        return self.store.run(lambda s: learned(s, workspace))

    async def close(self) -> None:
        await self.adapter.stop()
        self.store.dispose()


def received(slack: SlackEmulator, count: int) -> Counter[str]:
    """Delivery keys as Slack stored them, counted."""
    keys: Counter[str] = Counter()
    for n in range(count):
        for message in slack.messages(slack.dm_channel_id(f"UP{n:04d}")):
            keys[message["metadata"]["event_payload"]["delivery_key"]] += 1
    return keys


def add_learners(slack: SlackEmulator, count: int) -> None:
    for n in range(count):
        slack.add_user(f"UP{n:04d}", name=f"learner{n}")


def test_a_workspace_whose_limit_drops_mid_fan_out(paced: Settings, slack: SlackEmulator) -> None:
    """Slack allows plenty, then only 4/s: the pace comes down to it, every lesson
    arrives once, and the 429s stop being the rule."""
    add_learners(slack, 70)
    slack.rate_limit("chat.postMessage", 200.0, per="team")

    async def main() -> tuple[float, float, int]:
        sender = Sender(paced)
        try:
            await asyncio.gather(*(sender.send(lesson(n)) for n in range(40)))
            before = sender.pace()
            slack.rate_limit("chat.postMessage", 4.0, burst=2, per="team")
            await asyncio.gather(*(sender.send(lesson(n)) for n in range(40, 70)))
            return before, sender.pace(), sender.refused
        finally:
            await sender.close()

    before, after, refused = asyncio.run(main())
    assert received(slack, 70) == {f"pace:{n}": 1 for n in range(70)}
    assert before >= 20.0  # it was busy without a 429: the pace rose or held
    assert after < before * 0.8**2  # cut more than once, towards the new limit
    assert refused < 30  # not a 429 for every message


def test_a_5xx_burst_during_a_ramp_up_does_not_cut_the_pace(
    paced: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    """Through the dispatcher: Slack's 503s during a fan-out are retried, and they say
    nothing about the pace, so the learned rate only rose."""
    fast = replace(paced, slack_channel_rate=100.0)

    async def scenario(rig: SlackRig) -> None:
        slack.fail_next("chat.postMessage", status=503, times=3)
        await rig.command("start")
        await rig.settle()
        for _ in range(10):
            clock.advance(seconds=300)  # past every backoff
            await rig.app.engine.tick()
            if all(d.status == "sent" for d in rig.deliveries()):
                break
        assert [d.status for d in rig.deliveries()] == ["sent"]
        assert rig.app.dispatcher.stats.retried >= 1
        assert rig.app.dispatcher.stats.rate_limited == 0
        cells = rig.db(
            lambda s: list(s.execute(sa.text("SELECT key, rate, peak, cut_at FROM rate_bucket")))
        )
        assert cells and all(peak == 0 and cut_at == 0 for _, _, peak, cut_at in cells)

    async def main() -> None:
        async with SlackRig(fast, slack, clock) as rig:
            await scenario(rig)

    asyncio.run(main())


def test_two_replicas_ramping_against_one_limit(paced: Settings, slack: SlackEmulator) -> None:
    """Two replicas fan out together against a 10/s workspace limit they start above:
    they learn one pace from the same cell, and every lesson arrives once."""
    add_learners(slack, 60)
    slack.rate_limit("chat.postMessage", 10.0, burst=3, per="team")
    high = replace(paced, slack_workspace_rate=30.0)

    async def main() -> tuple[float, float, int]:
        first, second = Sender(high), Sender(high)
        try:
            await asyncio.gather(
                *(first.send(lesson(n)) for n in range(0, 60, 2)),
                *(second.send(lesson(n)) for n in range(1, 60, 2)),
            )
            return first.pace(), second.pace(), first.refused + second.refused
        finally:
            await first.close()
            await second.close()

    first_pace, second_pace, refused = asyncio.run(main())
    assert received(slack, 60) == {f"pace:{n}": 1 for n in range(60)}
    assert first_pace == second_pace < 30.0  # one learned pace, cut from the start
    assert refused >= 1


@pytest.mark.parametrize("retry_after", [0, 1])
def test_a_429_from_slack_is_waited_out_and_cuts_the_pace(
    paced: Settings, slack: SlackEmulator, retry_after: int
) -> None:
    """Slack's Retry-After reaches the limiter as it was sent (0 included), and the
    cell to blame is cut; longer values are in tests/test_ratelimit.py, on the
    database's time, where nobody waits them out."""
    add_learners(slack, 2)

    async def main() -> tuple[float, int]:
        sender = Sender(paced)
        try:
            await sender.send(lesson(0))
            slack.fail_next("chat.postMessage", status=429, retry_after=retry_after)
            await sender.send(lesson(1))
            return sender.pace(), sender.refused
        finally:
            await sender.close()

    pace, refused = asyncio.run(main())
    assert refused == 1
    assert received(slack, 2) == {"pace:0": 1, "pace:1": 1}
    calls = [c for c in slack.calls_to("chat.postMessage") if c.status == 429]
    assert len(calls) == 1
    store = Store(paced.database_url)
    try:
        cells = store.run(
            lambda s: dict(s.execute(sa.text("SELECT key, peak FROM rate_bucket")).all())
        )
    finally:
        store.dispose()
    # No cell was busy, so the cell Slack's 429 named (the conversation) takes the cut.
    assert cells[f"slack:{DEFAULT_TEAM_ID}:UP0001"] == pytest.approx(1.0)
    assert pace == 20.0  # the workspace was not to blame


def test_the_adapter_remembers_a_bounded_number_of_dm_channels(
    paced: Settings, slack: SlackEmulator
) -> None:
    """A process that wrote to every learner ever keeps only the most recent DM
    channels; a learner it forgot costs one more lookup, not a lost message."""
    add_learners(slack, 5)
    fast = replace(paced, slack_channel_rate=100.0, slack_workspace_rate=100.0)

    async def main() -> int:
        sender = Sender(fast)
        sender.adapter._dm_channels.limit = 3
        try:
            for n in range(5):
                await sender.send(lesson(n))
            await sender.send(replace(lesson(0), delivery_key="pace:again"))
            return len(sender.adapter._dm_channels)
        finally:
            await sender.close()

    assert asyncio.run(main()) == 3
    opened = [c.params["users"] for c in slack.calls_to("conversations.open")]
    assert opened == [f"UP{n:04d}" for n in range(5)] + ["UP0000"]  # forgotten, asked again
    assert len(slack.messages(slack.dm_channel_id("UP0000"))) == 2
