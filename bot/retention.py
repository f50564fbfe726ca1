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
Work goes in small batches, each its own short transaction, so a prune killed halfway
simply finishes on its next run.

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
from sqlmodel import Session, col, select

from bot.context import QUESTION_KINDS
from bot.db import Store
from bot.models import Delivery, Reply
from bot.ratelimit import prune as prune_cells

log = logging.getLogger(__name__)

FINISHED = ("sent", "failed", "cancelled")
# Rows the planner counts to keep a promise ("continue?" is asked once and reminded once
# by the summary): removing them would let it ask again. They are two per lesson at most.
COUNTED_KINDS = ("continue", "summary")
BATCH = 500


@dataclass
class PruneResult:
    removed: int = 0
    compacted: int = 0
    cells: int = 0  # idle rate-limit cells deleted

    def __str__(self) -> str:
        text = f"removed {self.removed:,} delivery rows, compacted {self.compacted:,}"
        return text + (f", forgot {self.cells:,} idle rate-limit cells" if self.cells else "")


def _removable(cutoff: datetime) -> sa.Select[tuple[int]]:
    """Finished rows older than ``cutoff`` that nothing needs any more."""
    child = sa.alias(Delivery.__table__, "child")  # type: ignore[attr-defined]
    return (
        select(Delivery.id)
        .where(
            col(Delivery.status).in_(FINISHED),
            col(Delivery.due_at) < cutoff,
            col(Delivery.kind).not_in(COUNTED_KINDS),
            sa.or_(
                col(Delivery.kind).not_in(QUESTION_KINDS),
                Delivery.status != "sent",
                col(Delivery.question).is_(None),
            ),
            ~sa.exists().where(Reply.delivery_id == Delivery.id),
            ~sa.exists().where(Reply.candidate_id == Delivery.id),
            ~sa.exists().where(child.c.parent_id == Delivery.id),
        )
        .order_by(col(Delivery.id))
    )  # type: ignore[return-value]


def _compactable(cutoff: datetime) -> sa.Select[tuple[int]]:
    """Old sent questions that still carry what only recent rows need."""
    return (
        select(Delivery.id)
        .where(
            Delivery.status == "sent",
            col(Delivery.due_at) < cutoff,
            col(Delivery.kind).in_(QUESTION_KINDS),
            sa.or_(
                col(Delivery.platform_message_ids).is_not(None),
                col(Delivery.error).is_not(None),
                col(Delivery.lease_owner).is_not(None),
            ),
        )
        .order_by(col(Delivery.id))
    )  # type: ignore[return-value]


def prune(
    store: Store, now: datetime, days: int, *, dry_run: bool = False, batch: int = BATCH
) -> PruneResult:
    """Remove and compact rows older than ``days``; with ``dry_run`` only count them."""
    cutoff = now - timedelta(days=days)
    result = PruneResult()
    if dry_run:

        def count(session: Session) -> PruneResult:
            removed = session.exec(
                select(sa.func.count()).select_from(_removable(cutoff).subquery())
            ).one()
            compacted = session.exec(
                select(sa.func.count()).select_from(_compactable(cutoff).subquery())
            ).one()
            return PruneResult(int(removed), int(compacted))

        return store.read(count)

    def remove(ids: list[int]) -> sa.Executable:
        return sa.delete(Delivery).where(col(Delivery.id).in_(ids))

    def compact(ids: list[int]) -> sa.Executable:
        return (
            sa.update(Delivery)
            .where(col(Delivery.id).in_(ids))
            .values(platform_message_ids=None, error=None, lease_owner=None, lease_until=None)
        )

    for query, change, field in (
        (_removable(cutoff), remove, "removed"),
        (_compactable(cutoff), compact, "compacted"),
    ):
        after = 0  # a cursor, so each batch reads on from the last instead of rescanning
        while True:

            def step(session: Session, after: int = after, query=query, change=change) -> list[int]:  # type: ignore[no-untyped-def]
                ids = list(session.exec(query.where(col(Delivery.id) > after).limit(batch)).all())
                if ids:
                    session.execute(change(ids))
                return ids

            ids = store.run(step)
            setattr(result, field, getattr(result, field) + len(ids))
            if len(ids) < batch:
                break
            after = ids[-1]
    while True:
        deleted = store.run(lambda s: prune_cells(s, batch=batch))
        result.cells += deleted
        if deleted < batch:
            break
    if result.removed or result.compacted or result.cells:
        log.info("retention: %s (older than %d days)", result, days)
    return result
