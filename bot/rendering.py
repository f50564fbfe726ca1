"""Outbox rows made into messages, just before they are sent.

Rendering happens at send time, from the state at that moment: a reminder for a
question answered meanwhile is not sent, and a lesson-day mentions yesterday's question
only if it is still open then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, or_
from sqlmodel import Session, col, select

from bot import commands as grammar
from bot.context import AWAITING_CONTINUE, WAITING_CONTENT, resting
from bot.course import Course, Lesson
from bot.messages import Action, Attachment, OutgoingMessage, Section
from bot.models import Delivery, Enrolment, Learner, Reply, Workspace
from bot.practices import clip
from bot.questions import answer_to, number_of
from bot.schedule import Schedule
from bot.text import learner_text, preview
from bot.wording import mention, question_privacy, schedule_sentence, workspace_privacy

if TYPE_CHECKING:
    from bot.service import MentorService

QUESTION_ACTIONS = (
    Action("reply", "Reply", "reply", "primary", opens_reply_form=True),
    Action("skip", "Skip", "skip"),
    Action("snooze", "Remind me later", "snooze"),
)


# The statements every send runs, built once: building one costs more CPU than SQLite
# takes to answer it, and a burst of `start`s sends a first lesson-day each.
_BATCH = (
    select(Delivery, Learner, Workspace)
    .join(Learner, col(Learner.id) == Delivery.learner_id)
    .join(Workspace, col(Workspace.id) == Learner.workspace_id)
    .where(col(Delivery.id).in_(bindparam("ids", expanding=True)))
)
_ENROLMENTS = select(Enrolment).where(col(Enrolment.id).in_(bindparam("ids", expanding=True)))
# The learner's newest lesson question sent before this delivery and not skipped;
# without the limit every earlier question is loaded to keep the first.
_PREVIOUS_QUESTION = (
    select(Delivery)
    .where(
        col(Delivery.learner_id) == bindparam("learner_id"),
        col(Delivery.kind) == "lesson",
        col(Delivery.question).is_not(None),
        col(Delivery.status) == "sent",
        col(Delivery.id) != bindparam("delivery_id"),
        col(Delivery.skipped_at).is_(None),
    )
    .order_by(col(Delivery.sent_at).desc(), col(Delivery.id).desc())
    .limit(1)
)
_ANSWERED = select(Reply.id).where(col(Reply.delivery_id) == bindparam("delivery_id"))
# A question the learner was asked after ``parent_id``, or is being asked now: the
# same rule as the planner's for the reminders it plans.
_NEWER_QUESTION = (
    select(Delivery.id)
    .where(
        col(Delivery.learner_id) == bindparam("learner_id"),
        col(Delivery.kind).in_(("lesson", "practice")),
        col(Delivery.question).is_not(None),
        col(Delivery.id) > bindparam("parent_id"),
        or_(
            col(Delivery.status).in_(("sent", "sending")),
            and_(col(Delivery.status) == "pending", col(Delivery.due_at) <= bindparam("now")),
        ),
    )
    .limit(1)
)


@dataclass(frozen=True)
class Rendered:
    """A delivery made ready to send, with what the dispatcher needs afterwards."""

    message: OutgoingMessage | str  # or the reason it must not be sent
    reminder_schedule: Schedule | None = None  # set when an unanswered question earns one
    learner_id: int | None = None
    dm_channel: str | None = None
    # Extra bookkeeping to do in the transaction that records the send.
    after_sent: Callable[[Session, datetime], None] | None = None
    kind: str = "lesson"


def render_many(svc: MentorService, session: Session, ids: list[int]) -> dict[int, Rendered]:
    from bot.digests import digest_reads

    found = session.exec(_BATCH, params={"ids": ids}).all()
    enrolment_ids = [d.enrolment_id for d, _, _ in found if d.enrolment_id]
    enrolments = {e.id: e for e in session.exec(_ENROLMENTS, params={"ids": enrolment_ids})}
    out = {i: Rendered("the delivery or its learner no longer exists") for i in ids}
    for delivery, learner, workspace in found:
        enrolment = enrolments.get(delivery.enrolment_id) if delivery.enrolment_id else None
        message = _render(svc, session, delivery, learner, workspace, enrolment)
        # Lesson questions and the check-in after an answer each earn one reminder; the
        # weekly practice-phase check-ins and reviews are invitations, not reminded.
        asks = bool(delivery.question) and (
            delivery.kind == "lesson" or (delivery.kind == "practice" and delivery.parent_id)
        )
        out[delivery.id or 0] = Rendered(
            message,
            svc.schedule_for(learner, workspace) if asks else None,
            learner.id,
            learner.dm_channel,
            digest_reads(svc, session, delivery) if delivery.kind == "digest" else None,
            delivery.kind,
        )
    return out


def _still_open(session: Session, learner: Learner, delivery: Delivery) -> str | None:
    """A line about the previous lesson-day's question, if it is still open: said once,
    on the next lesson-day, so an ignored question closes instead of lingering."""
    previous = session.exec(
        _PREVIOUS_QUESTION, params={"learner_id": learner.id, "delivery_id": delivery.id}
    ).first()
    if previous is None or previous.sent_at is None:
        return None
    answered = session.exec(_ANSWERED, params={"delivery_id": previous.id}).first()
    if answered is not None:
        return None
    number = number_of(session, learner.id or 0, previous.id or 0)
    if number is None:
        return None
    asked = preview(previous.question or "", 100)
    return (
        f"Your question from the last lesson-day is still open: “{asked}” Answer it with "
        f"`{grammar.PREFIX} answer {number} …` (or in its thread), or "
        f"`{grammar.PREFIX} skip {number}` to let it go."
    )


def _render(
    svc: MentorService,
    session: Session,
    delivery: Delivery,
    learner: Learner,
    workspace: Workspace,
    enrolment: Enrolment | None,
) -> OutgoingMessage | str:
    from bot.digests import render_digest

    base: dict[str, Any] = {
        "platform": workspace.platform,
        "workspace": workspace.external_id,
        "user": learner.user_id,
        "channel": learner.dm_channel,
        "kind": delivery.kind,
        "delivery_id": delivery.id,
        "delivery_key": delivery.key,
    }
    if delivery.kind == "welcome":
        return OutgoingMessage(
            text=welcome_text(svc, session, delivery, learner, workspace),
            title="Welcome to mentorbot",
            **base,
        )
    if delivery.kind == "notice":
        return OutgoingMessage(text=delivery.body or "", **base)
    if delivery.kind == "digest":
        return render_digest(svc, session, delivery, base)
    course = svc.catalog.get(delivery.course_id)
    lesson = course.lesson(delivery.lesson_id) if course else None
    if lesson is None or course is None:
        return f"lesson {delivery.lesson_id} is not in the content"
    if delivery.kind == "lesson":
        day = lesson.day(delivery.day, svc.settings.snippets_per_day)
        days = lesson.day_count(svc.settings.snippets_per_day)
        lines = [question_privacy(workspace)] if day.question else []
        if delivery.body == "published":
            lines.insert(0, f"{lesson.name} is out: the lesson you asked for. Here is day 1.")
        earlier = _still_open(session, learner, delivery)
        if earlier:
            lines.append(earlier)
        return OutgoingMessage(
            text="\n\n".join(lines),
            title=f"{lesson.name} — day {day.number} of {days}",
            sections=tuple(Section(s.title, s.body) for s in day.snippets),
            question=day.question,
            actions=QUESTION_ACTIONS if day.question else (),
            **base,
        )
    if delivery.origin == "schedule" and (enrolment is None or resting(enrolment)):
        return "the enrolment is paused or gone"
    if delivery.kind == "continue":
        if enrolment is None or enrolment.status != AWAITING_CONTINUE:
            return "the learner already moved on"
        text, actions = svc.continue_text(course, lesson, reminder=delivery.body == "reminder")
        return OutgoingMessage(text=text, actions=actions, **base)
    if delivery.kind == "reminder":
        parent = session.get(Delivery, delivery.parent_id) if delivery.parent_id else None
        if parent is None or parent.skipped_at is not None:
            return "the question was skipped"
        if session.exec(
            select(Reply.id).where(Reply.delivery_id == parent.id, Reply.kind == "answer")
        ).first():
            return "the question was answered"
        # A reminder falling due with (or after) a newer question would put two
        # questions in front of the learner at once; the newer one speaks, and the next
        # lesson-day still mentions an open lesson question. A snooze was asked for with
        # the questions of that moment in view: only one that came since replaces it.
        since = delivery.id if delivery.key.startswith("snooze:") else parent.id
        newer = {"learner_id": learner.id, "parent_id": since, "now": svc.clock()}
        if session.exec(_NEWER_QUESTION, params=newer).first():
            return "a newer question replaced it"
        what = "practice check-in" if parent.kind == "practice" else "question"
        return OutgoingMessage(
            text=f"A gentle reminder: this {what} is still open. Reply here when you're "
            "ready, or skip it.",
            question=parent.question,
            actions=QUESTION_ACTIONS[:2],
            **{**base, "delivery_id": parent.id},
        )
    if delivery.kind == "summary":
        if enrolment is None or enrolment.status not in (AWAITING_CONTINUE, WAITING_CONTENT):
            return "the learner already moved on"
        waiting = enrolment.waiting_for_lesson if enrolment.status == WAITING_CONTENT else None
        return _summary(svc, session, delivery, lesson, course, base, waiting)
    if delivery.kind == "review":
        return OutgoingMessage(
            text=question_privacy(workspace),
            title="Looking back",
            question=delivery.question,
            actions=QUESTION_ACTIONS[:2],
            **base,
        )
    if delivery.kind == "practice":
        return OutgoingMessage(
            text=question_privacy(workspace),
            title="Practice check-in",
            question=delivery.question,
            actions=QUESTION_ACTIONS,
            **base,
        )
    return f"unknown delivery kind {delivery.kind!r}"


def _summary(
    svc: MentorService,
    session: Session,
    delivery: Delivery,
    lesson: Lesson,
    course: Course,
    base: dict[str, Any],
    waiting: str | None = None,
) -> OutgoingMessage:
    """The learner's answers to a lesson, as a message and as a file to keep. ``waiting``:
    the lesson they already asked for, when they did so after this summary was queued
    (it is not offered again)."""
    asked = {
        d.day: d
        for d in session.exec(
            select(Delivery).where(
                Delivery.enrolment_id == delivery.enrolment_id,
                Delivery.kind == "lesson",
                Delivery.lesson_id == lesson.id,
            )
        ).all()
    }
    sections: list[Section] = []
    lines: list[str] = []
    answered = 0
    for day in lesson.days(svc.settings.snippets_per_day):
        if not day.question:
            continue
        sent = asked.get(day.number)
        answer = answer_to(session, delivery.learner_id, sent.id or 0) if sent else None
        if answer is not None:
            written = answer.text
            answered += 1
        elif sent is not None and sent.skipped_at is not None:
            written = "(skipped)"
        else:
            written = "(not answered)"
        sections.append(Section(day.question, learner_text(clip(written, 600))))
        lines += [f"## {day.question}", "", written, ""]
    text, actions = svc.continue_text(course, lesson, reminder=True)
    if waiting is not None:
        text, actions = f"I'll send lesson {waiting} as soon as it is published.", ()
    if answered:
        title = f"Your answers in {lesson.name}"
        intro = "Here is what you wrote, to keep (also as a file)."
        filename, label = f"my-answers-{lesson.id}.md", "My answers"
    else:
        # "Here is what you wrote" over three "(not answered)" would mock a silent learner.
        title = f"The questions of {lesson.name}"
        intro = (
            "You didn't answer these; here they are to think over whenever you like "
            "(also as a file)."
        )
        filename, label = f"questions-{lesson.id}.md", "The questions"
    content = "\n".join([f"# {title}", "", *lines]).encode("utf-8")
    return OutgoingMessage(
        title=title,
        text=f"{intro} {text}",
        sections=tuple(sections),
        actions=actions,
        attachments=(Attachment(filename, content, "text/markdown", label),),
        **base,
    )


def welcome_text(
    svc: MentorService, session: Session, delivery: Delivery, learner: Learner, workspace: Workspace
) -> str:
    enrolment = session.get(Enrolment, delivery.enrolment_id) if delivery.enrolment_id else None
    course = svc.catalog.get(delivery.course_id)
    schedule = svc.schedule_for(learner, workspace)
    who = (
        mention(enrolment.assigned_by) if enrolment and enrolment.assigned_by else "This workspace"
    )
    first = (
        f"{schedule.local(enrolment.next_due_at):%A %d %B at %H:%M}"
        if enrolment and enrolment.next_due_at
        else "soon"
    )
    return (
        f"Hi {mention(learner.user_id)}! I'm mentorbot, a mentoring bot. {who} enrolled you "
        f"in **{course.title if course else delivery.course_id}**: a few short snippets and one "
        f"discussion question each lesson-day; just reply in this DM. Your first lesson: "
        f"{first}. {schedule_sentence(schedule, svc.zone_is_default(learner, workspace))} "
        f"{workspace_privacy(workspace)} Say `{grammar.PREFIX} pause` to pause, "
        f"`{grammar.PREFIX} forget-me` to delete your data, or "
        f"`{grammar.PREFIX} help` for everything else."
    )
