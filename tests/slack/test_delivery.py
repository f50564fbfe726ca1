"""Deliveries through the core's dispatcher to the emulator: schedule, outages, 429s,
crash recovery, split messages, and Slack's refusals in the core's vocabulary."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from adapters.slack import SlackAdapter
from bot.config import Settings
from bot.messages import Action, OutgoingMessage, Section
from bot.models import Delivery, Enrolment
from bot.ports import PermanentSendError, RateLimited, TemporarySendError
from bot.ratelimit import Limit
from tests.conftest import Clock
from tests.emulators.slack_api import DEFAULT_TEAM_ID, DEFAULT_USER_ID, SlackEmulator
from tests.slack.rig import SlackRig, dm_of, lessons, posts

Scenario = Callable[[SlackRig], Awaitable[None]]


def run(settings: Settings, slack: SlackEmulator, clock: Clock, scenario: Scenario) -> None:
    async def main() -> None:
        async with SlackRig(settings, slack, clock) as rig:
            await scenario(rig)

    asyncio.run(main())


def big_message(key: str = "test:big", sections: int = 70) -> OutgoingMessage:
    """A delivery needing two Slack messages (more than 50 blocks)."""
    return OutgoingMessage(
        platform="slack",
        workspace=DEFAULT_TEAM_ID,
        user=DEFAULT_USER_ID,
        text="",
        title="Long lesson",
        sections=tuple(Section(f"Part {i}", f"Body {i}.") for i in range(sections)),
        actions=(Action("skip", "Skip", "skip"),),
        kind="lesson",
        delivery_id=99,
        delivery_key=key,
    )


def test_a_scheduled_lesson_goes_out_on_the_tick(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await rig.command("start")
        await rig.settle()
        (enrolment_due,) = rig.db(lambda s: list(s.exec(select(Enrolment.next_due_at)).all()))
        assert enrolment_due is not None
        clock.now = enrolment_due  # Thursday 09:00 in Berlin, the learner's zone

        await rig.app.engine.tick()

        titles = [c.params["blocks"][0]["text"]["text"] for c in lessons(slack)]
        assert titles == [
            "0.2.2 Senior / Lead Data Engineer — day 1 of 3",
            "0.2.2 Senior / Lead Data Engineer — day 2 of 3",
        ]
        assert [d.status for d in rig.deliveries()] == ["sent", "sent"]

    run(slack_settings, slack, clock, scenario)


def test_an_outage_during_delivery_loses_and_doubles_nothing(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        slack.fail_next("chat.postMessage", status=500)
        slack.fail_next("chat.postMessage", status=503)
        await rig.command("start")
        await rig.settle()
        (row,) = rig.deliveries()
        # A 5xx may come after Slack posted: the row waits, unowned, for a checked retry.
        assert (row.status, row.attempts, row.lease_owner) == ("sending", 1, None)
        assert row.lease_until == row.due_at and "HTTP 500" in (row.error or "")

        for expected_attempts in (2, 3):
            clock.advance(minutes=10)  # past the backoff
            await rig.app.engine.tick()
            (row,) = rig.deliveries()
            assert row.attempts == expected_attempts

        assert row.status == "sent"
        calls = slack.calls_to("chat.postMessage")
        assert [c.status for c in calls] == [500, 503, 200]
        # After each 5xx the adapter looked at the DM before posting again.
        assert len(slack.calls_to("conversations.history")) == 2
        assert len(slack.messages(dm_of(slack))) == 1
        assert row.platform_message_ids == calls[-1].response["ts"]

    run(slack_settings, slack, clock, scenario)


def test_a_429_is_honoured_with_its_retry_after(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        slack.fail_next("chat.postMessage", status=429, retry_after=1)
        await rig.command("start")
        await rig.settle()
        (row,) = rig.deliveries()
        assert row.status == "pending"
        assert row.attempts == 0  # a 429 is pacing, not a failure
        assert row.due_at == clock.now + timedelta(seconds=1)
        assert "retry after 1s" in (row.error or "")
        assert rig.app.dispatcher.stats.rate_limited == 1
        assert [c.status for c in slack.calls_to("chat.postMessage")] == [429]  # no SDK retry

        clock.advance(seconds=1)
        await rig.app.engine.tick()  # waits out the limiter's block, then sends

        (row,) = rig.deliveries()
        assert row.status == "sent"
        assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]
        assert len(slack.messages(dm_of(slack))) == 1

    run(slack_settings, slack, clock, scenario)


def _crash_mid_send(rig: SlackRig, clock: Clock, delivery_id: int) -> None:
    """What a process that died between posting and recording leaves behind."""

    def work(session: Session) -> None:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        row.status = "sending"
        row.lease_owner = "crashed-host:1"
        row.lease_until = clock.now - timedelta(minutes=1)
        row.platform_message_ids = None
        row.platform_channel = None
        row.sent_at = None
        session.add(row)

    rig.db(work)


def test_crash_recovery_finds_the_posted_message_instead_of_posting_again(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await rig.command("start")
        await rig.settle()
        (row,) = rig.deliveries()
        ts = row.platform_message_ids
        _crash_mid_send(rig, clock, row.id or 0)
        before = len(slack.calls_to("chat.postMessage"))

        await rig.app.dispatcher.run_once()

        (row,) = rig.deliveries()
        assert (row.status, row.platform_message_ids) == ("sent", ts)
        assert row.platform_channel == dm_of(slack)
        assert len(slack.calls_to("chat.postMessage")) == before
        assert rig.app.dispatcher.stats.recovered == 1

    run(slack_settings, slack, clock, scenario)


def test_crash_recovery_that_cannot_look_yet_asks_again_instead_of_posting(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await rig.command("start")
        await rig.settle()
        (row,) = rig.deliveries()
        ts = row.platform_message_ids
        _crash_mid_send(rig, clock, row.id or 0)
        before = len(slack.calls_to("chat.postMessage"))
        slack.fail_next("conversations.history", status=429, retry_after=1)

        await rig.app.dispatcher.run_once()  # the check met a 429: nothing is posted

        (row,) = rig.deliveries()
        assert row.status == "sending" and row.lease_owner is None  # still unsure
        assert row.due_at == clock.now + timedelta(seconds=1)
        assert len(slack.calls_to("chat.postMessage")) == before

        clock.advance(seconds=2)
        await rig.app.dispatcher.run_once()

        (row,) = rig.deliveries()
        assert (row.status, row.platform_message_ids) == ("sent", ts)
        assert len(slack.calls_to("chat.postMessage")) == before

    run(slack_settings, slack, clock, scenario)


def test_crash_recovery_posts_a_message_that_never_arrived(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await rig.command("start")
        await rig.settle()
        (row,) = rig.deliveries()
        _crash_mid_send(rig, clock, row.id or 0)
        slack.reset()  # the DM is empty: the post never happened

        await rig.app.dispatcher.run_once()

        (row,) = rig.deliveries()
        assert row.status == "sent"
        assert len(posts(slack)) == 1
        assert rig.app.dispatcher.stats.recovered == 0

    run(slack_settings, slack, clock, scenario)


def test_a_split_message_interrupted_part_way_is_completed_without_repeats(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        adapter = rig.adapter
        message = big_message()
        # Part 1 goes out, part 2 meets a 429; then a 500; then it gets through.
        slack.rate_limit("chat.postMessage", per_second=0.01, burst=1)
        with pytest.raises(RateLimited) as limited:
            await adapter.send(message)
        assert limited.value.scope == f"slack:{DEFAULT_TEAM_ID}:{DEFAULT_USER_ID}"
        slack.clear_rate_limits()
        slack.fail_next("chat.postMessage", status=500)
        with pytest.raises(TemporarySendError):
            await adapter.send(message)

        result = await adapter.send(message)

        stored = slack.messages(dm_of(slack))
        assert len(stored) == 2
        assert result.message_ids == tuple(m["ts"] for m in stored)
        parts = [m["metadata"]["event_payload"]["part"] for m in stored]
        assert parts == [0, 1]
        # The crash-recovery lookup sees both parts as one delivery.
        assert await adapter.find_delivered(message) == result

    run(slack_settings, slack, clock, scenario)


def test_find_delivered_ignores_a_partly_posted_message_but_remembers_its_parts(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        message = big_message("test:partial")
        slack.rate_limit("chat.postMessage", per_second=0.01, burst=1)
        with pytest.raises(RateLimited):
            await rig.adapter.send(message)
        slack.clear_rate_limits()
        fresh = SlackAdapter(rig.settings, rig.app.store)  # a restarted process

        assert await fresh.find_delivered(message) is None
        result = await fresh.send(message)
        await fresh.stop()

        assert len(slack.messages(dm_of(slack))) == 2
        assert len(result.message_ids) == 2

    run(slack_settings, slack, clock, scenario)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("user_not_found", "user_not_found"),
        ("account_inactive", "account_inactive"),
        ("cannot_dm_bot", "cannot_dm_bot"),
        ("channel_not_found", "channel_not_found"),
        ("not_in_channel", "not_in_channel"),
        ("is_archived", "is_archived"),
        ("user_disabled", "user_disabled"),
    ],
)
def test_slack_refusals_are_permanent(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock, error: str, code: str
) -> None:
    async def scenario(rig: SlackRig) -> None:
        slack.fail_next("chat.postMessage", status=200, error=error)
        with pytest.raises(PermanentSendError) as raised:
            await rig.adapter.send(big_message(sections=1))
        assert raised.value.code == code

    run(slack_settings, slack, clock, scenario)


def test_a_learner_slack_cannot_reach_fails_the_row_at_once(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        slack.set_channel_error(dm_of(slack), "is_archived")
        await rig.command("start")
        await rig.settle()

        (row,) = rig.deliveries()
        assert (row.status, row.attempts, row.error) == ("failed", 1, "slack: is_archived")

    run(slack_settings, slack, clock, scenario)


def test_a_429_opening_the_dm_concerns_that_method_alone(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        slack.fail_next("conversations.open", status=429, retry_after=3)
        with pytest.raises(RateLimited) as limited:
            await rig.adapter.send(big_message(sections=1))
        opening = f"slack:{DEFAULT_TEAM_ID}:api:conversations.open"
        assert (limited.value.retry_after, limited.value.scope) == (3.0, opening)

    run(slack_settings, slack, clock, scenario)


def test_outages_unreachable_slack_and_unknown_errors_are_temporary(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        slack.fail_next("conversations.open", status=503)
        with pytest.raises(TemporarySendError):
            await rig.adapter.send(big_message(sections=1))
        slack.fail_next("chat.postMessage", status=200, error="something_new")
        with pytest.raises(TemporarySendError):
            await rig.adapter.send(big_message(sections=1))
        # Nothing listens on port 9 of loopback: the connection is refused.
        offline = SlackAdapter(
            replace(rig.settings, slack_api_url="http://127.0.0.1:9/api/"), rig.app.store
        )
        try:
            with pytest.raises(TemporarySendError, match="could not reach slack"):
                await offline.send(big_message(sections=1))
        finally:
            await offline.stop()

    run(slack_settings, slack, clock, scenario)


def test_rate_limits_per_conversation_and_per_workspace(slack_settings: Settings) -> None:
    defaults = replace(slack_settings, slack_channel_rate=1.0, slack_workspace_rate=10.0)
    adapter = SlackAdapter(defaults, store=None)  # type: ignore[arg-type]
    dm = big_message(sections=1)
    channel = OutgoingMessage(platform="slack", workspace="T1", user="U1", text="x", channel="C42")

    with_dm = replace(dm, channel="D123")
    assert adapter.rate_limits(with_dm) == [
        Limit(f"slack:{DEFAULT_TEAM_ID}:{DEFAULT_USER_ID}", 1.0, 1),
        Limit(f"slack:{DEFAULT_TEAM_ID}", 10.0, 5),
    ]
    # The configured rates are where the learned pace starts; the maxima cap it.
    capped = SlackAdapter(replace(defaults, slack_workspace_rate_max=40.0), store=None)  # type: ignore[arg-type]
    assert [limit.ceiling for limit in capped.rate_limits(with_dm)] == [None, 40.0]
    # Same keys before the DM's channel is known, and one more: opening the DM.
    assert adapter.rate_limits(dm) == [
        *adapter.rate_limits(with_dm),
        Limit(f"slack:{DEFAULT_TEAM_ID}:api:conversations.open", 50 / 60, 3, exact=True),
    ]
    assert adapter.rate_limits(channel)[0].key == "slack:T1:C42"
    assert len(adapter.rate_limits(channel)) == 2  # a digest's channel needs no opening
