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

import functools
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


def streaks(
    session: Session, learners: sa.Select[tuple[int]], recent: datetime | None = None
) -> dict[int, int]:
    """The current streak (over all enrolments, as ``counts`` without one) of every
    learner ``learners`` selects, 0 for those without one.

    A streak ends at the newest unanswered lesson question, and for nearly everyone that
    one is recent. So with ``recent``, one pass reads only the questions sent since then
    (and any without a time), which settles the streak of every learner with an
    unanswered one among them: a later question is recent too. The few others (all
    recent questions answered, or none sent) are read in full. Without ``recent`` a
    year of questions is sorted per learner, several seconds for 10,000 learners.
    The recent pass reads each learner's recent questions through the (learner,
    sent_at) index, so it costs what was sent since then, however long the history.
    Without ``recent`` the table is read once in order rather than learner by learner
    through the ``learner_id`` index, which SQLite, keeping no statistics, would pick.
    """
    whole = Delivery.learner_id + 0  # not indexable: read the table once, in order
    by_id = col(Delivery.learner_id)
    ids = set(session.exec(learners).all())
    found: dict[int, int] = {}
    if recent is not None:
        # Learner by learner through the (learner, sent_at) index: each learner's
        # recent questions and those without a time, two short ranges, never the year.
        since = sa.or_(
            sa.and_(by_id.in_(learners), col(Delivery.sent_at) >= recent),
            sa.and_(by_id.in_(learners), col(Delivery.sent_at).is_(None)),
        )
        asked = _asked(since, ("lesson",), by_id)
        for learner, first_gap, first_dated_gap in session.exec(
            select(
                asked.c.learner_id,
                func.min(sa.case((asked.c.answered == 0, asked.c.position))),
                func.min(
                    sa.case((sa.and_(asked.c.answered == 0, asked.c.dated == 1), asked.c.position))
                ),
            ).group_by(asked.c.learner_id)
        ).all():
            # Settled only by a dated gap: where questions without a time sort differs
            # between databases, so one of those as the first gap is read in full.
            if first_gap is not None and first_gap == first_dated_gap:
                found[learner] = int(first_gap) - 1
    if recent is None:
        found = _streaks_where(session, whole.in_(learners), whole)
    else:
        rest = sorted(ids - set(found))
        for first in range(0, len(rest), CHUNK):
            found.update(_streaks_where(session, by_id.in_(rest[first : first + CHUNK]), by_id))
    return {learner: found.get(learner, 0) for learner in ids}


def _streaks_where(
    session: Session, within: sa.ColumnElement[bool], learner: sa.ColumnElement[int]
) -> dict[int, int]:
    asked = _asked(within, ("lesson",), learner)
    return {
        learner_id: _streak(count, first_gap)
        for learner_id, count, first_gap in session.exec(
            select(
                asked.c.learner_id,
                func.count(),
                func.min(sa.case((asked.c.answered == 0, asked.c.position))),
            ).group_by(asked.c.learner_id)
        ).all()
    }


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
            sa.case((col(Delivery.sent_at).is_(None), 0), else_=1).label("dated"),
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
    params: dict[str, object] = {"learners": list(scopes)}
    if everything:
        params["everything"] = everything
    if scoped:
        params["scoped_learners"] = [learner for learner, _ in scoped]
        params["scoped"] = scoped
    totals_query, last_query = _counts_queries(bool(everything), bool(scoped))
    # Rows, not objects: run on the session's connection, past the ORM's handling of
    # each statement (a tenth of a progress answer), after the flush it would do.
    if session.autoflush:
        session.flush()
    connection = session.connection()
    totals = connection.execute(totals_query, params).all()
    last = {learner: at for learner, at in connection.execute(last_query, params)}
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


@functools.cache
def _counts_queries(everything: bool, scoped: bool) -> tuple[sa.Select, sa.Select]:  # type: ignore[type-arg]
    """The two grouped queries of ``_counts_chunk``, built once per shape of scope (all
    of some learners' enrolments, one enrolment of others, or both) with the learners
    as bound lists. Building them is most of the work of a ``progress``: the subquery's
    columns are made anew each time, so a statement built per call costs more than the
    database takes to run it; a built one is reused, and SQLAlchemy's compiled cache
    then answers from its first use on."""
    learner = col(Delivery.learner_id)
    within = []
    if everything:
        within.append(learner.in_(sa.bindparam("everything", expanding=True)))
    if scoped:
        within.append(
            sa.and_(
                learner.in_(sa.bindparam("scoped_learners", expanding=True)),
                sa.tuple_(Delivery.learner_id, Delivery.enrolment_id).in_(
                    sa.bindparam("scoped", expanding=True)
                ),
            )
        )
    asked = _asked(sa.or_(*within), ("lesson", "practice"), learner)
    totals = select(
        asked.c.learner_id,
        asked.c.kind,
        func.count(),
        func.sum(asked.c.answered),
        func.min(sa.case((asked.c.answered == 0, asked.c.position))),
    ).group_by(asked.c.learner_id, asked.c.kind)
    last = (
        select(Reply.learner_id, func.max(Reply.created_at))
        .where(
            col(Reply.learner_id).in_(sa.bindparam("learners", expanding=True)),
            Reply.kind == "answer",
        )
        .group_by(col(Reply.learner_id))
    )
    return totals, last


@dataclass(frozen=True)
class LearnerStats:
    learner: Learner
    enrolment: Enrolment | None
    counts: Counts
