"""The planning pass: turn what is due into outbox rows, in one transaction per batch.

The database says what is due (indexed ``enrolment.next_due_at``, ``delivery.remind_at``
and ``reply.follow_up_at``); the scheduler only calls ``plan`` now and then. A pass
advances every due enrolment to its next local-time slot, so after downtime a learner
gets the missed lesson-day once, not a backlog. On PostgreSQL due rows are locked with
SKIP LOCKED so replicas split the work; on SQLite the transaction is IMMEDIATE.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy import true as sa_true
from sqlmodel import Session, col, func, select

from bot.context import ACTIVE, AWAITING_CONTINUE, PAUSED, STOPPED, WAITING_CONTENT, resting
from bot.digests import digest_schedule
from bot.mentoring import (
    REVIEW_WEEKS,
    next_phase_time,
    phase_prompt,
    practice_for_answer,
    practice_prompt,
    remaining_practices,
    review_prompt,
    review_time,
)
from bot.models import Delivery, Digest, Enrolment, Learner, Reply, Workspace
from bot.outbox import queue_delivery, queue_many
from bot.practices import choose, normalise
from bot.retention import prune
from bot.schedule import PRACTICE_OFFSET, QUIET_FROM, Schedule
from bot.service import MentorService

log = logging.getLogger(__name__)
T = TypeVar("T")

DAILY_CAP = 3  # bot-initiated messages per learner per local day
PRUNE_EVERY = timedelta(hours=1)
CONTINUE_ASKS = 2  # "continue?" once, then a summary that reminds; then the learner decides


@dataclass
class PlanResult:
    lessons: int = 0
    prompts: int = 0
    reminders: int = 0
    practices: int = 0
    reviews: int = 0
    digests: int = 0
    enrolments: int = 0

    @property
    def queued(self) -> int:
        return (
            self.lessons
            + self.prompts
            + self.reminders
            + self.practices
            + self.reviews
            + self.digests
        )


class Planner:
    def __init__(self, service: MentorService, batch: int = 500) -> None:
        self.service = service
        self.store = service.store
        self.batch = batch
        self._pruned_at: datetime | None = None

    def plan(
        self, now: datetime | None = None, on_batch: Callable[[], None] | None = None
    ) -> PlanResult:
        """Queue everything due at ``now``; loops over batches until nothing is left.
        ``on_batch`` is called after each batch that queued something is committed, so
        sending can start while the rest of a big morning is still being planned. About
        once an hour it also applies retention (small batches, short locks)."""
        now = now or self.service.clock()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            prune(self.store, now, self.service.settings.retention_days)
        total = PlanResult()
        for step in (
            self._due_enrolments,
            self._due_reminders,
            self._due_practices,
            self._due_reviews,
            self._due_digests,
        ):
            while True:
                queued = total.queued
                found = self.store.run(
                    lambda s, step=step: step(s, now, total), background=on_batch is not None
                )
                if on_batch is not None and total.queued > queued:
                    on_batch()
                if found < self.batch:
                    break
        return total

    def next_due(self, session: Session) -> datetime | None:
        """The earliest instant a pass would find something to plan, read with the
        pass's own predicates through the same indexes, so the engine can wake then
        rather than at the next tick."""
        return next_due(session)

    # ------------------------------------------------------------------ helpers

    def _locked(self, session: Session, query):  # type: ignore[no-untyped-def]
        if session.get_bind().dialect.name == "postgresql":
            return query.with_for_update(skip_locked=True)
        return query

    def _due(self, session: Session, model: type[T], due_column: Any, now: datetime) -> list[T]:
        """A batch of ``model`` rows whose ``due_column`` has come, locked for this pass."""
        query = (
            select(model).where(col(due_column) <= now).order_by(col(due_column)).limit(self.batch)
        )
        return list(session.exec(self._locked(session, query)).all())

    def _schedule(self, session: Session, learner: Learner) -> Schedule:
        workspace = session.get(Workspace, learner.workspace_id)
        return self.service.schedule_for(learner, workspace)

    def _sent_today(
        self, session: Session, learner_id: int, schedule: Schedule, now: datetime
    ) -> int:
        day = schedule.local_date(now)
        start = datetime.combine(day, time(0), tzinfo=schedule.zone)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=schedule.zone)
        return session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.learner_id == learner_id,
                Delivery.origin == "schedule",
                col(Delivery.due_at) >= start,
                col(Delivery.due_at) < end,
                Delivery.status != "cancelled",
            )
        ).one()

    # ------------------------------------------------------------------ lessons

    def _due_enrolments(self, session: Session, now: datetime, total: PlanResult) -> int:
        query = (
            select(Enrolment, Learner, Workspace)
            .join(Learner, col(Learner.id) == Enrolment.learner_id)
            .join(Workspace, col(Workspace.id) == Learner.workspace_id)
            .where(col(Enrolment.next_due_at) <= now, _planned())
            .order_by(col(Enrolment.next_due_at))
            .limit(self.batch)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=Enrolment)  # type: ignore[arg-type]
        rows = session.exec(query).all()
        if not rows:
            return 0
        recent = self._recent_scheduled(session, [learner.id or 0 for _, learner, _ in rows], now)
        lessons: list[dict[str, object]] = []
        for enrolment, learner, workspace in rows:
            schedule = self.service.schedule_for(learner, workspace)
            today = schedule.local_date(now)
            sent_today = sum(
                1 for due in recent.get(learner.id or 0, ()) if schedule.local_date(due) == today
            )
            nxt: datetime | None = schedule.next_after(now, not_on=today)
            if enrolment.away_until is not None:
                back = self.service.back_on(schedule, enrolment.away_until)
                if back > now:  # still away (the schedule moved): wake at the new instant
                    enrolment.next_due_at = back
                    session.add(enrolment)
                    continue
                self.service.come_back(enrolment)
            # A holiday (set after this instant was planned) moves the day on, like a weekend.
            if sent_today < DAILY_CAP and schedule.is_delivery_day(today):
                lesson_row, nxt = self._advance(session, enrolment, schedule, now, total, nxt)
                if lesson_row is not None:
                    lessons.append(lesson_row)
            enrolment.next_due_at = nxt
            enrolment.updated_at = now
            session.add(enrolment)
            total.enrolments += 1
        total.lessons += queue_many(session, lessons)
        return len(rows)

    def _recent_scheduled(
        self, session: Session, learner_ids: list[int], now: datetime
    ) -> dict[int, list[datetime]]:
        """Bot-initiated deliveries around ``now`` (±26 h covers every local day), per
        learner, for the daily cap: one query for a whole batch."""
        found: dict[int, list[datetime]] = {}
        for learner_id, due in session.exec(
            select(Delivery.learner_id, Delivery.due_at).where(
                col(Delivery.learner_id).in_(learner_ids),
                Delivery.origin == "schedule",
                Delivery.status != "cancelled",
                col(Delivery.due_at) >= now - timedelta(hours=26),
                col(Delivery.due_at) < now + timedelta(hours=26),
            )
        ).all():
            found.setdefault(learner_id, []).append(due)
        return found

    def _advance(
        self,
        session: Session,
        enrolment: Enrolment,
        schedule: Schedule,
        now: datetime,
        total: PlanResult,
        nxt: datetime | None,
    ) -> tuple[dict[str, object] | None, datetime | None]:
        """Move one due enrolment on. Returns the lesson row to queue (if any) and when
        the enrolment is next due: the next delivery slot while lesson-days remain, a
        week on in the practice phase, never (None) once there is nothing left to send
        until the learner acts or a reload publishes the lesson they wait for."""
        course = self.service.catalog.get(enrolment.course_id)
        if course is None:
            log.warning("enrolment %s: course %s is gone", enrolment.id, enrolment.course_id)
            return None, None
        published = False
        if enrolment.status == WAITING_CONTENT:
            wanted = course.lesson(enrolment.waiting_for_lesson or "")
            if wanted is None:
                return self._practice_phase(session, enrolment, schedule, now, total)
            enrolment.lesson_id, enrolment.day = wanted.id, 0
            enrolment.status, enrolment.waiting_for_lesson = ACTIVE, None
            published = True
        lesson = course.lesson(enrolment.lesson_id)
        if lesson is None:
            log.warning("enrolment %s: lesson %s is gone", enrolment.id, enrolment.lesson_id)
            return None, None
        days = lesson.day_count(self.service.settings.snippets_per_day)
        if enrolment.status == ACTIVE and enrolment.day < days:
            day = lesson.day(enrolment.day + 1, self.service.settings.snippets_per_day)
            enrolment.day = day.number
            return {
                "key": f"lesson:{enrolment.id}:{lesson.id}:{day.number}",
                "learner_id": enrolment.learner_id,
                "enrolment_id": enrolment.id,
                "kind": "lesson",
                "origin": "schedule",
                "course_id": course.id,
                "lesson_id": lesson.id,
                "day": day.number,
                "question": day.question,
                "body": "published" if published and day.number == 1 else None,
                "due_at": now,
            }, nxt
        # Every day of the lesson is out: ask whether to continue once, then a summary of
        # the learner's answers that reminds them once more; then the practice phase.
        enrolment.status = AWAITING_CONTINUE
        asked = session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.enrolment_id == enrolment.id,
                col(Delivery.kind).in_(("continue", "summary")),
                Delivery.lesson_id == lesson.id,
            )
        ).one()
        has_next = course.following(lesson)[0] is not None
        if asked < CONTINUE_ASKS and (has_next or asked == 0):
            kind = "continue" if asked == 0 and has_next else "summary"
            queued = queue_delivery(
                session,
                key=f"{kind}:{enrolment.id}:{lesson.id}:{schedule.local_date(now).isoformat()}",
                learner_id=enrolment.learner_id,
                enrolment_id=enrolment.id,
                kind=kind,
                origin="schedule",
                course_id=course.id,
                lesson_id=lesson.id,
                day=enrolment.day,
                due_at=now,
            )
            total.prompts += queued is not None
            return None, next_phase_time(schedule, now) if kind == "summary" else nxt
        return self._practice_phase(session, enrolment, schedule, now, total)

    def _practice_phase(
        self,
        session: Session,
        enrolment: Enrolment,
        schedule: Schedule,
        now: datetime,
        total: PlanResult,
    ) -> tuple[None, datetime | None]:
        """Once a week after a lesson, bring back one of its practices not covered yet,
        the one that fits best what the learner wrote. None when all are covered."""
        course = self.service.catalog.get(enrolment.course_id)
        lesson = course.lesson(enrolment.lesson_id) if course else None
        if lesson is None:
            return None, None
        remaining = remaining_practices(session, enrolment.learner_id, lesson)
        if not remaining:
            return None, None
        answers = list(
            session.exec(
                select(Reply.text).where(
                    Reply.learner_id == enrolment.learner_id,
                    Reply.kind == "answer",
                    Reply.lesson_id == lesson.id,
                )
            ).all()
        )
        practice = choose(remaining, " ".join(answers))
        if practice is None:
            return None, None
        queued = queue_delivery(
            session,
            key=f"phase:{enrolment.id}:{lesson.id}:{normalise(practice)}",
            learner_id=enrolment.learner_id,
            enrolment_id=enrolment.id,
            kind="practice",
            origin="schedule",
            course_id=enrolment.course_id,
            lesson_id=lesson.id,
            day=enrolment.day,
            question=phase_prompt(lesson.name, practice, answers),
            body=practice,
            due_at=now,
        )
        total.practices += queued is not None
        return None, next_phase_time(schedule, now)

    # ------------------------------------------------------------------ nudges

    def _due_reminders(self, session: Session, now: datetime, total: PlanResult) -> int:
        rows = self._due(session, Delivery, Delivery.remind_at, now)
        for question in rows:
            question.remind_at = None
            session.add(question)
            if question.status != "sent" or question.skipped_at is not None:
                continue
            answered = session.exec(
                select(Reply.id).where(Reply.delivery_id == question.id).limit(1)
            ).first()
            if answered is not None:
                continue
            enrolment = (
                session.get(Enrolment, question.enrolment_id) if question.enrolment_id else None
            )
            learner = session.get(Learner, question.learner_id)
            if learner is None or enrolment is None or resting(enrolment):
                continue
            schedule = self._schedule(session, learner)
            local = schedule.local(now)
            if local.time() >= QUIET_FROM or not schedule.is_delivery_day(local.date()):
                continue
            if question.sent_at is None or schedule.local_date(question.sent_at) != local.date():
                continue  # a reminder belongs to the day its question was asked
            newer = session.exec(
                select(Delivery.id)
                .where(
                    Delivery.learner_id == learner.id,
                    col(Delivery.kind).in_(("lesson", "practice")),
                    col(Delivery.id) > question.id,
                )
                .limit(1)
            ).first()
            if newer is not None:
                continue  # a newer question replaced this one
            if self._sent_today(session, learner.id or 0, schedule, now) >= DAILY_CAP:
                continue
            total.reminders += self._nudge(
                session, question, f"remind:{question.id}", "reminder", now
            )
        return len(rows)

    @staticmethod
    def _nudge(
        session: Session,
        question: Delivery,
        key: str,
        kind: str,
        now: datetime,
        prompt: str | None = None,
        body: str | None = None,
    ) -> bool:
        """Queue a follow-up about ``question`` (once per key); True if it is new."""
        return (
            queue_delivery(
                session,
                key=key,
                learner_id=question.learner_id,
                enrolment_id=question.enrolment_id,
                parent_id=question.id,
                kind=kind,
                origin="schedule",
                course_id=question.course_id,
                lesson_id=question.lesson_id,
                day=question.day,
                question=prompt,
                body=body,
                due_at=now,
            )
            is not None
        )

    def _due_practices(self, session: Session, now: datetime, total: PlanResult) -> int:
        rows = self._due(session, Reply, Reply.follow_up_at, now)
        for reply in rows:
            reply.follow_up_at = None
            session.add(reply)
            learner = session.get(Learner, reply.learner_id)
            question = session.get(Delivery, reply.delivery_id) if reply.delivery_id else None
            if learner is None or question is None or question.enrolment_id is None:
                continue
            enrolment = session.get(Enrolment, question.enrolment_id)
            if enrolment is not None and enrolment.away_until and enrolment.next_due_at:
                reply.follow_up_at = enrolment.next_due_at + PRACTICE_OFFSET  # after the away
                continue
            if enrolment is None or resting(enrolment):
                continue
            course = self.service.catalog.get(reply.course_id)
            lesson = course.lesson(reply.lesson_id) if course else None
            if lesson is None or not lesson.practices:
                continue
            schedule = self._schedule(session, learner)
            if (
                not schedule.is_delivery_day(schedule.local_date(now))
                or self._sent_today(session, learner.id or 0, schedule, now) >= DAILY_CAP
            ):
                reply.follow_up_at = schedule.next_after(now) + PRACTICE_OFFSET
                continue
            practice = reply.practice or practice_for_answer(
                session, learner.id or 0, lesson, reply.question, reply.text
            )
            if practice is None:
                continue
            prompt = practice_prompt(lesson.name, practice, reply.text)
            total.practices += self._nudge(
                session, question, f"practice:{question.id}", "practice", now, prompt, practice
            )
        return len(rows)

    def _due_reviews(self, session: Session, now: datetime, total: PlanResult) -> int:
        """Spaced review: about 1, 3 and 8 weeks after an answer the learner sees it
        again and is asked what they would answer today. A review never lands on a day
        that already had two bot-initiated messages; it moves to the next delivery day."""
        rows = self._due(session, Reply, Reply.review_at, now)
        for reply in rows:
            reply.review_at = None
            session.add(reply)
            question = session.get(Delivery, reply.delivery_id) if reply.delivery_id else None
            learner = session.get(Learner, reply.learner_id)
            if reply.kind != "answer" or question is None or learner is None:
                continue
            enrolment = (
                session.get(Enrolment, question.enrolment_id) if question.enrolment_id else None
            )
            if enrolment is None or enrolment.status == STOPPED:
                continue
            schedule = self._schedule(session, learner)
            later = schedule.next_after(now) + PRACTICE_OFFSET
            if (
                resting(enrolment)
                or not schedule.is_delivery_day(schedule.local_date(now))
                or self._sent_today(session, learner.id or 0, schedule, now) >= DAILY_CAP - 1
                or self._busy_near(session, learner.id or 0, now)
            ):
                reply.review_at = later
                continue
            key = f"review:{reply.id}:{reply.reviews_done}"
            total.reviews += self._nudge(
                session, question, key, "review", now, review_prompt(reply, now)
            )
            reply.reviews_done += 1
            if reply.reviews_done < len(REVIEW_WEEKS):
                reply.review_at = max(
                    review_time(schedule, reply.created_at, reply.reviews_done), later
                )
        return len(rows)

    @staticmethod
    def _busy_near(session: Session, learner_id: int, now: datetime) -> bool:
        """Another bot-initiated message within the hour: a review waits a day rather
        than arriving together with it."""
        return (
            session.exec(
                select(Delivery.id)
                .where(
                    Delivery.learner_id == learner_id,
                    Delivery.origin == "schedule",
                    Delivery.status != "cancelled",
                    col(Delivery.due_at) > now - timedelta(hours=1),
                    col(Delivery.due_at) <= now + timedelta(hours=1),
                )
                .limit(1)
            ).first()
            is not None
        )

    def _due_digests(self, session: Session, now: datetime, total: PlanResult) -> int:
        rows = self._due(session, Digest, Digest.next_due_at, now)
        for digest in rows:
            workspace = session.get(Workspace, digest.workspace_id)
            if workspace is None or digest.created_by is None:
                session.delete(digest)
                continue
            schedule = digest_schedule(self.service, workspace, digest.frequency)
            course = self.service.workspace_course(workspace)
            queued = queue_delivery(
                session,
                key=f"digest:{digest.id}:{schedule.local_date(now).isoformat()}",
                learner_id=digest.created_by,
                digest_id=digest.id,
                channel=digest.channel,
                kind="digest",
                origin="learner",  # posted in a channel: not part of anyone's daily cap
                course_id=course.id,
                lesson_id=course.first_lesson().id,
                day=0,
                due_at=now,
            )
            total.digests += queued is not None
            digest.next_due_at = schedule.next_after(now, not_on=schedule.local_date(now))
            session.add(digest)
        return len(rows)


def _planned() -> ColumnElement[bool]:
    """Enrolments the planner moves on when their ``next_due_at`` comes: those in the
    lesson flow, and away ones (their instant is the end of the away period)."""
    return or_(
        col(Enrolment.status).in_((ACTIVE, AWAITING_CONTINUE, WAITING_CONTENT)),
        and_(col(Enrolment.away_until).is_not(None), col(Enrolment.status) == PAUSED),
    )


def next_due(session: Session, after: datetime | None = None) -> datetime | None:
    """The earliest instant (after ``after``, when given) at which the engine has
    something to do: a lesson-day, a queued delivery or its retry, a reminder, a
    check-in, a review or a digest. Each is an indexed column read with the pass's own
    predicate, so this is a handful of cheap ``MIN`` lookups."""

    def later(column: Any) -> Any:
        return col(column) > after if after is not None else sa_true()

    candidates = [
        session.exec(
            select(func.min(Enrolment.next_due_at)).where(later(Enrolment.next_due_at), _planned())
        ).one(),
        session.exec(
            select(func.min(Delivery.due_at)).where(
                Delivery.status == "pending", later(Delivery.due_at)
            )
        ).one(),
        session.exec(select(func.min(Delivery.remind_at)).where(later(Delivery.remind_at))).one(),
        session.exec(select(func.min(Reply.follow_up_at)).where(later(Reply.follow_up_at))).one(),
        session.exec(select(func.min(Reply.review_at)).where(later(Reply.review_at))).one(),
        session.exec(select(func.min(Digest.next_due_at)).where(later(Digest.next_due_at))).one(),
    ]
    found = [c for c in candidates if c is not None]
    return min(found) if found else None
