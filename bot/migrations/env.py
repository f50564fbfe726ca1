"""Alembic environment: runs on the connection the Store hands over (or the URL)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

from bot import models  # (tables for autogenerate)

config = context.config
target = SQLModel.metadata


def _ours(name: str | None, kind: str, _parent: object) -> bool:
    """slack_sdk owns the slack_* tables (migration 0003 mirrors them); leave them be."""
    return not (kind == "table" and (name or "").startswith("slack_"))


def _run(connection: sa.Connection) -> None:
    dialect = connection.dialect.name
    context.configure(
        connection=connection,
        target_metadata=target,
        render_as_batch=dialect == "sqlite",
        compare_type=True,
        include_name=_ours,
        # Indexes built for the other database only are no difference to report.
        include_object=lambda item, _name, _kind, reflected, _other: (
            reflected or models.for_dialect(item, dialect)
        ),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///mentorbot.db")
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
