"""The outbox of deliveries: queue once, claim atomically, record what happened.

A row's ``key`` is unique, so queueing the same lesson-day twice is a no-op. Claims move
``pending`` rows to ``sending`` under a lease in one statement, so two dispatchers (in
one process or several replicas) never take the same row.

``pending`` means the message has certainly not reached the platform. A row whose
message may have reached it is ``sending``: under a live lease while its owner works on
it; with no owner (``lease_owner`` NULL) when it was handed back with its outcome
unknown, until ``lease_until``; or under the lease of an owner that died. Whoever takes
such a row over asks the platform (``find_delivered``) before sending it again.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, SQLModel, col, func, select

from bot.bulk import rows_select
from bot.models import Delivery, Learner, on_its_way, utcnow

T = TypeVar("T", bound=SQLModel)

SENDING = "sending"
PENDING = "pending"
SENT = "sent"
FAILED = "failed"
CANCELLED = "cancelled"


def insert_or_get(
    session: Session, model: type[T], key: dict[str, object], values: dict[str, object]
) -> T:
    """The row with ``key`` (its unique columns), inserted with ``values`` if missing.
    Two first events from a new workspace at once both succeed: one inserts, the other
    finds it, instead of one failing on the unique constraint."""
    table = model.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(table).values(**key, **values).on_conflict_do_nothing(index_elements=list(key))
    )
    query = select(model)
    for name, value in key.items():
        query = query.where(getattr(model, name) == value)
    return session.exec(query).one()


def notice(
    key: str,
    learner_id: int,
    body: str,
    at: datetime,
    *,
    enrolment_id: int | None = None,
    course_id: str = "",
    lesson_id: str = "",
) -> dict[str, object]:
    """The outbox row of a notice: a message told once to one person (``key`` makes it
    once), sent as written, asked for by nobody's schedule (not part of the daily cap).
    For ``queue_delivery(session, **notice(…))`` or a list for ``queue_many``."""
    return {
        "key": key,
        "learner_id": learner_id,
        "enrolment_id": enrolment_id,
        "kind": "notice",
        "origin": "learner",
        "course_id": course_id,
        "lesson_id": lesson_id,
        "day": 0,
        "body": body,
        "due_at": at,
        "created_at": at,
    }


def queue_delivery(session: Session, *, key: str, **values: object) -> int | None:
    """Insert an outbox row unless one with ``key`` exists; return the new id or None."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    row = {"key": key, "status": PENDING, "attempts": 0, "created_at": utcnow(), **values}
    table = Delivery.__table__  # type: ignore[attr-defined]
    statement = insert(table).values(**row).on_conflict_do_nothing(index_elements=["key"])
    result = session.execute(statement.returning(table.c.id))
    return result.scalar_one_or_none()


def queue_many(session: Session, rows: list[dict[str, object]]) -> Counter[str]:
    """Insert many outbox rows in one statement, skipping keys that exist; returns how
    many were new, per kind. The planner's hot path at the delivery hour: the rows go
    to the database as one parameter (``bot.bulk``), so a batch costs one statement
    however many rows it holds. A column some row leaves out is NULL for it."""
    if not rows:
        return Counter()
    table = Delivery.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect
    given = sorted({name for row in rows for name in row})
    try:
        pick = operator.itemgetter(*given)
        records = [pick(row) if len(given) > 1 else (pick(row),) for row in rows]
    except KeyError:  # some row leaves a column out
        records = [tuple(row.get(name) for name in given) for row in rows]
    defaults = {"status": PENDING, "attempts": 0, "created_at": utcnow()}
    extra = [name for name in defaults if name not in given]
    names = [*given, *extra]
    if extra:
        constants = tuple(defaults[name] for name in extra)
        records = [(*record, *constants) for record in records]
    columns, parameters = rows_select(table, names, records, dialect)
    if dialect.name == "postgresql":
        # Count on the server: no row per queued delivery comes back.
        queued = (
            pg_insert(table)
            .from_select(names, columns)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(table.c.kind)
            .cte("queued")
        )
        counted = sa.select(queued.c.kind, sa.func.count()).group_by(queued.c.kind)
        return Counter({kind: count for kind, count in session.execute(counted, parameters)})
    statement = (
        sqlite_insert(table)
        .from_select(names, columns)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(table.c.kind)
    )
    return Counter(session.execute(statement, parameters).scalars())


