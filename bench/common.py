"""Shared set-up for the benchmarks: a migrated store full of enrolled learners."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bot.config import Settings, bundled_content_dir
from bot.models import Enrolment, Learner, Workspace
from mentorbot.bootstrap import App, build

POSTGRES_URL = os.environ.get(
    "MENTORBOT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh SQLite file or PostgreSQL schema, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception:
        return False
    return True


def make_app(url: str, now: datetime) -> App:
    return build(Settings(database_url=url, content_dir=bundled_content_dir()), clock=lambda: now)


def seed(app: App, learners: int, due: int, now: datetime, chunk: int = 5000) -> None:
    """``learners`` enrolled at day 1 of the bundled lesson; the first ``due`` are due now."""
    later = now + timedelta(hours=20)
    earlier = now - timedelta(minutes=1)
    with app.store.engine.begin() as conn:
        workspace_id = conn.execute(
            sa.insert(Workspace.__table__).returning(Workspace.__table__.c.id),  # type: ignore[attr-defined]
            {"platform": "console", "external_id": "bench", "created_at": now},
        ).scalar_one()
    for start in range(0, learners, chunk):
        size = min(chunk, learners - start)
        with app.store.engine.begin() as conn:
            ids = (
                conn.execute(
                    sa.insert(Learner.__table__).returning(Learner.__table__.c.id),  # type: ignore[attr-defined]
                    [
                        {
                            "workspace_id": workspace_id,
                            "user_id": f"u{start + n}",
                            "role": "learner",
                            "created_at": now,
                        }
                        for n in range(size)
                    ],
                )
                .scalars()
                .all()
            )
            conn.execute(
                sa.insert(Enrolment.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "learner_id": learner_id,
                        "course_id": "data-engineering",
                        "lesson_id": "0.2.2",
                        "day": 1,
                        "status": "active",
                        "next_due_at": earlier if start + n < due else later,
                        "started_at": now,
                        "updated_at": now,
                    }
                    for n, learner_id in enumerate(ids)
                ],
            )


NOW = datetime(2027, 3, 3, 9, 0, tzinfo=UTC)  # a Wednesday, 09:00 UTC
