"""What leads can do, and the privacy rules that bound it.

A reply is private to its author unless the learner shares it, or the workspace had
made replies visible to leads when it was written. Leads only ever see replies that
pass ``readable_by_leads``, only in their own workspace, and every read is recorded so
the learner can see who read what. Users are spoken of as ``<@id>``, which Slack and
Discord render natively.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, func, select

from bot import commands as grammar
from bot.commands import Command
from bot.context import (
    ACTIVE,
    AWAITING_CONTINUE,
    CURRENT_STATES,
    PAUSED,
    STOPPED,
    WAITING_CONTENT,
    Context,
)
from bot.digests import digest_schedule, readable_by_leads, record_reads
from bot.handlers import handles
from bot.messages import Outcome, Section
from bot.models import Delivery, Digest, Enrolment, Learner
from bot.outbox import notice, queue_delivery, queue_many
from bot.schedule import (
    ScheduleError,
    format_days,
    holiday_calendar_name,
    parse_clock,
    parse_days,
    parse_holidays,
    parse_zone,
    split_holidays,
)
from bot.stats import Counts, counts_for
from bot.text import learner_text, preview
from bot.wording import mention, plural, schedule_sentence, when

if TYPE_CHECKING:
    from bot.service import MentorService

# Learners `team` lists by name; Slack shows at most 50 blocks in one message.
TEAM_SHOWN = 40


def _people(ctx: Context, command: Command, verb: str) -> tuple[list[str], list[str]]:
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


@handles("assign")
def assign(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    people, notes = _people(ctx, command, "assign")
    if not people:
        notes.insert(
            0,
            f"Name the people to enrol, e.g. `{grammar.PREFIX} assign @ana @bo "
            f"{svc.catalog.default.id}`.",
        )
        outcome.replies.append(ctx.answer(" ".join(notes)))
        return
    course = svc.catalog.get(" ".join(command.args)) if command.args else None
    if command.args and course is None:
        names = ", ".join(f"`{c}`" for c in svc.catalog.courses)
        outcome.replies.append(
            ctx.answer(f"There is no course called `{' '.join(command.args)}`. Courses: {names}.")
        )
        return
    course = course or svc.workspace_course(ctx.workspace)
    enrolled, already = [], []
    for user_id in people:
        learner = svc.person(ctx, user_id)
        welcome = svc.enrol(ctx, learner, course.id, ctx.event.user)
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


@handles("unassign")
def unassign(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    people, notes = _people(ctx, command, "unassign")
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
        enrolment = svc.current_enrolment(ctx.session, learner) if learner else None
        if learner is None or enrolment is None:
            idle.append(mention(user_id))
            continue
        enrolment.status, enrolment.next_due_at = STOPPED, None
        enrolment.updated_at = svc.clock()
        ctx.session.exec(
            update(Delivery)  # type: ignore[call-overload]
            .where(col(Delivery.learner_id) == learner.id, col(Delivery.status) == "pending")
            .values(status="cancelled", error="unassigned by a lead")
        )
        course = svc.catalog.get(enrolment.course_id)
        told_at = svc.clock()
        if enrolment.away_until is not None:  # away means nothing from the bot until then
            schedule = svc.schedule_for(learner, ctx.workspace)
            told_at = max(told_at, svc.back_on(schedule, enrolment.away_until))
        body = (
            f"{mention(ctx.learner.user_id)} stopped your lessons in "
            f"**{course.title if course else enrolment.course_id}**, so no more lessons "
            f"or check-ins will come. Your replies are kept (`{grammar.PREFIX} history`). "
            f"`{grammar.PREFIX} start` begins the course again from its first lesson; "
            f"`{grammar.PREFIX} forget-me` deletes your data."
        )
        queue_delivery(  # lessons that stop without a word look like a broken bot
            ctx.session,
            **notice(
                f"notice:unassigned:{enrolment.id}",
                learner.id or 0,
                body,
                told_at,
                enrolment_id=enrolment.id,
                course_id=enrolment.course_id,
                lesson_id=enrolment.lesson_id,
            ),
        )
        stopped.append(mention(user_id))
    lines = []
    if stopped:
        lines.append(
            f"Stopped deliveries for {', '.join(stopped)}; each gets a DM saying so. "
            "Their replies are kept."
        )
    if idle:
        lines.append(f"Not taking a course here: {', '.join(idle)}.")
    outcome.replies.append(ctx.answer(" ".join(lines + notes)))


@handles("leads")
def leads(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    action = command.args[0].lower() if command.args else "list"
    if action == "list":
        found = ctx.session.exec(
            select(Learner).where(Learner.workspace_id == ctx.workspace.id, Learner.role == "lead")
        ).all()
        names = ", ".join(mention(lead.user_id) for lead in found) or "nobody added yet"
        outcome.replies.append(
            ctx.answer(f"Leads added here: {names}. Workspace admins are leads too.")
        )
        return
    if action not in ("add", "remove"):
        outcome.replies.append(
            ctx.answer(f"Use `{grammar.PREFIX} leads add @name` or `leads remove @name`.")
        )
        return
    people, notes = _people(ctx, command, f"leads {action}")
    if not people:
        example = f"Name someone, e.g. `{grammar.PREFIX} leads {action} @ana`."
        outcome.replies.append(ctx.answer(" ".join([example, *notes])))
        return
    for user_id in people:
        learner = svc.person(ctx, user_id)
        learner.role = "lead" if action == "add" else "learner"
        ctx.session.add(learner)
    who = ", ".join(mention(u) for u in people)
    text = (
        f"{who} can now use lead commands."
        if action == "add"
        else f"{who} can no longer use lead commands (workspace admins always can)."
    )
    outcome.replies.append(ctx.answer(" ".join([text, *notes])))


def status_of(
    svc: MentorService, learner: Learner, enrolment: Enrolment | None, numbers: Counts
) -> str:
    """A learner's state in a lead's words, with the answers behind it."""
    if learner.dm_blocked_at is not None:
        return "DMs blocked"
    if enrolment is None:
        return "not enrolled"
    if enrolment.away_until is not None:
        return f"away until {enrolment.away_until:%Y-%m-%d}"
    if enrolment.status == AWAITING_CONTINUE:
        course = svc.catalog.get(enrolment.course_id)
        lesson = course.lesson(enrolment.lesson_id) if course else None
        answered = f"{numbers.lessons_answered} of {numbers.lessons_asked} answered"
        if course and lesson and course.following(lesson)[0] is None:
            return f"finished, {answered}"
        return f"finished the lesson ({answered}), deciding whether to go on"
    return {ACTIVE: "active", PAUSED: "paused", WAITING_CONTENT: "waiting for the next lesson"}[
        enrolment.status
    ]


@handles("team")
def team(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    """The first ``TEAM_SHOWN`` learners by name, each with the same numbers as their own
    `progress`; past that, one line counts the rest. A message with thousands of
    sections would be unreadable and over every platform's size limit (Slack takes 50
    blocks), and the numbers come from a few grouped queries, not some per learner."""
    enrolled = (
        Learner.workspace_id == ctx.workspace.id,
        col(Learner.id).in_(select(Enrolment.learner_id)),
    )
    name = func.lower(func.coalesce(Learner.display_name, Learner.user_id))
    learners = ctx.session.exec(
        select(Learner).where(*enrolled).order_by(name, col(Learner.id)).limit(TEAM_SHOWN)
    ).all()
    if not learners:
        outcome.replies.append(
            ctx.answer(f"Nobody here is taking a course yet. Try `{grammar.PREFIX} assign @name`.")
        )
        return
    total = (
        len(learners)
        if len(learners) < TEAM_SHOWN
        else ctx.session.exec(select(func.count()).select_from(Learner).where(*enrolled)).one()
    )
    current = current_enrolments(ctx.session, [learner.id or 0 for learner in learners])
    # The same counts as the learner's own `progress`: their current enrolment.
    numbers_of = counts_for(
        ctx.session,
        {
            learner.id or 0: (current[learner.id].id if learner.id in current else None)
            for learner in learners
        },
    )
    sections = []
    # One clock for the whole list, the lead's own: each learner's local time would
    # put answers given at the same moment hours apart without saying so.
    reader = svc.schedule_for(ctx.learner, ctx.workspace)
    for learner in learners:
        enrolment = current.get(learner.id or 0)
        numbers = numbers_of[learner.id or 0]
        where = svc.position(enrolment) if enrolment else "—"
        last = (
            f"{reader.local(numbers.last_reply):%Y-%m-%d %H:%M}" if numbers.last_reply else "never"
        )
        sections.append(
            Section(
                mention(learner.user_id),
                f"{where}\n{numbers.summary().capitalize()} · streak {numbers.streak} · "
                f"last answer {last} · {status_of(svc, learner, enrolment, numbers)}",
            )
        )
    text = f"{plural(total, 'learner')}. Times are in {reader.zone.key}."
    if total > len(learners):
        text = (
            f"{plural(total, 'learner')}; the first {len(learners)} by name. Times are in "
            f"{reader.zone.key}."
        )
        sections.append(
            Section(
                None,
                f"…and {plural(total - len(learners), 'more learner')}. A digest covers the "
                f"whole team (`{grammar.PREFIX} digest #channel weekly`), and your operator "
                "can export every reply (`mentorbot export replies`).",
            )
        )
    outcome.replies.append(ctx.answer(text, title="Your team", sections=tuple(sections)))


def current_enrolments(session: Session, learner_ids: list[int]) -> dict[int, Enrolment]:
    """Each learner's current enrolment (as ``MentorService.current_enrolment``: the
    newest one not stopped), for many learners in one query."""
    found: dict[int, Enrolment] = {}
    for enrolment in session.exec(
        select(Enrolment)
        .where(
            col(Enrolment.learner_id).in_(learner_ids),
            col(Enrolment.status).in_(CURRENT_STATES),
        )
        .order_by(col(Enrolment.id).desc())
    ).all():
        found.setdefault(enrolment.learner_id, enrolment)
    return found


@handles("replies")
def replies_(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    from bot.models import Reply

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
    scope = " from " + ", ".join(mention(m) for m in command.mentions) if command.mentions else ""
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
    record_reads(
        ctx.session, [r for r, _ in found], ctx.learner, reader_name, "replies", svc.clock()
    )
    reader = svc.schedule_for(ctx.learner, ctx.workspace)  # dates on the lead's clock, as in team
    sections = tuple(
        Section(
            f"{mention(learner.user_id)} · {reply.lesson_id} · "
            f"{reader.local(reply.created_at):%Y-%m-%d} · {reply.question}",
            learner_text(reply.text if len(reply.text) <= 1500 else preview(reply.text, 1500)),
        )
        for reply, learner in found
    )
    outcome.replies.append(
        ctx.answer(
            f"{plural(len(found), 'reply', 'replies')}{scope} that leads may read: shared by "
            "their authors, or written while the workspace let leads read replies (newest "
            "first). Their authors can see that you read them.",
            title="Replies leads may read",
            sections=sections,
        )
    )


@handles("settings")
def settings_(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    ws = ctx.workspace
    if not command.args:
        lines = [
            f"Time zone: {ws.timezone or svc.settings.timezone}",
            f"Delivery time: {ws.delivery_time or svc.settings.delivery_time}",
            f"Delivery days: {ws.delivery_days or svc.settings.delivery_days}",
            f"Public holidays: {_holiday_summary(ws.holidays)}",
            f"Reply visibility: {ws.reply_visibility} "
            "(private: only shared replies reach leads; leads: leads read new replies)",
            f"Auto-enrol new members: {'on' if ws.auto_enrol else 'off'}",
            f"Course for new learners: {svc.workspace_course(ws).id}",
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
        message = _apply_setting(svc, ctx, name, value)
    except (ScheduleError, ValueError) as exc:
        outcome.replies.append(ctx.answer(f"Sorry, {exc}."))
        return
    ctx.session.add(ws)
    outcome.replies.append(ctx.answer(message))


def _apply_setting(svc: MentorService, ctx: Context, name: str, value: str) -> str:
    ws = ctx.workspace
    if name in ("timezone", "tz", "zone"):
        ws.timezone = parse_zone(value).key
    elif name == "time":
        ws.delivery_time = value = f"{parse_clock(value):%H:%M}"
    elif name == "days":
        ws.delivery_days = format_days(parse_days(value))
    elif name in ("holidays", "holiday"):
        ws.holidays = ",".join(parse_holidays(value)) or None
        _reschedule_workspace(svc, ctx)
        if ws.holidays is None:
            return "Saved: no public holidays. Lessons follow the delivery days only."
        return (
            f"Saved: no lessons, reminders or check-ins on the public holidays of "
            f"{_holiday_summary(ws.holidays)}, in each learner's own calendar; a lesson-day "
            "that falls on one moves to the next delivery day."
        )
    elif name == "visibility":
        if value.lower() not in ("private", "leads"):
            raise ValueError(f"visibility must be private or leads, not {value!r}")
        was, ws.reply_visibility = ws.reply_visibility, value.lower()
        told = _tell_visibility(svc, ctx) if was != ws.reply_visibility else 0
        return (
            f"Reply visibility is now **{ws.reply_visibility}**. It applies to replies written "
            "from now on, except answers to questions sent before; "
            f"{plural(told, 'learner')} taking a course got a DM saying so, and new learners "
            "are told in their welcome message and in help."
        )
    elif name in ("auto-enrol", "auto-enroll", "autoenrol"):
        if value.lower() not in ("on", "off"):
            raise ValueError(f"auto-enrol must be on or off, not {value!r}")
        ws.auto_enrol = value.lower() == "on"
    elif name == "course":
        course = svc.catalog.get(value)
        if course is None:
            raise ValueError(f"there is no course called {value!r}")
        ws.default_course = course.id
    else:
        raise ValueError(
            f"unknown setting {name!r}: use timezone, time, days, holidays, visibility, "
            "auto-enrol or course"
        )
    if name in ("timezone", "tz", "zone", "time", "days"):
        field = {"time": "delivery_time", "days": "delivery_days"}.get(name, "timezone")
        told = _reschedule_workspace(svc, ctx, tell=field)
        if told:
            return (
                f"Saved: {name} = {value}. {plural(told, 'learner')} whose lessons it moves "
                "got a DM saying when they come now."
            )
    return f"Saved: {name} = {value}."


VISIBILITY_NOTICE = "notice:visibility:"  # + learner id and when: see answers.file_answer


def _tell_visibility(svc: MentorService, ctx: Context) -> int:
    """A DM to everyone taking a course in the workspace that leads can now (or can no
    longer) read what they write: the promise under each question they got before
    was the other one. Returns how many were told."""
    now = svc.clock()
    learners = ctx.session.exec(
        select(Enrolment.learner_id, Enrolment.id)
        .join(Learner, col(Learner.id) == Enrolment.learner_id)
        .where(
            Learner.workspace_id == ctx.workspace.id,
            col(Enrolment.status).in_(CURRENT_STATES),
        )
    ).all()
    if ctx.workspace.reply_visibility == "leads":
        body = (
            "A lead changed a workspace setting: from now on your leads can read the replies "
            "you write here. What you wrote before stays as it was, and so do your answers to "
            "questions you got before this message (private unless you share them)."
        )
    else:
        body = (
            "A lead changed a workspace setting: from now on the replies you write here are "
            f"private to you unless you share one (`{grammar.PREFIX} share`). Replies you "
            "wrote before keep their setting."
        )
    queued = queue_many(
        ctx.session,
        [
            notice(
                f"{VISIBILITY_NOTICE}{learner_id}:{now.isoformat()}",
                learner_id,
                body,
                now,
                enrolment_id=enrolment_id,
            )
            for learner_id, enrolment_id in learners
        ],
    )
    return sum(queued.values())


def _holiday_summary(stored: str | None) -> str:
    """``DE-BY (Germany, Bayern), US-CA (United States, California)``, or ``none``."""
    codes = split_holidays(stored)
    if not codes:
        return "none"
    return ", ".join(f"{code} ({holiday_calendar_name(code)})" for code in codes)


def _reschedule_workspace(svc: MentorService, ctx: Context, tell: str | None = None) -> int:
    """New workspace defaults move the next delivery of everyone who uses them, and the
    day an away learner comes back. With ``tell`` (the learner's own field that would
    override the change), those whose lessons it moves get a DM saying when they come
    now: their welcome promised another time. Returns how many were told."""
    rows = ctx.session.exec(
        select(Enrolment, Learner)
        .join(Learner, col(Learner.id) == Enrolment.learner_id)
        .where(
            Learner.workspace_id == ctx.workspace.id,
            or_(
                Enrolment.status == ACTIVE,
                and_(col(Enrolment.away_until).is_not(None), col(Enrolment.status) != STOPPED),
            ),
        )
    ).all()
    now = svc.clock()
    notices: list[dict[str, object]] = []
    for enrolment, learner in rows:
        schedule = svc.schedule_for(learner, ctx.workspace)
        if enrolment.away_until is not None:
            enrolment.next_due_at = svc.back_on(schedule, enrolment.away_until)
        else:
            enrolment.next_due_at = schedule.next_after(now)
        ctx.session.add(enrolment)
        if tell is not None and getattr(learner, tell) is None:
            notices.append(
                notice(
                    f"notice:schedule:{learner.id}:{now.isoformat()}",
                    learner.id or 0,
                    "A lead changed when lessons arrive in this workspace. "
                    f"{schedule_sentence(schedule, False)} Next lesson-day: "
                    f"{when(schedule, enrolment.next_due_at)}.",
                    now,
                    enrolment_id=enrolment.id,
                )
            )
    return sum(queue_many(ctx.session, notices).values())


@handles("digest")
def digest(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
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
    schedule = digest_schedule(svc, ctx.workspace, frequency)
    found = existing or Digest(
        workspace_id=ctx.workspace.id or 0,
        channel=channel,
        frequency=frequency,
        created_at=svc.clock(),  # the first digest covers the time since (bot.digests)
    )
    found.frequency = frequency
    found.created_by = ctx.learner.id
    found.next_due_at = schedule.next_after(svc.clock())
    ctx.session.add(found)
    local = schedule.local(found.next_due_at)
    outcome.replies.append(
        ctx.answer(
            f"A {frequency} digest will be posted in <#{channel}>: participation, completion, "
            f"streaks, shared replies and a chart. The first on {local:%A %d %B at %H:%M} "
            f"({schedule.zone.key}). Private replies never appear in it."
        )
    )


@handles("reload")
def reload(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    problems = svc.reload_content(ctx.session)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        listing = "\n".join(f"• {p}" for p in errors[:20])
        outcome.replies.append(
            ctx.answer(
                f"The content has {plural(len(errors), 'error')}, so I kept the last good "
                f"version:\n{listing}"
            )
        )
        return
    lessons = sum(len(c.lessons) for c in svc.catalog.courses.values())
    warnings = f", {plural(len(problems), 'warning')}" if problems else ""
    outcome.replies.append(
        ctx.answer(
            f"Reloaded: {plural(len(svc.catalog.courses), 'course')}, "
            f"{plural(lessons, 'lesson')}{warnings}."
        )
    )
