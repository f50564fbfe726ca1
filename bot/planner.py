"""The planning pass: turn what is due into outbox rows, in one transaction per batch.

The database says what is due (indexed ``enrolment.next_due_at``, ``delivery.remind_at``
and ``reply.follow_up_at``); the scheduler only calls ``plan`` now and then. A pass
advances every due enrolment to its next local-time slot, so after downtime a learner
gets the missed lesson-day once, not a backlog. On PostgreSQL due rows are locked with
SKIP LOCKED so replicas split the work; on SQLite the transaction is IMMEDIATE.

A pass costs what is due, not who is enrolled: enrolments that wait for the learner
carry no instant and are not in the due index. Due enrolments are planned set-based:
a batch is read as rows, the rules run in Python with one lookup query per batch, and
the batch is written as one INSERT of outbox rows and one UPDATE of the enrolments.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import Session, col, func, select

from bot.bulk import among, rows_select
from bot.context import ACTIVE, AWAITING_CONTINUE, PAUSED, STOPPED, WAITING_CONTENT, resting
from bot.course import Catalog, Course, Lesson
from bot.digests import digest_schedule
from bot.mentoring import (
    PHASE_UNANSWERED_STOP,
    REVIEW_WEEKS,
    next_phase_time,
    not_brought_up,
    phase_prompt,
    phase_stopped,
    practice_for_answer,
    practice_histories,
    practice_prompt,
    review_prompt,
    review_time,
)
from bot.models import Delivery, Digest, Enrolment, Learner, Reply, Workspace, on_its_way
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
PLANNED = (ACTIVE, AWAITING_CONTINUE, WAITING_CONTENT)  # states the planning pass moves on

# The enrolment columns a pass reads, and those it writes back.
_READ = (
    "id",
    "learner_id",
    "course_id",
    "lesson_id",
    "day",
    "status",
    "waiting_for_lesson",
    "away_until",
)
_WRITTEN = ("lesson_id", "day", "status", "waiting_for_lesson", "away_until", "next_due_at")


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


@dataclass(slots=True)
class DueEnrolment:
    """A due enrolment as plain values. A batch is read as rows, moved on by the rules
    and written back in one statement: loading and flushing ORM objects one at a time
    cost the pass more than the rules themselves."""

    id: int
    learner_id: int
    course_id: str
    lesson_id: str
    day: int
    status: str
    waiting_for_lesson: str | None
    away_until: date | None
    next_due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """A schedule and what a pass at one instant needs from it: the learner's local
    date, and the next delivery instant on another day."""

    schedule: Schedule
    today: date
    next: datetime


@dataclass
class _Batch:
    """One batch of a pass: what it queues and writes back, the enrolments whose next
    step needs a lookup (decided for all of them at once), and the schedules, courses
    and lessons its rows share. The catalog is read once, so a reload in the middle of
    a batch does not split it between two versions of a course."""

    now: datetime
    catalog: Catalog
    outbox: list[dict[str, object]] = field(default_factory=list)
    enrolments: list[DueEnrolment] = field(default_factory=list)
    asks: list[tuple[DueEnrolment, Slot, Course, Lesson]] = field(default_factory=list)
    phases: list[tuple[DueEnrolment, Slot]] = field(default_factory=list)
    slots: dict[tuple[object, ...], Slot] = field(default_factory=dict)
    _courses: dict[str, Course | None] = field(default_factory=dict)
    _lessons: dict[tuple[str, str], Lesson | None] = field(default_factory=dict)

    def course(self, course_id: str) -> Course | None:
        if course_id not in self._courses:
            self._courses[course_id] = self.catalog.get(course_id)
        return self._courses[course_id]

    def lesson(self, course: Course, lesson_id: str) -> Lesson | None:
        key = (course.id, lesson_id)
        if key not in self._lessons:
            self._lessons[key] = course.lesson(lesson_id)
        return self._lessons[key]

    def queue(
        self,
        due: DueEnrolment,
        key: str,
        kind: str,
        course_id: str,
        lesson_id: str,
        *,
        question: str | None = None,
        body: str | None = None,
    ) -> None:
        """An outbox row for ``due``, due now and counted toward the daily cap."""
        self.outbox.append(
            {
                "key": key,
                "learner_id": due.learner_id,
                "enrolment_id": due.id,
                "kind": kind,
                "origin": "schedule",
                "course_id": course_id,
                "lesson_id": lesson_id,
                "day": due.day,
                "question": question,
                "body": body,
                "due_at": self.now,
            }
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

    def due_query(self, dialect: str, now: datetime) -> sa.Select[Any]:
        """The next batch of due enrolments, with what their schedules need from the
        learner. The predicate is ``next_due_at <= now`` alone, which the partial index
        ``ix_enrolment_due`` serves exactly; waiting enrolments carry NULL, so they are
        not in it. One found waiting with an instant anyway is read once, given NULL and
        not read again (see ``_due_enrolments``)."""
        e, learner = Enrolment.__table__, Learner.__table__  # type: ignore[attr-defined]
        query = (
            sa.select(
                *(e.c[name] for name in _READ),
                learner.c.workspace_id,
                learner.c.delivery_time,
                learner.c.delivery_days,
                learner.c.timezone,
                learner.c.dm_blocked_at,
            )
            .join(learner, learner.c.id == e.c.learner_id)
            .where(e.c.next_due_at <= now)
            .order_by(e.c.next_due_at)
            .limit(self.batch)
        )
        if dialect == "postgresql":
            query = query.with_for_update(skip_locked=True, of=e)
        return query

    def _due_enrolments(self, session: Session, now: datetime, total: PlanResult) -> int:
        """Move one batch of due enrolments on, set-based: read the batch as rows, apply
        the rules in Python (the lookups they need are one query per batch, not per
        row), then queue every outbox row in one statement and write the enrolments
        back in one more."""
        rows = session.execute(self.due_query(session.get_bind().dialect.name, now)).all()
        if not rows:
            return 0
        batch = _Batch(now, self.service.catalog)
        workspaces = {
            workspace.id: workspace
            for workspace in session.exec(
                select(Workspace).where(col(Workspace.id).in_({row.workspace_id for row in rows}))
            )
        }
        recent = self._recent_scheduled(session, [row.learner_id for row in rows], now)
        idle: list[int] = []
        for row in rows:
            away = row.away_until is not None and row.status != STOPPED
            if not away and (row.status not in PLANNED or row.dm_blocked_at is not None):
                # Waits for the learner (paused, stopped, DMs blocked): nothing is due
                # until they act, and the event that wakes them sets the instant.
                idle.append(row.id)
                continue
            due = DueEnrolment(*row[: len(_READ)])
            slot = self._slot(batch, row, workspaces.get(row.workspace_id))
            if away:
                back = self.service.back_on(slot.schedule, row.away_until)
                if back > now:  # still away (the schedule moved): wake at the new instant
                    due.next_due_at = back
                    batch.enrolments.append(due)
                    continue
                # The away period is over: back to the lesson flow (see ``come_back``).
                if due.status == PAUSED:
                    due.status = WAITING_CONTENT if due.waiting_for_lesson else ACTIVE
                due.away_until = None
            sent_today = sum(
                1
                for at in recent.get(due.learner_id, ())
                if slot.schedule.local_date(at) == slot.today
            )
            due.next_due_at = slot.next
            # A holiday (set after this instant was planned) moves the day on, like a weekend.
            if sent_today < DAILY_CAP and slot.schedule.is_delivery_day(slot.today):
                self._advance(batch, due, slot)
            batch.enrolments.append(due)
        self._ask_to_continue(session, batch)
        self._practice_phase(session, batch)
        queued = queue_many(session, batch.outbox)
        total.lessons += queued["lesson"]
        total.prompts += queued["continue"] + queued["summary"]
        total.practices += queued["practice"]
        self._write_back(session, batch.enrolments, now)
        if idle:
            table = Enrolment.__table__  # type: ignore[attr-defined]
            session.execute(sa.update(table).where(table.c.id.in_(idle)).values(next_due_at=None))
        total.enrolments += len(batch.enrolments)
        return len(rows)

    def _slot(self, batch: _Batch, row: sa.Row[Any], workspace: Workspace | None) -> Slot:
        """The learner's schedule and the instants a pass needs from it, worked out once
        per batch for everyone who shares the settings it is built from (their own
        time, days and zone, else their workspace's)."""
        key = (row.workspace_id, row.delivery_time, row.delivery_days, row.timezone)
        slot = batch.slots.get(key)
        if slot is None:
            # ``schedule_for`` takes a learner: a transient one with the settings it reads.
            learner = Learner(
                workspace_id=row.workspace_id,
                user_id="",
                delivery_time=row.delivery_time,
                delivery_days=row.delivery_days,
                timezone=row.timezone,
            )
            schedule = self.service.schedule_for(learner, workspace)
            today = schedule.local_date(batch.now)
            slot = Slot(schedule, today, schedule.next_after(batch.now, not_on=today))
            batch.slots[key] = slot
        return slot

    def _recent_scheduled(
        self, session: Session, learner_ids: list[int], now: datetime
    ) -> dict[int, list[datetime]]:
        """Bot-initiated deliveries around ``now`` (±26 h covers every local day), per
        learner, for the daily cap: one query for a whole batch."""
        found: dict[int, list[datetime]] = {}
        for learner_id, due in session.exec(
            select(Delivery.learner_id, Delivery.due_at).where(
                among(col(Delivery.learner_id), learner_ids),
                Delivery.origin == "schedule",
                # Named statuses, not "!= cancelled": SQLite then reads each learner's
                # rows around now through (learner_id, due_at) instead of all of them.
                col(Delivery.status).in_(("pending", "sending", "sent", "failed")),
                col(Delivery.due_at) >= now - timedelta(hours=26),
                col(Delivery.due_at) < now + timedelta(hours=26),
            )
        ).all():
            found.setdefault(learner_id, []).append(due)
        return found

    def _advance(self, batch: _Batch, due: DueEnrolment, slot: Slot) -> None:
        """Move one due enrolment on. While lesson-days remain, the next one is queued
        and the enrolment is next due at the next delivery slot (``slot.next``, already
        set). After the last day it waits for the "continue?" prompts, then for the
        practice phase (a week on), then for nothing (None) until the learner acts or
        a reload publishes the lesson they wait for; those steps need lookups and are
        decided for the whole batch at once (``_ask_to_continue``, ``_practice_phase``)."""
        course = batch.course(due.course_id)
        if course is None:
            log.warning("enrolment %s: course %s is gone", due.id, due.course_id)
            due.next_due_at = None
            return
        published = False
        if due.status == WAITING_CONTENT:
            wanted = batch.lesson(course, due.waiting_for_lesson or "")
            if wanted is None:
                batch.phases.append((due, slot))
                return
            due.lesson_id, due.day = wanted.id, 0
            due.status, due.waiting_for_lesson = ACTIVE, None
            published = True
        lesson = batch.lesson(course, due.lesson_id)
        if lesson is None:
            log.warning("enrolment %s: lesson %s is gone", due.id, due.lesson_id)
            due.next_due_at = None
            return
        per_day = self.service.settings.snippets_per_day
        if due.status == ACTIVE and due.day < lesson.day_count(per_day):
            day = lesson.day(due.day + 1, per_day)
            due.day = day.number
            batch.queue(
                due,
                f"lesson:{due.id}:{lesson.id}:{day.number}",
                "lesson",
                course.id,
                lesson.id,
                question=day.question,
                body="published" if published and day.number == 1 else None,
            )
            return
        # Every day of the lesson is out: ask whether to continue once, then a summary of
        # the learner's answers that reminds them once more; then the practice phase.
        due.status = AWAITING_CONTINUE
        batch.asks.append((due, slot, course, lesson))

    def _ask_to_continue(self, session: Session, batch: _Batch) -> None:
        """The "continue?" prompt, then the summary, for the batch's enrolments whose
        lesson is fully out; those asked both times go on to the practice phase."""
        if not batch.asks:
            return
        asked: dict[tuple[int, str], int] = {
            (enrolment_id or 0, lesson_id): count
            for enrolment_id, lesson_id, count in session.exec(
                select(Delivery.enrolment_id, Delivery.lesson_id, func.count())
                .where(
                    col(Delivery.enrolment_id).in_([due.id for due, *_ in batch.asks]),
                    col(Delivery.kind).in_(("continue", "summary")),
                )
                .group_by(col(Delivery.enrolment_id), col(Delivery.lesson_id))
            ).all()
        }
        for due, slot, course, lesson in batch.asks:
            count = asked.get((due.id, lesson.id), 0)
            has_next = course.following(lesson)[0] is not None
            if count < CONTINUE_ASKS and (has_next or count == 0):
                kind = "continue" if count == 0 and has_next else "summary"
                key = f"{kind}:{due.id}:{lesson.id}:{slot.today.isoformat()}"
                batch.queue(due, key, kind, course.id, lesson.id)
                if kind == "summary":
                    due.next_due_at = next_phase_time(slot.schedule, batch.now)
            else:
                batch.phases.append((due, slot))

    def _practice_phase(self, session: Session, batch: _Batch) -> None:
        """Once a week after a lesson, bring back one of its practices not covered yet,
        the one that fits best what the learner wrote; when all are covered the
        enrolment carries nothing due. What was covered and written is read for the
        whole batch in three queries."""
        found: list[tuple[DueEnrolment, Slot, Lesson]] = []
        for due, slot in batch.phases:
            course = batch.course(due.course_id)
            lesson = batch.lesson(course, due.lesson_id) if course else None
            if lesson is None:
                due.next_due_at = None
            else:
                found.append((due, slot, lesson))
        if not found:
            return
        learners = sorted({due.learner_id for due, _, _ in found})
        histories = practice_histories(session, learners)
        answers: dict[tuple[int, str], list[str]] = {}
        for learner_id, lesson_id, text in session.exec(
            select(Reply.learner_id, Reply.lesson_id, Reply.text)
            .where(
                col(Reply.learner_id).in_(learners),
                Reply.kind == "answer",
                col(Reply.lesson_id).in_({lesson.id for _, _, lesson in found}),
            )
            .order_by(col(Reply.id))
        ).all():
            answers.setdefault((learner_id, lesson_id), []).append(text)
        heard = self._phase_heard(session, [due.id for due, _, _ in found])
        for due, slot, lesson in found:
            remaining = not_brought_up(lesson, histories.get(due.learner_id, []))
            written = answers.get((due.learner_id, lesson.id), [])
            practice = choose(remaining, " ".join(written)) if remaining else None
            if practice is None:
                due.next_due_at = None
                continue
            sent = heard.get(due.id, [])
            if len(sent) >= PHASE_UNANSWERED_STOP and not any(sent[-PHASE_UNANSWERED_STOP:]):
                course = batch.course(due.course_id)
                next_id, _, following = course.following(lesson) if course else (None, "", None)
                batch.queue(
                    due,
                    f"notice:phase-stopped:{due.id}:{lesson.id}",
                    "notice",
                    due.course_id,
                    lesson.id,
                    body=phase_stopped(
                        lesson.name,
                        due.waiting_for_lesson,
                        next_id,
                        following is not None,
                        bool(written),
                    ),
                )
                due.next_due_at = None
                continue
            batch.queue(
                due,
                f"phase:{due.id}:{lesson.id}:{normalise(practice)}",
                "practice",
                due.course_id,
                lesson.id,
                question=phase_prompt(lesson.name, practice, written, first=not sent),
                body=practice,
            )
            due.next_due_at = next_phase_time(slot.schedule, batch.now)

    @staticmethod
    def _phase_heard(session: Session, enrolment_ids: list[int]) -> dict[int, list[bool]]:
        """For each enrolment, its weekly practice-phase check-ins sent so far, oldest
        first: whether the learner answered or skipped each. One query for the batch."""
        answered = select(Reply.id).where(col(Reply.delivery_id) == Delivery.id).exists()
        heard: dict[int, list[bool]] = {}
        for enrolment_id, skipped, replied in session.exec(
            select(Delivery.enrolment_id, col(Delivery.skipped_at).is_not(None), answered)
            .where(
                col(Delivery.enrolment_id).in_(enrolment_ids),
                Delivery.kind == "practice",
                col(Delivery.key).startswith("phase:"),
                Delivery.status == "sent",
            )
            .order_by(col(Delivery.id))
        ).all():
            heard.setdefault(enrolment_id or 0, []).append(bool(skipped or replied))
        return heard

    @staticmethod
    def _write_back(session: Session, enrolments: list[DueEnrolment], now: datetime) -> None:
        """Every moved enrolment in one ``UPDATE … FROM`` the batch (``bot.bulk``). The
        rows are locked since the batch read them (SKIP LOCKED on PostgreSQL, the
        IMMEDIATE transaction on SQLite), so nothing written meanwhile is overwritten."""
        if not enrolments:
            return
        table = Enrolment.__table__  # type: ignore[attr-defined]
        names = ("id", *_WRITTEN)
        records = list(map(operator.attrgetter(*names), enrolments))
        columns, parameters = rows_select(table, names, records, session.get_bind().dialect)
        batch = columns.subquery("moved")
        session.execute(
            sa.update(table)
            .where(table.c.id == batch.c.id)
            .values({**{name: batch.c[name] for name in _WRITTEN}, "updated_at": now}),
            parameters,
        )

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
        # "IS NOT NULL" rather than nothing: the indexes on these columns leave out
        # the rows where they are empty, and a database reads such an index only for
        # a query that says so.
        return col(column) > after if after is not None else col(column).is_not(None)

    candidates = [
        session.exec(
            select(func.min(Enrolment.next_due_at)).where(later(Enrolment.next_due_at), _planned())
        ).one(),
        session.exec(
            select(func.min(Delivery.due_at)).where(on_its_way("pending"), later(Delivery.due_at))
        ).one(),
        session.exec(select(func.min(Delivery.remind_at)).where(later(Delivery.remind_at))).one(),
        session.exec(select(func.min(Reply.follow_up_at)).where(later(Reply.follow_up_at))).one(),
        session.exec(select(func.min(Reply.review_at)).where(later(Reply.review_at))).one(),
        session.exec(select(func.min(Digest.next_due_at)).where(later(Digest.next_due_at))).one(),
    ]
    found = [c for c in candidates if c is not None]
    return min(found) if found else None
