"""The store: migrations match the models, and the same schema works on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from bot.db import Store


def test_migrations_build_exactly_the_models(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.upgrade()
        assert store.is_current()
        store.upgrade()  # running it again is harmless
        with store.engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    # Tables owned by slack_sdk's installation store are not our models.
                    "include_name": lambda name, kind, _parent: (
                        not (kind == "table" and (name or "").startswith("slack_"))
                    ),
                },
            )
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        store.dispose()
