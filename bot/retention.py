"""Retention: old outbox rows are removed or compacted so a year of use stays small.

Every lesson-day leaves a few delivery rows (the lesson, its reminder, a check-in, a
prompt). Once older than ``MENTORBOT_RETENTION_DAYS`` and finished (sent, failed or
cancelled), rows nobody needs are deleted: reminders, prompts, welcomes, notices,
digests, and anything that never reached the learner. Sent questions are kept, because
numbering (``/mentor answer 3``), ``progress``, ``team`` and the practice history read
them; they are compacted instead (platform ids, errors and leases cleared). Replies
are never touched: ``history`` and every export stay whole.

Rows still pending or being sent, and every row a reply or a newer row points at, are
left alone, so a prune can race with a fan-out, ``forget-me`` or another replica.

A pass reads only the rows it may still have work on, through a partial index on
``due_at`` (``ix_delivery_retention``, see ``bot.models.RETENTION_WORK``): rows of
every kind but the counted ones, except sent questions once compacted. Whatever a
pass removes or compacts leaves that index, and the rows retention keeps for good
(compacted questions, ``continue`` and ``summary`` rows) are never in it, so an hourly
pass reads what crossed the cutoff since the last one plus the few rows it had to leave
(still pending, or pointed at by a reply or a newer row), not a year of history. No
watermark is kept anywhere: a pass after a restart, on another replica or after one
killed halfway reads the same index and finds the same work. Work goes in pages of
that index in (``due_at``, ``id``) order, each its own short transaction.

The same pass deletes rate-limit cells (``rate_bucket``) nobody has drawn from since
their window passed, so the table holds the conversations in use, not every one the bot
ever wrote to; a cell that learned a pace keeps it for a week unused (see
``bot.ratelimit.prune``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from bot.context import QUESTION_KINDS
from bot.db import Store
from bot.models import RETENTION_WORK, Delivery, Reply
from bot.ratelimit import prune as prune_cells

log = logging.getLogger(__name__)

FINISHED = ("sent", "failed", "cancelled")
BATCH = 2_000  # rows of the retention index per step, one short transaction each
CELLS_BATCH = 500  # idle rate-limit cells deleted per transaction
# Rows the planner counts to keep a promise ("continue?" is asked once and reminded once
# by the summary): removing them would let it ask again. They are two per lesson at most.
COUNTED_KINDS = ("continue", "summary")

Position = tuple[datetime, int] | None  # (due_at, id) where the last page ended; None: start


@dataclass
class PruneResult:
    removed: int = 0
    compacted: int = 0
    cells: int = 0  # idle rate-limit cells deleted
    read: int = 0  # rows of the retention index the pass looked at

    def __str__(self) -> str:
        text = f"removed {self.removed:,} delivery rows, compacted {self.compacted:,}"
        return text + (f", forgot {self.cells:,} idle rate-limit cells" if self.cells else "")


def _finished(cutoff: datetime, statuses: tuple[str, ...] = FINISHED) -> sa.ColumnElement[bool]:
    """Finished and older than ``cutoff``. The status is wrapped so no database reads
    these rows through the (status, due_at) index: a year holds millions of them, and
    each step below wants only the rows of its own page."""
    return sa.and_(
        func.coalesce(Delivery.status, "").in_(statuses),
        col(Delivery.due_at) < cutoff,
    )


def _removable(cutoff: datetime) -> sa.Select[tuple[int]]:
    """Finished rows older than ``cutoff`` that nothing needs any more."""
    child = sa.alias(Delivery.__table__, "child")  # type: ignore[attr-defined]
    return select(Delivery.id).where(
        _finished(cutoff),
        col(Delivery.kind).not_in(COUNTED_KINDS),
        sa.or_(
            col(Delivery.kind).not_in(QUESTION_KINDS),
            Delivery.status != "sent",
            col(Delivery.question).is_(None),
        ),
        ~sa.exists().where(Reply.delivery_id == Delivery.id),
        ~sa.exists().where(Reply.candidate_id == Delivery.id),
        ~sa.exists().where(child.c.parent_id == Delivery.id),
    )  # type: ignore[return-value]


def _compactable(cutoff: datetime) -> sa.Select[tuple[int]]:
    """Old sent questions that still carry what only recent rows need."""
    return select(Delivery.id).where(
        _finished(cutoff, ("sent",)),
        col(Delivery.kind).in_(QUESTION_KINDS),
        sa.or_(
            col(Delivery.platform_message_ids).is_not(None),
            col(Delivery.error).is_not(None),
            col(Delivery.lease_owner).is_not(None),
        ),
    )  # type: ignore[return-value]


def _page(cutoff: datetime, after: Position, batch: int) -> sa.Select[tuple[int, datetime]]:
    """The next ``batch`` rows of the retention index older than ``cutoff``, after the
    (``due_at``, ``id``) where the last page ended. ``RETENTION_WORK`` is repeated here
    word for word: both databases use a partial index only for a query whose conditions
    include the index's own."""
    query = select(Delivery.id, Delivery.due_at).where(
        sa.text(RETENTION_WORK), col(Delivery.due_at) < cutoff
    )
    if after is not None:
        due, last = after
        query = query.where(
            col(Delivery.due_at) >= due,
            sa.or_(col(Delivery.due_at) > due, col(Delivery.id) > last),
        )
    return query.order_by(col(Delivery.due_at), col(Delivery.id)).limit(batch)  # type: ignore[return-value]


