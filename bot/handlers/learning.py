"""A learner's own course commands: start, next, skip, snooze, schedule, pause, away,
progress."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlmodel import col, func, select

from bot import commands as grammar
from bot.commands import Command
from bot.context import ACTIVE, AWAITING_CONTINUE, PAUSED, STOPPED, WAITING_CONTENT, Context
from bot.handlers import handles
from bot.mentoring import remaining_practices
from bot.messages import Action, Outcome
from bot.models import Delivery, Enrolment, Reply
from bot.outbox import queue_delivery
from bot.questions import name_of, numbered_questions, resolve_target, situation
from bot.router import newest_open
from bot.schedule import (
    AWAY_DATE,
    AWAY_SPAN,
    QUIET_FROM,
    Schedule,
    ScheduleError,
    format_days,
    parse_schedule_args,
    parse_snooze,
)
from bot.stats import counts
from bot.text import learner_text
from bot.wording import plural, quote, schedule_sentence, workspace_privacy

if TYPE_CHECKING:
    from bot.service import MentorService

GONE_TEXT = "That question is no longer available; nothing was changed."


@handles("help")
def help_(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    enrolment = svc.enrolment(ctx)
    where = f"\n\nYou are on {svc.position(enrolment)}." if enrolment is not None else ""
    intro = (
        "I'm mentorbot: each delivery day I send you a short lesson and one discussion "
        "question in this DM. Your replies are kept so you can look back on them. "
        + workspace_privacy(ctx.workspace)
    )
    help_text = grammar.help_text(include_lead=ctx.is_lead)
    outcome.replies.append(ctx.answer(f"{intro}{where}\n\n{help_text}"))


@handles("courses")
def courses(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    enrolment = svc.enrolment(ctx)
    lines = ["Courses:"]
    for course in svc.catalog.courses.values():
        mark = " (your course)" if enrolment and enrolment.course_id == course.id else ""
        lessons = plural(len(course.lessons), "lesson")
        lines.append(f"• `{course.id}` — {course.title}, {lessons}{mark}")
    lines.append(f"Start one with `{grammar.PREFIX} start COURSE`.")
    outcome.replies.append(ctx.answer("\n".join(lines)))


@handles("start")
def start(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    if command.args:
        wanted = " ".join(command.args)
        course = svc.catalog.get(wanted)
        if course is None:
            names = ", ".join(f"`{c}`" for c in svc.catalog.courses)
            outcome.replies.append(
                ctx.answer(f"There is no course called `{wanted}`. Courses: {names}.")
            )
            return
        current = svc.enrolment(ctx)
    else:
        current = svc.enrolment(ctx)
        course = (
            (svc.catalog.get(current.course_id) if current else None)
            or (
                svc.catalog.get(svc.settings.default_course)
                if svc.settings.default_course
                else None
            )
            or svc.workspace_course(ctx.workspace)
        )
    if current is not None and current.course_id == course.id:
        if current.status == PAUSED or current.away_until is not None:
            resume(svc, ctx, command, outcome)  # "start" after "stop": go on where they were
            return
        outcome.replies.append(
            ctx.answer(
                f"You are already taking {svc.position(current)}, so I didn't start it "
                f"again. {going_on(svc, ctx, current)}"
            )
        )
        return
    now = svc.clock()
    left = ""
    if current is not None:
        old = svc.catalog.get(current.course_id)
        left = (
            f"I stopped {old.title if old else current.course_id} ({svc.position(current)}); "
            "your replies there are kept. "
        )
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
    schedule = svc.schedule_for(ctx.learner, ctx.workspace)
    outcome.replies.append(
        ctx.answer(
            f"{left}Welcome to **{course.title}**! Here is your first lesson-day now. Reply in "
            "this DM to answer its question. "
            f"{schedule_sentence(schedule, svc.zone_is_default(ctx.learner, ctx.workspace))} "
            f"{workspace_privacy(ctx.workspace)}"
        )
    )
    svc.deliver_next_day(ctx, enrolment, outcome)


def continue_hint(svc: MentorService, enrolment: Enrolment) -> str:
    """How to go on once every day of the enrolment's lesson is out."""
    course, lesson = svc.course_lesson(enrolment)
    if course is None or lesson is None:
        return ""
    next_id, _title, following = course.following(lesson)
    if next_id is None:
        return f"That was its last lesson; `{grammar.PREFIX} courses` lists the others."
    if following is None:
        return (
            f"Lesson {next_id} isn't published yet; say `{grammar.PREFIX} continue` and "
            "I'll send it as soon as it is."
        )
    return f"Say `{grammar.PREFIX} continue` to go on to lesson {next_id}."


