"""Operator exports: every stored reply as JSON lines or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlmodel import Session, col, func, select

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


def _query(only: ReplyFilter) -> Any:
    """The rows to export, as plain columns: a year of replies is millions of rows, too
    many to hold as objects."""
    query = (
        select(
            Workspace.platform,
            Workspace.external_id,
            Workspace.name,
            Learner.user_id,
            Learner.display_name,
            Reply.course_id,
            Reply.lesson_id,
            Reply.question,
            Reply.text,
            Reply.created_at,
            Reply.edited_at,
            Reply.visibility,
            Reply.shared_at,
            Reply.kind,
            Reply.id,
            Reply.review_of_id,
            Reply.practice,
        )
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
    return query


def _rows(session: Session, only: ReplyFilter) -> Iterator[dict[str, object]]:
    """Streamed in chunks (a server-side cursor on PostgreSQL), so memory stays flat
    however many replies there are."""
    result = session.execute(_query(only), execution_options={"yield_per": 2_000})
    for (
        platform,
        workspace,
        workspace_name,
        learner,
        learner_name,
        course_id,
        lesson_id,
        question,
        text,
        created_at,
        edited_at,
        visibility,
        shared_at,
        kind,
        reply_id,
        review_of,
        practice,
    ) in result:
        yield {
            "workspace_platform": platform,
            "workspace": workspace,
            "workspace_name": workspace_name,
            "learner": learner,
            "learner_name": learner_name,
            "course_id": course_id,
            "lesson_id": lesson_id,
            "question": question,
            "reply": text,
            "replied_at": created_at.isoformat(),
            "edited_at": edited_at.isoformat() if edited_at else None,
            "visible_to_leads": visibility == "leads" or shared_at is not None,
            "kind": kind,
            "reply_id": reply_id,
            "review_of": review_of,
            "practice": practice,
        }


def reply_rows(store: Store, only: ReplyFilter | None = None) -> list[dict[str, object]]:
    """Erased learners' replies are gone from the store, so they are gone from here too."""
    return store.read(lambda session: list(_rows(session, only or ReplyFilter())))


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
    the count after each row, for a progress display.

    One read-only transaction from start to end, rows written as they arrive: the
    export is consistent, takes no write lock (the bot keeps answering on SQLite), and
    holds one chunk of rows in memory, not all of them."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown export format {fmt!r}: use jsonl or csv")
    only = only or ReplyFilter()
    count = 0
    with store.session(read_only=True) as session:
        if on_row is not None:
            total = session.execute(
                select(func.count()).select_from(_query(only).order_by(None).subquery())
            )
            on_row(-int(total.scalar_one()))
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        if fmt == "csv":
            writer.writeheader()
        for row in _rows(session, only):
            if fmt == "jsonl":
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                writer.writerow(row)
            count += 1
            if on_row is not None:
                on_row(count)
    return count
