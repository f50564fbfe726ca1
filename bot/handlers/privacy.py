"""A learner's own data: export it, or delete it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from bot import commands as grammar
from bot.commands import Command
from bot.context import Context
from bot.handlers import handles
from bot.messages import Action, Attachment, Outcome, OutgoingMessage
from bot.models import Delivery, Enrolment, Learner, Reply, ReplyRead, Workspace

if TYPE_CHECKING:
    from bot.service import MentorService


@handles("export-my-data")
def export_my_data(svc: MentorService, ctx: Context, _command: Command, outcome: Outcome) -> None:
    data = personal_data(ctx.session, ctx.workspace, ctx.learner)
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


@handles("forget-me")
def forget_me(svc: MentorService, ctx: Context, command: Command, outcome: Outcome) -> None:
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
    svc.erase_learner(ctx.session, ctx.learner)
    outcome.replies.append(
        ctx.answer(
            "Done: everything I stored about you in this workspace is deleted. "
            f"Say `{grammar.PREFIX} start` if you ever want to begin again."
        )
    )


def personal_data(session: Session, workspace: Workspace, learner: Learner) -> dict[str, Any]:
    """Everything stored about one learner, for ``export-my-data``."""

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
                "away_until": e.away_until.isoformat() if e.away_until else None,
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
                "kind": r.kind,
                "course": r.course_id or None,
                "lesson": r.lesson_id or None,
                "question": r.question or None,
                "text": r.text,
                "written_at": when(r.created_at),
                "added_to_at": when(r.added_at),
                "edited_at": when(r.edited_at),
                "moved_at": when(r.moved_at),
                "practice": r.practice,
                "review_of": r.review_of_id,
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
