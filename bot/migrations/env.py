"""Alembic environment: runs on the connection the Store hands over (or the URL)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

from bot import models  # noqa: F401  (tables for autogenerate)

config = context.config
target = SQLModel.metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
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
