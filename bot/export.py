"""Operator exports: every stored reply as JSON lines or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from sqlmodel import Session, col, select

from bot.db import Store
from bot.digests import readable_by_leads
from bot.models import Learner, Reply, Workspace

FIELDS = (
    "workspace_platform",
    "workspace",
    "workspace_name",
    "learner",
    "learner_name",
    "course_id",
    "lesson_id",
    "question",
    "reply",
    "replied_at",
    "edited_at",
    "visible_to_leads",
    "kind",
    "reply_id",
    "review_of",
    "practice",
)


@dataclass(frozen=True)
class ReplyFilter:
    workspace: str | None = None  # external id (Slack team, Discord guild, "local")
    since: datetime | None = None
    for_leads: bool = False  # only what leads may read: shared, or written while visible


def _rows(session: Session, only: ReplyFilter) -> list[dict[str, object]]:
    query = (
        select(Reply, Learner, Workspace)
        .join(Learner, col(Learner.id) == Reply.learner_id)
        .join(Workspace, col(Workspace.id) == Learner.workspace_id)
        .order_by(col(Reply.created_at), col(Reply.id))
    )
    if only.workspace:
        query = query.where(Workspace.external_id == only.workspace)
    if only.since:
        query = query.where(col(Reply.created_at) >= only.since)
    if only.for_leads:
        query = query.where(readable_by_leads())
    return [
        {
            "workspace_platform": workspace.platform,
            "workspace": workspace.external_id,
            "workspace_name": workspace.name,
            "learner": learner.user_id,
            "learner_name": learner.display_name,
            "course_id": reply.course_id,
            "lesson_id": reply.lesson_id,
            "question": reply.question,
            "reply": reply.text,
            "replied_at": reply.created_at.isoformat(),
            "edited_at": reply.edited_at.isoformat() if reply.edited_at else None,
            "visible_to_leads": reply.visibility == "leads" or reply.shared_at is not None,
            "kind": reply.kind,
            "reply_id": reply.id,
            "review_of": reply.review_of_id,
            "practice": reply.practice,
        }
        for reply, learner, workspace in session.exec(query).all()
    ]


def reply_rows(store: Store, only: ReplyFilter | None = None) -> list[dict[str, object]]:
    """Erased learners' replies are gone from the store, so they are gone from here too."""
    return store.run(lambda session: _rows(session, only or ReplyFilter()))


def workspaces(store: Store) -> list[tuple[str, str]]:
    """(platform, external id) of every workspace, for the operator's own tools."""

    def work(session: Session) -> list[tuple[str, str]]:
        query = select(Workspace.platform, Workspace.external_id).order_by(
            col(Workspace.platform), col(Workspace.external_id)
        )
        return [(platform, external_id) for platform, external_id in session.exec(query)]

    return store.run(work)


def write_replies(
    store: Store,
    out: TextIO,
    fmt: str,
    only: ReplyFilter | None = None,
    on_row: Callable[[int], None] | None = None,
) -> int:
    """Write the rows; ``on_row`` hears the total first (as a negative number), then
    the count after each row, for a progress display."""
    count = 0
    rows = reply_rows(store, only)
    if on_row is not None:
        on_row(-len(rows))
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
            if on_row is not None:
                on_row(count)
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
            if on_row is not None:
                on_row(count)
    else:
        raise ValueError(f"unknown export format {fmt!r}: use jsonl or csv")
    return count
