"""Operator exports: every stored reply as JSON lines or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import TextIO

from sqlmodel import Session, col, select

from bot.db import Store
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
)


def _rows(session: Session) -> list[dict[str, str | None]]:
    query = (
        select(Reply, Learner, Workspace)
        .join(Learner, col(Learner.id) == Reply.learner_id)
        .join(Workspace, col(Workspace.id) == Learner.workspace_id)
        .order_by(col(Reply.created_at), col(Reply.id))
    )
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
        }
        for reply, learner, workspace in session.exec(query).all()
    ]


def reply_rows(store: Store) -> Iterator[dict[str, str | None]]:
    yield from store.run(_rows)


def write_replies(store: Store, out: TextIO, fmt: str) -> int:
    count = 0
    if fmt == "jsonl":
        for row in reply_rows(store):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in reply_rows(store):
            writer.writerow(row)
            count += 1
    else:
        raise ValueError(f"unknown export format {fmt!r}: use jsonl or csv")
    return count