def claim(
    session: Session,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    ids: Sequence[int] | None = None,
    limit: int = 100,
    due_before: datetime | None = None,
) -> list[int]:
    """Take up to ``limit`` due rows (or exactly ``ids``) for ``owner`` until the lease ends.

    Rows already ``sending`` under an expired lease are not taken here: their outcome is
    unknown and ``recover_expired`` decides what to do with them.
    """
    table = Delivery.__table__  # type: ignore[attr-defined]
    candidates = (
        select(Delivery.id)
        .where(on_its_way(PENDING), col(Delivery.due_at) <= (due_before or now))
        .order_by(col(Delivery.due_at), col(Delivery.id))
        .limit(limit)
    )
    if ids is not None:
        candidates = select(Delivery.id).where(on_its_way(PENDING), col(Delivery.id).in_(list(ids)))
    return _take(
        session,
        candidates,
        still=table.c.status == PENDING,
        values=_taken(owner, now, lease),
    )


# What a learner is waiting for goes first within a workspace: their own ``next``,
# ``start`` or snooze, then follow-ups (a reminder, a practice check-in, a review),
# then the scheduled fan-out (lessons, digests). Reminders are few and never wait
# behind a morning's lessons.
FOLLOW_UP_KINDS = ("reminder", "practice", "review", "notice")


def priority() -> sa.ColumnElement[int]:
    """0 for what a learner asked for, 1 for follow-ups, 2 for the scheduled fan-out."""
    return sa.case(
        (col(Delivery.origin) == "learner", 0),
        (col(Delivery.kind).in_(FOLLOW_UP_KINDS), 1),
        else_=2,
    )


def claim_fair(
    session: Session,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    room: dict[int, int],
    default_room: int,
    skip_lanes: Sequence[int] = (),
    due_before: datetime | None = None,
) -> dict[int, int]:
    """Take due rows round-robin across workspaces: each workspace's first row (by
    priority, then due time), then each one's second, and so on, at most ``room[ws]``
    (``default_room`` for a workspace not in it) per workspace and ``limit`` in all;
    workspaces in ``skip_lanes`` (whose queue in this process is full) are left
    alone. Returns {delivery id: workspace id}.

    So a workspace with 10 due learners gets them out in the first claim while
    another has 10,000 queued, and a reminder that falls due in the middle of a big
    workspace's morning is next in that workspace's queue. The order is computed
    without locks (a window function); the rows are then locked and taken as
    ``claim`` takes them, skipping any another replica took meanwhile.
    """
    rank = priority()
    lane = col(Learner.workspace_id)
    order = sa.func.row_number().over(
        partition_by=lane, order_by=(rank, col(Delivery.due_at), col(Delivery.id))
    )
    due = (
        sa.select(
            col(Delivery.id).label("id"),
            lane.label("lane"),
            rank.label("rank"),
            col(Delivery.due_at).label("due_at"),
            order.label("turn"),
        )
        .join(Learner, col(Learner.id) == col(Delivery.learner_id))
        .where(on_its_way(PENDING), col(Delivery.due_at) <= (due_before or now))
    )
    if skip_lanes:
        due = due.where(lane.not_in(list(skip_lanes)))
    ranked = due.subquery("due")
    deepest = max([default_room, *room.values()])
    chosen = session.execute(
        sa.select(ranked.c.id, ranked.c.lane, ranked.c.turn)
        .where(ranked.c.turn <= deepest)
        .order_by(ranked.c.turn, ranked.c.rank, ranked.c.due_at, ranked.c.id)
        .limit(limit)
    ).all()
    lanes = {
        int(delivery_id): int(lane)
        for delivery_id, lane, turn in chosen
        if turn <= room.get(int(lane), default_room)
    }
    if not lanes:
        return {}
    table = Delivery.__table__  # type: ignore[attr-defined]
    taken = _take(
        session,
        select(Delivery.id).where(col(Delivery.id).in_(list(lanes)), on_its_way(PENDING)),
        still=table.c.status == PENDING,
        values=_taken(owner, now, lease),
    )
    return {delivery_id: lanes[delivery_id] for delivery_id in taken}


