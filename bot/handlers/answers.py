"""Free text and the commands about what a learner wrote: answers, notes, corrections.

``free_text`` files a message where ``bot.router.route`` says; nothing a learner
writes is dropped: when the bot is unsure it keeps the text as a note and asks.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlmodel import col, func, select

from bot import commands as grammar
from bot.commands import Command
from bot.context import Context
from bot.handlers import handles
from bot.handlers.leads import VISIBILITY_NOTICE
from bot.handlers.learning import going_on
from bot.mentoring import first_review, practice_for_answer
from bot.messages import Action, Outcome, Section
from bot.models import Delivery, Reply
from bot.practices import touches
from bot.questions import (
    Numbered,
    add_answer,
    answer_to,
    append,
    name_of,
    numbered_questions,
    pending_ask,
    replies,
    resolve_target,
    situation,
)
from bot.router import (
    Route,
    RouteKind,
    Target,
    TextReading,
    Verdict,
    reads_as_question,
    route,
)
from bot.schedule import practice_time
from bot.text import MAX_REPLY_CHARS, clean_reply, learner_text, preview
from bot.wording import plural, quote, reply_privacy

if TYPE_CHECKING:
    from bot.service import MentorService

_ANSWER = re.compile(r"^\s*(?:/?mentor\s+)?answer\s+(\S+)\s*(.*)$", re.IGNORECASE | re.DOTALL)
_TOUCHES = (
    "It touches on **{p}**; I'll check back {day} on how that goes.",
    "I hear **{p}** in it. I'll ask {day} how it's going.",
    "That connects with **{p}**; let's look at it again {day}.",
)
# When the answer shares no words with any practice: one to try, not a claimed link.
_OFFERS = (
    "One practice from this lesson to try: **{p}**; I'll check back {day} on how it goes.",
    "A practice to try from this lesson: **{p}**. I'll ask {day} how it's going.",
    "Something to try this week: **{p}**; let's look at it again {day}.",
)
_ACKS = (
    "Thanks, I kept your answer to {q}.",
    "Got it: that's your answer to {q}.",
    "Saved as your answer to {q}.",
    "Thank you. I've filed this under {q}.",
)


def _name(ctx: Context, question: Delivery | None, fallback: str = "") -> str:
    if question is None:
        return quote(fallback)
    return name_of(ctx.session, question)


def _answer_name(ctx: Context, answer: Reply) -> str:
    question = ctx.session.get(Delivery, answer.delivery_id) if answer.delivery_id else None
    return _name(ctx, question, answer.question)


def unusable(svc: MentorService, ctx: Context, reading: TextReading, outcome: Outcome) -> None:
    """Text the router refused on its words alone; each gets its own plain answer."""
    if reading.verdict is Verdict.EMPTY:
        text = "That message was empty, so there was nothing to keep."
    elif reading.verdict is Verdict.INVISIBLE:
        text = (
            "That message holds only invisible characters (zero-width spaces or similar), "
            "so it isn't an answer and I didn't keep it. Write your answer in words."
        )
    elif reading.verdict is Verdict.TOO_LONG:
        text = reading.message or (
            f"That message is {len(ctx.event.text):,} characters; I keep replies up to "
            f"{MAX_REPLY_CHARS:,}. Nothing was saved: please shorten it or send it in parts "
            "(parts sent within a few minutes are added to the same answer)."
        )
    else:
        text = reading.message or f"Say `{grammar.PREFIX} help` for the commands."
    outcome.replies.append(ctx.answer(text))


def _clean(ctx: Context) -> tuple[str, str]:
    """The text to keep, and a note to the learner when anything had to change."""
    text = clean_reply(ctx.event.text)
    if "\x00" in text:
        # PostgreSQL cannot store NUL in text; it is never meaningful in a reply.
        return text.replace("\x00", ""), " (I removed a NUL control character from it.)"
    return text, ""


def _promised(ctx: Context, question: Delivery) -> str:
    """Who may read an answer: what the workspace says now, unless leads were given the
    right to read replies after ``question`` went out under "private to you"."""
    if ctx.workspace.reply_visibility != "leads":
        return ctx.workspace.reply_visibility
    changed = ctx.session.exec(
        select(func.max(Delivery.created_at)).where(
            Delivery.learner_id == ctx.learner.id,
            Delivery.kind == "notice",
            col(Delivery.key).startswith(VISIBILITY_NOTICE),
        )
    ).one()
    asked = question.sent_at or question.due_at
    if changed is not None and asked is not None and asked <= changed:  # doubt: private
        return "private"
    return "leads"


def _asked_me(text: str, answer: Reply) -> str:
    """What to add when a message filed as an answer asks something: a mentor who
    cannot answer says so, and says who can."""
    if not reads_as_question(text):
        return ""
    if answer.visibility == "leads" or answer.shared_at is not None:
        return (
            " It reads like a question: I can't answer questions myself, but your leads "
            "can read it."
        )
    return (
        " It reads like a question: I can't answer questions myself. To ask your lead, "
        f"share this answer with `{grammar.PREFIX} share`."
    )


def free_text(svc: MentorService, ctx: Context, outcome: Outcome) -> None:
    text, changed = _clean(ctx)
    target = resolve_target(
        ctx.session, ctx.learner, ctx.event.delivery_id, ctx.event.answers_message
    )
    now = svc.clock()
    where = route(
        situation(ctx.session, ctx.learner, now, target, svc.settings.answer_window), text
    )
    file_text(svc, ctx, where, text, changed, outcome)


def file_text(
    svc: MentorService, ctx: Context, where: Route, text: str, changed: str, outcome: Outcome
) -> None:
    now = svc.clock()
    if where.kind is RouteKind.CONFIRM:
        svc.run_command(ctx, f"{grammar.PREFIX} {where.command}", outcome)
        return
    if where.kind is RouteKind.ADDITION and where.reply_id is not None:
        answer = ctx.session.get(Reply, where.reply_id)
        if answer is not None:
            append(answer, text, now)
            ctx.session.add(answer)
            outcome.replies.append(
                ctx.answer(
                    f"Added to your answer to {_answer_name(ctx, answer)}."
                    f"{_asked_me(text, answer)}{changed}",
                    kind="answer-ack",
                    delivery_id=answer.delivery_id,
                )
            )
            return
    if where.kind is RouteKind.ANSWER and where.question_id is not None:
        question = ctx.session.get(Delivery, where.question_id)
        if question is not None:
            file_answer(svc, ctx, question, text, changed, outcome)
            return
    note = Reply(
        learner_id=ctx.learner.id or 0,
        kind="note",
        course_id="",
        lesson_id="",
        question="",
        text=text,
        platform_message_id=ctx.event.message_id,
        created_at=now,
        visibility=ctx.workspace.reply_visibility,
    )
    question = (
        ctx.session.get(Delivery, where.question_id)
        if where.kind is RouteKind.ASK and where.question_id is not None
        else None
    )
    if question is not None:
        note.candidate_id = question.id
        note.course_id, note.lesson_id = question.course_id, question.lesson_id
    ctx.session.add(note)
    if question is not None:
        outcome.replies.append(_ask(svc, ctx, question, where.reason, changed))
        return
    if where.reason == "about-bot":
        enrolment = svc.enrolment(ctx)
        how = (
            "Reply here to answer your open question"
            if enrolment is not None
            else f"Say `{grammar.PREFIX} start` to begin"
        )
        outcome.replies.append(
            ctx.answer(
                "I'm mentorbot, a mentoring bot: each delivery day I send you a short lesson "
                "and one discussion question here, and I keep your answers so you can look "
                "back on them. I can't answer questions myself; your lead can. "
                f"{how}, or see `{grammar.PREFIX} help` for everything I do. "
                f"(I kept your message as a note.){changed}"
            )
        )
        return
    if where.reason == "gone":
        outcome.replies.append(
            ctx.answer(
                "That question is no longer available and you have no open question, so I kept "
                f"your message as a note (it's in `{grammar.PREFIX} history`).{changed}"
            )
        )
        return
    outcome.replies.append(_noted(svc, ctx, changed))


def _ask(svc: MentorService, ctx: Context, question: Delivery, reason: str, changed: str):  # type: ignore[no-untyped-def]
    if reason == "busy":
        return ctx.answer(
            f"No problem, it can wait. Shall I remind you of {_name(ctx, question)} later "
            f"(`{grammar.PREFIX} snooze`)? I've kept your message as a note; if it was your "
            f"answer, say `{grammar.PREFIX} yes`.{changed}",
            actions=(
                Action("snooze", "Remind me later", "snooze", "primary"),
                Action("yes", "It was my answer", "yes"),
            ),
            delivery_id=question.id,
            kind="ask",
        )
    why = {
        "late": "That question is from a while ago, so I'd rather check.",
        "gone": "The message you replied to isn't one of your open questions.",
    }.get(reason, "")
    return ctx.answer(
        f"{why} Is this your answer to {_name(ctx, question)}? I've kept it as a note until "
        f"you say (`{grammar.PREFIX} yes` or `{grammar.PREFIX} note`).{changed}".strip(),
        actions=(
            Action("yes", "Yes, it's my answer", "yes", "primary"),
            Action("note", "No, just a note", "note"),
        ),
        delivery_id=question.id,
        kind="ask",
    )


def _noted(svc: MentorService, ctx: Context, changed: str):  # type: ignore[no-untyped-def]
    enrolment = svc.enrolment(ctx)
    stopped = svc.stopped_by_lead(ctx) if enrolment is None else None
    if stopped is not None:
        return ctx.answer(
            f"I kept your message as a note. You are not taking a course now: {stopped}{changed}"
        )
    if enrolment is None:
        return ctx.answer(
            "Hi! I'm mentorbot, a mentoring bot: I send a short lesson and a discussion "
            f"question each delivery day. Say `{grammar.PREFIX} start` to begin, or "
            f"`{grammar.PREFIX} help` to see what I can do. I kept your message as a note.{changed}"
        )
    nxt = svc.next_lesson_day(enrolment)
    later = (
        f" The next question comes {svc.when(ctx, nxt)}; say `{grammar.PREFIX} next` to get it now."
        if nxt
        else f" {going_on(svc, ctx, enrolment)}"
    )
    return ctx.answer(
        f"You have no open question, so I kept this as a note (it's in "
        f"`{grammar.PREFIX} history`).{later}{changed}",
        kind="note-ack",
    )


def file_answer(
    svc: MentorService,
    ctx: Context,
    question: Delivery,
    text: str,
    changed: str,
    outcome: Outcome,
    created_at=None,  # type: ignore[no-untyped-def]
) -> Reply:
    """Keep ``text`` as the answer to ``question`` (appending if it has one already)."""
    now = svc.clock()
    reply = Reply(
        learner_id=ctx.learner.id or 0,
        delivery_id=question.id,
        visibility=_promised(ctx, question),
        course_id=question.course_id,
        lesson_id=question.lesson_id,
        question=question.question or "",
        text=text,
        platform_message_id=ctx.event.message_id,
        created_at=created_at or now,
    )
    schedule = svc.schedule_for(ctx.learner, ctx.workspace)
    if question.kind == "lesson":
        course = svc.catalog.get(question.course_id)
        lesson = course.lesson(question.lesson_id) if course else None
        if lesson is not None and lesson.practices:
            reply.practice = practice_for_answer(
                ctx.session, ctx.learner.id or 0, lesson, question.question or "", text
            )
            reply.follow_up_at = practice_time(schedule, now)
        reply.review_at = first_review(schedule, now)
    elif question.kind == "review" and question.parent_id is not None:
        original = answer_to(ctx.session, ctx.learner.id or 0, question.parent_id)
        reply.review_of_id = original.id if original else None
    if question.skipped_at is not None:
        question.skipped_at = None  # answered after all
        ctx.session.add(question)
    answer, new = add_answer(ctx.session, reply)
    if not new:
        outcome.replies.append(
            ctx.answer(
                f"Added to your answer to {_answer_name(ctx, answer)}."
                f"{_asked_me(text, answer)}{changed}",
                kind="answer-ack",
                delivery_id=question.id,
            )
        )
        return answer
    outcome.replies.append(_acknowledge(svc, ctx, answer, _asked_me(text, answer) + changed))
    svc.after_question_closed(ctx, question, outcome)
    return answer


def _acknowledge(svc: MentorService, ctx: Context, answer: Reply, changed: str):  # type: ignore[no-untyped-def]
    count = sum(1 for r in replies(ctx.session, ctx.learner.id or 0) if r.kind == "answer")
    opening = _ACKS[(count - 1) % len(_ACKS)].format(q=_answer_name(ctx, answer))
    question = ctx.session.get(Delivery, answer.delivery_id) if answer.delivery_id else None
    if answer.practice and answer.follow_up_at:
        day = _check_back_day(svc, ctx, answer.follow_up_at)
        said = _TOUCHES if touches(answer.practice, answer.text) else _OFFERS
        opening += " " + said[(count - 1) % len(said)].format(p=answer.practice, day=day)
    elif question is not None and question.kind == "practice" and question.body:
        opening = f"Thank you for coming back to **{question.body}**; I kept your answer."
    elif question is not None and question.kind == "review":
        opening = (
            "Thank you. I kept it next to what you wrote before; "
            f"`{grammar.PREFIX} history` shows both."
        )
    enrolment = svc.enrolment(ctx)
    nxt = svc.next_lesson_day(enrolment)
    when = f" Next lesson-day: {svc.when(ctx, nxt)}." if nxt else ""
    actions: tuple[Action, ...] = ()
    if answer.visibility != "leads" and answer.shared_at is None:
        actions = (Action("share", "Share with my lead", "share"),)
    return ctx.answer(
        f"{opening} {reply_privacy(answer)}{when}{changed}",
        kind="answer-ack",
        actions=actions,
        delivery_id=answer.delivery_id,
    )


def _check_back_day(svc: MentorService, ctx: Context, at: datetime) -> str:
    """ "on Thursday" within the coming week, else "on Thursday 12 March"."""
    schedule = svc.schedule_for(ctx.learner, ctx.workspace)
    local = schedule.local(at)
    if local - schedule.local(svc.clock()) < timedelta(days=6):
        return f"on {local:%A}"
    return f"on {local:%A} {local.day} {local:%B}"


def edit(svc: MentorService, ctx: Context, outcome: Outcome) -> None:
    """The learner edited a message they sent: the kept text follows the edit."""
    if not ctx.event.message_id:
        return
    row = ctx.session.exec(
        select(Reply).where(
            Reply.learner_id == ctx.learner.id,
            Reply.platform_message_id == ctx.event.message_id,
        )
    ).first()
    if row is None:
        return  # an edit of something that was not kept (a command): nothing to update
    text, _ = _clean(ctx)
    if not text.strip() or len(text) > MAX_REPLY_CHARS:
        outcome.replies.append(
            ctx.answer("I kept your earlier answer: the edited text was empty or too long.")
        )
        return
    if row.added_at is not None:
        outcome.replies.append(
            ctx.answer(
                "That answer has more than one message in it, so I kept it as it is. "
                f"Send the correction as a new message; `{grammar.PREFIX} history` shows it."
            )
        )
        return
    row.text = text
    row.edited_at = svc.clock()
    ctx.session.add(row)


# ---------------------------------------------------------------------- commands


@handles("open")
def open_(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    items = [i for i in numbered_questions(ctx.session, ctx.learner.id or 0) if i.is_open]
    if not items:
        outcome.replies.append(ctx.answer("You have no open questions."))
        return
    schedule = svc.schedule_for(ctx.learner, ctx.workspace)
    lines = []
    for item in reversed(items[-10:]):
        kind = "practice check-in" if item.delivery.kind == "practice" else "lesson question"
        sent = item.delivery.sent_at or item.delivery.due_at
        lines.append(
            f"{item.number}. {quote(item.delivery.question or '', 140)} "
            f"({kind}, {schedule.local(sent):%a %d %b})"
        )
    outcome.replies.append(
        ctx.answer(
            "\n".join(lines)
            + f"\n\nAnswer one with `{grammar.PREFIX} answer N your answer`, or skip it with "
            f"`{grammar.PREFIX} skip N`.",
            title=f"Your open questions ({len(items)})",
        )
    )


@handles("answer")
def answer(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    match = _ANSWER.match(ctx.event.text)
    if match is None or not match.group(1).isdigit():
        outcome.replies.append(
            ctx.answer(
                f"Use `{grammar.PREFIX} answer N your answer`, where N comes from "
                f"`{grammar.PREFIX} open`."
            )
        )
        return
    number, body = int(match.group(1)), match.group(2).strip()
    if body[:1] in ("'", '"'):
        # Some platforms quote option values that hold spaces (Discord's /mentor answer).
        with contextlib.suppress(ValueError):
            parts = shlex.split(body)
            body = parts[0] if len(parts) == 1 else body
    item = _question_number(ctx, number, outcome)
    if item is None:
        return
    if not body:
        outcome.replies.append(
            ctx.answer(f"Write your answer after the number: `{grammar.PREFIX} answer {number} …`.")
        )
        return
    if len(body) > MAX_REPLY_CHARS:
        outcome.replies.append(
            ctx.answer(
                f"That answer is longer than {MAX_REPLY_CHARS:,} characters; send it in parts."
            )
        )
        return
    where = Route(RouteKind.ANSWER, item.delivery.id)
    if item.answer is not None:
        where = Route(RouteKind.ADDITION, item.delivery.id, item.answer.id)
    file_text(svc, ctx, where, body.replace("\x00", ""), "", outcome)


def _question_number(ctx: Context, number: int, outcome: Outcome) -> Numbered | None:
    items = numbered_questions(ctx.session, ctx.learner.id or 0)
    item = next((i for i in items if i.number == number), None)
    if item is None:
        outcome.replies.append(
            ctx.answer(
                f"There is no question {number}. `{grammar.PREFIX} open` lists your open "
                "questions with their numbers."
            )
        )
    return item


@handles("yes")
def yes(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    note = pending_ask(ctx.session, ctx.learner.id or 0, ctx.event.delivery_id)
    if note is None:
        outcome.replies.append(ctx.answer("There's nothing waiting for a yes right now."))
        return
    question = ctx.session.get(Delivery, note.candidate_id or 0)
    note.candidate_id = None
    if question is None or question.learner_id != ctx.learner.id:
        ctx.session.add(note)
        outcome.replies.append(
            ctx.answer("That question is no longer available, so your message stays a note.")
        )
        return
    existing = answer_to(ctx.session, ctx.learner.id or 0, question.id or 0)
    if existing is not None:
        append(existing, note.text, svc.clock())
        ctx.session.add(existing)
        ctx.session.delete(note)
        outcome.replies.append(
            ctx.answer(
                f"Added it to your answer to {_answer_name(ctx, existing)}.", kind="answer-ack"
            )
        )
        return
    text, created = note.text, note.created_at
    ctx.session.delete(note)
    ctx.session.flush()
    file_answer(svc, ctx, question, text, "", outcome, created_at=created)


@handles("note")
def note(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    waiting = pending_ask(ctx.session, ctx.learner.id or 0, ctx.event.delivery_id)
    if waiting is None:
        outcome.replies.append(
            ctx.answer(
                "There's nothing waiting to be kept as a note. To turn an answer into a note, "
                f"use `{grammar.PREFIX} move N note` (N from `{grammar.PREFIX} history`)."
            )
        )
        return
    waiting.candidate_id = None
    ctx.session.add(waiting)
    outcome.replies.append(
        ctx.answer(f"OK, it stays a note; `{grammar.PREFIX} history` shows it.", kind="note-ack")
    )


@handles("history")
def history(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    written = replies(ctx.session, ctx.learner.id or 0)
    if not written:
        outcome.replies.append(ctx.answer("You have not replied to anything yet."))
        return
    schedule = svc.schedule_for(ctx.learner, ctx.workspace)
    numbered = list(enumerate(written, start=1))
    sections = []
    position = {reply.id: number for number, reply in numbered}
    for number, reply in numbered[-20:]:
        about = (
            f"answer to “{preview(reply.question, 100)}”"
            if reply.kind == "answer"
            else "note" + (" (waiting for your yes/no)" if reply.candidate_id else "")
        )
        if reply.review_of_id in position:
            about = f"a fresh look at reply {position[reply.review_of_id]}"
        moved = " · moved" if reply.moved_at else ""
        body = reply.text if len(reply.text) <= 1500 else preview(reply.text, 1500)
        sections.append(
            Section(
                f"{number}. {schedule.local(reply.created_at):%Y-%m-%d %H:%M} · {about}{moved}",
                learner_text(body),
            )
        )
    more = f" (the last 20 of {len(written)})" if len(written) > 20 else ""
    last_number, last = numbered[-1]
    actions = [Action("move", f"Move reply {last_number}", f"move {last_number}")]
    if last.kind == "answer":
        actions.append(
            Action("to_note", f"Make reply {last_number} a note", f"move {last_number} note")
        )
    outcome.replies.append(
        ctx.answer(
            f"{plural(len(written), 'reply', 'replies')}{more}. Filed one under the wrong "
            f"question? `{grammar.PREFIX} move N` moves reply N.",
            title="Your replies",
            sections=tuple(sections),
            actions=tuple(actions),
        )
    )


@handles("move")
def move(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
    args = [a.lower() for a in command.args]
    if not args or not args[0].isdigit():
        outcome.replies.append(
            ctx.answer(
                f"Use `{grammar.PREFIX} move N` with N from `{grammar.PREFIX} history`, then pick "
                "the question."
            )
        )
        return
    written = replies(ctx.session, ctx.learner.id or 0)
    number = int(args[0])
    if not 1 <= number <= len(written):
        outcome.replies.append(
            ctx.answer(f"There is no reply {number}. `{grammar.PREFIX} history` numbers yours.")
        )
        return
    reply = written[number - 1]
    rest = [a for a in args[1:] if a != "to"]
    if not rest:
        _offer_moves(svc, ctx, number, reply, outcome)
        return
    if rest[0] == "note":
        if reply.kind == "note":
            outcome.replies.append(ctx.answer(f"Reply {number} is already a note."))
            return
        reply.kind, reply.delivery_id, reply.candidate_id = "note", None, None
        reply.follow_up_at = None
        reply.moved_at = svc.clock()
        ctx.session.add(reply)
        outcome.replies.append(
            ctx.answer(f"Reply {number} is now a note; its question is open again.")
        )
        return
    if not rest[0].isdigit():
        _offer_moves(svc, ctx, number, reply, outcome)
        return
    item = _question_number(ctx, int(rest[0]), outcome)
    if item is None:
        return
    if reply.kind == "answer" and reply.delivery_id == item.delivery.id:
        outcome.replies.append(
            ctx.answer(
                f"Reply {number} is already your answer to {quote(item.delivery.question or '')}; "
                "nothing changed."
            )
        )
        return
    if item.answer is not None:
        taken = written.index(item.answer) + 1 if item.answer in written else None
        outcome.replies.append(
            ctx.answer(
                f"Question {item.number} already has your answer (reply {taken}). Make that one a "
                f"note first with `{grammar.PREFIX} move {taken} note`, then move this one."
            )
        )
        return
    reply.kind, reply.delivery_id, reply.candidate_id = "answer", item.delivery.id, None
    reply.question = item.delivery.question or ""
    reply.course_id, reply.lesson_id = item.delivery.course_id, item.delivery.lesson_id
    reply.moved_at = svc.clock()
    if item.delivery.skipped_at is not None:
        item.delivery.skipped_at = None
        ctx.session.add(item.delivery)
    ctx.session.add(reply)
    ctx.session.flush()
    outcome.replies.append(
        ctx.answer(f"Moved: reply {number} is now your answer to {_name(ctx, item.delivery)}.")
    )


def _offer_moves(
    svc: MentorService, ctx: Context, number: int, reply: Reply, outcome: Outcome
) -> None:
    items = numbered_questions(ctx.session, ctx.learner.id or 0)
    candidates = [
        i for i in reversed(items) if i.delivery.id != reply.delivery_id and i.answer is None
    ][:5]
    lines = [f"Where should reply {number} go?"]
    actions = []
    for item in candidates:
        lines.append(f"{item.number}. {quote(item.delivery.question or '', 100)}")
        actions.append(
            Action(
                f"move_{item.number}", f"Question {item.number}", f"move {number} to {item.number}"
            )
        )
    if reply.kind == "answer":
        actions.append(Action("to_note", "Make it a note", f"move {number} note"))
    if not candidates:
        lines.append("You have no unanswered question to move it to.")
    lines.append(
        f"Say `{grammar.PREFIX} move {number} to Q` with the question's number"
        + (f", or `{grammar.PREFIX} move {number} note`." if reply.kind == "answer" else ".")
    )
    outcome.replies.append(ctx.answer("\n".join(lines), actions=tuple(actions)))


@handles("share")
def share(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    query = select(Reply).where(Reply.learner_id == ctx.learner.id, Reply.kind == "answer")
    if ctx.event.delivery_id is not None:
        query = query.where(Reply.delivery_id == ctx.event.delivery_id)
    reply = ctx.session.exec(query.order_by(col(Reply.id).desc())).first()
    if reply is None:
        outcome.replies.append(ctx.answer("You have no answer to share yet."))
        return
    if reply.shared_at is None and reply.visibility != "leads":
        reply.shared_at = svc.clock()
        ctx.session.add(reply)
    outcome.replies.append(
        ctx.answer(f"Shared your answer to {_answer_name(ctx, reply)} with your leads.")
    )


__all__ = ["Target", "edit", "file_text", "free_text", "unusable"]
