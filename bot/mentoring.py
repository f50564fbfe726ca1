"""What a mentor says around an answer: which practice it touches on, the check-in
that follows, spaced reviews of earlier answers, and the weekly practice phase after a
lesson. The planner, the answer handler and rendering all ask here, so the practice the
acknowledgement names is the one the check-in brings back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bot.commands import PREFIX
from bot.course import Lesson
from bot.models import Delivery, Reply
from bot.practices import best_sentence, choose, clip, normalise, touches
from bot.schedule import PRACTICE_OFFSET, Schedule
from bot.text import learner_text

# Spaced review: the learner sees an answer again about 1, 3 and 8 weeks after writing it.
REVIEW_WEEKS = (1, 3, 8)
PHASE_EVERY = timedelta(days=7)  # the practice phase: one check-in a week


def practice_history(session: Session, learner_id: int) -> list[str]:
    """Practices already brought up for the learner, oldest first: the ones named on
    their answers and the ones in weekly practice-phase check-ins."""
    return practice_histories(session, [learner_id]).get(learner_id, [])


def practice_histories(session: Session, learner_ids: Sequence[int]) -> dict[int, list[str]]:
    """``practice_history`` for many learners in two queries: the planner's practice
    phase asks for a whole batch of learners at once."""
    found: dict[int, list[tuple[datetime, str]]] = {}
    for learner_id, at, name in session.exec(
        select(Reply.learner_id, Reply.created_at, Reply.practice).where(
            col(Reply.learner_id).in_(learner_ids), col(Reply.practice).is_not(None)
        )
    ).all():
        found.setdefault(learner_id, []).append((at, name or ""))
    for learner_id, at, name in session.exec(
        select(Delivery.learner_id, Delivery.created_at, Delivery.body).where(
            col(Delivery.learner_id).in_(learner_ids),
            Delivery.kind == "practice",
            col(Delivery.parent_id).is_(None),
            col(Delivery.body).is_not(None),
        )
    ).all():
        found.setdefault(learner_id, []).append((at, name or ""))
    return {learner_id: [name for _, name in sorted(items)] for learner_id, items in found.items()}


def practice_for_answer(
    session: Session, learner_id: int, lesson: Lesson, question: str, text: str
) -> str | None:
    """The practice a lesson answer touches on (None when the lesson has none)."""
    history = practice_history(session, learner_id)
    return choose(
        lesson.practices,
        text,
        question,
        pinned=lesson.pins_for(question),
        used=history,
        last=history[-1] if history else None,
    )


def remaining_practices(session: Session, learner_id: int, lesson: Lesson) -> list[str]:
    """The lesson's practices not brought up yet for this learner."""
    return not_brought_up(lesson, practice_history(session, learner_id))


def not_brought_up(lesson: Lesson, history: Sequence[str]) -> list[str]:
    """The lesson's practices missing from ``history`` (see ``practice_history``)."""
    done = {normalise(p) for p in history}
    return [p for p in lesson.practices if normalise(p) not in done]


def practice_prompt(lesson_name: str, practice: str, reply_text: str) -> str:
    """The check-in after an answer: the practice, and the learner's own sentence that
    fits it best."""
    if not touches(practice, reply_text):
        # Offered as something to try (see bot.practices.touches): no quote that
        # would pretend the answer was about it.
        return (
            f"A leadership practice from {lesson_name} to try: **{practice}**. "
            "Have you had a chance to apply it since we last talked?"
        )
    quoted = learner_text(best_sentence(reply_text, practice))
    return (
        f"A leadership practice from {lesson_name}: **{practice}**. "
        f"You wrote: “{quoted}” How have you applied it since?"
    )


# The weekly practice phase stops after this many check-ins in a row got no answer
# and were not skipped: a mentor who hears nothing back stops asking, and says so.
PHASE_UNANSWERED_STOP = 2


def phase_prompt(lesson_name: str, practice: str, answers: list[str], first: bool = True) -> str:
    """A weekly practice-phase check-in, quoting the learner's best-fitting sentence
    when one of their answers touches on the practice. Only the first says "a week on":
    the later ones come weeks after the lesson."""
    quote = ""
    if answers:
        sentence = best_sentence(" ".join(answers), practice)
        if set(normalise(practice).split()) & set(normalise(sentence).split()):
            quote = f" You once wrote: “{learner_text(sentence)}”"
    opening = (
        f"A week on from {lesson_name}, one practice to try this week"
        if first
        else f"Another practice from {lesson_name} for this week"
    )
    return f"{opening}: **{practice}**.{quote} Where could it help you in the days ahead?"


def phase_stopped(
    lesson_name: str,
    waiting_for: str | None,
    next_lesson: str | None,
    published: bool,
    wrote: bool,
) -> str:
    """Said once, instead of a third unanswered weekly check-in."""
    if waiting_for:
        then = f"I'll still send lesson {waiting_for} as soon as it is published."
    elif next_lesson and published:
        then = f"Say `{PREFIX} continue` whenever you want lesson {next_lesson}."
    elif next_lesson:
        then = (
            f"Lesson {next_lesson} isn't published yet; say `{PREFIX} continue` and I'll "
            "send it as soon as it is."
        )
    else:
        then = f"`{PREFIX} courses` lists the courses when you want another."
    kept = f" Everything you wrote is kept (`{PREFIX} history`)." if wrote else ""
    return (
        f"The last two practice check-ins from {lesson_name} went unanswered, so I'll stop "
        f"sending them; no pressure.{kept} {then}"
    )


def review_prompt(reply: Reply, now: datetime) -> str:
    weeks = max(1, round((now - reply.created_at).days / 7))
    ago = "A week ago" if weeks == 1 else f"{_number(weeks)} weeks ago"
    return (
        f"{ago} you wrote “{learner_text(clip(reply.text, 200))}” about "
        f"“{clip(reply.question, 100)}”. What would you answer today?"
    )


def first_review(schedule: Schedule, answered_at: datetime) -> datetime:
    return review_time(schedule, answered_at, 0)


def review_time(schedule: Schedule, answered_at: datetime, done: int) -> datetime:
    """About ``REVIEW_WEEKS[done]`` weeks after the answer, at a delivery day's check-in
    time (two hours after the lesson slot, so never together with a lesson)."""
    target = answered_at + timedelta(weeks=REVIEW_WEEKS[done]) - timedelta(hours=12)
    return schedule.next_after(target) + PRACTICE_OFFSET


def next_phase_time(schedule: Schedule, now: datetime) -> datetime:
    """The next practice-phase check-in: a week on, at a delivery slot."""
    return schedule.next_after(now + PHASE_EVERY - timedelta(hours=12))


def _number(n: int) -> str:
    words = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")
    return words[n] if n < len(words) else str(n)
