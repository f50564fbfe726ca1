"""A learner's questions and replies: what is open, how they are numbered, and filing.

Numbers are stable: question N is the N-th question ever sent to the learner, reply N
the N-th thing they wrote, so ``/mentor answer 3`` and ``/mentor move 2`` mean the same
thing tomorrow as today. One question has at most one answer (a unique index backs
this), so two devices answering at once end with one answer holding both texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from bot.context import AWAITING_CONTINUE, QUESTION_KINDS, STOPPED
from bot.models import Delivery, Enrolment, Learner, Reply
from bot.router import OpenQuestion, Situation, Target
from bot.wording import question_name


def sent_as(message_id: str) -> Any:
    """Deliveries whose platform message ids (comma-separated) include ``message_id``."""
    ids = col(Delivery.platform_message_ids)
    return or_(
        ids == message_id,
        ids.like(f"%,{message_id}"),
        ids.like(f"{message_id},%"),
        ids.like(f"%,{message_id},%"),
    )


def _asked(learner_id: int) -> Any:
    """What makes a delivery one of the learner's numbered questions."""
    return and_(
        Delivery.learner_id == learner_id,
        col(Delivery.kind).in_(QUESTION_KINDS),
        col(Delivery.question).is_not(None),
        col(Delivery.status).in_(("sent", "sending")),
    )


def questions(session: Session, learner_id: int) -> list[Delivery]:
    """Every question sent to the learner, in the order they were queued: index + 1 is
    its number (row ids never change, so neither do the numbers)."""
    return list(
        session.exec(select(Delivery).where(_asked(learner_id)).order_by(col(Delivery.id))).all()
    )


def answers_by_question(session: Session, learner_id: int) -> dict[int, Reply]:
    replies = session.exec(
        select(Reply).where(
            Reply.learner_id == learner_id,
            Reply.kind == "answer",
            col(Reply.delivery_id).is_not(None),
        )
    ).all()
    return {r.delivery_id: r for r in replies if r.delivery_id is not None}


@dataclass(frozen=True)
class Numbered:
    number: int
    delivery: Delivery
    answer: Reply | None

    @property
    def is_open(self) -> bool:
        return self.answer is None and self.delivery.skipped_at is None


def numbered_questions(session: Session, learner_id: int) -> list[Numbered]:
    answers = answers_by_question(session, learner_id)
    return [
        Numbered(i, d, answers.get(d.id or 0))
        for i, d in enumerate(questions(session, learner_id), start=1)
    ]


def number_of(session: Session, learner_id: int, delivery_id: int) -> int | None:
    """The number ``questions`` gives the delivery, counted in the database: after a
    year a learner has hundreds of questions, and every lesson that mentions an open
    one asks this while it is sent."""
    if (
        session.exec(
            select(Delivery.id).where(Delivery.id == delivery_id, _asked(learner_id))
        ).first()
        is None
    ):
        return None
    return session.exec(
        select(func.count())
        .select_from(Delivery)
        .where(_asked(learner_id), col(Delivery.id) <= delivery_id)
    ).one()


def replies(session: Session, learner_id: int) -> list[Reply]:
    """Everything the learner wrote, oldest first: index + 1 is the reply's number."""
    return list(
        session.exec(
            select(Reply).where(Reply.learner_id == learner_id).order_by(col(Reply.id))
        ).all()
    )


def answer_to(session: Session, learner_id: int, delivery_id: int) -> Reply | None:
    return session.exec(
        select(Reply).where(
            Reply.learner_id == learner_id,
            Reply.delivery_id == delivery_id,
            Reply.kind == "answer",
        )
    ).first()


def pending_ask(session: Session, learner_id: int, delivery_id: int | None = None) -> Reply | None:
    """The newest note waiting for "yes, that was my answer" (about ``delivery_id``)."""
    query = select(Reply).where(
        Reply.learner_id == learner_id,
        Reply.kind == "note",
        col(Reply.candidate_id).is_not(None),
    )
    if delivery_id is not None:
        query = query.where(Reply.candidate_id == delivery_id)
    return session.exec(query.order_by(col(Reply.id).desc())).first()


