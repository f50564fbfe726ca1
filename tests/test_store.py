"""The store: migrations match the models, and the same schema works on both databases."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel

from bot.db import ROOMY_CACHE_KIB, WAL_BACKSTOP_PAGES, Store, _Turns, make_room
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


def test_sqlite_log_is_copied_into_the_file_by_a_thread_not_by_commits(
    sqlite_url: str,
) -> None:
    """The store's connections leave checkpoints to the background thread (a commit
    checkpoints only past 64 MiB of log, well beyond this test's 4 MB), which copies
    the write-ahead log into the database file within a few seconds."""
    store = Store(sqlite_url)
    try:
        store.upgrade()
        path = Path(store.engine.url.database or "")
        with store.engine.begin() as conn:
            found = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            assert found == WAL_BACKSTOP_PAGES
            conn.exec_driver_sql("CREATE TABLE filler (text TEXT)")
        before = path.stat().st_size
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO filler SELECT printf('%.1000c', 'x') FROM "
                "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)"
                " SELECT i FROM n)"
            )
        deadline = time.monotonic() + 15
        while path.stat().st_size < before + 4_000_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.stat().st_size >= before + 4_000_000
    finally:
        store.dispose()


def test_a_unit_of_work_that_makes_room_gives_the_cache_back(sqlite_url: str) -> None:
    """``make_room`` (forget-me) raises SQLite's page cache for its own unit of work
    only: the connection has the usual size again when the pool hands it out next."""
    store = Store(sqlite_url)
    try:
        store.upgrade()

        def cache_size(session: Session, roomy: bool = False) -> int:
            if roomy:
                make_room(session)
            return int(session.connection().exec_driver_sql("PRAGMA cache_size").scalar())

        usual = store.run(cache_size)
        assert store.run(lambda session: cache_size(session, roomy=True)) == -ROOMY_CACHE_KIB
        sizes = {store.run(cache_size) for _ in range(12)}
        assert sizes == {usual}, sizes
    finally:
        store.dispose()
