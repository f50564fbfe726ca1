"""Many workspaces at once: one workspace's morning never delays another's.

Workspace A has 150 learners due at one instant behind a 10/s limit (Slack's
per-workspace limit, enforced by the emulator); workspace B has 10 learners due at the
same instant and a reminder due 6 s later. Everything runs on the defaults (60 s tick,
the default paces) through the real serving path. The checks are about order, not
time (timings are in ``bench/many_workspaces.py``): B's lessons go out among A's first
few dozen, its reminder goes out before A's fan-out is over and soon after it fell due,
and nothing is lost or doubled. The same holds with two replicas on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import aiohttp
from sqlmodel import col, select

from bot.db import Store
from bot.models import Delivery, Learner, Workspace
from tests.emulators.slack_api import (
    DEFAULT_SIGNING_SECRET,
    SlackEmulator,
    event_callback_body,
    sign_request,
)
from tests.support.many_workspaces import (
    TEAM_A,
    TEAM_B,
    TOKEN_A,
    TOKEN_B,
    Plan,
    _key,
    measure,
    ok,
    prepare,
    run_in_process,
    run_replicas,
)

A_LEARNERS = 150
REMINDER_AFTER = 6.0


def _check(slack: SlackEmulator, plan: Plan) -> None:
    figures = measure(slack, plan)
    assert figures.duplicates == 0 and figures.missed == 0, figures
    accepted = [c for c in slack.calls_to("chat.postMessage") if ok(c) and _key(c.params)]
    a_order = [c for c in accepted if c.token == TOKEN_A]
    b_lessons = [
        c for c in accepted if c.token == TOKEN_B and not str(_key(c.params)).startswith("remind:")
    ]
    (reminder,) = [c for c in accepted if str(_key(c.params)).startswith("remind:")]
    assert len(a_order) == A_LEARNERS and len(b_lessons) == 10

    def a_before(instant: float) -> int:
        return sum(1 for c in a_order if c.time < instant)

    # B's ten lessons left among A's first 50 (5 s of A's limit), not after A's 150.
    assert a_before(max(c.time for c in b_lessons)) < 50
    # B's reminder left while A's fan-out was still going, with at most 50 of A's
    # lessons accepted between its due instant and it.
    assert reminder.time < a_order[-1].time
    assert a_before(reminder.time) - a_before(plan.reminder_at) < 50


def test_one_workspace_fan_out_does_not_delay_another(slack: SlackEmulator, store_url: str) -> None:
    plan = prepare(store_url, slack, a_learners=A_LEARNERS, reminder_after=REMINDER_AFTER)
    assert plan.settings.tick_seconds == 60  # the default tick
    asyncio.run(run_in_process(slack, plan, timeout=120))
    _check(slack, plan)


def test_two_replicas_keep_workspaces_fair(slack: SlackEmulator, postgres_url: str) -> None:
    plan = prepare(postgres_url, slack, a_learners=A_LEARNERS, reminder_after=REMINDER_AFTER)
    run_replicas(slack, plan, count=2, timeout=120)
    _check(slack, plan)


# ---------------------------------------------------------------------- faults


def _accepted(slack: SlackEmulator, token: str) -> list[str]:
    return [
        str(_key(c.params))
        for c in slack.calls_to("chat.postMessage")
        if ok(c) and c.token == token and _key(c.params)
    ]


def _rows(url: str, team: str) -> Counter[str]:
    """How many of the team's deliveries are in each status."""
    store = Store(url)
    try:
        return Counter(
            store.run(
                lambda s: s.exec(
                    select(Delivery.status)
                    .join(Learner, col(Learner.id) == Delivery.learner_id)
                    .join(Workspace, col(Workspace.id) == Learner.workspace_id)
                    .where(Workspace.external_id == team)
                ).all()
            )
        )
    finally:
        store.dispose()


def _errors(url: str, team: str) -> set[str]:
    store = Store(url)
    try:
        return set(
            store.run(
                lambda s: s.exec(
                    select(Delivery.error)
                    .join(Learner, col(Learner.id) == Delivery.learner_id)
                    .join(Workspace, col(Workspace.id) == Learner.workspace_id)
                    .where(Workspace.external_id == team, Delivery.status == "failed")
                ).all()
            )
        )
    finally:
        store.dispose()


