"""What leads can do, and the privacy rules that bound it.

A reply is private to its author unless the learner shares it, or the workspace had
made replies visible to leads when it was written. Leads only ever see replies that
pass that rule, only in their own workspace, and every read is recorded so the learner
can see who read what. Mixed into ``MentorService``; everything here is platform-neutral
and speaks of users as ``<@id>``, which Slack and Discord render natively.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, func, select

from bot import commands as grammar
from bot.chart import bar_chart_png
from bot.commands import Command
from bot.messages import Attachment, OutgoingMessage, Section
from bot.models import Delivery, Digest, Enrolment, Learner, Reply, ReplyRead, Workspace
from bot.outbox import queue_delivery
from bot.schedule import (
    Schedule,
    ScheduleError,
    format_days,
    parse_days,
    parse_time,
    parse_zone,
)
from bot.text import preview

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.course import Catalog
    from bot.messages import Outcome
    from bot.service import Context

ACTIVE = "active"
PAUSED = "paused"
AWAITING_CONTINUE = "awaiting_continue"
WAITING_CONTENT = "waiting_content"
STOPPED = "stopped"
CURRENT = (ACTIVE, PAUSED, AWAITING_CONTINUE, WAITING_CONTENT)
DIGEST_DAYS = {"daily": 1, "weekly": 7}


def mention(user_id: str) -> str:
    return f"<@{user_id}>"


def readable_by_leads() -> Any:
    """The one rule for what a lead may read."""
    return or_(Reply.visibility == "leads", col(Reply.shared_at).is_not(None))


@dataclass(frozen=True)
class LearnerStats:
    learner: Learner
    enrolment: Enrolment | None
    asked: int
    answered: int
    streak: int
    last_reply: datetime | None


class LeadCommands:
    """Lead commands and the learner's privacy commands; needs MentorService's helpers."""

    settings: Settings
    clock: Callable[[], datetime]

    if TYPE_CHECKING:  # provided by MentorService

        @property
        def catalog(self) -> Catalog: ...

        def schedule_for(
            self, learner: Learner, workspace: Workspace | None = None
        ) -> Schedule: ...

        def _when(self, ctx: Context, instant: datetime | None) -> str: ...

        def _position(self, enrolment: Enrolment) -> str: ...

    # ------------------------------------------------------------------ who is a lead

    @staticmethod
    def is_lead(ctx: Context) -> bool:
        return ctx.learner.role == "lead" or ctx.event.platform_is_lead

    def _only_leads(self, ctx: Context, command: Command) -> str:
        return (
            f"Only leads can use `{grammar.PREFIX} {command.name}`. Leads are the workspace's "
            "admins and owners (on Discord: members who can manage the server or hold the "
            "lead role), whoever installed the app, and people a lead added with "
            f"`{grammar.PREFIX} leads add @name`."
        )

    def _visibility_sentence(self, workspace: Workspace) -> str:
        if workspace.reply_visibility == "leads":
            return (
                "In this workspace your leads can read the replies you write (the workspace "
                "chose this; it applies to replies written since)."
            )
        return (
            "Your replies are private to you unless you share one with your leads "
            f"(the Share button, or `{grammar.PREFIX} share`)."
        )

    # ------------------------------------------------------------------ people

    def _person(self, ctx: Context, user_id: str) -> Learner:
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
            )
            ctx.session.add(learner)
            ctx.session.flush()
        return learner

    def _people(self, ctx: Context, command: Command, verb: str) -> tuple[list[str], list[str]]:
        """The mentioned users to act on, and notes about the ones refused."""
        notes: list[str] = []
        bots = {m.id for m in ctx.event.mentioned if m.is_bot}
        people = []
        for user_id in dict.fromkeys(command.mentions):
            if user_id in bots:
                notes.append(f"{mention(user_id)} is a bot, so I left it out.")
            else:
                people.append(user_id)
        if command.channels:
            notes.append(f"`{verb}` takes people, not channels; I ignored the channel.")
        return people, notes

    def current_enrolment(self, session: Session, learner: Learner) -> Enrolment | None:
        return session.exec(
            select(Enrolment)
            .where(Enrolment.learner_id == learner.id, col(Enrolment.status).in_(CURRENT))
            .order_by(col(Enrolment.id).desc())
        ).first()

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

    def _cmd_assign(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        people, notes = self._people(ctx, command, "assign")
        if not people:
            notes.insert(
                0,
                f"Name the people to enrol, e.g. `{grammar.PREFIX} assign @ana @bo "
                f"{self.catalog.default.id}`.",
            )
            outcome.replies.append(ctx.answer(" ".join(notes)))
            return
        course = self.catalog.get(" ".join(command.args)) if command.args else None
        if command.args and course is None:
            names = ", ".join(f"`{c}`" for c in self.catalog.courses)
            outcome.replies.append(
                ctx.answer(
                    f"There is no course called `{' '.join(command.args)}`. Courses: {names}."
                )
            )
            return
        course = course or self._workspace_course(ctx.workspace)
        enrolled, already = [], []
        for user_id in people:
            learner = self._person(ctx, user_id)
            welcome = self.enrol(ctx, learner, course.id, ctx.event.user)
            if welcome is None:
                already.append(mention(user_id))
            else:
                enrolled.append(mention(user_id))
                outcome.deliveries.append(welcome)
        lines = []
        if enrolled:
            lines.append(
                f"Enrolled {', '.join(enrolled)} in **{course.title}**. Each gets a welcome DM "
                "now and their first lesson at their next delivery time."
            )
        if already:
            lines.append(f"Already taking {course.title}: {', '.join(already)}.")
        outcome.replies.append(ctx.answer(" ".join(lines + notes)))

    def bulk_assign(
        self,
        platform: str,
        workspace_id: str,
        users: list[str],
        course_id: str | None,
        by: str | None,
    ) -> int:
        """The operator's `mentorbot assign`: enrol many users, queue their welcomes."""
        from bot.messages import EventKind, IncomingEvent
        from bot.service import Context

        def work(session: Session) -> int:
            event = IncomingEvent(platform, workspace_id, by or "operator", EventKind.COMMAND)
            workspace = self._workspace(session, event)  # type: ignore[attr-defined]
            if course_id and self.catalog.get(course_id) is None:
                raise ValueError(f"there is no course called {course_id!r}")
            course = self.catalog.get(course_id or "") or self._workspace_course(workspace)
            ctx = Context(session, event, workspace, Learner(workspace_id=workspace.id or 0))
            enrolled = 0
            for user_id in users:
                learner = self._person(ctx, user_id)
                enrolled += self.enrol(ctx, learner, course.id, by) is not None
            return enrolled

        return self.store.run(work)  # type: ignore[attr-defined]

    def _workspace_course(self, workspace: Workspace):  # type: ignore[no-untyped-def]
        wanted = workspace.default_course or self.settings.default_course
        return (self.catalog.get(wanted) if wanted else None) or self.catalog.default

    def _cmd_unassign(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        people, notes = self._people(ctx, command, "unassign")
        if not people:
            example = f"Name the people to unenrol, e.g. `{grammar.PREFIX} unassign @ana`."
            outcome.replies.append(ctx.answer(" ".join([example, *notes])))
            return
        stopped, idle = [], []
        for user_id in people:
            learner = ctx.session.exec(
                select(Learner).where(
                    Learner.workspace_id == ctx.workspace.id, Learner.user_id == user_id
                )
            ).first()
            enrolment = self.current_enrolment(ctx.session, learner) if learner else None
            if learner is None or enrolment is None:
                idle.append(mention(user_id))
                continue
            enrolment.status, enrolment.next_due_at = STOPPED, None
            enrolment.updated_at = self.clock()
            ctx.session.exec(
                update(Delivery)  # type: ignore[call-overload]
                .where(col(Delivery.learner_id) == learner.id, col(Delivery.status) == "pending")
                .values(status="cancelled", error="unassigned by a lead")
            )
            stopped.append(mention(user_id))
        lines = []
        if stopped:
            lines.append(f"Stopped deliveries for {', '.join(stopped)}. Their replies are kept.")
        if idle:
            lines.append(f"Not taking a course here: {', '.join(idle)}.")
        outcome.replies.append(ctx.answer(" ".join(lines + notes)))

    def _cmd_leads(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        action = command.args[0].lower() if command.args else "list"
        if action == "list":
            leads = ctx.session.exec(
                select(Learner).where(
                    Learner.workspace_id == ctx.workspace.id, Learner.role == "lead"
                )
            ).all()
            names = ", ".join(mention(lead.user_id) for lead in leads) or "nobody added yet"
            outcome.replies.append(
                ctx.answer(f"Leads added here: {names}. Workspace admins are leads too.")
            )
            return
        if action not in ("add", "remove"):
            outcome.replies.append(
                ctx.answer(f"Use `{grammar.PREFIX} leads add @name` or `leads remove @name`.")
            )
            return
        people, notes = self._people(ctx, command, f"leads {action}")
        if not people:
            example = f"Name someone, e.g. `{grammar.PREFIX} leads {action} @ana`."
            outcome.replies.append(ctx.answer(" ".join([example, *notes])))
            return
        for user_id in people:
            learner = self._person(ctx, user_id)
            learner.role = "lead" if action == "add" else "learner"
            ctx.session.add(learner)
        who = ", ".join(mention(u) for u in people)
        text = (
            f"{who} can now use lead commands."
            if action == "add"
            else (f"{who} can no longer use lead commands (workspace admins always can).")
        )
        outcome.replies.append(ctx.answer(" ".join([text, *notes])))

    # ------------------------------------------------------------------ progress

    def learner_stats(self, session: Session, learner: Learner) -> LearnerStats:
        questions = session.exec(
            select(Delivery.id)
            .where(
                Delivery.learner_id == learner.id,
                Delivery.kind == "lesson",
                col(Delivery.question).is_not(None),
                Delivery.status == "sent",
            )
            .order_by(col(Delivery.id).desc())
        ).all()
        answered_ids = set(
            session.exec(
                select(Reply.delivery_id).where(
                    Reply.learner_id == learner.id, col(Reply.delivery_id).in_(questions)
                )
            ).all()
        )
        streak = 0
        for question_id in questions:
            if question_id not in answered_ids:
                break
            streak += 1
        last = session.exec(
            select(func.max(Reply.created_at)).where(Reply.learner_id == learner.id)
        ).one()
        return LearnerStats(
            learner,
            self.current_enrolment(session, learner),
            len(questions),
            len(answered_ids),
            streak,
            last,
        )

    def _status(self, stats: LearnerStats) -> str:
        if stats.learner.dm_blocked_at is not None:
            return "DMs blocked"
        enrolment = stats.enrolment
        if enrolment is None:
            return "not enrolled"
        if enrolment.status == AWAITING_CONTINUE:
            course = self.catalog.get(enrolment.course_id)
            lesson = course.lesson(enrolment.lesson_id) if course else None
            if course and lesson and course.following(lesson)[0] is None:
                return "finished"
            return "finished the lesson, deciding whether to go on"
        return {ACTIVE: "active", PAUSED: "paused", WAITING_CONTENT: "waiting for the next lesson"}[
            enrolment.status
        ]

    def _cmd_team(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        learners = ctx.session.exec(
            select(Learner)
            .where(
                Learner.workspace_id == ctx.workspace.id,
                col(Learner.id).in_(select(Enrolment.learner_id)),
            )
            .order_by(col(Learner.id))
        ).all()
        if not learners:
            outcome.replies.append(
                ctx.answer(
                    f"Nobody here is taking a course yet. Try `{grammar.PREFIX} assign @name`."
                )
            )
            return
        sections = []
        for learner in learners:
            stats = self.learner_stats(ctx.session, learner)
            where = self._position(stats.enrolment) if stats.enrolment else "—"
            schedule = self.schedule_for(learner, ctx.workspace)
            last = (
                f"{schedule.local(stats.last_reply):%Y-%m-%d %H:%M}"
                if stats.last_reply
                else "never"
            )
            sections.append(
                Section(
                    mention(learner.user_id),
                    f"{where}\nAnswered {stats.answered} of {stats.asked} · streak "
                    f"{stats.streak} · last reply {last} · {self._status(stats)}",
                )
            )
        outcome.replies.append(
            ctx.answer(f"{len(learners)} learner(s).", title="Your team", sections=tuple(sections))
        )

    # ------------------------------------------------------------------ replies

    def _record_reads(
        self, session: Session, replies: list[Reply], reader: Learner | None, name: str, via: str
    ) -> None:
        now = self.clock()
        for reply in replies:
            session.add(
                ReplyRead(
                    reply_id=reply.id or 0,
                    reader_id=reader.id if reader else None,
                    reader_name=name,
                    via=via,
                    read_at=now,
                )
            )

    def _cmd_replies(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        query = (
            select(Reply, Learner)
            .join(Learner, col(Learner.id) == Reply.learner_id)
            .where(Learner.workspace_id == ctx.workspace.id, readable_by_leads())
            .order_by(col(Reply.created_at).desc(), col(Reply.id).desc())
        )
        if command.mentions:
            query = query.where(col(Learner.user_id).in_(command.mentions))
        if command.args:
            query = query.where(Reply.lesson_id == command.args[0])
        found = ctx.session.exec(query.limit(30)).all()
        scope = (
            " from " + ", ".join(mention(m) for m in command.mentions) if command.mentions else ""
        )
        scope += f" for lesson {command.args[0]}" if command.args else ""
        if not found:
            outcome.replies.append(
                ctx.answer(
                    f"No replies{scope} have been shared with leads. Replies are private unless "
                    "their author shares them or the workspace makes them visible to leads."
                )
            )
            return
        reader_name = ctx.learner.display_name or ctx.learner.user_id
        self._record_reads(ctx.session, [r for r, _ in found], ctx.learner, reader_name, "replies")
        sections = tuple(
            Section(
                f"{mention(learner.user_id)} · {reply.lesson_id} · "
                f"{reply.created_at:%Y-%m-%d} · {reply.question}",
                reply.text if len(reply.text) <= 1500 else preview(reply.text, 1500),
            )
            for reply, learner in found
        )
        outcome.replies.append(
            ctx.answer(
                f"{len(found)} repl{'y' if len(found) == 1 else 'ies'}{scope} shared with leads "
                "(newest first). Their authors can see that you read them.",
                title="Replies shared with leads",
                sections=sections,
            )
        )

    # ------------------------------------------------------------------ learner privacy

    def _cmd_share(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        query = select(Reply).where(Reply.learner_id == ctx.learner.id)
        if ctx.event.delivery_id is not None:
            query = query.where(Reply.delivery_id == ctx.event.delivery_id)
        reply = ctx.session.exec(query.order_by(col(Reply.id).desc())).first()
        if reply is None:
            outcome.replies.append(ctx.answer("You have no reply to share yet."))
            return
        if reply.shared_at is None and reply.visibility != "leads":
            reply.shared_at = self.clock()
            ctx.session.add(reply)
        outcome.replies.append(
            ctx.answer(f"Shared your reply to “{preview(reply.question, 80)}” with your leads.")
        )

    def _cmd_export_my_data(self, ctx: Context, _command: Command, outcome: Outcome) -> None:
        data = self.personal_data(ctx.session, ctx.workspace, ctx.learner)
        content = json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")
        outcome.replies.append(
            OutgoingMessage(
                platform=ctx.event.platform,
                workspace=ctx.event.workspace,
                user=ctx.event.user,
                text="Here is everything I store about you in this workspace, as JSON.",
                attachments=(
                    Attachment("mentorbot-my-data.json", content, "application/json", "My data"),
                ),
                kind="export",
            )
        )

    def personal_data(
        self, session: Session, workspace: Workspace, learner: Learner
    ) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        enrolments = session.exec(
            select(Enrolment).where(Enrolment.learner_id == learner.id).order_by(col(Enrolment.id))
        ).all()
        deliveries = session.exec(
            select(Delivery).where(Delivery.learner_id == learner.id).order_by(col(Delivery.id))
        ).all()
        replies = session.exec(
            select(Reply).where(Reply.learner_id == learner.id).order_by(col(Reply.id))
        ).all()
        reads = session.exec(
            select(ReplyRead)
            .where(col(ReplyRead.reply_id).in_([r.id for r in replies]))
            .order_by(col(ReplyRead.id))
        ).all()
        return {
            "workspace": {
                "platform": workspace.platform,
                "id": workspace.external_id,
                "name": workspace.name,
            },
            "profile": {
                "user_id": learner.user_id,
                "display_name": learner.display_name,
                "role": learner.role,
                "timezone": learner.timezone,
                "delivery_time": learner.delivery_time,
                "delivery_days": learner.delivery_days,
                "dm_blocked_at": when(learner.dm_blocked_at),
                "created_at": when(learner.created_at),
            },
            "enrolments": [
                {
                    "course": e.course_id,
                    "lesson": e.lesson_id,
                    "day": e.day,
                    "status": e.status,
                    "assigned_by": e.assigned_by,
                    "started_at": when(e.started_at),
                }
                for e in enrolments
            ],
            "deliveries": [
                {
                    "kind": d.kind,
                    "course": d.course_id,
                    "lesson": d.lesson_id,
                    "day": d.day,
                    "question": d.question,
                    "status": d.status,
                    "sent_at": when(d.sent_at),
                    "skipped_at": when(d.skipped_at),
                }
                for d in deliveries
            ],
            "replies": [
                {
                    "id": r.id,
                    "course": r.course_id,
                    "lesson": r.lesson_id,
                    "question": r.question,
                    "text": r.text,
                    "written_at": when(r.created_at),
                    "edited_at": when(r.edited_at),
                    "visible_to_leads": r.visibility == "leads" or r.shared_at is not None,
                    "shared_at": when(r.shared_at),
                }
                for r in replies
            ],
            "read_by": [
                {
                    "reply_id": read.reply_id,
                    "reader": read.reader_name,
                    "via": read.via,
                    "read_at": when(read.read_at),
                }
                for read in reads
            ],
        }

    # ------------------------------------------------------------------ settings

    def _cmd_settings(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        ws = ctx.workspace
        if not command.args:
            lines = [
                f"Time zone: {ws.timezone or self.settings.timezone}",
                f"Delivery time: {ws.delivery_time or self.settings.delivery_time}",
                f"Delivery days: {ws.delivery_days or self.settings.delivery_days}",
                f"Reply visibility: {ws.reply_visibility} "
                "(private: only shared replies reach leads; leads: leads read new replies)",
                f"Auto-enrol new members: {'on' if ws.auto_enrol else 'off'}",
                f"Course for new learners: {self._workspace_course(ws).id}",
                f"Change one with `{grammar.PREFIX} settings NAME VALUE`, e.g. "
                f"`{grammar.PREFIX} settings time 08:30`.",
            ]
            outcome.replies.append(ctx.answer("\n".join(lines), title="Workspace settings"))
            return
        name = command.args[0].lower()
        value = " ".join(command.args[1:]).strip()
        if not value:
            outcome.replies.append(
                ctx.answer(f"Give a value: `{grammar.PREFIX} settings {name} VALUE`.")
            )
            return
        try:
            message = self._apply_setting(ctx, name, value)
        except (ScheduleError, ValueError) as exc:
            outcome.replies.append(ctx.answer(f"Sorry, {exc}."))
            return
        ctx.session.add(ws)
        outcome.replies.append(ctx.answer(message))

    def _apply_setting(self, ctx: Context, name: str, value: str) -> str:
        ws = ctx.workspace
        if name in ("timezone", "tz", "zone"):
            ws.timezone = parse_zone(value).key
        elif name == "time":
            ws.delivery_time = f"{parse_time(value):%H:%M}"
        elif name == "days":
            ws.delivery_days = format_days(parse_days(value))
        elif name == "visibility":
            if value.lower() not in ("private", "leads"):
                raise ValueError(f"visibility must be private or leads, not {value!r}")
            ws.reply_visibility = value.lower()
            return (
                f"Reply visibility is now **{ws.reply_visibility}**. It applies to replies written "
                "from now on; learners are told in their welcome message and in help."
            )
        elif name in ("auto-enrol", "auto-enroll", "autoenrol"):
            if value.lower() not in ("on", "off"):
                raise ValueError(f"auto-enrol must be on or off, not {value!r}")
            ws.auto_enrol = value.lower() == "on"
        elif name == "course":
            course = self.catalog.get(value)
            if course is None:
                raise ValueError(f"there is no course called {value!r}")
            ws.default_course = course.id
        else:
            raise ValueError(
                f"unknown setting {name!r}: use timezone, time, days, visibility, auto-enrol "
                "or course"
            )
        if name in ("timezone", "tz", "zone", "time", "days"):
            self._reschedule_workspace(ctx)
        return f"Saved: {name} = {value}."

    def _reschedule_workspace(self, ctx: Context) -> None:
        """New workspace defaults move the next delivery of everyone who uses them."""
        rows = ctx.session.exec(
            select(Enrolment, Learner)
            .join(Learner, col(Learner.id) == Enrolment.learner_id)
            .where(Learner.workspace_id == ctx.workspace.id, Enrolment.status == ACTIVE)
        ).all()
        now = self.clock()
        for enrolment, learner in rows:
            schedule = self.schedule_for(learner, ctx.workspace)
            enrolment.next_due_at = schedule.next_after(now)
            ctx.session.add(enrolment)

    # ------------------------------------------------------------------ digests

    def _digest_schedule(self, workspace: Workspace, frequency: str) -> Schedule:
        zone = workspace.timezone or self.settings.timezone
        at = workspace.delivery_time or self.settings.delivery_time
        days = workspace.delivery_days or self.settings.delivery_days
        if frequency == "weekly":
            days = "mon"
        return Schedule.parse(at, days, zone)

    def _cmd_digest(self, ctx: Context, command: Command, outcome: Outcome) -> None:
        frequency = command.args[0].lower() if command.args else ""
        if not command.channels or frequency not in ("daily", "weekly", "off"):
            outcome.replies.append(
                ctx.answer(f"Use `{grammar.PREFIX} digest #channel weekly`, `daily` or `off`.")
            )
            return
        channel = command.channels[0]
        existing = ctx.session.exec(
            select(Digest).where(Digest.workspace_id == ctx.workspace.id, Digest.channel == channel)
        ).first()
        if frequency == "off":
            if existing is not None:
                ctx.session.delete(existing)
            outcome.replies.append(ctx.answer(f"No digest in <#{channel}> any more."))
            return
        schedule = self._digest_schedule(ctx.workspace, frequency)
        digest = existing or Digest(
            workspace_id=ctx.workspace.id or 0, channel=channel, frequency=frequency
        )
        digest.frequency = frequency
        digest.created_by = ctx.learner.id
        digest.next_due_at = schedule.next_after(self.clock())
        ctx.session.add(digest)
        local = schedule.local(digest.next_due_at)
        outcome.replies.append(
            ctx.answer(
                f"A {frequency} digest will be posted in <#{channel}>: participation, completion, "
                f"streaks, shared replies and a chart. The first on {local:%A %d %B at %H:%M} "
                f"({schedule.zone.key}). Private replies never appear in it."
            )
        )

    @staticmethod
    def _digest_since(digest: Digest, until: datetime) -> datetime:
        """A digest covers the time since the last one that reached its channel; the
        first covers one period, or since it was set up if a first attempt failed."""
        if digest.last_sent_at is not None:
            return digest.last_sent_at
        return min(until - timedelta(days=DIGEST_DAYS[digest.frequency]), digest.created_at)

    def render_digest(
        self, session: Session, delivery: Delivery, base: dict[str, Any]
    ) -> OutgoingMessage | str:
        digest = session.get(Digest, delivery.digest_id) if delivery.digest_id else None
        if digest is None:
            return "the digest was turned off"
        workspace = session.get(Workspace, digest.workspace_id)
        if workspace is None:
            return "the workspace is gone"
        until = delivery.due_at
        since = self._digest_since(digest, until)
        zone = self._digest_schedule(workspace, digest.frequency).zone
        learners = session.exec(
            select(Learner).where(
                Learner.workspace_id == workspace.id,
                col(Learner.id).in_(select(Enrolment.learner_id)),
            )
        ).all()
        ids = [learner.id for learner in learners]
        asked = session.exec(
            select(Delivery).where(
                col(Delivery.learner_id).in_(ids),
                Delivery.kind == "lesson",
                col(Delivery.question).is_not(None),
                Delivery.status == "sent",
                col(Delivery.sent_at) >= since,
                col(Delivery.sent_at) < until,
            )
        ).all()
        replies = session.exec(
            select(Reply).where(
                col(Reply.learner_id).in_(ids),
                col(Reply.created_at) >= since,
                col(Reply.created_at) < until,
            )
        ).all()
        answered_ids = {r.delivery_id for r in replies}
        asked_ids = {d.id for d in asked}
        got = {d.learner_id for d in asked}
        answered_by = {d.learner_id for d in asked if d.id in answered_ids}
        lesson_days_done = sum(1 for d in asked if d.id in answered_ids)
        span = max(1, (until.astimezone(zone).date() - since.astimezone(zone).date()).days)
        first_day = until.astimezone(zone).date() - timedelta(days=span)
        per_day = [0] * span
        for reply in replies:
            index = (reply.created_at.astimezone(zone).date() - first_day).days
            if 0 <= index < span and reply.delivery_id in asked_ids:
                per_day[index] += 1
        streaks = sorted(
            (
                (self.learner_stats(session, learner).streak, learner.user_id)
                for learner in learners
            ),
            reverse=True,
        )
        shared = [r for r in replies if r.visibility == "leads" or r.shared_at is not None]
        by_id = {learner.id: learner for learner in learners}
        lines = [
            f"Participation: {len(answered_by)} of {len(got)} learner(s) who got a question "
            "answered at least one.",
            f"Completion: {lesson_days_done} of {len(asked)} lesson-day question(s) answered.",
            "Longest current streaks: "
            + (", ".join(f"{mention(u)} {n}" for n, u in streaks[:3] if n) or "none yet")
            + ".",
        ]
        sections = [Section(None, "\n".join(lines))]
        for reply in shared[:5]:
            author = by_id.get(reply.learner_id)
            who = mention(author.user_id) if author else "someone"
            sections.append(
                Section(f"{who} on “{preview(reply.question, 80)}”", preview(reply.text, 400))
            )
        if len(shared) > 5:
            sections.append(
                Section(
                    None, f"…and {len(shared) - 5} more shared replies: `{grammar.PREFIX} replies`."
                )
            )
        title = (
            f"{digest.frequency.title()} mentoring digest, "
            f"{since.astimezone(zone):%d %b} – {until.astimezone(zone):%d %b}"
        )
        chart = bar_chart_png(per_day)
        return OutgoingMessage(
            text="Answered questions per day are in the chart.",
            title=title,
            sections=tuple(sections),
            attachments=(
                Attachment("answered-per-day.png", chart, "image/png", "Answered per day"),
            ),
            **{**base, "channel": digest.channel},
        )

    def digest_reads(
        self, session: Session, delivery: Delivery
    ) -> Callable[[Session, datetime], None]:
        """What to record once a digest is posted: its time, and who read which reply."""
        digest_id = delivery.digest_id

        def after_sent(session: Session, now: datetime) -> None:
            digest = session.get(Digest, digest_id)
            if digest is None:
                return
            since = self._digest_since(digest, delivery.due_at)
            shared = session.exec(
                select(Reply)
                .join(Learner, col(Learner.id) == Reply.learner_id)
                .where(
                    Learner.workspace_id == digest.workspace_id,
                    readable_by_leads(),
                    col(Reply.created_at) >= since,
                    col(Reply.created_at) < delivery.due_at,
                )
                .limit(5)
            ).all()
            reader = session.get(Learner, digest.created_by) if digest.created_by else None
            self._record_reads(
                session, list(shared), reader, f"digest in <#{digest.channel}>", "digest"
            )
            digest.last_sent_at = delivery.due_at
            session.add(digest)

        return after_sent

    def digest_failed(self, session: Session, delivery: Delivery, reason: str) -> None:
        """Tell the lead who set the digest up; the next one covers this period too."""
        digest = session.get(Digest, delivery.digest_id) if delivery.digest_id else None
        if digest is None or digest.created_by is None:
            return
        queue_delivery(
            session,
            key=f"notice:digest:{delivery.id}",
            learner_id=digest.created_by,
            kind="notice",
            origin="learner",
            course_id=delivery.course_id,
            lesson_id=delivery.lesson_id,
            day=0,
            body=(
                f"I couldn't post the {digest.frequency} digest in <#{digest.channel}>: {reason}. "
                f"Invite me to that channel, or pick another with `{grammar.PREFIX} digest "
                "#channel weekly`. The next digest will cover this period too."
            ),
            due_at=self.clock(),
        )

    # ------------------------------------------------------------------ welcome

    def welcome_text(
        self, session: Session, delivery: Delivery, learner: Learner, workspace: Workspace
    ) -> str:
        enrolment = session.get(Enrolment, delivery.enrolment_id) if delivery.enrolment_id else None
        course = self.catalog.get(delivery.course_id)
        schedule = self.schedule_for(learner, workspace)
        who = (
            mention(enrolment.assigned_by)
            if enrolment and enrolment.assigned_by
            else "This workspace"
        )
        first = (
            f"{schedule.local(enrolment.next_due_at):%A %d %B at %H:%M}"
            if enrolment and enrolment.next_due_at
            else "soon"
        )
        return (
            f"Hi {mention(learner.user_id)}! I'm mentorbot, a mentoring bot. {who} enrolled you "
            f"in **{course.title if course else delivery.course_id}**. Lessons arrive here "
            f"{schedule.describe()}: a few short snippets and one discussion question; just "
            f"reply in this DM. Your first lesson: {first}. {self._visibility_sentence(workspace)} "
            f"Say `{grammar.PREFIX} pause` to pause, `{grammar.PREFIX} forget-me` to stop and "
            f"delete your data, or `{grammar.PREFIX} help` for everything else."
        )
