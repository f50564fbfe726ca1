"""Scheduled digests: a summary a lead set up, posted to a channel.

Only replies leads may read (``readable_by_leads``) ever appear, and posting one
records who read which reply, so the learner can see it in their data export.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, or_
from sqlmodel import Session, col, func, select

from bot import commands as grammar
from bot.chart import bar_chart_png
from bot.messages import Attachment, OutgoingMessage, Section
from bot.models import Delivery, Digest, Enrolment, Learner, Reply, ReplyRead, Workspace
from bot.outbox import notice, queue_delivery
from bot.schedule import Schedule
from bot.stats import streaks
from bot.text import learner_text, preview
from bot.wording import mention, plural

if TYPE_CHECKING:
    from bot.service import MentorService

DIGEST_DAYS = {"daily": 1, "weekly": 7}
SHOWN = "digest_replies_shown"  # session.info: digest delivery id -> reply ids it showed


def readable_by_leads() -> Any:
    """The one rule for what a lead may read: answers the workspace made visible or the
    learner shared. Notes are never shown to leads."""
    return and_(
        Reply.kind == "answer",
        or_(Reply.visibility == "leads", col(Reply.shared_at).is_not(None)),
    )


def record_reads(
    session: Session,
    replies: list[Reply],
    reader: Learner | None,
    name: str,
    via: str,
    now: datetime,
) -> None:
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


def digest_schedule(svc: MentorService, workspace: Workspace, frequency: str) -> Schedule:
    zone = workspace.timezone or svc.settings.timezone
    at = workspace.delivery_time or svc.settings.delivery_time
    days = workspace.delivery_days or svc.settings.delivery_days
    if frequency == "weekly":
        days = "mon"
    return Schedule.parse(at, days, zone)


def digest_since(digest: Digest, until: datetime) -> datetime:
    """A digest covers the time since the last one that reached its channel; the
    first covers one period, or since it was set up if a first attempt failed."""
    if digest.last_sent_at is not None:
        return digest.last_sent_at
    return min(until - timedelta(days=DIGEST_DAYS[digest.frequency]), digest.created_at)


def render_digest(
    svc: MentorService, session: Session, delivery: Delivery, base: dict[str, Any]
) -> OutgoingMessage | str:
    digest = session.get(Digest, delivery.digest_id) if delivery.digest_id else None
    if digest is None:
        return "the digest was turned off"
    workspace = session.get(Workspace, digest.workspace_id)
    if workspace is None:
        return "the workspace is gone"
    until = delivery.due_at
    since = digest_since(digest, until)
    zone = digest_schedule(svc, workspace, digest.frequency).zone
    # Everyone in the workspace with an enrolment, as a subquery: with 10,000 learners a
    # list of ids would be 10,000 bound parameters in every query below.
    enrolled = select(Learner.id).where(
        Learner.workspace_id == workspace.id,
        col(Learner.id).in_(select(Enrolment.learner_id)),
    )
    user_of = dict(
        session.exec(select(Learner.id, Learner.user_id).where(col(Learner.id).in_(enrolled))).all()
    )
    # Both read learner by learner through the (learner, time) indexes: a seek each,
    # then one period's rows, however long the history behind them.
    asked = session.exec(
        select(Delivery.id, Delivery.learner_id).where(
            col(Delivery.learner_id).in_(enrolled),
            Delivery.kind == "lesson",
            col(Delivery.question).is_not(None),
            # Wrapped: never read through the status index, every row ever sent.
            func.coalesce(Delivery.status, "") == "sent",
            col(Delivery.sent_at) >= since,
            col(Delivery.sent_at) < until,
        )
    ).all()
    asked_ids = {delivery_id for delivery_id, _ in asked}
    replies = session.exec(
        select(
            Reply.id,
            Reply.delivery_id,
            Reply.created_at,
            case((readable_by_leads(), True), else_=False),
        )
        .where(
            col(Reply.learner_id).in_(enrolled),
            Reply.kind == "answer",
            col(Reply.created_at) >= since,
            col(Reply.created_at) < until,
        )
        .order_by(col(Reply.id))  # the shared ones shown are the ones recorded as read
    ).all()
    answered_ids = {delivery_id for _, delivery_id, _, _ in replies}
    got = {learner_id for _, learner_id in asked}
    answered_by = {learner_id for delivery_id, learner_id in asked if delivery_id in answered_ids}
    lesson_days_done = sum(1 for delivery_id, _ in asked if delivery_id in answered_ids)
    span = max(1, (until.astimezone(zone).date() - since.astimezone(zone).date()).days)
    first_day = until.astimezone(zone).date() - timedelta(days=span)
    per_day = [0] * span
    for _, delivery_id, created_at, _ in replies:
        index = (created_at.astimezone(zone).date() - first_day).days
        if 0 <= index < span and delivery_id in asked_ids:
            per_day[index] += 1
    # Four weeks of questions settle nearly every streak; the rest are read in full.
    streak_of = streaks(session, enrolled, recent=until - timedelta(days=28))
    ranked = sorted(
        ((streak_of[learner_id], user_id) for learner_id, user_id in user_of.items()),
        reverse=True,
    )
    shared_ids = [reply_id for reply_id, _, _, shared in replies if shared]
    shown = session.exec(
        select(Reply).where(col(Reply.id).in_(shared_ids[:5])).order_by(col(Reply.id))
    ).all()
    session.info.setdefault(SHOWN, {})[delivery.id] = [reply.id for reply in shown]
    if got:
        participation = (
            # Of those who got a question in the period.
            f"Participation: {len(answered_by):,} of {plural(len(got), 'learner')} answered "
            "at least one question."
        )
    else:
        participation = "Participation: no questions went out in this period."
    lines = [
        participation,
        f"Completion: {lesson_days_done:,} of {plural(len(asked), 'lesson question')} answered.",
        "Longest current streaks: "
        + (", ".join(f"{mention(u)} {n}" for n, u in ranked[:3] if n) or "none yet")
        + ".",
    ]
    sections = [Section(None, "\n".join(lines))]
    for reply in shown:
        author = user_of.get(reply.learner_id)
        who = mention(author) if author else "someone"
        sections.append(
            Section(
                f"{who} on “{preview(reply.question, 80)}”",
                learner_text(preview(reply.text, 400)),
            )
        )
    if len(shared_ids) > 5:
        sections.append(
            Section(
                None,
                f"…and {len(shared_ids) - 5} more shared replies: `{grammar.PREFIX} replies`.",
            )
        )
    title = (
        f"{digest.frequency.title()} mentoring digest, "
        f"{since.astimezone(zone):%d %b} – {until.astimezone(zone):%d %b}"
    )
    days = [first_day + timedelta(days=i) for i in range(span)]
    chart = bar_chart_png(per_day, [f"{d:%m-%d}" for d in days])
    return OutgoingMessage(
        text="Answered questions per day are in the chart.",
        title=title,
        sections=tuple(sections),
        attachments=(Attachment("answered-per-day.png", chart, "image/png", "Answered per day"),),
        **{**base, "channel": digest.channel},
    )


def digest_reads(
    svc: MentorService, session: Session, delivery: Delivery
) -> Callable[[Session, datetime], None]:
    """What to record once a digest is posted: its time, and who read which reply.

    The replies recorded are the ones the render showed (it leaves their ids in the
    session it rendered in), so the two cannot disagree, and posting costs a lookup by
    id instead of another pass over a year of replies while the write lock is held."""
    digest_id = delivery.digest_id
    shown = session.info.get(SHOWN, {}).get(delivery.id)

    def after_sent(session: Session, now: datetime) -> None:
        digest = session.get(Digest, digest_id)
        if digest is None:
            return
        if shown is not None:  # those still stored: an author may have been erased since
            query = select(Reply).where(col(Reply.id).in_(shown))
        else:
            query = (
                select(Reply)
                .join(Learner, col(Learner.id) == Reply.learner_id)
                .where(
                    Learner.workspace_id == digest.workspace_id,
                    Reply.kind == "answer",
                    readable_by_leads(),
                    col(Reply.created_at) >= digest_since(digest, delivery.due_at),
                    col(Reply.created_at) < delivery.due_at,
                )
                .limit(5)
            )
        shared = session.exec(query.order_by(col(Reply.id))).all()
        reader = session.get(Learner, digest.created_by) if digest.created_by else None
        record_reads(session, list(shared), reader, f"digest in <#{digest.channel}>", "digest", now)
        digest.last_sent_at = delivery.due_at
        session.add(digest)

    return after_sent


def digest_failed(svc: MentorService, session: Session, delivery: Delivery, reason: str) -> None:
    """Tell the lead who set the digest up; the next one covers this period too."""
    digest = session.get(Digest, delivery.digest_id) if delivery.digest_id else None
    if digest is None or digest.created_by is None:
        return
    queue_delivery(
        session,
        **notice(
            f"notice:digest:{delivery.id}",
            digest.created_by,
            f"I couldn't post the {digest.frequency} digest in <#{digest.channel}>: {reason}. "
            f"Invite me to that channel, or pick another with `{grammar.PREFIX} digest "
            "#channel weekly`. The next digest will cover this period too.",
            svc.clock(),
            course_id=delivery.course_id,
            lesson_id=delivery.lesson_id,
        ),
    )
