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

from sqlmodel import Session, col, func, select

from bot.models import Delivery, Digest, Enrolment, Learner, Reply, Workspace
from bot.outbox import queue_delivery, queue_many
from bot.schedule import PRACTICE_OFFSET, QUIET_FROM, Schedule
from bot.service import (
    ACTIVE,
    AWAITING_CONTINUE,
    PAUSED,
    WAITING_CONTENT,
    MentorService,
)
from bot.text import preview

log = logging.getLogger(__name__)
T = TypeVar("T")

DAILY_CAP = 3  # bot-initiated messages per learner per local day
# Enrolments the planner moves on when their ``next_due_at`` comes.
PLANNED = (ACTIVE, AWAITING_CONTINUE, WAITING_CONTENT)
CONTINUE_ASKS = 3  # how many delivery days we ask "continue?" before leaving it to the learner


@dataclass
class PlanResult:
    lessons: int = 0
    prompts: int = 0
    reminders: int = 0
    practices: int = 0
    digests: int = 0
    enrolments: int = 0

    @property
    def queued(self) -> int:
        return self.lessons + self.prompts + self.reminders + self.practices + self.digests


class Planner:
    def __init__(self, service: MentorService, batch: int = 500) -> None:
        self.service = service
        self.store = service.store
        self.batch = batch

    def plan(
        self, now: datetime | None = None, on_batch: Callable[[], None] | None = None
    ) -> PlanResult:
        """Queue everything due at ``now``; loops over batches until nothing is left.
        ``on_batch`` is called after each batch that queued something is committed, so
        sending can start while the rest of a big morning is still being planned."""
        now = now or self.service.clock()
        total = PlanResult()
        for step in (
            self._due_enrolments,
            self._due_reminders,
            self._due_practices,
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
        found = [
            session.exec(
                select(func.min(Enrolment.next_due_at)).where(col(Enrolment.status).in_(PLANNED))
            ).one(),
            session.exec(select(func.min(Delivery.remind_at))).one(),
            session.exec(select(func.min(Reply.follow_up_at))).one(),
            session.exec(select(func.min(Digest.next_due_at))).one(),
        ]
        return min((t for t in found if t is not None), default=None)

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
            .where(
                col(Enrolment.next_due_at) <= now,
                col(Enrolment.status).in_(PLANNED),
            )
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
            if sent_today < DAILY_CAP:
                lesson_row = self._advance(session, enrolment, schedule, now, total)
                if lesson_row is not None:
                    lessons.append(lesson_row)
            enrolment.next_due_at = schedule.next_after(now, not_on=today)
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
    ) -> dict[str, object] | None:
        """Move one due enrolment on; returns the lesson row to queue, if any."""
        course = self.service.catalog.get(enrolment.course_id)
        if course is None:
            log.warning("enrolment %s: course %s is gone", enrolment.id, enrolment.course_id)
            return None
        if enrolment.status == WAITING_CONTENT:
            wanted = course.lesson(enrolment.waiting_for_lesson or "")
            if wanted is None:
                return None
            enrolment.lesson_id, enrolment.day = wanted.id, 0
            enrolment.status, enrolment.waiting_for_lesson = ACTIVE, None
        lesson = course.lesson(enrolment.lesson_id)
        if lesson is None:
            log.warning("enrolment %s: lesson %s is gone", enrolment.id, enrolment.lesson_id)
            return None
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
                "due_at": now,
            }
        # Every day of the lesson is out: ask whether to continue (a few times at most).
        asked = session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.enrolment_id == enrolment.id,
                Delivery.kind == "continue",
                Delivery.lesson_id == lesson.id,
            )
        ).one()
        enrolment.status = AWAITING_CONTINUE
        if asked >= CONTINUE_ASKS or course.following(lesson)[0] is None:
            return None
        queued = queue_delivery(
            session,
            key=f"continue:{enrolment.id}:{lesson.id}:{schedule.local_date(now).isoformat()}",
            learner_id=enrolment.learner_id,
            enrolment_id=enrolment.id,
            kind="continue",
            origin="schedule",
            course_id=course.id,
            lesson_id=lesson.id,
            day=enrolment.day,
            due_at=now,
        )
        total.prompts += queued is not None
        return None

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
            if learner is None or enrolment is None or enrolment.status == PAUSED:
                continue
            schedule = self._schedule(session, learner)
            local = schedule.local(now)
            if local.time() >= QUIET_FROM or local.weekday() not in schedule.days:
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
            if enrolment is None or enrolment.status == PAUSED:
                continue
            course = self.service.catalog.get(reply.course_id)
            lesson = course.lesson(reply.lesson_id) if course else None
            if lesson is None or not lesson.practices:
                continue
            schedule = self._schedule(session, learner)
            if schedule.local(now).weekday() not in schedule.days:
                continue
            if self._sent_today(session, learner.id or 0, schedule, now) >= DAILY_CAP:
                reply.follow_up_at = schedule.next_after(now) + PRACTICE_OFFSET
                continue
            done = session.exec(
                select(func.count())
                .select_from(Delivery)
                .where(
                    Delivery.learner_id == learner.id,
                    Delivery.kind == "practice",
                    Delivery.lesson_id == lesson.id,
                )
            ).one()
            practice = lesson.practices[done % len(lesson.practices)]
            prompt = (
                f"A leadership practice from {lesson.name}: **{practice}**. "
                f"You wrote: “{preview(reply.text, 160)}”. How have you applied it since?"
            )
            total.practices += self._nudge(
                session, question, f"practice:{question.id}", "practice", now, prompt
            )
        return len(rows)

    def _due_digests(self, session: Session, now: datetime, total: PlanResult) -> int:
        rows = self._due(session, Digest, Digest.next_due_at, now)
        for digest in rows:
            workspace = session.get(Workspace, digest.workspace_id)
            if workspace is None or digest.created_by is None:
                session.delete(digest)
                continue
            schedule = self.service._digest_schedule(workspace, digest.frequency)
            course = self.service._workspace_course(workspace)
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
