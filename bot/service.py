"""The mentoring core: turns one incoming event into answers and queued deliveries.

Everything here is platform-neutral and synchronous; adapters call it through
``bot.hub.Hub``, which runs it off the event loop. Each event is one unit of work, so a
crash part-way leaves the database as it was before the event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, update
from sqlmodel import Session, col, select

from bot import commands as grammar
from bot.commands import Command, CommandError
from bot.config import Settings
from bot.course import Catalog, Course, Lesson, Problem, load_catalog
from bot.db import Store
from bot.leads import LeadCommands
from bot.messages import Action, EventKind, IncomingEvent, Outcome, OutgoingMessage, Section
from bot.models import Delivery, Digest, Enrolment, Learner, Reply, ReplyRead, Workspace
from bot.outbox import insert_or_get, queue_delivery
from bot.schedule import (
    QUIET_FROM,
    Schedule,
    ScheduleError,
    format_days,
    parse_schedule_args,
    practice_time,
)
from bot.text import MAX_REPLY_CHARS, clean_reply, preview

log = logging.getLogger(__name__)

ACTIVE = "active"
PAUSED = "paused"
AWAITING_CONTINUE = "awaiting_continue"
WAITING_CONTENT = "waiting_content"
STOPPED = "stopped"
CURRENT_STATES = (ACTIVE, PAUSED, AWAITING_CONTINUE, WAITING_CONTENT)
QUESTION_KINDS = ("lesson", "practice")
GONE_TEXT = "That question is no longer available; nothing was changed."
DIRECT_WORKSPACE = "direct"  # for DMs from users no workspace knows yet
SNOOZE_HOURS = 2.0


def sent_as(message_id: str) -> Any:
    """Deliveries whose platform message ids (comma-separated) include ``message_id``."""
    ids = col(Delivery.platform_message_ids)
    return or_(
        ids == message_id,
        ids.like(f"%,{message_id}"),
        ids.like(f"{message_id},%"),
        ids.like(f"%,{message_id},%"),
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


@dataclass
class Context:
    """The learner an event is about, loaded once per unit of work."""

    session: Session
    event: IncomingEvent
    workspace: Workspace
    learner: Learner

    def answer(self, text: str, **extra: object) -> OutgoingMessage:
        return OutgoingMessage(
            platform=self.event.platform,
            workspace=self.event.workspace,
            user=self.event.user,
            text=text,
            ephemeral=True,
            **extra,  # type: ignore[arg-type]
        )


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


class MentorService(LeadCommands):
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
        return self.store.run(lambda session: self._handle(session, event))

    def _handle(self, session: Session, event: IncomingEvent) -> Outcome:
        workspace = self._workspace(session, event)
        if event.kind is EventKind.JOINED and not workspace.auto_enrol:
            return Outcome()  # someone joined the workspace: store nothing about them
        learner = self._learner(session, workspace, event)
        ctx = Context(session, event, workspace, learner)
        outcome = Outcome()
        if event.kind is EventKind.COMMAND or event.kind is EventKind.ACTION:
            self._command(ctx, outcome)
        elif event.kind is EventKind.JOINED:
            if workspace.auto_enrol and self.current_enrolment(session, learner) is None:
                welcome = self.enrol(ctx, learner, self._workspace_course(workspace).id, None)
                if welcome is not None:
                    outcome.deliveries.append(welcome)
        elif event.kind is EventKind.EDIT:
            self._edit(ctx, outcome)
        else:
            self._reply(ctx, outcome)
        return outcome

    def _workspace(self, session: Session, event: IncomingEvent) -> Workspace:
        if not event.workspace:
            return self._dm_workspace(session, event)
        workspace = insert_or_get(
            session,
            Workspace,
            {"platform": event.platform, "external_id": event.workspace},
            {"name": event.workspace_name, "created_at": self.clock()},
        )
        if event.workspace_name and workspace.name != event.workspace_name:
            workspace.name = event.workspace_name
        return workspace

    def _dm_workspace(self, session: Session, event: IncomingEvent) -> Workspace:
        """A DM that names no workspace (Discord DMs carry no guild): the workspace of the
        delivery it answers, else where this user most recently did something with a
        course, else a per-platform one."""
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
                ref = event.answers_message or ""
                query = query.where(sent_as(ref))
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
        learner = insert_or_get(
            session,
            Learner,
            {"workspace_id": workspace.id, "user_id": event.user},
            {
                "display_name": event.user_name,
                "timezone": event.timezone,
                # Platform admins are leads per event (they may lose the role); only
                # `leads add` stores the role.
                "role": "learner",
                "created_at": self.clock(),
            },
        )
        if event.user_name and learner.display_name != event.user_name:
            learner.display_name = event.user_name
        if event.timezone and not learner.timezone:
            learner.timezone = event.timezone
        if learner.dm_blocked_at is not None and event.kind is EventKind.MESSAGE:
            learner.dm_blocked_at = None  # they wrote to us in a DM, so DMs work again
        return learner

    # ------------------------------------------------------------------ schedules

    def schedule_for(self, learner: Learner, workspace: Workspace | None = None) -> Schedule:
        """The learner's own settings, else the workspace's, else the operator's."""
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
        )

    def _next_slot(self, ctx: Context, delivered_today: bool) -> datetime:
        schedule = self.schedule_for(ctx.learner, ctx.workspace)
        now = self.clock()
        today = schedule.local_date(now) if delivered_today else None
        return schedule.next_after(now, not_on=today)

    def _when(self, ctx: Context, instant: datetime | None) -> str:
        if instant is None:
            return "not scheduled"
        schedule = self.schedule_for(ctx.learner, ctx.workspace)
        local = schedule.local(instant)
        return f"{local:%A %d %B at %H:%M} ({schedule.zone.key})"

    # ------------------------------------------------------------------ lookups

    def _enrolment(self, ctx: Context) -> Enrolment | None:
        return ctx.session.exec(
            select(Enrolment)
            .where(
                Enrolment.learner_id == ctx.learner.id, col(Enrolment.status).in_(CURRENT_STATES)
            )
            .order_by(col(Enrolment.id).desc())
        ).first()

    def _course_lesson(self, enrolment: Enrolment) -> tuple[Course | None, Lesson | None]:
        course = self.catalog.get(enrolment.course_id)
        return course, (course.lesson(enrolment.lesson_id) if course else None)

    def _open_question(self, ctx: Context) -> Delivery | None:
        """The newest question sent to the learner that is neither answered nor skipped."""
        answered = select(Reply.delivery_id).where(col(Reply.delivery_id).is_not(None))
        return ctx.session.exec(
            select(Delivery)
            .where(
                Delivery.learner_id == ctx.learner.id,
                col(Delivery.kind).in_(QUESTION_KINDS),
                col(Delivery.question).is_not(None),
                col(Delivery.status).in_(("sent", "sending")),
                col(Delivery.skipped_at).is_(None),
                col(Delivery.id).not_in(answered),
            )
            .order_by(col(Delivery.id).desc())
        ).first()

    def _last_question(self, ctx: Context) -> Delivery | None:
        return ctx.session.exec(
            select(Delivery)
            .where(
                Delivery.learner_id == ctx.learner.id,
                col(Delivery.kind).in_(QUESTION_KINDS),
                col(Delivery.question).is_not(None),
                col(Delivery.status).in_(("sent", "sending")),
            )
            .order_by(col(Delivery.id).desc())
        ).first()

    # ------------------------------------------------------------------ commands

    def _command(self, ctx: Context, outcome: Outcome) -> None:
        try:
            command = grammar.parse_command(ctx.event.text)
        except CommandError as exc:
            outcome.replies.append(ctx.answer(f"{exc}\n\n{grammar.help_text()}"))
            return
        if command.spec.lead_only and not self.is_lead(ctx):
            outcome.replies.append(ctx.answer(self._only_leads(ctx, command)))
            return
        handler = getattr(self, "_cmd_" + command.name.replace("-", "_"))
        handler(ctx, command, outcome)

    def _cmd_help(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        enrolment = self._enrolment(ctx)
        where = ""
        if enrolment is not None:
            where = f"\n\nYou are on {self._position(enrolment)}."
        intro = (
            "I'm mentorbot: each delivery day I send you a short lesson and one discussion "
            "question in this DM. Your replies are kept so you can look back on them. "
            + self._visibility_sentence(ctx.workspace)
        )
        help_text = grammar.help_text(include_lead=self.is_lead(ctx))
        outcome.replies.append(ctx.answer(f"{intro}{where}\n\n{help_text}"))

    def _cmd_courses(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        enrolment = self._enrolment(ctx)
        lines = ["Courses:"]
        for course in self.catalog.courses.values():
            mark = " (your course)" if enrolment and enrolment.course_id == course.id else ""
            lines.append(f"• `{course.id}` — {course.title}, {len(course.lessons)} lesson(s){mark}")
        lines.append(f"Start one with `{grammar.PREFIX} start COURSE`.")
        outcome.replies.append(ctx.answer("\n".join(lines)))

    def _cmd_start(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        if command.args:
            wanted = " ".join(command.args)
            course = self.catalog.get(wanted)
            if course is None:
                names = ", ".join(f"`{c}`" for c in self.catalog.courses)
                outcome.replies.append(
                    ctx.answer(f"There is no course called `{wanted}`. Courses: {names}.")
                )
                return
        else:
            course = (
                self.catalog.get(self.settings.default_course)
                if self.settings.default_course
                else None
            ) or self.catalog.default
        current = self._enrolment(ctx)
        if current is not None and current.course_id == course.id:
            outcome.replies.append(
                ctx.answer(
                    f"You are already taking {course.title} ({self._position(current)}). "
                    f"Use `{grammar.PREFIX} next` to get the next lesson-day now."
                )
            )
            return
        now = self.clock()
        if current is not None:
            current.status = STOPPED
            current.next_due_at = None
            current.updated_at = now
        first = course.first_lesson()
        enrolment = Enrolment(
            learner_id=ctx.learner.id or 0,
            course_id=course.id,
            lesson_id=first.id,
            day=0,
            status=ACTIVE,
            started_at=now,
            updated_at=now,
        )
        ctx.session.add(enrolment)
        ctx.session.flush()
        outcome.replies.append(
            ctx.answer(
                f"Welcome to **{course.title}**! Here is your first lesson-day. Reply in this DM "
                "to answer its question; your answers are private to you."
            )
        )
        self._deliver_next_day(ctx, enrolment, outcome)

    def _cmd_next(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        enrolment = self._enrolment(ctx)
        if enrolment is None:
            outcome.replies.append(self._not_enrolled(ctx))
            return
        if enrolment.status in (AWAITING_CONTINUE, WAITING_CONTENT):
            self._advance_lesson(ctx, enrolment, outcome)
            return
        self._deliver_next_day(ctx, enrolment, outcome)

    def _cmd_continue(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        self._cmd_next(ctx, command, outcome)

    def _cmd_not_yet(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        enrolment = self._enrolment(ctx)
        if enrolment is None:
            outcome.replies.append(self._not_enrolled(ctx))
            return
        outcome.replies.append(
            ctx.answer(
                "No rush. I'll ask again on your next delivery day, or say "
                f"`{grammar.PREFIX} next` whenever you're ready."
            )
        )

    def _question_for(self, ctx: Context, outcome: Outcome, missing: str) -> Delivery | None:
        """The question a button names, else the open one; None (answered) when neither."""
        if self._gone(ctx):
            outcome.replies.append(ctx.answer(GONE_TEXT))
            return None
        question = self._targeted_question(ctx) or self._open_question(ctx)
        if question is None:
            outcome.replies.append(ctx.answer(missing))
        return question

    def _cmd_skip(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        question = self._question_for(ctx, outcome, "There is no open question to skip.")
        if question is None:
            return
        question.skipped_at = self.clock()
        ctx.session.add(question)
        outcome.replies.append(ctx.answer(f"Skipped: “{preview(question.question or '')}”."))
        self._after_question_closed(ctx, question, outcome)

    def _cmd_schedule(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        if not command.args:
            schedule = self.schedule_for(ctx.learner, ctx.workspace)
            enrolment = self._enrolment(ctx)
            nxt = enrolment.next_due_at if enrolment and enrolment.status == ACTIVE else None
            outcome.replies.append(
                ctx.answer(
                    f"Lessons arrive at {schedule.describe()}. Next: {self._when(ctx, nxt)}.\n"
                    f"Change it with `{grammar.PREFIX} schedule HH:MM [weekdays|daily|mon,tue,...] "
                    "[TIME_ZONE]`, e.g. `/mentor schedule 08:30 mon,wed,fri Europe/Berlin`."
                )
            )
            return
        try:
            at, days, zone = parse_schedule_args(command.args)
        except ScheduleError as exc:
            outcome.replies.append(ctx.answer(f"Sorry, {exc}."))
            return
        if at is not None:
            ctx.learner.delivery_time = f"{at:%H:%M}"
        if days is not None:
            ctx.learner.delivery_days = format_days(days)
        if zone is not None:
            ctx.learner.timezone = zone.key
        ctx.session.add(ctx.learner)
        enrolment = self._enrolment(ctx)
        nxt = None
        if enrolment is not None and enrolment.status != PAUSED:
            nxt = self._next_slot(ctx, delivered_today=self._lesson_today(ctx))
            enrolment.next_due_at = nxt
            enrolment.updated_at = self.clock()
        schedule = self.schedule_for(ctx.learner, ctx.workspace)
        outcome.replies.append(
            ctx.answer(
                f"Done: lessons arrive at {schedule.describe()}. Next: {self._when(ctx, nxt)}."
            )
        )

    def _lesson_today(self, ctx: Context) -> bool:
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

    def _cmd_snooze(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        question = self._question_for(
            ctx, outcome, "There is no open question to be reminded about."
        )
        if question is None:
            return
        hours = SNOOZE_HOURS
        if command.args:
            try:
                hours = float(command.args[0])
            except ValueError:
                hours = -1
            if not 0 < hours <= 72:
                outcome.replies.append(
                    ctx.answer(
                        f"Sorry, {command.args[0]!r} is not a number of hours between 0 and 72."
                    )
                )
                return
        schedule = self.schedule_for(ctx.learner, ctx.workspace)
        at = self.clock() + timedelta(hours=hours)
        if schedule.local(at).time() >= QUIET_FROM or schedule.local(at).date() != (
            schedule.local_date(self.clock())
        ):
            at = max(at, schedule.next_after(self.clock()))
        queued = queue_delivery(
            ctx.session,
            key=f"snooze:{question.id}",
            learner_id=ctx.learner.id or 0,
            enrolment_id=question.enrolment_id,
            parent_id=question.id,
            kind="reminder",
            origin="learner",
            course_id=question.course_id,
            lesson_id=question.lesson_id,
            day=question.day,
            due_at=at,
        )
        if queued is None:
            outcome.replies.append(ctx.answer("I'll already remind you about this question."))
            return
        outcome.replies.append(ctx.answer(f"OK, I'll remind you {self._when(ctx, at)}."))

    def _cmd_pause(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        enrolment = self._enrolment(ctx)
        if enrolment is None:
            outcome.replies.append(self._not_enrolled(ctx))
            return
        if enrolment.status == PAUSED:
            outcome.replies.append(ctx.answer("You are already paused."))
            return
        enrolment.status = PAUSED
        enrolment.updated_at = self.clock()
        outcome.replies.append(
            ctx.answer(
                f"Paused. I won't send anything until you say `{grammar.PREFIX} resume`. "
                "Your place and your replies are kept."
            )
        )

    def _cmd_resume(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        enrolment = self._enrolment(ctx)
        if enrolment is None:
            outcome.replies.append(self._not_enrolled(ctx))
            return
        if enrolment.status != PAUSED:
            outcome.replies.append(ctx.answer("You are not paused."))
            return
        enrolment.status = ACTIVE
        enrolment.next_due_at = self._next_slot(ctx, delivered_today=False)
        enrolment.updated_at = self.clock()
        outcome.replies.append(
            ctx.answer(f"Welcome back! Next lesson-day: {self._when(ctx, enrolment.next_due_at)}.")
        )

    def _cmd_progress(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        enrolment = self._enrolment(ctx)
        if enrolment is None:
            outcome.replies.append(self._not_enrolled(ctx))
            return
        asked = ctx.session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.learner_id == ctx.learner.id,
                Delivery.enrolment_id == enrolment.id,
                col(Delivery.question).is_not(None),
                Delivery.status == "sent",
            )
        ).one()
        answered = ctx.session.exec(
            select(func.count(func.distinct(Reply.delivery_id)))
            .select_from(Reply)
            .join(Delivery, col(Delivery.id) == Reply.delivery_id)
            .where(Reply.learner_id == ctx.learner.id, Delivery.enrolment_id == enrolment.id)
        ).one()
        schedule = self.schedule_for(ctx.learner, ctx.workspace)
        status = {
            ACTIVE: "active",
            PAUSED: "paused",
            AWAITING_CONTINUE: "finished this lesson, waiting for you to continue",
            WAITING_CONTENT: f"waiting for lesson {enrolment.waiting_for_lesson} to be published",
        }[enrolment.status]
        next_line = self._when(ctx, enrolment.next_due_at) if enrolment.status == ACTIVE else "—"
        lines = [
            f"Course: {self._position(enrolment)}",
            f"Questions answered: {answered} of {asked}",
            f"Status: {status}",
            f"Schedule: {schedule.describe()}",
            f"Next lesson-day: {next_line}",
        ]
        toggle = (
            Action("resume", "Resume", "resume", "primary")
            if enrolment.status == PAUSED
            else Action("pause", "Pause", "pause")
        )
        outcome.replies.append(
            ctx.answer("\n".join(lines), title="Your progress", actions=(toggle,), kind="progress")
        )

    def _cmd_history(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        replies = ctx.session.exec(
            select(Reply).where(Reply.learner_id == ctx.learner.id).order_by(col(Reply.id))
        ).all()
        if not replies:
            outcome.replies.append(ctx.answer("You have not replied to any question yet."))
            return
        schedule = self.schedule_for(ctx.learner, ctx.workspace)
        sections = tuple(
            Section(
                f"{r.lesson_id} · {schedule.local(r.created_at):%Y-%m-%d %H:%M} · {r.question}",
                r.text if len(r.text) <= 1500 else preview(r.text, 1500),
            )
            for r in replies[-20:]
        )
        more = f" (the last 20 of {len(replies)})" if len(replies) > 20 else ""
        outcome.replies.append(
            ctx.answer(f"{len(replies)} reply(ies){more}.", title="Your replies", sections=sections)
        )

    def _cmd_forget_me(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        if [a.lower() for a in command.args] != ["confirm"]:
            outcome.replies.append(
                ctx.answer(
                    "This deletes your replies, your course progress, your deliveries and "
                    "your profile in this workspace. It cannot be undone. To go ahead, say "
                    f"`{grammar.PREFIX} forget-me confirm`.",
                    actions=(
                        Action("forget_confirm", "Delete my data", "forget-me confirm", "danger"),
                    ),
                )
            )
            return
        self.erase_learner(ctx.session, ctx.learner)
        outcome.replies.append(
            ctx.answer(
                "Done: everything I stored about you in this workspace is deleted. "
                f"Say `{grammar.PREFIX} start` if you ever want to begin again."
            )
        )

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

    def _cmd_reload(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        problems = self.reload_content(ctx.session)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            listing = "\n".join(f"• {p}" for p in errors[:20])
            outcome.replies.append(
                ctx.answer(
                    f"The content has {len(errors)} error(s), so I kept the last good version:\n"
                    f"{listing}"
                )
            )
            return
        lessons = sum(len(c.lessons) for c in self.catalog.courses.values())
        warnings = len(problems)
        outcome.replies.append(
            ctx.answer(
                f"Reloaded: {len(self.catalog.courses)} course(s), {lessons} lesson(s)"
                + (f", {warnings} warning(s)." if warnings else ".")
            )
        )

    @staticmethod
    def erase_learner(session: Session, learner: Learner) -> None:
        """Delete everything about ``learner`` in their workspace.

        The learner's enrolments are locked first, so a planning pass that is queueing a
        delivery for them either finishes before (and its row is deleted here) or waits
        and then finds nothing to plan: nothing can bring the data back.
        """
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
        session.exec(
            delete(Delivery).where(  # type: ignore[call-overload]
                or_(col(Delivery.learner_id) == learner.id, col(Delivery.digest_id).in_(digests))
            )
        )
        session.exec(delete(Digest).where(col(Digest.created_by) == learner.id))  # type: ignore[call-overload]
        session.exec(delete(Enrolment).where(col(Enrolment.learner_id) == learner.id))  # type: ignore[call-overload]
        session.delete(learner)

    # ------------------------------------------------------------------ lesson flow

    def _position(self, enrolment: Enrolment) -> str:
        course, lesson = self._course_lesson(enrolment)
        course_title = course.title if course else enrolment.course_id
        if lesson is None:
            return f"{course_title}, lesson {enrolment.lesson_id}"
        days = lesson.day_count(self.settings.snippets_per_day)
        index = course.lessons.index(lesson) + 1 if course else 0
        total = len(course.lessons) if course else 0
        return (
            f"{course_title}, lesson {index} of {total} ({lesson.name}), "
            f"day {enrolment.day} of {days}"
        )

    def _not_enrolled(self, ctx: Context) -> OutgoingMessage:
        return ctx.answer(
            f"You are not taking a course yet. Say `{grammar.PREFIX} start` to begin "
            f"(or `{grammar.PREFIX} courses` to see them all)."
        )

    def _deliver_next_day(self, ctx: Context, enrolment: Enrolment, outcome: Outcome) -> None:
        course, lesson = self._course_lesson(enrolment)
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
            outcome.replies.append(self._continue_prompt(ctx, course, lesson))
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
            enrolment.next_due_at = self._next_slot(ctx, delivered_today=True)
        if delivery_id is not None:
            outcome.deliveries.append(delivery_id)
        if day.question is None and day.number == days:
            outcome.replies.append(self._continue_prompt(ctx, course, lesson))
            enrolment.status = AWAITING_CONTINUE

    def _continue_text(self, course: Course, lesson: Lesson) -> tuple[str, tuple[Action, ...]]:
        next_id, next_title, _ = course.following(lesson)
        if next_id is None:
            return (
                f"That was the last lesson of **{course.title}**. Well done! "
                f"`{grammar.PREFIX} courses` lists what else you can take.",
                (),
            )
        name = f"{next_id} {next_title}" if next_title else next_id
        return (
            f"You've finished {lesson.name}. Shall we continue with **{name}**?",
            (
                Action("continue", "Yes, continue", "continue", "primary"),
                Action("not_yet", "Not yet", "not-yet"),
            ),
        )

    def _continue_prompt(self, ctx: Context, course: Course, lesson: Lesson) -> OutgoingMessage:
        text, actions = self._continue_text(course, lesson)
        return ctx.answer(text, actions=actions, kind="continue")

    def _advance_lesson(self, ctx: Context, enrolment: Enrolment, outcome: Outcome) -> None:
        course, lesson = self._course_lesson(enrolment)
        if course is None:
            outcome.replies.append(self._not_enrolled(ctx))
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
        self._deliver_next_day(ctx, enrolment, outcome)

    def _after_question_closed(self, ctx: Context, question: Delivery, outcome: Outcome) -> None:
        """After the last question of a lesson is answered or skipped, ask to continue."""
        if question.kind != "lesson" or question.enrolment_id is None:
            return
        enrolment = ctx.session.get(Enrolment, question.enrolment_id)
        if enrolment is None or enrolment.status not in (ACTIVE, PAUSED):
            return
        course, lesson = self._course_lesson(enrolment)
        if course is None or lesson is None or lesson.id != question.lesson_id:
            return
        if question.day == lesson.day_count(self.settings.snippets_per_day) == enrolment.day:
            outcome.replies.append(self._continue_prompt(ctx, course, lesson))
            enrolment.status = AWAITING_CONTINUE
            enrolment.updated_at = self.clock()

    # ------------------------------------------------------------------ replies

    def _gone(self, ctx: Context) -> bool:
        """A button or form that points at a delivery which no longer exists (or is not
        this learner's): it must not act on some other question instead."""
        return ctx.event.delivery_id is not None and self._targeted_question(ctx) is None

    def _targeted_question(self, ctx: Context) -> Delivery | None:
        """The question a button, modal, thread or reply points at, if any."""
        if ctx.event.delivery_id is not None:
            delivery = ctx.session.get(Delivery, ctx.event.delivery_id)
            if delivery is not None and delivery.parent_id and delivery.kind == "reminder":
                delivery = ctx.session.get(Delivery, delivery.parent_id)
            if delivery is not None and delivery.learner_id == ctx.learner.id:
                return delivery
            return None
        ref = ctx.event.answers_message
        if ref:
            return ctx.session.exec(
                select(Delivery).where(
                    Delivery.learner_id == ctx.learner.id,
                    col(Delivery.question).is_not(None),
                    sent_as(ref),
                )
            ).first()
        return None

    def _reply(self, ctx: Context, outcome: Outcome) -> None:
        text = clean_reply(ctx.event.text)
        if not text.strip():
            outcome.replies.append(
                ctx.answer("That reply was empty, so I didn't keep it. Write your answer in words.")
            )
            return
        if len(text) > MAX_REPLY_CHARS:
            outcome.replies.append(
                ctx.answer(
                    f"That reply is {len(text):,} characters; I keep replies up to "
                    f"{MAX_REPLY_CHARS:,}. Please shorten it or send it in parts."
                )
            )
            return
        moved_from_gone = self._gone(ctx)
        question = None if moved_from_gone else self._targeted_question(ctx)
        added = False
        if question is None:
            question = self._open_question(ctx)
        if question is None and moved_from_gone:
            outcome.replies.append(
                ctx.answer(
                    "That question is no longer available and you have no open question, so I "
                    f"could not keep this. Here is what you wrote, to keep or send again:\n\n"
                    f"{preview(text, 3000)}"
                )
            )
            return
        if question is None:
            last = self._last_question(ctx)
            enrolment = self._enrolment(ctx)
            if last is not None and last.skipped_at is None and enrolment is not None:
                question, added = last, True
            else:
                outcome.replies.append(self._no_open_question(ctx, enrolment))
                return
        reply = Reply(
            learner_id=ctx.learner.id or 0,
            delivery_id=question.id,
            course_id=question.course_id,
            lesson_id=question.lesson_id,
            question=question.question or "",
            text=text,
            platform_message_id=ctx.event.message_id,
            created_at=self.clock(),
            visibility=ctx.workspace.reply_visibility,
        )
        if not added and question.kind == "lesson":
            schedule = self.schedule_for(ctx.learner, ctx.workspace)
            reply.follow_up_at = practice_time(schedule, reply.created_at)
        ctx.session.add(reply)
        enrolment = self._enrolment(ctx)
        when = ""
        if enrolment is not None and enrolment.status == ACTIVE:
            when = f" Next lesson-day: {self._when(ctx, enrolment.next_due_at)}."
        verb = "Added to your answer to" if added else "Thanks, I kept your answer to"
        if moved_from_gone:
            verb = "That question is no longer available, so I kept your answer with"
        if reply.visibility == "leads":
            privacy = " Your leads can read it (a workspace setting)."
            actions: tuple[Action, ...] = ()
        else:
            privacy = " It is private to you."
            actions = (Action("share", "Share with my lead", "share"),)
        outcome.replies.append(
            ctx.answer(
                f"{verb} “{preview(question.question or '', 80)}”.{privacy}{when}",
                kind="ack",
                actions=actions,
                delivery_id=question.id,
            )
        )
        if not added:
            self._after_question_closed(ctx, question, outcome)

    def _no_open_question(self, ctx: Context, enrolment: Enrolment | None) -> OutgoingMessage:
        if enrolment is None:
            return ctx.answer(
                "Hi! I'm mentorbot, a mentoring bot: I send a short lesson and a discussion "
                f"question each delivery day. Say `{grammar.PREFIX} start` to begin, or "
                f"`{grammar.PREFIX} help` to see what I can do."
            )
        if enrolment.status == ACTIVE:
            return ctx.answer(
                "You have no open question right now. The next one comes "
                f"{self._when(ctx, enrolment.next_due_at)}; say `{grammar.PREFIX} next` "
                "to get it now."
            )
        if enrolment.status == PAUSED:
            return ctx.answer(
                "You have no open question, and deliveries are paused. Say "
                f"`{grammar.PREFIX} resume` to start again, or `{grammar.PREFIX} next` for the "
                "next lesson-day now."
            )
        return ctx.answer(
            f"You have no open question. Say `{grammar.PREFIX} next` to go on to the next lesson."
        )

    def _edit(self, ctx: Context, outcome: Outcome) -> None:
        if not ctx.event.message_id:
            return
        reply = ctx.session.exec(
            select(Reply).where(
                Reply.learner_id == ctx.learner.id,
                Reply.platform_message_id == ctx.event.message_id,
            )
        ).first()
        if reply is None:
            return  # an edit of something that was not a reply: nothing to update
        text = clean_reply(ctx.event.text)
        if not text.strip() or len(text) > MAX_REPLY_CHARS:
            outcome.replies.append(
                ctx.answer("I kept your earlier answer: the edited text was empty or too long.")
            )
            return
        reply.text = text
        reply.edited_at = self.clock()
        ctx.session.add(reply)

    # ------------------------------------------------------------------ rendering

    def render_delivery(self, delivery_id: int) -> OutgoingMessage | str:
        """The message for an outbox row, or the reason it must not be sent any more."""
        return self.render_many([delivery_id])[delivery_id].message

    def render_many(self, ids: list[int]) -> dict[int, Rendered]:
        """Render a claimed batch in one transaction (the dispatcher's hot path)."""
        return self.store.run(lambda session: self._render_many(session, ids))

    def _render_many(self, session: Session, ids: list[int]) -> dict[int, Rendered]:
        found = session.exec(
            select(Delivery, Learner, Workspace)
            .join(Learner, col(Learner.id) == Delivery.learner_id)
            .join(Workspace, col(Workspace.id) == Learner.workspace_id)
            .where(col(Delivery.id).in_(ids))
        ).all()
        enrolment_ids = [d.enrolment_id for d, _, _ in found if d.enrolment_id]
        enrolments = {
            e.id: e
            for e in session.exec(select(Enrolment).where(col(Enrolment.id).in_(enrolment_ids)))
        }
        out = {i: Rendered("the delivery or its learner no longer exists") for i in ids}
        for delivery, learner, workspace in found:
            enrolment = enrolments.get(delivery.enrolment_id) if delivery.enrolment_id else None
            message = self._render(session, delivery, learner, workspace, enrolment)
            asks = delivery.kind == "lesson" and bool(delivery.question)
            out[delivery.id or 0] = Rendered(
                message,
                self.schedule_for(learner, workspace) if asks else None,
                learner.id,
                learner.dm_channel,
                self.digest_reads(session, delivery) if delivery.kind == "digest" else None,
                delivery.kind,
            )
        return out

    def _render(
        self,
        session: Session,
        delivery: Delivery,
        learner: Learner,
        workspace: Workspace,
        enrolment: Enrolment | None,
    ) -> OutgoingMessage | str:
        base = {
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
                text=self.welcome_text(session, delivery, learner, workspace),
                title="Welcome to mentorbot",
                **base,  # type: ignore[arg-type]
            )
        if delivery.kind == "notice":
            return OutgoingMessage(text=delivery.body or "", **base)  # type: ignore[arg-type]
        if delivery.kind == "digest":
            return self.render_digest(session, delivery, base)
        course = self.catalog.get(delivery.course_id)
        lesson = course.lesson(delivery.lesson_id) if course else None
        if lesson is None or course is None:
            return f"lesson {delivery.lesson_id} is not in the content"
        question_actions = (
            Action("reply", "Reply", "reply", "primary", opens_reply_form=True),
            Action("skip", "Skip", "skip"),
            Action("snooze", "Remind me later", "snooze"),
        )
        if delivery.kind == "lesson":
            day = lesson.day(delivery.day, self.settings.snippets_per_day)
            days = lesson.day_count(self.settings.snippets_per_day)
            return OutgoingMessage(
                text="Reply in this DM to answer. " + self._visibility_sentence(workspace)
                if day.question
                else "",
                title=f"{lesson.name} — day {day.number} of {days}",
                sections=tuple(Section(s.title, s.body) for s in day.snippets),
                question=day.question,
                actions=question_actions if day.question else (),
                **base,  # type: ignore[arg-type]
            )
        if delivery.origin == "schedule" and (enrolment is None or enrolment.status == PAUSED):
            return "the enrolment is paused or gone"
        if delivery.kind == "continue":
            if enrolment is None or enrolment.status != AWAITING_CONTINUE:
                return "the learner already moved on"
            text, actions = self._continue_text(course, lesson)
            return OutgoingMessage(text=text, actions=actions, **base)  # type: ignore[arg-type]
        if delivery.kind == "reminder":
            parent = session.get(Delivery, delivery.parent_id) if delivery.parent_id else None
            if parent is None or parent.skipped_at is not None:
                return "the question was skipped"
            if session.exec(select(Reply.id).where(Reply.delivery_id == parent.id)).first():
                return "the question was answered"
            return OutgoingMessage(
                text="A gentle reminder: this question is still open. Reply here when you're "
                "ready, or skip it.",
                question=parent.question,
                actions=question_actions[:2],
                **{**base, "delivery_id": parent.id},  # type: ignore[arg-type]
            )
        if delivery.kind == "practice":
            return OutgoingMessage(
                text="Reply here to answer; your answer is private to you.",
                title="Practice follow-up",
                question=delivery.question,
                actions=question_actions,
                **base,  # type: ignore[arg-type]
            )
        return f"unknown delivery kind {delivery.kind!r}"

    def record_dm_blocked(self, session: Session, delivery_id: int) -> bool:
        """Record that the learner blocks DMs; True the first time, so they are told once."""
        delivery = session.get(Delivery, delivery_id)
        learner = session.get(Learner, delivery.learner_id) if delivery else None
        if learner is None or learner.dm_blocked_at is not None:
            return False
        learner.dm_blocked_at = self.clock()
        session.add(learner)
        return True
