"""Counts a learner and a lead both see, computed one way so they always agree.

Lesson questions and practice check-ins are counted apart; notes never count; a
streak is consecutive answered lesson questions, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from bot.models import Delivery, Enrolment, Learner, Reply


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
    query = select(Delivery.id, Delivery.kind).where(
        Delivery.learner_id == learner_id,
        col(Delivery.kind).in_(("lesson", "practice")),
        col(Delivery.question).is_not(None),
        Delivery.status == "sent",
    )
    if enrolment_id is not None:
        query = query.where(Delivery.enrolment_id == enrolment_id)
    asked = session.exec(
        query.order_by(col(Delivery.sent_at).desc(), col(Delivery.id).desc())
    ).all()
    answered = set(
        session.exec(
            select(Reply.delivery_id).where(
                Reply.learner_id == learner_id,
                Reply.kind == "answer",
                col(Reply.delivery_id).in_([d for d, _ in asked]),
            )
        ).all()
    )
    lessons = [d for d, kind in asked if kind == "lesson"]
    practice = [d for d, kind in asked if kind == "practice"]
    streak = 0
    for question_id in lessons:
        if question_id not in answered:
            break
        streak += 1
    last = session.exec(
        select(func.max(Reply.created_at)).where(
            Reply.learner_id == learner_id, Reply.kind == "answer"
        )
    ).one()
    return Counts(
        len(lessons),
        sum(1 for d in lessons if d in answered),
        len(practice),
        sum(1 for d in practice if d in answered),
        streak,
        last,
    )


@dataclass(frozen=True)
class LearnerStats:
    learner: Learner
    enrolment: Enrolment | None
    counts: Counts