def fail_workspace_queue(
    session: Session, delivery_id: int, *, owner: str, now: datetime, reason: str
) -> tuple[int | None, int]:
    """The installation of ``delivery_id``'s workspace is gone: fail, with ``reason``,
    every row of that workspace that is due and waiting (``pending``, or held by
    ``owner`` and not yet sent). Returns (the workspace id, rows failed)."""
    workspace_id = session.execute(
        sa.select(col(Learner.workspace_id))
        .join(Delivery, col(Delivery.learner_id) == col(Learner.id))
        .where(col(Delivery.id) == delivery_id)
    ).scalar_one_or_none()
    if workspace_id is None:
        return None, 0
    table = Delivery.__table__  # type: ignore[attr-defined]
    learners = sa.select(col(Learner.id)).where(col(Learner.workspace_id) == workspace_id)
    waiting = sa.or_(
        on_its_way(PENDING),
        sa.and_(on_its_way(SENDING), table.c.lease_owner == owner),
    )
    result = session.execute(
        sa.update(table)
        .where(table.c.learner_id.in_(learners), table.c.due_at <= now, waiting)
        .values(status=FAILED, error=reason[:2000], lease_owner=None, lease_until=None)
    )
    return int(workspace_id), int(result.rowcount or 0)


def lanes_of(session: Session, ids: Sequence[int]) -> dict[int, int]:
    """The workspace of each delivery in ``ids``: the queue it is sent from."""
    if not ids:
        return {}
    rows = session.execute(
        sa.select(col(Delivery.id), col(Learner.workspace_id))
        .join(Learner, col(Learner.id) == col(Delivery.learner_id))
        .where(col(Delivery.id).in_(list(ids)))
    ).all()
    return {int(delivery_id): int(lane) for delivery_id, lane in rows}


def mark_sent(
    session: Session,
    delivery_id: int,
    *,
    now: datetime,
    channel: str | None,
    message_ids: Sequence[str],
    remind_at: datetime | None = None,
) -> bool:
    """Record a successful send in one statement; False if the row vanished (e.g. the
    learner was erased meanwhile)."""
    table = Delivery.__table__  # type: ignore[attr-defined]
    result = session.execute(
        sa.update(table)
        .where(table.c.id == delivery_id)
        .values(
            status=SENT,
            sent_at=now,
            lease_owner=None,
            lease_until=None,
            platform_channel=channel,
            platform_message_ids=",".join(message_ids) or None,
            error=None,
            remind_at=remind_at,
        )
    )
    return bool(result.rowcount)


def mark_failed(session: Session, delivery_id: int, *, reason: str) -> None:
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        return
    delivery.status = FAILED
    delivery.error = reason[:2000]
    delivery.lease_owner = None
    delivery.lease_until = None
    session.add(delivery)


