"""The store: migrations match the models, and the same schema works on both databases."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from bot.db import Store, _Turns
from bot.models import for_dialect


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
                    # Some indexes are built for one database only (bot.models._only_on).
                    "include_object": lambda item, _name, _kind, reflected, _other: (
                        reflected or for_dialect(item, conn.dialect.name)
                    ),
                },
            )
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        store.dispose()


def test_sqlite_turns_go_in_arrival_order_and_background_work_gives_way() -> None:
    """The threads of one process take SQLite's write lock in turn; planning (background)
    lets up to four waiting transactions of other work go first, then has its turn."""
    turns = _Turns()
    order: list[str] = []
    release = threading.Event()

    def holder() -> None:
        with turns.turn():
            release.wait(10)

    def waiter(name: str, background: bool) -> None:
        with turns.turn(background):
            order.append(name)

    def queued(background: bool, count: int) -> None:
        with turns._changed:
            assert turns._changed.wait_for(
                lambda: len(turns._queues[background]) == count, timeout=10
            )

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    with turns._changed:
        assert turns._changed.wait_for(lambda: turns._holder is not None, timeout=10)
    waiters = [("send1", False), ("plan", True)] + [(f"send{n}", False) for n in range(2, 7)]
    for name, background in waiters:
        thread = threading.Thread(target=waiter, args=(name, background))
        thread.start()
        threads.append(thread)
        queued(background, 1 if background else int(name[-1]))
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["send1", "send2", "send3", "send4", "plan", "send5", "send6"]