def test_a_workspace_answering_429_to_everything_holds_only_its_own_queue(
    slack: SlackEmulator, store_url: str
) -> None:
    plan = prepare(store_url, slack, a_learners=40, reminder_after=3.0)
    a_channels = {slack.dm_channel_id(f"UA{n:07d}", TEAM_A) for n in range(40)}
    # A answers 429 to every post, with Retry-After of five minutes.
    slack.fail_next(
        "chat.postMessage",
        status=429,
        retry_after=300,
        times=10**6,
        where=lambda params: params.get("channel") in a_channels,
    )
    b_done = lambda: len(_accepted(slack, TOKEN_B)) == 11  # noqa: E731
    asyncio.run(
        run_in_process(
            slack, plan, timeout=60, until=lambda: b_done() and time.time() > plan.reminder_at + 1
        )
    )
    assert b_done(), "B's lessons and reminder went out while A was refused"
    assert _accepted(slack, TOKEN_A) == []
    refused = [c for c in slack.calls_to("chat.postMessage") if c.status == 429]
    # A 429 holds A's queue back for its Retry-After: a few of A's sends met it, not
    # one per learner again and again.
    assert 1 <= len(refused) <= 20
    rows = _rows(store_url, TEAM_A)
    assert rows["failed"] == 0 and rows["sent"] == 0
    assert rows["pending"] + rows["sending"] == 40  # kept for later, none lost


def _lose_a_mid_fan_out(
    slack: SlackEmulator, store_url: str, lose: Callable[[int], Awaitable[None]]
) -> tuple[int, str]:
    """Run A (80 learners) and B; once 20 of A's lessons are out, ``lose`` takes A's
    installation away. Checks that A's other rows failed and B's went out; returns how
    many of A's were sent and the reason A's rows give."""
    plan = prepare(store_url, slack, a_learners=80, reminder_after=2.0)

    async def during(port: int) -> None:
        while len(_accepted(slack, TOKEN_A)) < 20:
            await asyncio.sleep(0.05)
        await lose(port)

    asyncio.run(
        run_in_process(
            slack,
            plan,
            timeout=60,
            until=lambda: (
                len(_accepted(slack, TOKEN_B)) == 11
                and sum(_rows(store_url, TEAM_A)[s] for s in ("sent", "failed")) == 80
            ),
            during=during,
        )
    )
    rows = _rows(store_url, TEAM_A)
    sent = len(_accepted(slack, TOKEN_A))
    assert rows["sent"] == sent and rows["failed"] == 80 - sent > 0, rows
    assert _rows(store_url, TEAM_B)["sent"] == 12  # and the question asked before
    (reason,) = _errors(store_url, TEAM_A)
    return sent, reason


def test_a_revoked_token_fails_its_workspace_clearly_and_others_go_on(
    slack: SlackEmulator, store_url: str
) -> None:
    async def revoke(port: int) -> None:
        slack.revoke_token(TOKEN_A)

    sent, reason = _lose_a_mid_fan_out(slack, store_url, revoke)
    assert sent >= 20
    assert "token_revoked" in reason and "add the app to the workspace again" in reason
    # One refusal is enough to know: not one call per remaining learner.
    revoked = [c for c in slack.calls_to("chat.postMessage") if c.token == TOKEN_A and not ok(c)]
    assert len(revoked) <= 20


def test_a_workspace_uninstalled_with_its_queue_full(slack: SlackEmulator, store_url: str) -> None:
    async def uninstall(port: int) -> None:
        body = event_callback_body({"type": "app_uninstalled"}, team_id=TEAM_A)
        headers = sign_request(DEFAULT_SIGNING_SECRET, body)
        headers["Content-Type"] = "application/json"
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers
            ) as answer,
        ):
            assert answer.status == 200

    _, reason = _lose_a_mid_fan_out(slack, store_url, uninstall)
    assert "not installed" in reason and "add the app to the workspace again" in reason
