"""The Web API calls besides posting (opening a DM, looking a person up, publishing the
Home tab, reading a DM's history, uploading a file) drawn from Slack's per-method
budgets, shared with the dispatcher: the real adapter and core against the emulator,
which enforces those methods' limits and answers the excess with 429. What is
asserted is what Slack received and what the database's budgets say; nothing is timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from adapters.slack import SlackAdapter
from bot.config import Settings
from bot.messages import Attachment, OutgoingMessage
from bot.models import Delivery, Enrolment, Learner
from bot.ports import RateLimited, TemporarySendError
from tests.conftest import Clock
from tests.emulators.slack_api import (
    DEFAULT_TEAM_ID,
    DEFAULT_USER_ID,
    SlackEmulator,
    app_home_opened_event,
)
from tests.slack.rig import SlackRig, dm_of, lessons
from tests.support.slack_bot import posted_keys, seed_due_learners, slack_users

Scenario = Callable[[SlackRig], Awaitable[None]]


def run(
    settings: Settings, slack: SlackEmulator, clock: Clock, scenario: Scenario, **options: Any
) -> None:
    async def main() -> None:
        async with SlackRig(settings, slack, clock, **options) as rig:
            await scenario(rig)

    asyncio.run(main())


def budget(method: str, team: str = DEFAULT_TEAM_ID) -> str:
    return f"slack:{team}:api:{method}"


def cells(rig: SlackRig) -> dict[str, dict[str, float]]:
    """The shared budgets as the database keeps them."""
    rows = rig.db(
        lambda s: list(
            s.execute(sa.text("SELECT key, rate, peak, cut_at, blocked_until FROM rate_bucket"))
        )
    )
    return {
        key: {"rate": rate, "peak": peak, "cut_at": cut_at, "blocked_until": until}
        for key, rate, peak, cut_at, until in rows
    }


def refused(slack: SlackEmulator, method: str) -> int:
    return sum(1 for call in slack.calls_to(method) if call.status == 429)


async def send_until_all_sent(rig: SlackRig, clock: Clock) -> None:
    """Passes of the engine until every row is sent; between them the clock moves past
    any Retry-After a 429 put a row back for."""
    for _ in range(10):
        await rig.app.engine.tick()
        if {row.status for row in rig.deliveries()} == {"sent"}:
            return
        clock.advance(seconds=5)
    raise AssertionError(f"rows left unsent: {[r.status for r in rig.deliveries()]}")


def test_day_two_of_a_learner_opens_no_dm(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    """With the adapter's own tier rates: day 1 opens the learner's DM once, within the
    conversations.open budget, and the DM's id is kept with the learner, so day 2 (sent
    by a restarted process that remembers nothing) opens none."""

    async def scenario(rig: SlackRig) -> None:
        await rig.command("start")
        await rig.settle()
        assert [c.params["users"] for c in slack.calls_to("conversations.open")] == [
            DEFAULT_USER_ID
        ]
        (learner,) = rig.learners()
        assert learner.dm_channel == dm_of(slack)
        known = cells(rig)
        assert budget("conversations.open") in known  # the open drew from its budget
        assert budget("users.info") in known  # and so did looking up who said "start"

        restarted = SlackAdapter(rig.settings, rig.app.store, rig.app.dispatcher.limiter)
        rig.app.dispatcher.adapters["slack"] = restarted
        try:
            (due,) = rig.db(lambda s: list(s.exec(select(Enrolment.next_due_at)).all()))
            assert due is not None
            clock.now = due
            await rig.app.engine.tick()
        finally:
            await restarted.stop()

        titles = [c.params["blocks"][0]["text"]["text"] for c in lessons(slack)]
        assert [title.rsplit("— ", 1)[-1] for title in titles] == ["day 1 of 3", "day 2 of 3"]
        assert {c.params["channel"] for c in lessons(slack)[1:]} == {dm_of(slack)}
        assert len(slack.calls_to("conversations.open")) == 1
        assert [row.status for row in rig.deliveries()] == ["sent", "sent"]

    run(slack_settings, slack, clock, scenario)


def test_a_first_day_fan_out_opens_every_dm_within_slacks_limit(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    """30 new learners' first lessons at once: each opens a DM, and Slack allows
    conversations.open at a tier-like pace (scaled up so the test is quick) that is
    more than the adapter starts at, as Slack's "50+ a minute" floors are. The openings
    are booked with the posts, so none meets a 429, and every lesson arrives once."""
    users = slack_users(slack, 30, prefix="UF")
    seed_due_learners(slack_settings.database_url, users, due_at=clock.now - timedelta(minutes=1))
    slack.rate_limit("conversations.open", 12.0, burst=8, per="team")

    async def scenario(rig: SlackRig) -> None:
        await send_until_all_sent(rig, clock)
        assert refused(slack, "conversations.open") == 0
        assert len(slack.calls_to("conversations.open")) == len(users)
        keys = posted_keys(slack)
        assert len(keys) == len(users) and set(keys.values()) == {1}
        for user in users:
            assert len(slack.messages(dm_of(slack, user))) == 1
        learners = {learner.user_id: learner.dm_channel for learner in rig.learners()}
        assert learners == {user: dm_of(slack, user) for user in users}

    run(slack_settings, slack, clock, scenario, api_rates={"conversations.open": 8.0})


def test_a_429_opening_a_dm_holds_back_new_learners_only(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    """A morning of known DMs and a few new learners, with the workspace busy: Slack
    refuses one conversations.open. That 429 cuts and blocks the conversations.open
    budget alone; the workspace's pace and the learners' conversations are untouched,
    and every lesson still arrives once."""
    users = slack_users(slack, 14, prefix="UM")
    new, known = users[:4], users[4:]
    seed_due_learners(slack_settings.database_url, users, due_at=clock.now - timedelta(minutes=1))

    def remember_dms(session: Session) -> None:
        for learner in session.exec(select(Learner)).all():
            if learner.user_id in known:
                learner.dm_channel = slack.dm_channel_id(learner.user_id)
                session.add(learner)

    busy = replace(slack_settings, slack_workspace_rate=5.0)  # 14 posts wait for it

    async def scenario(rig: SlackRig) -> None:
        rig.db(remember_dms)
        slack.fail_next("conversations.open", status=429, retry_after=1)
        await send_until_all_sent(rig, clock)
        assert refused(slack, "conversations.open") == 1
        assert rig.app.dispatcher.stats.rate_limited == 1
        keys = posted_keys(slack)
        assert len(keys) == len(users) and set(keys.values()) == {1}
        opened = [c.params["users"] for c in slack.calls_to("conversations.open")]
        assert sorted(set(opened)) == sorted(new)  # known DMs were never opened
        state = cells(rig)
        opening = state[budget("conversations.open")]
        assert opening["peak"] > 0 and opening["blocked_until"] > 0  # cut and blocked
        untouched = [key for key, cell in state.items() if key != budget("conversations.open")]
        assert f"slack:{DEFAULT_TEAM_ID}" in untouched
        assert all(state[key]["cut_at"] == 0 and state[key]["peak"] == 0 for key in untouched)
        assert rig.app.dispatcher.stats.retried == 0  # waiting out a 429 is no failure

    run(busy, slack, clock, scenario)


def test_home_tabs_opened_at_once_are_looked_up_and_published_within_slacks_limits(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    """Twenty people open the Home tab at the same moment: each needs users.info and
    views.publish, which Slack limits per workspace (here at a scaled-up tier-like
    pace, above where the adapter starts). Every tab is published and Slack refuses
    none of the calls."""
    users = slack_users(slack, 20, prefix="UH")
    slack.rate_limit("users.info", 8.0, burst=8, per="team")
    slack.rate_limit("views.publish", 8.0, burst=8, per="team")

    async def scenario(rig: SlackRig) -> None:
        answers = await asyncio.gather(*(rig.event(app_home_opened_event(u)) for u in users))
        assert {status for status, _ in answers} == {200}
        await rig.settle()
        assert refused(slack, "users.info") == 0
        assert refused(slack, "views.publish") == 0
        assert sorted(c.params["user"] for c in slack.calls_to("users.info")) == users
        assert all(slack.home_view(user) is not None for user in users)
        assert {budget("users.info"), budget("views.publish")} <= set(cells(rig))

    rates = {"users.info": 5.0, "views.publish": 5.0}
    run(slack_settings, slack, clock, scenario, api_rates=rates)


def test_a_429_looking_someone_up_holds_back_the_next_lookup(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    """users.info outside any delivery meets a 429: the Home tab still shows (without
    the person's details), the users.info budget is cut and blocked for Retry-After,
    for every replica, and the next lookup waits until the block is over."""
    first, second = slack_users(slack, 2, prefix="UL")
    slack.fail_next("users.info", status=429, retry_after=1)

    async def scenario(rig: SlackRig) -> None:
        await rig.event(app_home_opened_event(first))
        await rig.settle()
        assert slack.home_view(first) is not None
        cell = cells(rig)[budget("users.info")]
        assert cell["peak"] > 0 and cell["cut_at"] > 0
        await rig.event(app_home_opened_event(second))
        await rig.settle()
        refusal, lookup = slack.calls_to("users.info")
        assert (refusal.status, lookup.status) == (429, 200)
        assert lookup.time >= cell["blocked_until"] - 1e-3  # not before the block ended
        assert slack.home_view(second) is not None

    run(slack_settings, slack, clock, scenario)


def test_a_check_after_a_crash_reads_the_dm_within_the_history_budget(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    """The look at the DM before a resend (find_delivered) waits on the
    conversations.history budget like every other call."""

    async def scenario(rig: SlackRig) -> None:
        await rig.command("start")
        await rig.settle()
        (row,) = rig.deliveries()

        def crashed(session: Session) -> None:
            delivery = session.get(Delivery, row.id)
            assert delivery is not None
            delivery.status, delivery.lease_owner = "sending", "crashed-host:1"
            delivery.lease_until = clock.now - timedelta(minutes=1)
            session.add(delivery)

        rig.db(crashed)
        await rig.app.dispatcher.run_once()
        assert rig.app.dispatcher.stats.recovered == 1
        assert len(slack.calls_to("conversations.history")) == 1
        assert budget("conversations.history") in cells(rig)

    run(slack_settings, slack, clock, scenario)


def test_a_send_books_the_calls_it_will_make(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    """What ``rate_limits`` books beyond the post follows what ``send`` will call: the
    files still to upload (each a URL, then a completion), the history check after an
    attempt that may have posted; and a 429 from an upload is that method's."""
    charts = (
        Attachment("a.png", b"\x89PNG a", "image/png", "A"),
        Attachment("b.png", b"\x89PNG b", "image/png", "B"),
    )
    digest = OutgoingMessage(
        "slack",
        DEFAULT_TEAM_ID,
        DEFAULT_USER_ID,
        "digest",
        channel="C42",
        kind="digest",
        delivery_id=7,
        delivery_key="digest:7",
        attachments=charts,
    )
    uploads = [budget("files.getUploadURLExternal"), budget("files.completeUploadExternal")]

    async def scenario(rig: SlackRig) -> None:
        adapter = rig.adapter
        keys = [limit.key for limit in adapter.rate_limits(digest)]
        assert keys == [f"slack:{DEFAULT_TEAM_ID}:C42", f"slack:{DEFAULT_TEAM_ID}", *uploads * 2]
        slack.fail_next(
            "files.getUploadURLExternal", status=503, where=lambda p: p["filename"] == "b.png"
        )
        with pytest.raises(TemporarySendError):
            await adapter.send(digest)
        assert [limit.key for limit in adapter.rate_limits(digest)][2:] == uploads  # b only
        slack.fail_next("files.completeUploadExternal", status=429, retry_after=2)
        with pytest.raises(RateLimited) as limited:
            await adapter.send(digest)
        assert limited.value.scope == budget("files.completeUploadExternal")
        await adapter.send(digest)
        assert len(slack.messages("C42")) == 3  # the text once, each chart once

        lesson = OutgoingMessage(
            "slack",
            DEFAULT_TEAM_ID,
            DEFAULT_USER_ID,
            "lesson",
            kind="lesson",
            delivery_id=8,
            delivery_key="lesson:8",
        )

        def booked() -> list[str]:
            return [limit.key for limit in adapter.rate_limits(lesson)]

        assert budget("conversations.open") in booked()  # a DM not yet opened
        slack.fail_next("chat.postMessage", status=500)
        with pytest.raises(TemporarySendError):
            await adapter.send(lesson)
        assert budget("conversations.open") not in booked()
        assert budget("conversations.history") in booked()  # it may have posted: look first
        await adapter.send(lesson)
        assert len(slack.calls_to("conversations.history")) == 1
        assert budget("conversations.history") not in booked()

    run(slack_settings, slack, clock, scenario)
