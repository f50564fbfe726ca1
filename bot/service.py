"""The mentoring core: turns one incoming event into answers and queued deliveries.

Everything here is platform-neutral and synchronous; adapters call it through
``bot.hub.Hub``, which runs it off the event loop. The path of a message:

1. ``handle`` reads the text with ``bot.router.read_text`` *before* opening a
   transaction, so a command is recognised (or refused as too long) without holding
   the write lock.
2. Inside one unit of work it finds the workspace and learner, then either runs the
   command's handler from ``bot.handlers.HANDLERS`` or files free text with
   ``bot.handlers.answers.free_text``, which asks ``bot.router.route`` where it goes.

A crash part-way leaves the database as it was before the event. The lesson flow
(deliver the next day, ask to continue, move to the next lesson) lives here because
commands, the planner and answers all share it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, delete, func, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from bot import commands as grammar
from bot.commands import Command, CommandError
from bot.config import Settings
from bot.context import (
    ACTIVE,
    AWAITING_CONTINUE,
    CURRENT_STATES,
    PAUSED,
    STOPPED,
    WAITING_CONTENT,
    Context,
)
from bot.course import Catalog, Course, Lesson, Problem, load_catalog
from bot.db import Store, make_room
from bot.mentoring import next_phase_time
from bot.messages import Action, EventKind, IncomingEvent, Outcome, OutgoingMessage
from bot.models import Delivery, Digest, Enrolment, Learner, Reply, ReplyRead, Workspace
from bot.outbox import insert_or_get, queue_delivery
from bot.router import TextReading, Verdict, read_text
from bot.schedule import Schedule
from bot.text import MAX_REPLY_CHARS
from bot.wording import when

log = logging.getLogger(__name__)

DIRECT_WORKSPACE = "direct"  # for DMs from users no workspace knows yet
# Commands that only read: answered without the write lock.
READ_ONLY_COMMANDS = frozenset({"help", "courses", "progress", "history", "open", "team"})

# Every command looks up its workspace, its person and their enrolment. These statements
# are built once: building one costs more CPU than SQLite takes to answer it, and under
# a burst of commands that CPU is what the answers queue for.
_WORKSPACE = select(Workspace).where(
    col(Workspace.platform) == bindparam("platform"),
    col(Workspace.external_id) == bindparam("external_id"),
)
_LEARNER = select(Learner).where(
    col(Learner.workspace_id) == bindparam("workspace_id"),
    col(Learner.user_id) == bindparam("user_id"),
)
_NEWER = aliased(Enrolment)
# A read-only command's workspace, person and current enrolment (the newest one in a
# current state, as _CURRENT_ENROLMENT finds it; else their newest, which tells someone
# a lead unenrolled what happened) in one statement: nearly every one of them shows the
# enrolment, and on PostgreSQL each statement is a round trip.
_PERSON = (
    select(Workspace, Learner, Enrolment)
    .join(Learner, col(Learner.workspace_id) == Workspace.id)
    .outerjoin(
        Enrolment,
        col(Enrolment.id)
        == func.coalesce(
            select(func.max(_NEWER.id))
            .where(_NEWER.learner_id == Learner.id, col(_NEWER.status).in_(CURRENT_STATES))
            .correlate(Learner)
            .scalar_subquery(),
            select(func.max(_NEWER.id))
            .where(_NEWER.learner_id == Learner.id)
            .correlate(Learner)
            .scalar_subquery(),
        ),
    )
    .where(
        col(Workspace.platform) == bindparam("platform"),
        col(Workspace.external_id) == bindparam("external_id"),
        col(Learner.user_id) == bindparam("user_id"),
    )
)
_CURRENT_ENROLMENT = (
    select(Enrolment)
    .where(
        col(Enrolment.learner_id) == bindparam("learner_id"),
        col(Enrolment.status).in_(CURRENT_STATES),
    )
    .order_by(col(Enrolment.id).desc())
)

# Re-exported for the planner and tests, which speak of enrolment states.
__all__ = [
    "ACTIVE",
    "AWAITING_CONTINUE",
    "PAUSED",
    "STOPPED",
    "WAITING_CONTENT",
    "CatalogHolder",
    "Context",
    "MentorService",
]


@dataclass
class _ReadContext(Context):
    """The context of a read-only command, with the learner's current enrolment read
    in the same statement as the learner (see ``_PERSON``)."""

    current: Enrolment | None = None
    newest: Enrolment | None = None  # when there is no current one


class CatalogHolder:
    """The course catalog in use; swapped whole when content is reloaded."""

    def __init__(self, catalog: Catalog, path: Path | None = None, watch: bool = False) -> None:
        self.catalog = catalog
        self.path = path
        # Only a watched folder needs a baseline; otherwise start-up skips the walk.
        self._seen = self.fingerprint() if watch else ()

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Name, size and modification time of every file in the content folder."""
        if self.path is None or not self.path.is_dir():
            return ()
        files = sorted(f for f in self.path.rglob("*") if f.is_file())
        return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)

    def changed(self) -> bool:
        """True once after any lesson file was added, edited or removed."""
        now = self.fingerprint()
        if now == self._seen:
            return False
        self._seen = now
        return True

    def reload(self) -> list[Problem]:
        """Load the content folder again. On errors the last good catalog stays in use;
        the problems (file and line) are returned either way."""
        if self.path is None:
            return []
        catalog, problems = load_catalog(self.path)
        if catalog is not None:
            self.catalog = catalog
        return problems


