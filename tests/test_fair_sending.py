"""Sending is fair across workspaces and puts what a learner waits for first.

The platform here is a stand-in for a real one (it only records what it was asked to
send, in order, and holds each workspace to its own rate limit through the core's
budgets); the claims, the per-workspace queues, the pacing and the database are real.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlmodel import col, func, select

from bot.messages import OutgoingMessage, SendResult
from bot.models import Delivery, Learner
from bot.outbox import claim_fair, fail_workspace_queue, priority, release
from bot.ratelimit import Limit
from mentorbot.bootstrap import App
from tests.conftest import Clock
from tests.support.seeding import seed_workspace


class RecordingPlatform:
    """Accepts everything, each workspace at ``rate`` a second, and keeps the order."""

    platform = "console"

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.order: list[tuple[str, str]] = []  # (workspace, kind)

    def rate_limits(self, message: OutgoingMessage) -> list[Limit]:
        return [Limit(f"test:{message.workspace}", self.rate, burst=5)]

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.order.append((message.workspace, message.kind))
        return SendResult(channel="dm", message_ids=(str(message.delivery_key),))


def _seed(app: App, now: datetime, sizes: dict[str, int]) -> None:
    """Workspaces of the given sizes, every learner due now for lesson-day 2."""
    with app.store.engine.begin() as conn:
        for name, size in sizes.items():
            seed_workspace(
                conn,
                platform="console",
                external_id=name,
                users=[f"{name}-{n}" for n in range(size)],
                now=now,
                enrolment=lambda _n: {"next_due_at": now - timedelta(minutes=1)},
            )


def test_a_hundred_small_workspaces_are_not_held_behind_one_with_ten_thousand(
    app: App, clock: Clock
) -> None:
    clock.now = clock.now.replace(hour=9)
    sizes = {"big": 10_000, **{f"small{n:03d}": 1 for n in range(100)}}
    _seed(app, clock.now, sizes)
    platform = RecordingPlatform(rate=2000.0)
    app.dispatcher.adapters["console"] = platform  # type: ignore[assignment]

    asyncio.run(app.engine.tick())

    assert len(platform.order) == 10_100
    small = [n for n, (workspace, _) in enumerate(platform.order) if workspace != "big"]
    # Every small workspace's lesson left among the first few hundred sends, not
    # after the big workspace's ten thousand.
    assert len(small) == 100 and max(small) < 400
    with app.store.session() as session:
        statuses = dict(
            session.exec(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
        )
    assert statuses == {"sent": 10_100}


def test_claims_take_turns_across_workspaces_and_put_follow_ups_first(
    app: App, clock: Clock
) -> None:
    now = clock.now
    _seed(app, now, {"a": 30, "b": 3})
    with app.store.session() as session:
        learners = {
            learner.user_id: learner
            for learner in session.exec(select(Learner)).all()  # type: ignore[union-attr]
        }
    rows = []
    for n in range(30):
        rows.append(("lesson", "schedule", f"a-{n}", n))
    rows.append(("reminder", "schedule", "a-29", 40))  # due last, a follow-up
    rows.append(("lesson", "learner", "a-28", 41))  # due last, the learner's own `next`
    for n in range(3):
        rows.append(("lesson", "schedule", f"b-{n}", 50 + n))

    def queue(session) -> None:  # type: ignore[no-untyped-def]
        for kind, origin, user, minute in rows:
            session.add(
                Delivery(
                    key=f"{kind}:{user}:{minute}",
                    learner_id=learners[user].id or 0,
                    kind=kind,
                    origin=origin,
                    course_id="data-engineering",
                    lesson_id="0.2.2",
                    day=2,
                    due_at=now - timedelta(minutes=100 - minute),
                )
            )

    app.store.run(queue)
    taken = app.store.run(
        lambda s: claim_fair(
            s,
            owner="me",
            now=now,
            lease=timedelta(minutes=2),
            limit=8,
            room={},
            default_room=4,
        )
    )

    def described(session) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
        found = session.exec(
            select(Delivery, Learner.user_id)
            .join(Learner, col(Learner.id) == Delivery.learner_id)
            .where(col(Delivery.id).in_(list(taken)))
            .order_by(priority(), col(Delivery.due_at))
        ).all()
        return [(user, d.kind, d.origin) for d, user in found]

    got = app.store.run(described)
    # B's three lessons, although due after all of A's, share the claim with A; A's
    # learner's own request and the reminder come before A's earlier lessons.
    assert sum(1 for user, *_ in got if user.startswith("b-")) == 3
    a_rows = [row for row in got if row[0].startswith("a-")]
    assert a_rows[:2] == [("a-28", "lesson", "learner"), ("a-29", "reminder", "schedule")]
    assert len(a_rows) == 4 and len(got) == 7


def test_a_row_failed_with_its_workspace_while_on_the_wire_stays_failed(
    app: App, clock: Clock
) -> None:
    """Another send found the installation gone and failed the workspace's queue,
    including rows whose sends were still on the wire; one of those then meets a 429
    or a timeout. Giving it back must not bring it back to life as pending or sending
    (it would wait for a lease nobody holds, and be tried against a workspace that is
    gone)."""
    now = clock.now
    _seed(app, now, {"gone": 2})
    app.engine.planner.plan(now)
    lanes = app.store.run(
        lambda s: claim_fair(
            s, owner="me", now=now, lease=timedelta(minutes=2), limit=10, room={}, default_room=10
        )
    )
    assert len(lanes) == 2  # both on the wire
    first, second = sorted(lanes)
    _, failed = app.store.run(
        lambda s: fail_workspace_queue(s, first, owner="me", now=now, reason="gone")
    )
    assert failed == 2
    for maybe_delivered in (True, False):
        app.store.run(
            lambda s, maybe=maybe_delivered: release(
                s, second, retry_at=now + timedelta(seconds=30), reason="429", maybe_delivered=maybe
            )
        )
        row = app.store.run(lambda s: s.get(Delivery, second))
        assert row is not None and (row.status, row.error) == ("failed", "gone")