def going_on(svc: MentorService, ctx: Context, enrolment: Enrolment) -> str:
    """How this learner goes on from where they are, in one sentence: what ``next``
    would do for an active learner, ``continue`` after a lesson's last day."""
    if enrolment.status == WAITING_CONTENT:
        return f"I'll send lesson {enrolment.waiting_for_lesson} as soon as it is published."
    if enrolment.status == AWAITING_CONTINUE:
        return continue_hint(svc, enrolment)
    _, lesson = svc.course_lesson(enrolment)
    if lesson is not None and enrolment.day >= lesson.day_count(svc.settings.snippets_per_day):
        return (
            f"That was this lesson's last day; say `{grammar.PREFIX} next` when you want to go on."
        )
    nxt = svc.next_lesson_day(enrolment)
    when = f"Your next lesson-day comes {svc.when(ctx, nxt)}. " if nxt else ""
    return f"{when}Say `{grammar.PREFIX} next` to get the next lesson-day now."


@handles("next", "continue")
def next_(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    enrolment = svc.enrolment(ctx)
    if enrolment is None:
        outcome.replies.append(svc.not_enrolled(ctx))
        return
    if enrolment.status in (AWAITING_CONTINUE, WAITING_CONTENT):
        svc.advance_lesson(ctx, enrolment, outcome)
    else:
        svc.deliver_next_day(ctx, enrolment, outcome)
    if enrolment.away_until is not None:
        # Going on to a new lesson makes the enrolment active again; it still wakes only
        # when the away period is over.
        schedule = svc.schedule_for(ctx.learner, ctx.workspace)
        enrolment.next_due_at = svc.back_on(schedule, enrolment.away_until)
        # Named by the day it came with, so a second `next` does not repeat it word for word.
        sent = f"Day {enrolment.day}, as you asked. " if outcome.deliveries else ""
        outcome.replies.append(
            ctx.answer(
                f"{sent}You are still away until "
                f"{day_name(enrolment.away_until, svc.clock())}: I send nothing by myself "
                f"until then. `{grammar.PREFIX} resume` ends it sooner."
            )
        )


@handles("not-yet")
def not_yet(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    enrolment = svc.enrolment(ctx)
    if enrolment is None:
        outcome.replies.append(svc.not_enrolled(ctx))
        return
    if enrolment.status != AWAITING_CONTINUE:
        outcome.replies.append(ctx.answer(f"No rush. {going_on(svc, ctx, enrolment)}"))
        return
    # The planner asks twice: the prompt, then the summary, which says it won't again.
    summarised = ctx.session.exec(
        select(Delivery.id).where(
            Delivery.enrolment_id == enrolment.id,
            Delivery.lesson_id == enrolment.lesson_id,
            Delivery.kind == "summary",
        )
    ).first()
    again = "" if summarised else "I'll ask once more on your next delivery day. "
    outcome.replies.append(ctx.answer(f"No rush. {again}{continue_hint(svc, enrolment)}"))


def question_for(
    svc: MentorService, ctx: Context, command: Command, outcome: Outcome, missing: str
) -> Delivery | None:
    """The question a command is about: a number (``skip 3``), the button's question,
    else the newest open one."""
    items = numbered_questions(ctx.session, ctx.learner.id or 0)
    if command.args and command.args[0].isdigit():
        number = int(command.args[0])
        found = next((i for i in items if i.number == number), None)
        if found is None:
            outcome.replies.append(
                ctx.answer(f"There is no question {number}. `{grammar.PREFIX} open` lists yours.")
            )
            return None
        if not found.is_open:
            state = "answered" if found.answer else "skipped"
            outcome.replies.append(ctx.answer(f"Question {number} is already {state}."))
            return None
        return found.delivery
    target = resolve_target(
        ctx.session, ctx.learner, ctx.event.delivery_id, ctx.event.answers_message
    )
    if target is not None:
        if target.question_id is None:
            outcome.replies.append(ctx.answer(GONE_TEXT))
            return None
        return ctx.session.get(Delivery, target.question_id)
    now = svc.clock()
    chosen = newest_open(situation(ctx.session, ctx.learner, now, None, svc.settings.answer_window))
    if chosen is None:
        outcome.replies.append(ctx.answer(missing))
        return None
    return ctx.session.get(Delivery, chosen.id)


@handles("skip")
def skip(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    question = question_for(svc, ctx, command, outcome, "There is no open question to skip.")
    if question is None:
        return
    question.skipped_at = svc.clock()
    ctx.session.add(question)
    outcome.replies.append(ctx.answer(f"Skipped: {quote(question.question or '', 120)}."))
    svc.after_question_closed(ctx, question, outcome)


@handles("snooze")
def snooze(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    question = question_for(
        svc, ctx, Command("snooze"), outcome, "There is no open question to be reminded about."
    )
    if question is None:
        return
    try:
        hours = parse_snooze(command.args)
    except ScheduleError as exc:
        outcome.replies.append(ctx.answer(f"Sorry, {exc}."))
        return
    schedule = svc.schedule_for(ctx.learner, ctx.workspace)
    now = svc.clock()
    at = now + timedelta(hours=hours)
    if schedule.local(at).time() >= QUIET_FROM or schedule.local(at).date() != (
        schedule.local_date(now)
    ):
        at = max(at, schedule.next_after(now))
    if ctx.session.exec(select(Delivery.id).where(Delivery.key == f"snooze:{question.id}")).first():
        outcome.replies.append(ctx.answer("I'll already remind you about this question."))
        return
    # A reminder gives way to a newer question (bot.rendering); promise only what holds.
    newer, lesson_day = _next_question(svc, ctx)
    before = ""
    if newer is not None and newer <= at:
        if question.kind == "lesson" and newer == lesson_day:
            outcome.replies.append(
                ctx.answer(
                    f"OK. Your next lesson-day comes first, {svc.when(ctx, newer)}, and it "
                    "brings this question up again."
                )
            )
            return
        if newer - now < SNOOZE_ROOM:
            outcome.replies.append(
                ctx.answer(
                    f"Your next question comes sooner, {svc.when(ctx, newer)}, so I won't "
                    f"remind you after it. This one stays open: `{grammar.PREFIX} open` lists it."
                )
            )
            return
        at, before = newer - SNOOZE_AHEAD, ", before your next question"
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
    # The snooze replaces the question's own reminder: one reminder, at the time asked.
    question.remind_at = None
    ctx.session.add(question)
    ctx.session.exec(
        update(Delivery)  # type: ignore[call-overload]
        .where(col(Delivery.key) == f"remind:{question.id}", col(Delivery.status) == "pending")
        .values(status="cancelled", error="replaced by a snooze")
    )
    about = name_of(ctx.session, question)
    outcome.replies.append(
        ctx.answer(f"OK, I'll remind you of {about} on {svc.when(ctx, at)}{before}.")
    )


SNOOZE_ROOM = timedelta(minutes=30)  # less than this before the next question: no snooze
SNOOZE_AHEAD = timedelta(minutes=5)  # a snooze that would fall after it comes this early


def _next_question(svc: MentorService, ctx: Context) -> tuple[datetime | None, datetime | None]:
    """When the learner's next lesson or practice question comes, if known (the next
    lesson-day, a practice check-in an answer planned, one already queued), and the
    next lesson-day itself."""
    lesson_day = svc.next_lesson_day(svc.enrolment(ctx))
    check_in = ctx.session.exec(
        select(func.min(Reply.follow_up_at)).where(Reply.learner_id == ctx.learner.id)
    ).one()
    queued = ctx.session.exec(
        select(func.min(Delivery.due_at)).where(
            Delivery.learner_id == ctx.learner.id,
            Delivery.status == "pending",
            col(Delivery.kind).in_(("lesson", "practice")),
        )
    ).one()
    known = [t for t in (lesson_day, check_in, queued) if t is not None]
    return (min(known) if known else None), lesson_day


@handles("schedule")
def schedule_(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    if not command.args:
        schedule = svc.schedule_for(ctx.learner, ctx.workspace)
        nxt = svc.next_lesson_day(svc.enrolment(ctx))
        nxt_text = f" Next lesson-day: {svc.when(ctx, nxt)}." if nxt else ""
        outcome.replies.append(
            ctx.answer(
                f"{schedule_sentence(schedule, svc.zone_is_default(ctx.learner, ctx.workspace))}"
                f"{nxt_text}\nFor example `{grammar.PREFIX} schedule 08:30 mon,wed,fri "
                "Europe/Berlin`."
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
    enrolment = svc.enrolment(ctx)
    schedule = svc.schedule_for(ctx.learner, ctx.workspace)
    if enrolment is not None and enrolment.away_until is not None:
        enrolment.next_due_at = svc.back_on(schedule, enrolment.away_until)
        enrolment.updated_at = svc.clock()
    elif enrolment is not None and enrolment.status == ACTIVE:
        enrolment.next_due_at = svc.next_slot(ctx, delivered_today=svc.lesson_today(ctx))
        enrolment.updated_at = svc.clock()
    elif enrolment is not None and enrolment.next_due_at is not None:
        # After the last lesson-day (the practice phase's weekly check-in, the prompts):
        # the same local day, at the new time, so nothing arrives at the old one.
        moved = schedule.first_on_or_after(schedule.local_date(enrolment.next_due_at))
        enrolment.next_due_at = moved if moved > svc.clock() else schedule.next_after(svc.clock())
        enrolment.updated_at = svc.clock()
    nxt = svc.next_lesson_day(enrolment)
    nxt_text = f" Next lesson-day: {svc.when(ctx, nxt)}." if nxt else ""
    outcome.replies.append(ctx.answer(f"Done: lessons arrive at {schedule.describe()}.{nxt_text}"))


@handles("pause")
def pause(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    enrolment = svc.enrolment(ctx)
    if enrolment is None:
        # Also the answer to "stop" from someone the bot sends nothing to.
        outcome.replies.append(
            ctx.answer(
                "You are not taking a course, so I send you nothing; there is nothing to "
                f"pause. `{grammar.PREFIX} start` begins one whenever you like."
            )
        )
        return
    if enrolment.away_until is not None:
        last_day = enrolment.away_until
        enrolment.status, enrolment.away_until, enrolment.next_due_at = PAUSED, None, None
        enrolment.updated_at = svc.clock()
        outcome.replies.append(
            ctx.answer(
                f"You were away until {day_name(last_day, svc.clock())}; now you are paused "
                f"with no end date. I won't send anything until you say `{grammar.PREFIX} "
                "resume`. Your place and your replies are kept."
            )
        )
        return
    if enrolment.status == PAUSED:
        outcome.replies.append(ctx.answer("You are already paused."))
        return
    enrolment.status = PAUSED
    enrolment.next_due_at = None  # nothing is due until `resume` sets the next slot
    enrolment.updated_at = svc.clock()
    outcome.replies.append(
        ctx.answer(
            f"Paused. I won't send anything until you say `{grammar.PREFIX} resume`. "
            "Your place and your replies are kept."
        )
    )


@handles("resume")
def resume(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    enrolment = svc.enrolment(ctx)
    if enrolment is None:
        outcome.replies.append(svc.not_enrolled(ctx))
        return
    if enrolment.status != PAUSED and enrolment.away_until is None:
        outcome.replies.append(ctx.answer("You are not paused."))
        return
    svc.come_back(enrolment)
    # At most one lesson-day per local day, also around a pause.
    enrolment.next_due_at = svc.next_slot(ctx, delivered_today=svc.lesson_today(ctx))
    enrolment.updated_at = svc.clock()
    nxt = svc.next_lesson_day(enrolment)
    if nxt is not None:
        text = f"Welcome back! Next lesson-day: {svc.when(ctx, nxt)}."
    elif enrolment.status == WAITING_CONTENT:
        text = f"Welcome back! {going_on(svc, ctx, enrolment)}"
    else:
        # Every day of the lesson is out. The planner asks "continue?" at most twice per
        # lesson, so the learner may have been asked already: say how to go on instead
        # of promising to ask.
        _, lesson = svc.course_lesson(enrolment)
        done = f"You've had every day of {lesson.name}. " if lesson else ""
        text = f"Welcome back! {done}{continue_hint(svc, enrolment)}".strip()
    outcome.replies.append(ctx.answer(text))


def phase(svc: MentorService, ctx: Context, enrolment: Enrolment) -> str:
    """Where the learner is: lesson, practice phase, waiting for a lesson, finished."""
    if enrolment.away_until is not None:
        return f"away until {day_name(enrolment.away_until, svc.clock())}"
    if enrolment.status == PAUSED:
        return "paused"
    course, lesson = svc.course_lesson(enrolment)
    if enrolment.status == ACTIVE or course is None or lesson is None:
        return "lesson"
    left = len(remaining_practices(ctx.session, ctx.learner.id or 0, lesson))
    weekly = f"a practice check-in each week ({plural(left, 'practice')} to go)" if left else ""
    if (
        weekly
        and ctx.session.exec(
            select(Delivery.id).where(
                Delivery.key == f"notice:phase-stopped:{enrolment.id}:{lesson.id}"
            )
        ).first()
    ):
        weekly = ""  # stopped after check-ins went unanswered (bot.mentoring)
    if enrolment.status == WAITING_CONTENT:
        waiting = f"waiting for lesson {enrolment.waiting_for_lesson} to be published"
        return f"{waiting}; meanwhile {weekly}" if weekly else waiting
    next_id = course.following(lesson)[0]
    offer = f" (say `{grammar.PREFIX} continue` for lesson {next_id})" if next_id else ""
    if weekly:
        return f"practice phase: {weekly}{offer}"
    return f"finished{offer}" if next_id else "finished"


AWAY_MAX_DAYS = 365  # the longest away period, today included
AWAY_USAGE = (
    f"`{grammar.PREFIX} away 3d`, `{grammar.PREFIX} away 2w` or "
    f"`{grammar.PREFIX} away until YYYY-MM-DD`"
)


def away_last_day(args: tuple[str, ...], today: date) -> date:
    """The last local day of the away period ``args`` ask for. ``3d`` and ``2w`` count
    today as the first day away (``away 1d``: just today); ``until YYYY-MM-DD`` names
    the last day away. Raises ``ValueError`` with one line for the learner."""
    words = list(args)
    if words and words[0].lower() == "until":
        words = words[1:]
    text = " ".join(words).strip()
    if not text:
        raise ValueError(f"say for how long: {AWAY_USAGE}")
    shown = learner_text(text[:40])
    span = AWAY_SPAN.match(text)
    if span is not None:
        count = int(span["count"])
        days = count * (7 if span["unit"].lower().startswith("w") else 1)
        if days == 0:
            raise ValueError(f"`{shown}` is no time away: give at least 1d")
        if days > AWAY_MAX_DAYS:
            raise ValueError(
                f"{shown} is more than a year away: the longest away period is "
                f"{AWAY_MAX_DAYS} days, or use `{grammar.PREFIX} pause`"
            )
        return today + timedelta(days=days - 1)
    if not AWAY_DATE.match(text):
        raise ValueError(f"I can't read `{shown}` as a time away: use {AWAY_USAGE}")
    try:
        last = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"{shown} is not a date in the calendar: write YYYY-MM-DD") from None
    if last < today:
        raise ValueError(
            f"{last:%Y-%m-%d} is in the past: give today or a later day, e.g. "
            f"`{grammar.PREFIX} away until {today + timedelta(days=7):%Y-%m-%d}`"
        )
    if (last - today).days >= AWAY_MAX_DAYS:
        longest = today + timedelta(days=AWAY_MAX_DAYS - 1)
        raise ValueError(
            f"{last:%Y-%m-%d} is more than a year away: the latest is {longest:%Y-%m-%d}, "
            f"or use `{grammar.PREFIX} pause`"
        )
    return last


def day_name(day: date, now: datetime) -> str:
    """``Tuesday 06 April``, with the year when it is not this one."""
    return f"{day:%A %d %B}" + (f" {day.year}" if day.year != now.year else "")


def _holidays_between(schedule: Schedule, first: date, back: datetime) -> list[str]:
    """The public holidays that keep the learner's return from being earlier."""
    found = []
    for day, _instant, holiday in schedule.slots(first):
        if day >= schedule.local_date(back):
            break
        named = schedule.holiday_name(day) if holiday else None
        if named is not None:
            found.append(named[0])
    return found


@handles("away")
def away(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    enrolment = svc.enrolment(ctx)
    if enrolment is None:
        outcome.replies.append(svc.not_enrolled(ctx))
        return
    schedule = svc.schedule_for(ctx.learner, ctx.workspace)
    now = svc.clock()
    today = schedule.local_date(now)
    try:
        last_day = away_last_day(command.args, today)
    except ValueError as exc:
        outcome.replies.append(ctx.answer(f"Sorry, {exc}."))
        return
    was_away = enrolment.away_until is not None
    back = svc.go_away(enrolment, schedule, last_day, now)
    # A reminder the learner asked for (snooze) would otherwise still come while away.
    ctx.session.exec(
        update(Delivery)  # type: ignore[call-overload]
        .where(
            col(Delivery.learner_id) == ctx.learner.id,
            col(Delivery.status) == "pending",
            col(Delivery.kind) == "reminder",
            col(Delivery.due_at) < back,
        )
        .values(status="cancelled", error="the learner is away")
    )
    days = plural((last_day - today).days + 1, "day")
    holidays = _holidays_between(schedule, last_day + timedelta(days=1), back)
    with_what = " with your next lesson-day" if svc.next_lesson_day(enrolment) else ""
    after = ""
    if holidays:
        names = ", ".join(holidays[:-1]) + (" and " if len(holidays) > 1 else "") + holidays[-1]
        after = f", after the public {'holidays' if len(holidays) > 1 else 'holiday'} {names}"
    opening = "Changed: you are away" if was_away else "Enjoy your time away! You are away"
    outcome.replies.append(
        ctx.answer(
            f"{opening} for {days}, through {day_name(last_day, now)}: no lessons, reminders "
            f"or check-ins until then. I'll be back on {svc.when(ctx, back)}{with_what}{after}. "
            f"Say `{grammar.PREFIX} resume` to come back sooner; your place and your replies "
            "are kept."
        )
    )


@handles("progress")
def progress(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    enrolment = svc.enrolment(ctx)
    if enrolment is None:
        outcome.replies.append(svc.not_enrolled(ctx))
        return
    numbers = counts(ctx.session, ctx.learner.id or 0, enrolment.id)
    schedule = svc.schedule_for(ctx.learner, ctx.workspace)
    nxt = svc.next_lesson_day(enrolment)
    if nxt is not None:
        next_text = svc.when(ctx, nxt)
    elif enrolment.status == PAUSED and enrolment.away_until is None:
        next_text = f"when you say `{grammar.PREFIX} resume`"
    else:
        next_text = "none left in this lesson"
    lines = [
        f"Course: {svc.position(enrolment)}",
        f"Answers: {numbers.summary()}",
        f"Phase: {phase(svc, ctx, enrolment)}",
        f"Schedule: {schedule.describe()}",
        f"Next lesson-day: {next_text}",
    ]
    toggle = (
        Action("resume", "Resume", "resume", "primary")
        if enrolment.status == PAUSED or enrolment.away_until is not None
        else Action("pause", "Pause", "pause")
    )
    outcome.replies.append(
        ctx.answer("\n".join(lines), title="Your progress", actions=(toggle,), kind="progress")
    )
