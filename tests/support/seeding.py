"""Seeding many learners at once with plain inserts, for tests that need hundreds or
thousands of them (the core's own paths would take minutes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from bot.models import Enrolment, Learner, Workspace


def seed_workspace(
    conn: sa.Connection,
    *,
    platform: str,
    external_id: str,
    users: list[str],
    now: datetime,
    learner: Callable[[str], dict[str, object]] = lambda _user: {},
    enrolment: Callable[[int], dict[str, object]] = lambda _n: {},
) -> tuple[list[int], list[int]]:
    """A workspace, a learner per user (``learner(user)`` adds or changes columns) and
    each one enrolled in the bundled lesson at day 1 (``enrolment(n)`` adds or changes
    the n-th one's columns). Returns (learner ids, enrolment ids), in ``users`` order."""
    workspace_id = conn.execute(
        sa.insert(Workspace.__table__).returning(Workspace.__table__.c.id),  # type: ignore[attr-defined]
        {"platform": platform, "external_id": external_id, "created_at": now},
    ).scalar_one()
    learner_ids = list(
        conn.execute(
            sa.insert(Learner.__table__).returning(Learner.__table__.c.id),  # type: ignore[attr-defined]
            [
                {
                    "workspace_id": workspace_id,
                    "user_id": user,
                    "role": "learner",
                    "created_at": now,
                    **learner(user),
                }
                for user in users
            ],
        )
        .scalars()
        .all()
    )
    enrolment_ids = list(
        conn.execute(
            sa.insert(Enrolment.__table__).returning(Enrolment.__table__.c.id),  # type: ignore[attr-defined]
            [
                {
                    "learner_id": learner_id,
                    "course_id": "data-engineering",
                    "lesson_id": "0.2.2",
                    "day": 1,
                    "status": "active",
                    "next_due_at": now,
                    "started_at": now,
                    "updated_at": now,
                    **enrolment(n),
                }
                for n, learner_id in enumerate(learner_ids)
            ],
        )
        .scalars()
        .all()
    )
    return learner_ids, enrolment_ids
