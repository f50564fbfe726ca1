"""What must survive: restarts with buttons and forms still open, a dropped gateway, a
429 storm, closed DMs, a crash mid-send, and retries that must not post twice."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlmodel import Session

from bot.messages import OutgoingMessage
from bot.models import Delivery, Learner
from bot.ports import PermanentSendError, RateLimited, TemporarySendError
from tests.conftest import Clock
from tests.discord.world import (
    ACME,
    ACME_GENERAL,
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    GLOBEX,
    TIMEOUT,
    World,
    message_text,
    run,
    running,
)
from tests.emulators.discord_api import Op


def test_buttons_and_open_forms_work_after_a_restart(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            [lesson] = world.lessons(ALICE)
            opened = await world.press(ALICE, lesson, "reply")  # form open when we go down
            form_id = opened.callbacks[0].data["custom_id"]

            await world.restart()
            assert len(world.dc.gateway_ops(Op.IDENTIFY)) == 2  # a brand-new client session

            later = await world.press(ALICE, lesson, "snooze")
            assert later.ephemeral and "OK, I'll remind you" in later.text
            thanks = await world.submit(ALICE, form_id, "Written before the restart.")
            assert "Thanks, I kept your answer" in thanks.text
            [reply] = world.replies(ALICE)
            assert reply.delivery_id == world.deliveries(ALICE)[0].id

    run(scenario)


def test_dropped_gateway_resumes_and_loses_nothing(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            session = world.dc.session_id
            await world.dc.drop_connection(code=4000)
            # Written while the bot is disconnected: replayed on RESUME, then handled.
            [ack] = await world.dm(ALICE, "Sent while you were away.")
            assert "Thanks, I kept your answer" in ack["content"]
            await world.dc.wait_resumed(timeout=TIMEOUT)
            [resume] = world.dc.gateway_ops(Op.RESUME)
            assert resume.data["session_id"] == session
            assert len(world.dc.gateway_ops(Op.IDENTIFY)) == 1
            assert [r.text for r in world.replies(ALICE)] == ["Sent while you were away."]

            after = await world.command(ALICE, "progress")
            assert "lesson questions answered 1 of 1" in after.text

    run(scenario)


async def _due_tomorrow(world: World, clock: Clock) -> None:
    clock.advance(days=1, hours=1, minutes=1)  # Thursday 09:01
    await world.app.engine.tick()


def test_429_storm_delivers_everything_exactly_once(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            learners = [(ALICE, ACME), (CAROL, GLOBEX), (DAVE, ACME), (ERIN, None)]
            for user, guild in learners:
                await world.command(user, "start", guild=guild)
            # Every send meets 429s: discord.py retries 5 times itself, then gives up and
            # the core puts the delivery back for later without counting an attempt.
            world.dc.fail_next(
                "POST", r"/channels/\d+/messages", status=429, retry_after=0.01, times=20
            )
            world.dc.rate_limit(per_second=20)
            await _due_tomorrow(world, clock)
            for _ in range(10):
                if all(len(world.lessons(user)) == 2 for user, _ in learners):
                    break
                clock.advance(seconds=5)
                await world.app.engine.tick()
            for user, _ in learners:
                _day1, day2 = world.lessons(user)
                assert "day 2 of 3" in message_text(day2)
                assert [d.status for d in world.deliveries(user)] == ["sent", "sent"]
            posts = world.dc.requests_to("POST", r"/channels/\d+/messages")
            assert sum(p.status == 429 for p in posts) >= 20
            assert world.app.dispatcher.stats.rate_limited >= 1
            assert world.app.dispatcher.stats.failed == 0

    run(scenario)


def test_closed_dms_fail_the_delivery_and_tell_the_guild_once(
    sqlite_url: str, clock: Clock
) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            started = await world.command(BOB, "start")
            assert "Welcome to" in started.text
            [delivery] = world.deliveries(BOB)
            assert delivery.status == "failed"
            assert delivery.error == "the user does not accept DMs from this server"

            def blocked(session: Session) -> bool:
                learner = session.get(Learner, delivery.learner_id)
                return learner is not None and learner.dm_blocked_at is not None

            assert world.db(blocked)
            [note] = world.dc.messages(ACME_GENERAL)
            assert note["content"].startswith(f"<@{BOB}> ")
            assert "direct messages are closed" in note["content"]
            [post] = world.dc.requests_to("POST", rf"/channels/{ACME_GENERAL}/messages")
            assert [int(u) for u in post.json["allowed_mentions"]["users"]] == [BOB]

            await world.command(BOB, "next")
            clock.advance(hours=1)
            await world.app.engine.tick()
            attempts = world.dc.requests_to("POST", rf"/channels/{world.dc.dm_channel_id(BOB)}/.*")
            assert len(attempts) == 2  # one per delivery, never retried
            assert [d.status for d in world.deliveries(BOB)] == ["failed", "failed"]
            assert len(world.dc.messages(ACME_GENERAL)) == 1  # told once

    run(scenario)


async def _render(world: World, delivery_id: int) -> OutgoingMessage:
    rendered = world.app.service.render_delivery(delivery_id)
    assert isinstance(rendered, OutgoingMessage)
    return rendered


def test_crash_mid_send_is_recovered_without_a_second_post(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            await world.command(CAROL, "start", guild=GLOBEX)
            clock.advance(days=1, hours=1, minutes=1)
            world.app.engine.planner.plan()
            alice_day2 = world.deliveries(ALICE)[-1]
            carol_day2 = world.deliveries(CAROL)[-1]

            # A process claimed both rows and died: Alice's lesson had reached Discord,
            # Carol's had not.
            await world.adapter.send(await _render(world, alice_day2.id or 0))

            def abandon(session: Session) -> None:
                for delivery_id in (alice_day2.id, carol_day2.id):
                    row = session.get(Delivery, delivery_id)
                    assert row is not None
                    row.status, row.lease_owner = "sending", "dead-host:1"
                    row.lease_until = clock() - timedelta(minutes=1)
                    row.attempts = 1
                    session.add(row)

            world.db(abandon)
            posts_before = len(world.dc.requests_to("POST", r"/channels/\d+/messages"))
            await world.app.dispatcher.run_once()
            posts = world.dc.requests_to("POST", r"/channels/\d+/messages")[posts_before:]
            assert len(posts) == 1  # only Carol's lesson was sent again
            assert world.app.dispatcher.stats.recovered == 1
            for user in (ALICE, CAROL):
                _day1, day2 = world.lessons(user)
                latest = world.deliveries(user)[-1]
                assert (latest.status, latest.platform_message_ids) == ("sent", day2["id"])

    run(scenario)


def test_a_retried_send_is_not_posted_twice(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            [delivery] = world.deliveries(ALICE)
            message = await _render(world, delivery.id or 0)
            again = await world.adapter.send(message)  # e.g. after a timeout on the first
            assert again.message_ids == (delivery.platform_message_ids,)
            assert len(world.lessons(ALICE)) == 1
            nonces = {p.json["nonce"] for p in world.dc.requests_to("POST", r"/channels/\d+/.*")}
            assert len(nonces) == 1 and len(next(iter(nonces))) <= 25

            # A reminder about the same question is a different row: never deduped.
            reminder = replace(message, delivery_key=f"snooze:{delivery.id}", title=None)
            await world.adapter.send(reminder)
            assert len(world.bot_dms(ALICE)) == 2

    run(scenario)


def test_discord_errors_map_to_the_core_send_errors(sqlite_url: str, clock: Clock) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            await world.command(ALICE, "start")
            [delivery] = world.deliveries(ALICE)
            message = await _render(world, delivery.id or 0)
            dc = world.dc
            fresh = replace(message, delivery_key="other")

            dc.fail_next("POST", r"/channels/\d+/messages", status=503)
            with pytest.raises(TemporarySendError):
                await world.adapter.send(fresh)
            dc.fail_next("POST", r"/channels/\d+/messages", status=429, retry_after=45.0)
            with pytest.raises(RateLimited) as limited:
                await world.adapter.send(fresh)
            assert limited.value.retry_after == 45.0
            dc.fail_next("POST", r"/channels/\d+/messages", status=403, code=50001)
            with pytest.raises(PermanentSendError) as refused:
                await world.adapter.send(fresh)
            assert refused.value.code == "missing_access"

            stranger = replace(fresh, user="42", channel=None)
            with pytest.raises(PermanentSendError) as unknown:
                await world.adapter.send(stranger)
            assert unknown.value.code == "unknown_user"

            # A remembered DM channel Discord no longer knows: the DM is opened again.
            stale = replace(fresh, channel="1234567890123")
            world.adapter._dm_channels.clear()
            sent = await world.adapter.send(stale)
            assert sent.channel == str(dc.dm_channel_id(ALICE))

    run(scenario)
