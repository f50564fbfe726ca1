"""Stopping, crashing and restarting real ``mentorbot run`` processes in the middle of a
morning fan-out to the emulated Slack, and two of them sharing one workspace's budget:
every lesson reaches its learner once, none is lost, and Slack's limits hold."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import aiohttp
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from bot.models import Delivery
from tests.emulators.slack_api import (
    DEFAULT_SIGNING_SECRET,
    RecordedCall,
    SlackEmulator,
    sign_request,
    slash_command_body,
)
from tests.support.slack_bot import (
    SlackBot,
    allow_web_api,
    delivery_key,
    lesson_posts,
    posted_keys,
    seed_due_learners,
    slack_users,
)

pytestmark = pytest.mark.slow

LEARNERS = 300
FAST = {"MENTORBOT_SLACK_WORKSPACE_RATE": "1000"}  # the fan-out is not what is tested here


def rows(url: str) -> list[Delivery]:
    engine = sa.create_engine(url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(Delivery)).all())
    finally:
        engine.dispose()


def wait_for_posts(slack: SlackEmulator, count: int, timeout: float = 60) -> None:
    slack.wait_until(lambda calls: len(lesson_posts(calls)) >= count, timeout=timeout)


def wait_for_every_learner(slack: SlackEmulator, url: str, timeout: float = 90) -> None:
    """Until every learner has a lesson in their DM and every row says so (a row whose
    message arrived before a stop is recorded when a later check finds it)."""

    def everyone(calls: list[RecordedCall]) -> bool:
        return len({delivery_key(c) for c in lesson_posts(calls)}) >= LEARNERS

    slack.wait_until(everyone, timeout=timeout)
    deadline = time.monotonic() + timeout
    while {r.status for r in rows(url)} != {"sent"}:
        assert time.monotonic() < deadline, "rows were never all recorded as sent"
        time.sleep(0.05)


def assert_each_lesson_once(slack: SlackEmulator, url: str) -> None:
    keys = posted_keys(slack)
    assert len(keys) == LEARNERS, f"missed {LEARNERS - len(keys)}"
    assert {k: n for k, n in keys.items() if n > 1} == {}, "duplicates"
    statuses = [r.status for r in rows(url)]
    assert statuses == ["sent"] * LEARNERS


def test_sigterm_mid_fan_out_lets_sends_on_the_wire_finish(
    store_url: str, slack: SlackEmulator, tmp_path
) -> None:
    """A stop finishes what is on the wire and gives the rest back: after a restart
    every learner has day 1 exactly once."""
    seed_due_learners(store_url, slack_users(slack, LEARNERS))
    allow_web_api(store_url)  # opening 300 DMs at Slack's floor rate is not the subject
    slack.delay_responses("chat.postMessage", 0.2)  # every send spends a while on the wire
    first = SlackBot(tmp_path, store_url, slack, **FAST)
    try:
        wait_for_posts(slack, LEARNERS // 3)
        assert first.terminate() == 0, "".join(first.log)[-3000:]
    finally:
        first.stop()
    reached = posted_keys(slack)
    assert 0 < len(reached) < LEARNERS, "the stop must land mid fan-out"
    by_key = {r.key: r for r in rows(store_url)}
    # Every message that reached Slack was recorded before the process exited.
    assert sorted(k for k in reached if by_key[k].status != "sent") == []
    assert {r.status for r in by_key.values() if r.key not in reached} == {"pending"}
    assert all(r.lease_owner is None for r in by_key.values())

    slack.delay_responses("chat.postMessage", 0)
    second = SlackBot(tmp_path, store_url, slack, **FAST)
    try:
        wait_for_every_learner(slack, store_url)
        assert second.terminate() == 0, "".join(second.log)[-3000:]
    finally:
        second.stop()
    assert_each_lesson_once(slack, store_url)


def test_sends_still_on_the_wire_when_the_stop_times_out_are_checked_before_a_resend(
    store_url: str, slack: SlackEmulator, tmp_path
) -> None:
    """Slack answers too slowly for the shutdown timeout: the rows whose messages may
    have arrived are handed back in a state that makes the next process look at the DM
    first, never as plain pending rows."""
    seed_due_learners(store_url, slack_users(slack, LEARNERS))
    allow_web_api(store_url)  # opening 300 DMs at Slack's floor rate is not the subject
    slack.delay_responses("chat.postMessage", 30)  # posted at once, answered much later
    first = SlackBot(tmp_path, store_url, slack, MENTORBOT_SHUTDOWN_TIMEOUT="2", **FAST)
    try:
        wait_for_posts(slack, 8)
        assert first.terminate() == 0, "".join(first.log)[-3000:]
    finally:
        first.stop()
    reached = posted_keys(slack)
    assert reached, "some messages were on the wire"
    by_key = {r.key: r for r in rows(store_url)}
    unsure = sorted(k for k, r in by_key.items() if r.status == "sending")
    assert sorted(reached) == [k for k in unsure if k in reached]
    assert all(by_key[k].lease_owner is None for k in unsure)
    assert {r.status for k, r in by_key.items() if k not in unsure} == {"pending"}

    slack.delay_responses("chat.postMessage", 0)
    checks_before = len(slack.calls_to("conversations.history"))
    second = SlackBot(tmp_path, store_url, slack, **FAST)
    try:
        wait_for_every_learner(slack, store_url)
        assert second.terminate() == 0, "".join(second.log)[-3000:]
    finally:
        second.stop()
    assert_each_lesson_once(slack, store_url)
    assert len(slack.calls_to("conversations.history")) - checks_before >= len(unsure)


def test_a_restart_after_sigkill_recovers_its_leased_rows_at_once(
    store_url: str, slack: SlackEmulator, tmp_path
) -> None:
    """Rows a killed process held are taken over by its restart on the same host at
    start-up, through the DM history check, long before their lease would run out."""
    seed_due_learners(store_url, slack_users(slack, LEARNERS))
    allow_web_api(store_url)  # opening 300 DMs at Slack's floor rate is not the subject
    slack.delay_responses("chat.postMessage", 0.2)
    first = SlackBot(tmp_path, store_url, slack, **FAST)
    try:
        wait_for_posts(slack, LEARNERS // 3)
        first.kill()
    finally:
        first.stop()
    held = {r.key: r.lease_until for r in rows(store_url) if r.status == "sending"}
    assert held, "the kill must leave leased rows behind"
    leases: list[datetime] = [until for until in held.values() if until is not None]
    assert len(leases) == len(held)

    slack.delay_responses("chat.postMessage", 0)
    checks_before = len(slack.calls_to("conversations.history"))
    second = SlackBot(tmp_path, store_url, slack, **FAST)
    try:
        wait_for_every_learner(slack, store_url)
        assert second.terminate() == 0, "".join(second.log)[-3000:]
    finally:
        second.stop()
    assert_each_lesson_once(slack, store_url)
    by_key = {r.key: r for r in rows(store_url)}
    # Every held row went out (or was found in the DM) before its old lease ended.
    late = [k for k, until in held.items() if not by_key[k].sent_at < until]  # type: ignore[operator]
    assert late == []
    assert len(slack.calls_to("conversations.history")) - checks_before >= len(held)


async def _start_many(bot: SlackBot, slack: SlackEmulator, users: list[str]) -> None:
    async with aiohttp.ClientSession() as http:

        async def start(user: str) -> None:
            body = slash_command_body(
                "/mentor",
                "start",
                user_id=user,
                user_name=user.lower(),
                response_url=slack.new_response_url(),
            )
            headers = sign_request(DEFAULT_SIGNING_SECRET, body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as r:
                assert r.status == 200, await r.text()

        await asyncio.gather(*(start(user) for user in users))


def test_two_replicas_share_one_workspace_budget(
    store_url: str, slack: SlackEmulator, tmp_path
) -> None:
    """Two processes on one database, each asked for day 1 by its own 40 learners at
    once, keep together to the workspace's 10 messages a second (GCRA, burst 5): the
    learned pace would rise with no 429 coming, so 10/s is also its ceiling here."""
    per_bot = 40
    users = slack_users(slack, 2 * per_bot)
    capped = {"MENTORBOT_SLACK_WORKSPACE_RATE_MAX": "10"}
    # Looking the 80 callers up and opening their DMs may go faster than the posts, so
    # that the shared posting budget is what holds them back.
    allow_web_api(store_url)
    bots = [SlackBot(tmp_path, store_url, slack, **capped) for _ in range(2)]
    try:
        for bot in bots:
            bot.wait_for_log("listening on port")
        asyncio.run(_both(bots, slack, users[:per_bot], users[per_bot:]))
        slack.wait_until(lambda calls: len(lesson_posts(calls)) >= 2 * per_bot, timeout=60)
        for bot in bots:
            assert bot.terminate() == 0, "".join(bot.log)[-3000:]
    finally:
        for bot in bots:
            bot.stop()
    times = sorted(c.time for c in lesson_posts(slack.calls))
    assert len(times) == 2 * per_bot
    # jitter: how much later one send may reach the emulator than another after its
    # slot (a busy event loop, the HTTP round trip); each 0.1 s of it is one message.
    rate, burst, jitter = 10.0, 5, 0.3
    worst = max(
        (j - i + 1) - (rate * (times[j] - times[i] + jitter) + burst)
        for i in range(len(times))
        for j in range(i, len(times))
    )
    assert worst <= 0, f"{worst:.1f} messages over the shared budget"


async def _both(
    bots: list[SlackBot], slack: SlackEmulator, first: list[str], second: list[str]
) -> None:
    """Both fleets of commands at once."""
    await asyncio.gather(_start_many(bots[0], slack, first), _start_many(bots[1], slack, second))