def resolve_target(session: Session, learner: Learner, delivery_id: int | None, ref: str | None):  # type: ignore[no-untyped-def]
    """The question a button, form or thread points at: a ``Target`` (with no question
    when it points at something gone or someone else's), or None when nothing is
    pointed at. A reminder stands for the question it is about."""
    delivery: Delivery | None = None
    if delivery_id is not None:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None:
            return Target(None)
    elif ref:
        delivery = session.exec(
            select(Delivery).where(Delivery.learner_id == learner.id, sent_as(ref))
        ).first()
        if delivery is None:
            # A thread on a message that is not one of this learner's deliveries: maybe
            # another learner's, maybe deleted. Only a known foreign one counts as gone.
            foreign = session.exec(select(Delivery.id).where(sent_as(ref)).limit(1)).first()
            return Target(None) if foreign is not None else None
    if delivery is None:
        return None
    if delivery.kind == "reminder" and delivery.parent_id:
        delivery = session.get(Delivery, delivery.parent_id)
    if delivery is None or delivery.learner_id != learner.id:
        return Target(None)
    if delivery.kind not in QUESTION_KINDS or not delivery.question:
        return None if ref else Target(None)
    existing = answer_to(session, learner.id or 0, delivery.id or 0)
    return Target(delivery.id, existing.id if existing else None)


def situation(
    session: Session,
    learner: Learner,
    now: datetime,
    target: Target | None,
    answer_window: Any,
) -> Situation:
    """A snapshot of what the router needs, read in the event's transaction."""
    items = numbered_questions(session, learner.id or 0)
    lesson_times = [
        i.delivery.sent_at for i in items if i.delivery.kind == "lesson" and i.delivery.sent_at
    ]
    # Questions of a stopped enrolment (a lead's unassign, another course started) are
    # over: a message now is not an answer to them.
    stopped = set(
        session.exec(
            select(Enrolment.id).where(
                Enrolment.learner_id == learner.id, Enrolment.status == STOPPED
            )
        ).all()
    )
    open_questions = []
    for item in items:
        if not item.is_open or item.delivery.enrolment_id in stopped:
            continue
        sent = item.delivery.sent_at or item.delivery.due_at
        superseded = any(t > sent for t in lesson_times)
        delivery = item.delivery
        topic = (delivery.body if delivery.kind == "practice" else None) or delivery.question
        open_questions.append(
            OpenQuestion(delivery.id or 0, delivery.kind, sent, superseded, topic or "")
        )
    last = session.exec(
        select(Reply)
        .where(Reply.learner_id == learner.id, Reply.kind == "answer")
        .order_by(col(Reply.id).desc())
    ).first()
    # "Shall I go on to the next lesson?" was asked when the enrolment began to wait for
    # the answer (the prompt and the summary that repeats it say the same).
    offered_at = session.exec(
        select(Enrolment.updated_at).where(
            Enrolment.learner_id == learner.id, Enrolment.status == AWAITING_CONTINUE
        )
    ).first()
    return Situation(
        now=now,
        open_questions=open_questions,
        target=target,
        last_answer_id=last.id if last else None,
        last_answer_at=(last.added_at or last.created_at) if last else None,
        pending_ask=pending_ask(session, learner.id or 0) is not None,
        answer_window=answer_window,
        offered_at=offered_at,
    )


def add_answer(session: Session, reply: Reply) -> tuple[Reply, bool]:
    """Insert ``reply`` as the answer to its question; if another device got there
    first, append to that answer instead. Returns the answer and whether it was new."""
    try:
        with session.begin_nested():
            session.add(reply)
            session.flush()
        return reply, True
    except IntegrityError:
        existing = answer_to(session, reply.learner_id, reply.delivery_id or 0)
        if existing is None:
            raise
        append(existing, reply.text, reply.created_at)
        session.add(existing)
        return existing, False


def append(answer: Reply, text: str, now: datetime) -> None:
    answer.text = f"{answer.text}\n\n{text}"
    answer.added_at = now


def name_of(session: Session, question: Delivery) -> str:
    """How the bot refers to ``question`` in one line: a check-in by its practice, a
    look back by the answer it revisits, a lesson question by its words."""
    parent = session.get(Delivery, question.parent_id) if question.parent_id else None
    about = parent.question if parent is not None else None
    return question_name(question.kind, question.question, question.body, about)