class MentorService:
    def __init__(
        self,
        store: Store,
        catalog: CatalogHolder,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.catalog_holder = catalog
        self.settings = settings
        self.clock = clock

    @property
    def catalog(self) -> Catalog:
        return self.catalog_holder.catalog

    # ------------------------------------------------------------------ entry point

    def handle(self, event: IncomingEvent) -> Outcome:
        reading = self._read(event)
        if self._reads_only(reading):
            # Known people asking for a read-only answer need no write lock, so they are
            # never queued behind a fan-out or another learner's answer.
            # Each statement alone: what a command shows is read as of each statement in
            # any case (READ COMMITTED), so no transaction is opened around them.
            answered = self.store.read(
                lambda session: self._handle_read(session, event, reading), autocommit=True
            )
            if answered is not None:
                return answered
        return self.store.run(lambda session: self._handle(session, event, reading))

    @staticmethod
    def _reads_only(reading: TextReading | None) -> bool:
        if reading is None or reading.verdict is not Verdict.COMMAND:
            return False
        try:
            command = grammar.parse_command(reading.command or "")
        except CommandError:
            return False
        if command.name == "schedule":
            return not command.args
        return command.name in READ_ONLY_COMMANDS

    def _handle_read(
        self, session: Session, event: IncomingEvent, reading: TextReading | None
    ) -> Outcome | None:
        """A read-only command for a workspace and learner that exist already; None
        sends the event down the writing path (someone new, or a changed profile)."""
        if not event.workspace or reading is None:
            return None
        found = session.exec(
            _PERSON,
            params={
                "platform": event.platform,
                "external_id": event.workspace,
                "user_id": event.user,
            },
        ).first()
        if found is None:
            return None
        workspace, learner, enrolment = found
        current = enrolment if enrolment and enrolment.status in CURRENT_STATES else None
        if (event.user_name and learner.display_name != event.user_name) or (
            event.timezone and not learner.timezone
        ):
            return None  # the profile changed: record it on the writing path
        outcome = Outcome()
        ctx = _ReadContext(session, event, workspace, learner, current, enrolment)
        self.run_command(ctx, reading.command or "", outcome)
        return outcome

    @staticmethod
    def _read(event: IncomingEvent) -> TextReading | None:
        """What the words are, decided outside the transaction (no lock is held while a
        long text is looked at)."""
        if event.kind is EventKind.COMMAND or event.kind is EventKind.ACTION:
            text = event.text.strip()
            if len(text) > 4_000:
                return read_text("/mentor " + text, max_reply_chars=MAX_REPLY_CHARS)
            return TextReading(Verdict.COMMAND, command=text)
        if event.kind is EventKind.MESSAGE:
            return read_text(event.text, max_reply_chars=MAX_REPLY_CHARS)
        return None

    def _handle(
        self, session: Session, event: IncomingEvent, reading: TextReading | None
    ) -> Outcome:
        from bot.handlers import answers

        workspace = self._workspace(session, event)
        if event.kind is EventKind.JOINED and not workspace.auto_enrol:
            return Outcome()  # someone joined the workspace: store nothing about them
        learner = self._learner(session, workspace, event)
        ctx = Context(session, event, workspace, learner)
        outcome = Outcome()
        if event.kind is EventKind.JOINED:
            if workspace.auto_enrol and self.current_enrolment(session, learner) is None:
                welcome = self.enrol(ctx, learner, self.workspace_course(workspace).id, None)
                if welcome is not None:
                    outcome.deliveries.append(welcome)
        elif event.kind is EventKind.EDIT:
            answers.edit(self, ctx, outcome)
        elif reading is None:
            return outcome
        elif reading.verdict is Verdict.COMMAND:
            self.run_command(ctx, reading.command or "", outcome)
        elif reading.verdict is Verdict.TEXT:
            answers.free_text(self, ctx, outcome)
        else:
            answers.unusable(self, ctx, reading, outcome)
        return outcome

    def run_command(self, ctx: Context, text: str, outcome: Outcome) -> None:
        """Parse and run one command through the handler table."""
        from bot.handlers import HANDLERS

        try:
            command = grammar.parse_command(text)
        except CommandError as exc:
            outcome.replies.append(ctx.answer(f"{exc}\n\n{grammar.help_text(ctx.is_lead)}"))
            return
        if command.spec.lead_only and not ctx.is_lead:
            outcome.replies.append(ctx.answer(self.only_leads(command)))
            return
        HANDLERS[command.name](self, ctx, command, outcome)

    @staticmethod
    def only_leads(command: Command) -> str:
        return (
            f"Only leads can use `{grammar.PREFIX} {command.name}`. Leads are the workspace's "
            "admins and owners (on Discord: members who can manage the server or hold the "
            "lead role), whoever installed the app, and people a lead added with "
            f"`{grammar.PREFIX} leads add @name`."
        )

    def _workspace(self, session: Session, event: IncomingEvent) -> Workspace:
        if not event.workspace:
            return self._dm_workspace(session, event)
        key: dict[str, object] = {"platform": event.platform, "external_id": event.workspace}
        # Looked up first: the workspace nearly always exists, and then the insert that
        # would find it there is a statement saved.
        workspace = session.exec(_WORKSPACE, params=key).first()
        if workspace is None:
            values = {"name": event.workspace_name, "created_at": self.clock()}
            workspace = insert_or_get(session, Workspace, key, values)
        if event.workspace_name and workspace.name != event.workspace_name:
            workspace.name = event.workspace_name
        return workspace

    def _dm_workspace(self, session: Session, event: IncomingEvent) -> Workspace:
        """A DM that names no workspace (Discord DMs carry no guild): the workspace of the
        delivery it answers, else where this user most recently did something with a
        course, else a per-platform one."""
        from bot.questions import sent_as

        if event.delivery_id is not None or event.answers_message:
            query = (
                select(Workspace)
                .join(Learner, col(Learner.workspace_id) == Workspace.id)
                .join(Delivery, col(Delivery.learner_id) == Learner.id)
                .where(Workspace.platform == event.platform, Learner.user_id == event.user)
            )
            if event.delivery_id is not None:
                query = query.where(Delivery.id == event.delivery_id)
            else:
                query = query.where(sent_as(event.answers_message or ""))
            via_delivery = session.exec(query).first()
            if via_delivery is not None:
                return via_delivery
        found = session.exec(
            select(Workspace)
            .join(Learner, col(Learner.workspace_id) == Workspace.id)
            .join(Enrolment, col(Enrolment.learner_id) == Learner.id, isouter=True)
            .where(Workspace.platform == event.platform, Learner.user_id == event.user)
            .order_by(col(Enrolment.updated_at).desc().nulls_last(), col(Learner.id).desc())
        ).first()
        if found is not None:
            return found
        return self._workspace(session, replace(event, workspace=DIRECT_WORKSPACE))

    def _learner(self, session: Session, workspace: Workspace, event: IncomingEvent) -> Learner:
        key: dict[str, object] = {"workspace_id": workspace.id, "user_id": event.user}
        # Looked up first, as the workspace: most events come from people already known.
        learner = session.exec(_LEARNER, params=key).first()
        if learner is None:
            values: dict[str, object] = {
                "display_name": event.user_name,
                "timezone": event.timezone,
                # Platform admins are leads per event (they may lose the role); only
                # `leads add` stores the role.
                "role": "learner",
                "created_at": self.clock(),
            }
            learner = insert_or_get(session, Learner, key, values)
        if event.user_name and learner.display_name != event.user_name:
            learner.display_name = event.user_name
        if event.timezone and not learner.timezone:
            learner.timezone = event.timezone
        if learner.dm_blocked_at is not None and event.kind is EventKind.MESSAGE:
            learner.dm_blocked_at = None  # they wrote to us in a DM, so DMs work again
            enrolment = self.current_enrolment(session, learner)
            if enrolment is not None and enrolment.status == ACTIVE:
                schedule = self.schedule_for(learner, workspace)
                enrolment.next_due_at = schedule.next_after(self.clock())
        return learner

    # ------------------------------------------------------------------ schedules

    def schedule_for(self, learner: Learner, workspace: Workspace | None = None) -> Schedule:
        """The learner's own settings, else the workspace's, else the operator's; the
        workspace's public holidays apply to everyone in it."""
        return Schedule.parse(
            learner.delivery_time
            or (workspace.delivery_time if workspace else None)
            or self.settings.delivery_time,
            learner.delivery_days
            or (workspace.delivery_days if workspace else None)
            or self.settings.delivery_days,
            learner.timezone
            or (workspace.timezone if workspace else None)
            or self.settings.timezone,
            workspace.holidays if workspace else None,
        )

    def zone_is_default(self, learner: Learner, workspace: Workspace | None) -> bool:
        """True when nobody chose the time zone: the operator's default applies."""
        return not learner.timezone and not (workspace and workspace.timezone)

    def when(self, ctx: Context, instant: datetime | None) -> str:
        return when(self.schedule_for(ctx.learner, ctx.workspace), instant)

    def next_slot(self, ctx: Context, delivered_today: bool) -> datetime:
        schedule = self.schedule_for(ctx.learner, ctx.workspace)
        now = self.clock()
        today = schedule.local_date(now) if delivered_today else None
        return schedule.next_after(now, not_on=today)

    def lesson_today(self, ctx: Context) -> bool:
        """Did the learner already get a lesson-day today (their local date)?"""
        last = ctx.session.exec(
            select(Delivery.due_at)
            .where(Delivery.learner_id == ctx.learner.id, Delivery.kind == "lesson")
            .order_by(col(Delivery.due_at).desc())
        ).first()
        if last is None:
            return False
        schedule = self.schedule_for(ctx.learner, ctx.workspace)
        return schedule.local_date(last) == schedule.local_date(self.clock())

    def next_lesson_day(self, enrolment: Enrolment | None) -> datetime | None:
        """When the next lesson-day comes, only if one exists: never promise a day the
        lesson does not have. While away it is the day the learner is back."""
        if enrolment is None:
            return None
        if enrolment.status != ACTIVE and not (
            enrolment.status == PAUSED and enrolment.away_until is not None
        ):
            return None
        _, lesson = self.course_lesson(enrolment)
        if lesson is None or enrolment.day >= lesson.day_count(self.settings.snippets_per_day):
            return None
        return enrolment.next_due_at

    # ------------------------------------------------------------------ away

    def go_away(
        self, enrolment: Enrolment, schedule: Schedule, last_day: date, now: datetime
    ) -> datetime:
        """Pause ``enrolment`` through local ``last_day``; returns the instant the learner
        is back (their first lesson-day after it).

        Away is stored as a pause plus ``away_until`` rather than as a state of its own:
        every rule that holds back a paused learner (no lesson-days, reminders, practice
        check-ins or prompts; queued scheduled messages cancelled at send time) then
        holds back an away one too, including rules added later. ``next_due_at`` is
        set to the moment the away period ends, so the enrolment carries no past-due
        instant and the planner reads it exactly once, when it is time to come back
        (``Planner._due_enrolments`` calls ``come_back`` then). A paused learner
        has no such instant and waits for ``resume``.

        ``away_until`` is the authority, not the status: as during a pause, the
        learner's own actions (answering a lesson's last question, going on to the next
        lesson) may move the status on, so ``bot.context.resting`` and the planner look
        at ``away_until`` too, and nothing the bot starts reaches the learner until the
        period is over."""
        back = self.back_on(schedule, last_day)
        enrolment.status = PAUSED
        enrolment.away_until = last_day
        enrolment.next_due_at = back
        enrolment.updated_at = now
        return back

    @staticmethod
    def back_on(schedule: Schedule, last_day: date) -> datetime:
        """The first delivery instant after an away period ending with local ``last_day``
        (weekends and holidays skipped)."""
        return schedule.first_on_or_after(last_day + timedelta(days=1))

    @staticmethod
    def come_back(enrolment: Enrolment) -> None:
        """End a pause or an away period: back to waiting for a lesson to be published
        if that is what the learner was doing, else to the lesson flow (which asks
        whether to go on if the lesson has no days left)."""
        if enrolment.status == PAUSED:
            enrolment.status = WAITING_CONTENT if enrolment.waiting_for_lesson else ACTIVE
        enrolment.away_until = None

    # ------------------------------------------------------------------ lookups

    def current_enrolment(self, session: Session, learner: Learner) -> Enrolment | None:
        return session.exec(_CURRENT_ENROLMENT, params={"learner_id": learner.id}).first()

    def enrolment(self, ctx: Context) -> Enrolment | None:
        if isinstance(ctx, _ReadContext):
            return ctx.current  # read with the learner; a read-only unit changes nothing
        return self.current_enrolment(ctx.session, ctx.learner)

    def course_lesson(self, enrolment: Enrolment) -> tuple[Course | None, Lesson | None]:
        course = self.catalog.get(enrolment.course_id)
        return course, (course.lesson(enrolment.lesson_id) if course else None)

    def workspace_course(self, workspace: Workspace) -> Course:
        wanted = workspace.default_course or self.settings.default_course
        return (self.catalog.get(wanted) if wanted else None) or self.catalog.default

    def position(self, enrolment: Enrolment) -> str:
        course, lesson = self.course_lesson(enrolment)
        course_title = course.title if course else enrolment.course_id
        if lesson is None or course is None:
            return f"{course_title}, lesson {enrolment.lesson_id}"
        days = lesson.day_count(self.settings.snippets_per_day)
        index = course.lessons.index(lesson) + 1
        return (
            f"{course_title}, lesson {index} of {len(course.lessons)} ({lesson.name}), "
            f"day {enrolment.day} of {days}"
        )

    def not_enrolled(self, ctx: Context) -> OutgoingMessage:
        stopped = self.stopped_by_lead(ctx)
        if stopped is not None:
            return ctx.answer(f"You are not taking a course now: {stopped}")
        return ctx.answer(
            f"You are not taking a course yet. Say `{grammar.PREFIX} start` to begin "
            f"(or `{grammar.PREFIX} courses` to see them all)."
        )

    def stopped_by_lead(self, ctx: Context) -> str | None:
        """For someone with no current course whose last one a lead stopped, what
        happened and how to go on; None otherwise. Only a lead's `unassign` leaves a
        person with no current course, and "not taking a course yet" would deny the
        weeks they had."""
        last = (
            ctx.newest
            if isinstance(ctx, _ReadContext)
            else ctx.session.exec(
                select(Enrolment)
                .where(Enrolment.learner_id == ctx.learner.id)
                .order_by(col(Enrolment.updated_at).desc(), col(Enrolment.id).desc())
                .limit(1)
            ).first()
            if ctx.learner.id is not None
            else None
        )
        if last is None or last.status != STOPPED:
            return None
        course = self.catalog.get(last.course_id)
        day = self.schedule_for(ctx.learner, ctx.workspace).local(last.updated_at)
        return (
            f"a lead stopped your lessons in **{course.title if course else last.course_id}** "
            f"on {day:%d %B}. Your replies are kept (`{grammar.PREFIX} history`). "
            f"`{grammar.PREFIX} start` begins a course again from its first lesson."
        )

    # ------------------------------------------------------------------ enrolling

    def enrol(
        self, ctx: Context, learner: Learner, course_id: str, assigned_by: str | None
    ) -> int | None:
        """Enrol ``learner`` (first lesson at their next delivery time) and queue their
        welcome DM; returns the welcome's delivery id, or None if already enrolled."""
        current = self.current_enrolment(ctx.session, learner)
        if current is not None and current.course_id == course_id:
            return None
        now = self.clock()
        if current is not None:
            current.status, current.next_due_at, current.updated_at = STOPPED, None, now
        course = self.catalog.get(course_id) or self.catalog.default
        schedule = self.schedule_for(learner, ctx.workspace)
        enrolment = Enrolment(
            learner_id=learner.id or 0,
            course_id=course.id,
            lesson_id=course.first_lesson().id,
            status=ACTIVE,
            assigned_by=assigned_by,
            next_due_at=schedule.next_after(now),
            started_at=now,
            updated_at=now,
        )
        ctx.session.add(enrolment)
        ctx.session.flush()
        return queue_delivery(
            ctx.session,
            key=f"welcome:{enrolment.id}",
            learner_id=learner.id,
            enrolment_id=enrolment.id,
            kind="welcome",
            origin="learner",
            course_id=course.id,
            lesson_id=course.first_lesson().id,
            day=0,
            due_at=now,
        )

    def person(self, ctx: Context, user_id: str) -> Learner:
        """The learner row for a user of this workspace, created if new."""
        learner = ctx.session.exec(
            select(Learner).where(
                Learner.workspace_id == ctx.workspace.id, Learner.user_id == user_id
            )
        ).first()
        if learner is None:
            ref = next((m for m in ctx.event.mentioned if m.id == user_id), None)
            learner = Learner(
                workspace_id=ctx.workspace.id or 0,
                user_id=user_id,
                display_name=ref.name if ref else None,
                created_at=self.clock(),
            )
            ctx.session.add(learner)
            ctx.session.flush()
        return learner

    def bulk_assign(
        self,
        platform: str,
        workspace_id: str,
        users: list[str],
        course_id: str | None,
        by: str | None,
    ) -> int:
        """The operator's `mentorbot assign`: enrol many users, queue their welcomes."""

        def work(session: Session) -> int:
            event = IncomingEvent(platform, workspace_id, by or "operator", EventKind.COMMAND)
            workspace = self._workspace(session, event)
            if course_id and self.catalog.get(course_id) is None:
                raise ValueError(f"there is no course called {course_id!r}")
            course = self.catalog.get(course_id or "") or self.workspace_course(workspace)
            ctx = Context(session, event, workspace, Learner(workspace_id=workspace.id or 0))
            enrolled = 0
            for user_id in users:
                learner = self.person(ctx, user_id)
                enrolled += self.enrol(ctx, learner, course.id, by) is not None
            return enrolled

        return self.store.run(work)

    @staticmethod
    def erase_learner(session: Session, learner: Learner) -> None:
        """Delete everything about ``learner`` in their workspace.

        The learner's enrolments are locked first, so a planning pass that is queueing a
        delivery for them either finishes before (and its row is deleted here) or waits
        and then finds nothing to plan: nothing can bring the data back.
        """
        make_room(session)
        lock = select(Enrolment.id).where(Enrolment.learner_id == learner.id)
        if session.get_bind().dialect.name == "postgresql":
            lock = lock.with_for_update()
        session.exec(lock).all()
        replies = select(Reply.id).where(Reply.learner_id == learner.id)
        session.exec(delete(ReplyRead).where(col(ReplyRead.reply_id).in_(replies)))  # type: ignore[call-overload]
        # Reads this person did as a lead stay on record for the authors, by name only.
        session.exec(
            update(ReplyRead)  # type: ignore[call-overload]
            .where(col(ReplyRead.reader_id) == learner.id)
            .values(reader_id=None)
        )
        digests = select(Digest.id).where(Digest.created_by == learner.id)
        session.exec(delete(Reply).where(col(Reply.learner_id) == learner.id))  # type: ignore[call-overload]
        # Two statements, not one with OR: PostgreSQL cannot serve "learner_id = ? OR
        # digest_id IN (subquery)" from the two indexes and reads the whole table (0.7 s
        # at 5 million rows).
        session.exec(delete(Delivery).where(col(Delivery.learner_id) == learner.id))  # type: ignore[call-overload]
        session.exec(delete(Delivery).where(col(Delivery.digest_id).in_(digests)))  # type: ignore[call-overload]
        session.exec(delete(Digest).where(col(Digest.created_by) == learner.id))  # type: ignore[call-overload]
        session.exec(delete(Enrolment).where(col(Enrolment.learner_id) == learner.id))  # type: ignore[call-overload]
        session.delete(learner)

    # ------------------------------------------------------------------ lesson flow

    def deliver_next_day(self, ctx: Context, enrolment: Enrolment, outcome: Outcome) -> None:
        course, lesson = self.course_lesson(enrolment)
        if course is None or lesson is None:
            outcome.replies.append(
                ctx.answer(
                    f"Lesson {enrolment.lesson_id} is not in the course content any more; "
                    "please tell your lead."
                )
            )
            return
        days = lesson.day_count(self.settings.snippets_per_day)
        if enrolment.day >= days:
            outcome.replies.append(self.continue_prompt(ctx, enrolment, course, lesson))
            enrolment.status = AWAITING_CONTINUE
            return
        day = lesson.day(enrolment.day + 1, self.settings.snippets_per_day)
        delivery_id = queue_delivery(
            ctx.session,
            key=f"lesson:{enrolment.id}:{lesson.id}:{day.number}",
            learner_id=ctx.learner.id or 0,
            enrolment_id=enrolment.id,
            kind="lesson",
            origin="learner",  # asked for: not part of the daily cap
            course_id=course.id,
            lesson_id=lesson.id,
            day=day.number,
            question=day.question,
            due_at=self.clock(),
        )
        enrolment.day = day.number
        enrolment.updated_at = self.clock()
        if enrolment.status != PAUSED:
            enrolment.status = ACTIVE
            enrolment.next_due_at = self.next_slot(ctx, delivered_today=True)
        if delivery_id is not None:
            outcome.deliveries.append(delivery_id)
        if day.question is None and day.number == days:
            outcome.replies.append(self.continue_prompt(ctx, enrolment, course, lesson))
            enrolment.status = AWAITING_CONTINUE

    def continue_text(
        self, course: Course, lesson: Lesson, *, reminder: bool = False
    ) -> tuple[str, tuple[Action, ...]]:
        next_id, next_title, following = course.following(lesson)
        if next_id is None:
            return (
                f"That was the last lesson of **{course.title}**. Well done! "
                f"`{grammar.PREFIX} courses` lists what else you can take.",
                (),
            )
        name = f"{next_id} {next_title}" if next_title else next_id
        published = following is not None
        # Offering a lesson that is not there would be answered "not published" on the
        # click: say so now, and what the click does.
        actions = (
            Action(
                "continue",
                "Yes, continue" if published else "Yes, send it when it's out",
                "continue",
                "primary",
            ),
            Action("not_yet", "Not yet", "not-yet"),
        )
        if published and reminder:
            text = (
                f"Whenever you're ready, **{name}** is the next lesson. Say "
                f"`{grammar.PREFIX} continue` to start it; I won't ask again."
            )
        elif published:
            text = f"You've finished {lesson.name}. Shall we continue with **{name}**?"
        elif reminder:
            text = (
                f"The next lesson, **{name}**, isn't published yet. Say "
                f"`{grammar.PREFIX} continue` and I'll send it as soon as it is; "
                "I won't ask again."
            )
        else:
            text = (
                f"You've finished {lesson.name}. The next lesson, **{name}**, isn't "
                "published yet. Shall I send it to you as soon as it is?"
            )
        return text, actions

    def continue_prompt(
        self, ctx: Context, enrolment: Enrolment, course: Course, lesson: Lesson
    ) -> OutgoingMessage:
        """Ask whether to go on, and record that it was asked, so the scheduled prompts
        add at most one reminder instead of asking the same thing again."""
        queue_delivery(
            ctx.session,
            key=f"continue:{enrolment.id}:{lesson.id}:asked",
            learner_id=ctx.learner.id or 0,
            enrolment_id=enrolment.id,
            kind="continue",
            origin="learner",
            course_id=course.id,
            lesson_id=lesson.id,
            day=enrolment.day,
            status="sent",
            sent_at=self.clock(),
            due_at=self.clock(),
        )
        text, actions = self.continue_text(course, lesson)
        return ctx.answer(text, actions=actions, kind="continue")

    def advance_lesson(self, ctx: Context, enrolment: Enrolment, outcome: Outcome) -> None:
        course, lesson = self.course_lesson(enrolment)
        if course is None:
            outcome.replies.append(self.not_enrolled(ctx))
            return
        if enrolment.status == WAITING_CONTENT and enrolment.waiting_for_lesson:
            next_id, next_title, following = (
                enrolment.waiting_for_lesson,
                None,
                course.lesson(enrolment.waiting_for_lesson),
            )
        elif lesson is not None:
            next_id, next_title, following = course.following(lesson)
        else:
            next_id, next_title, following = None, None, None
        if next_id is None:
            outcome.replies.append(
                ctx.answer(f"You have finished **{course.title}**. There is no next lesson.")
            )
            return
        if following is None:
            enrolment.status = WAITING_CONTENT
            enrolment.waiting_for_lesson = next_id
            enrolment.updated_at = self.clock()
            # Meanwhile the weekly practice phase, a week on as after the summary, not
            # tomorrow on top of the check-ins of the lesson's last answers. A reload
            # that publishes the lesson wakes the enrolment sooner.
            phase_at = next_phase_time(self.schedule_for(ctx.learner, ctx.workspace), self.clock())
            if enrolment.next_due_at is None or enrolment.next_due_at < phase_at:
                enrolment.next_due_at = phase_at
            name = f"{next_id} {next_title}" if next_title else next_id
            outcome.replies.append(
                ctx.answer(
                    f"Lesson **{name}** isn't published yet. I've noted that you want it "
                    "and will send it as soon as it is."
                )
            )
            return
        enrolment.lesson_id = following.id
        enrolment.day = 0
        enrolment.status = ACTIVE
        enrolment.waiting_for_lesson = None
        self.deliver_next_day(ctx, enrolment, outcome)

    def after_question_closed(self, ctx: Context, question: Delivery, outcome: Outcome) -> None:
        """After the last question of a lesson is answered or skipped, ask to continue."""
        if question.kind != "lesson" or question.enrolment_id is None:
            return
        enrolment = ctx.session.get(Enrolment, question.enrolment_id)
        if enrolment is None or enrolment.status not in (ACTIVE, PAUSED):
            return
        course, lesson = self.course_lesson(enrolment)
        if course is None or lesson is None or lesson.id != question.lesson_id:
            return
        if question.day == lesson.day_count(self.settings.snippets_per_day) == enrolment.day:
            outcome.replies.append(self.continue_prompt(ctx, enrolment, course, lesson))
            enrolment.status = AWAITING_CONTINUE
            enrolment.updated_at = self.clock()

    # ------------------------------------------------------------------ content

    def reload_content(self, session: Session | None = None) -> list[Problem]:
        """Pick up edited lessons; learners waiting for a lesson that now exists get it at
        the next tick. Inside a command, pass its ``session`` (one transaction)."""
        problems = self.catalog_holder.reload()
        errors = [p for p in problems if p.severity == "error"]
        for problem in problems:
            (log.error if problem.severity == "error" else log.warning)(
                "content: %s", problem, extra={"file": str(problem.path), "line": problem.line}
            )
        if errors:
            log.error("content reload failed; the last good course stays in use")
            return problems
        now = self.clock()

        def wake(session: Session) -> None:
            session.exec(
                update(Enrolment)  # type: ignore[call-overload]
                .where(col(Enrolment.status) == WAITING_CONTENT)
                .values(next_due_at=now)
            )

        if session is not None:
            wake(session)
        else:
            self.store.run(wake)
        log.info("content reloaded: %d course(s)", len(self.catalog.courses))
        return problems

    # ------------------------------------------------------------------ sending

    def render_delivery(self, delivery_id: int) -> OutgoingMessage | str:
        """The message for an outbox row, or the reason it must not be sent any more."""
        return self.render_many([delivery_id])[delivery_id].message

    def render_many(self, ids: list[int]):  # type: ignore[no-untyped-def]
        """Render a claimed batch in one transaction (the dispatcher's hot path)."""
        from bot.rendering import render_many

        return self.store.run(lambda session: render_many(self, session, ids))

    def digest_failed(self, session: Session, delivery: Delivery, reason: str) -> None:
        from bot.digests import digest_failed

        digest_failed(self, session, delivery, reason)

    def record_dm_blocked(self, session: Session, delivery_id: int) -> bool:
        """Record that the learner blocks DMs; True the first time, so they are told once."""
        delivery = session.get(Delivery, delivery_id)
        learner = session.get(Learner, delivery.learner_id) if delivery else None
        if learner is None or learner.dm_blocked_at is not None:
            return False
        learner.dm_blocked_at = self.clock()
        session.add(learner)
        # Nothing more is planned for them until they write to us again: a learner who
        # blocks DMs costs the daily planning pass nothing.
        session.exec(
            update(Enrolment)  # type: ignore[call-overload]
            .where(col(Enrolment.learner_id) == learner.id)
            .values(next_due_at=None)
        )
        return True