def release(
    session: Session,
    delivery_id: int,
    *,
    retry_at: datetime,
    reason: str | None,
    count_attempt: bool = True,
    maybe_delivered: bool = False,
) -> None:
    """Give a row back for a later attempt. A 429 is the platform pacing us, not a
    failure, so it does not count toward the attempt limit. A row whose message may
    have arrived stays ``sending`` with no owner, so the retry checks first.

    Only a row still ``sending`` is given back: one finished while its send was on the
    wire (its workspace's whole queue failed when another send found the installation
    gone, or it was cancelled) stays finished, instead of coming back to life."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or delivery.status != SENDING:
        return
    if not count_attempt:
        delivery.attempts = max(0, delivery.attempts - 1)
    delivery.status = SENDING if maybe_delivered else PENDING
    delivery.due_at = retry_at
    delivery.lease_owner = None
    delivery.lease_until = retry_at if maybe_delivered else None
    delivery.error = reason
    session.add(delivery)


def _taken(owner: str, now: datetime, lease: timedelta) -> dict[str, object]:
    """What taking a pending row sets: ``sending`` under ``owner``'s lease, one more
    attempt."""
    table = Delivery.__table__  # type: ignore[attr-defined]
    return {
        "status": SENDING,
        "lease_owner": owner,
        "lease_until": now + lease,
        "attempts": table.c.attempts + 1,
    }


def _take(session: Session, candidates, still, values: dict[str, object]) -> list[int]:  # type: ignore[no-untyped-def]
    """Lock the candidate rows (skipping ones another replica holds, on PostgreSQL), then
    update those that still match ``still`` in one statement; returns the ids taken."""
    table = Delivery.__table__  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    chosen = list(session.exec(candidates).all())
    if not chosen:
        return []
    result = session.execute(
        sa.update(table).where(table.c.id.in_(chosen), still).values(**values).returning(table.c.id)
    )
    return sorted(result.scalars().all())


def claim_expired(
    session: Session,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int = 100,
    dead_owners: Sequence[str] = (),
) -> list[int]:
    """Take over rows whose outcome is unknown: still ``sending`` with the lease over
    (the sender died, or handed the row back unsure), or held by ``dead_owners``
    (senders known to be gone, whatever their lease says).

    The message may or may not have reached the platform: the dispatcher asks the
    adapter before sending again. Each take-over counts as an attempt, so a message
    that keeps failing in a way that might have delivered it still ends up failed.
    """
    table = Delivery.__table__  # type: ignore[attr-defined]
    orphaned = col(Delivery.lease_until) < now
    still = table.c.lease_until < now
    if dead_owners:
        orphaned = sa.or_(orphaned, col(Delivery.lease_owner).in_(list(dead_owners)))
        still = sa.or_(still, table.c.lease_owner.in_(list(dead_owners)))
    candidates = (
        select(Delivery.id)
        .where(on_its_way(SENDING), orphaned)
        .order_by(col(Delivery.lease_until), col(Delivery.id))
        .limit(limit)
    )
    return _take(
        session,
        candidates,
        still=sa.and_(table.c.status == SENDING, still),
        values={
            "lease_owner": owner,
            "lease_until": now + lease,
            "attempts": table.c.attempts + 1,
        },
    )


def lease_owners(session: Session, *, prefix: str) -> list[str]:
    """The owners (whose names start with ``prefix``) holding ``sending`` rows now."""
    mine = col(Delivery.lease_owner).startswith(prefix, autoescape=True)
    owners = session.exec(
        select(Delivery.lease_owner).where(on_its_way(SENDING), mine).distinct()
    ).all()
    return [owner for owner in owners if owner is not None]


def next_due(session: Session) -> datetime | None:
    """The earliest instant a row becomes claimable: a pending row's ``due_at``, or the
    end of the wait of a row handed back unsure. Rows under a live lease are their
    owner's business."""
    pending = session.exec(select(func.min(Delivery.due_at)).where(on_its_way(PENDING))).one()
    unsure = session.exec(
        select(func.min(Delivery.lease_until)).where(
            on_its_way(SENDING), col(Delivery.lease_owner).is_(None)
        )
    ).one()
    return min((t for t in (pending, unsure) if t is not None), default=None)


def renew_leases(session: Session, *, owner: str, until: datetime) -> int:
    """Extend the leases of every row ``owner`` is still sending (its heartbeat)."""
    table = Delivery.__table__  # type: ignore[attr-defined]
    result = session.execute(
        sa.update(table)
        .where(on_its_way(SENDING), table.c.lease_owner == owner)
        .values(lease_until=until)
    )
    return int(result.rowcount or 0)


def release_owned(
    session: Session, *, owner: str, now: datetime, unsure: Sequence[int] = ()
) -> tuple[int, int]:
    """Hand back every row this process holds (on shutdown), for another replica or the
    next start. Rows in ``unsure`` may have reached the platform (their send was on the
    wire, or they were taken over unsure): they stay ``sending`` with no owner and a
    lease that is already over, so the next taker checks with the platform first. The
    rest never left: plain ``pending``. Returns (pending, unsure) counts."""
    table = Delivery.__table__  # type: ignore[attr-defined]
    mine = sa.and_(on_its_way(SENDING), table.c.lease_owner == owner)
    checked = 0
    if unsure:
        checked = session.execute(
            sa.update(table)
            .where(mine, table.c.id.in_(list(unsure)))
            .values(lease_owner=None, lease_until=now, attempts=table.c.attempts - 1)
        ).rowcount
    released = session.execute(
        sa.update(table)
        .where(mine)
        .values(status=PENDING, lease_owner=None, lease_until=None, attempts=table.c.attempts - 1)
    ).rowcount
    return int(released or 0), int(checked or 0)


def cancel(session: Session, delivery_id: int, *, reason: str) -> None:
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        return
    delivery.status = CANCELLED
    delivery.error = reason
    delivery.lease_owner = None
    delivery.lease_until = None
    session.add(delivery)
