"""Counts a learner and a lead both see, computed one way so they always agree.

Lesson questions and practice check-ins are counted apart; notes never count; a
streak is consecutive answered lesson questions, newest first.

The numbers for many learners come from a few grouped queries, never some per
learner: a lead's ``team`` or a digest over 10,000 learners with a year of history would
otherwise make tens of thousands of round trips. ``progress`` asks the same queries for
one learner, and the digest's streaks are read by the same query builder, so the three
can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from bot.models import Delivery, Enrolment, Learner, Reply

# Learners per grouped query: well under every driver's limit on bound parameters.
CHUNK = 1_000


@dataclass(frozen=True)
class Counts:
    lessons_asked: int = 0
    lessons_answered: int = 0
    practice_asked: int = 0
    practice_answered: int = 0
    streak: int = 0
    last_reply: datetime | None = None

    def summary(self) -> str:
        text = f"lesson questions answered {self.lessons_answered} of {self.lessons_asked}"
        if self.practice_asked:
            text += f" · practice check-ins {self.practice_answered} of {self.practice_asked}"
        return text


def counts(session: Session, learner_id: int, enrolment_id: int | None = None) -> Counts:
    """What was asked and answered (for one enrolment, or all of them)."""
    return counts_for(session, {learner_id: enrolment_id})[learner_id]


def counts_for(session: Session, scopes: Mapping[int, int | None]) -> dict[int, Counts]:
    """``counts`` for many learners at once: learner id -> the enrolment to count (None:
    all of them). Two grouped queries per ``CHUNK`` learners."""
    found: dict[int, Counts] = {}
    learner_ids = list(scopes)
    for first in range(0, len(learner_ids), CHUNK):
        chunk = {i: scopes[i] for i in learner_ids[first : first + CHUNK]}
        found.update(_counts_chunk(session, chunk))
    return found


def streaks(session: Session, learners: sa.Select[tuple[int]]) -> dict[int, int]:
    """The current streak (over all enrolments, as ``counts`` without one) of every
    learner ``learners`` selects, in one query. Meant for a whole workspace, so its
    lesson questions are read in one pass over the table: through the ``learner_id``
    index, SQLite (which keeps no statistics unless ANALYZE runs) would visit a year of
    rows one by one, two to three times slower."""
    whole = Delivery.learner_id + 0  # not indexable: read the table once, in order
    asked = _asked(whole.in_(learners), ("lesson",), whole)
    found = session.exec(
        select(
            asked.c.learner_id,
            func.count(),
            func.min(sa.case((asked.c.answered == 0, asked.c.position))),
        ).group_by(asked.c.learner_id)
    ).all()
    return {learner: _streak(count, first_gap) for learner, count, first_gap in found}


def _streak(asked: int, first_gap: int | None) -> int:
    """Answered lesson questions before the newest unanswered one (all, if none is)."""
    return int(first_gap) - 1 if first_gap else int(asked)


def _asked(
    within: sa.ColumnElement[bool], kinds: tuple[str, ...], learner: sa.ColumnElement[int]
) -> sa.Subquery:
    """Questions sent (with their text) of ``kinds``, one row each: the learner, the
    kind, 1 if the learner answered it, and its place newest first among that learner's
    questions of that kind, the order a streak is read in."""
    answered = sa.exists().where(
        Reply.delivery_id == Delivery.id,
        Reply.learner_id == Delivery.learner_id,
        Reply.kind == "answer",
    )
    return (
        select(
            col(Delivery.learner_id).label("learner_id"),
            col(Delivery.kind).label("kind"),
            sa.case((answered, 1), else_=0).label("answered"),
            func.row_number()
            .over(
                partition_by=(learner, Delivery.kind),
                order_by=(col(Delivery.sent_at).desc(), col(Delivery.id).desc()),
            )
            .label("position"),
        )
        .where(
            within,
            col(Delivery.kind).in_(kinds),
            col(Delivery.question).is_not(None),
            # Wrapped so that SQLite, which keeps no statistics unless ANALYZE runs,
            # never walks the status index through every sent row of the year.
            func.coalesce(Delivery.status, "") == "sent",
        )
        .subquery()
    )


def _counts_chunk(session: Session, scopes: Mapping[int, int | None]) -> dict[int, Counts]:
    everything = [learner for learner, enrolment in scopes.items() if enrolment is None]
    scoped = [(learner, enrolment) for learner, enrolment in scopes.items() if enrolment]
    within = []
    if everything:
        within.append(col(Delivery.learner_id).in_(everything))
    if scoped:
        within.append(
            sa.and_(
                col(Delivery.learner_id).in_([learner for learner, _ in scoped]),
                sa.tuple_(Delivery.learner_id, Delivery.enrolment_id).in_(scoped),
            )
        )
    asked = _asked(sa.or_(*within), ("lesson", "practice"), col(Delivery.learner_id))
    totals = session.exec(
        select(
            asked.c.learner_id,
            asked.c.kind,
            func.count(),
            func.sum(asked.c.answered),
            func.min(sa.case((asked.c.answered == 0, asked.c.position))),
        ).group_by(asked.c.learner_id, asked.c.kind)
    ).all()
    last = dict(
        session.exec(
            select(Reply.learner_id, func.max(Reply.created_at))
            .where(col(Reply.learner_id).in_(list(scopes)), Reply.kind == "answer")
            .group_by(col(Reply.learner_id))
        ).all()
    )
    numbers: dict[int, dict[str, int]] = {learner: {} for learner in scopes}
    for learner, kind, count, done, first_gap in totals:
        numbers[learner][f"{kind}_asked"] = int(count)
        numbers[learner][f"{kind}_answered"] = int(done or 0)
        if kind == "lesson":
            numbers[learner]["streak"] = _streak(count, first_gap)
    return {
        learner: Counts(
            values.get("lesson_asked", 0),
            values.get("lesson_answered", 0),
            values.get("practice_asked", 0),
            values.get("practice_answered", 0),
            values.get("streak", 0),
            last.get(learner),
        )
        for learner, values in numbers.items()
    }


@dataclass(frozen=True)
class LearnerStats:
    learner: Learner
    enrolment: Enrolment | None
    counts: Counts