def prune(
    store: Store, now: datetime, days: int, *, dry_run: bool = False, batch: int = BATCH
) -> PruneResult:
    """Remove and compact rows older than ``days``; with ``dry_run`` only count them.

    Each step takes the next ``batch`` rows of the retention index and decides about
    those alone, in one short transaction, so a step costs the same on the first pass
    over a year of history as on the hourly passes after it, and a pass costs what
    crossed the cutoff since the last one. (Asking for "the next 500 matching rows"
    without that index made every step read every old row again: hours for a year on
    SQLite; walking all row ids instead cost seconds an hour for nothing.)"""
    cutoff = now - timedelta(days=days)
    result = PruneResult()

    def step(session: Session, after: Position) -> tuple[int, int, int, Position]:
        page = session.exec(_page(cutoff, after, batch)).all()
        if not page:
            return 0, 0, 0, None
        ids = [row_id for row_id, _ in page]
        within = col(Delivery.id).in_(ids)
        removed = list(session.exec(_removable(cutoff).where(within)).all())
        gone = set(removed)  # a sent question without text is removed, not compacted
        compacted = [i for i in session.exec(_compactable(cutoff).where(within)) if i not in gone]
        ended = (page[-1][1], page[-1][0]) if len(page) == batch else None
        if dry_run:
            return len(page), len(removed), len(compacted), ended
        if removed:
            session.execute(sa.delete(Delivery).where(col(Delivery.id).in_(removed)))
        if compacted:
            session.execute(
                sa.update(Delivery)
                .where(col(Delivery.id).in_(compacted))
                .values(platform_message_ids=None, error=None, lease_owner=None, lease_until=None)
            )
        return len(page), len(removed), len(compacted), ended

    run = store.read if dry_run else store.run
    after: Position = None
    while True:
        read, removed, compacted, after = run(lambda session, after=after: step(session, after))
        result.read += read
        result.removed += removed
        result.compacted += compacted
        if after is None:
            break
    cells_batch = min(batch, CELLS_BATCH)
    while not dry_run:
        deleted = store.run(lambda s: prune_cells(s, batch=cells_batch))
        result.cells += deleted
        if deleted < cells_batch:
            break
    if result.removed or result.compacted or result.cells:
        log.info("retention: %s (older than %d days)", result, days)
    return result
