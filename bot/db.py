"""The store: one engine per process, a session per unit of work, migrations on demand.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE`` so two processes never deadlock upgrading a read lock; a unit of
work that still meets a locked database is retried with backoff before giving up.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from bot import models  # noqa: F401  (registers the tables on SQLModel.metadata)

T = TypeVar("T")
log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x6D656E74  # any constant shared by every replica


class DatabaseBusyError(RuntimeError):
    """The database stayed locked through every retry; nothing was written."""


def _is_transient(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig else str(exc).lower()
    return any(
        word in text
        for word in (
            "database is locked",
            "database is busy",
            "deadlock detected",
            "could not serialize",
        )
    )


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 15}, pool_pre_ping=False
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


class _Turns:
    """Turns at SQLite's write lock for the threads of one process.

    SQLite lets one writer in at a time, and a writer that finds the lock taken polls
    for it with growing sleeps; a thread that commits and begins again at once (the
    planner, batch after batch) then keeps the lock for as long as it has work, while
    the dispatcher waits to claim the first lessons it planned. Here threads take turns
    in arrival order instead, so the lock changes hands at each commit; and background
    work (planning) lets up to ``PASS`` waiting foreground transactions (sending,
    commands) go first each time, so a big morning's planning costs the first
    message's claim, render and booking one planning batch in all, not one each.
    Re-entrant per thread; other processes still meet SQLite's busy timeout."""

    PASS = 4

    def __init__(self) -> None:
        self._changed = threading.Condition()
        # Waiting threads in arrival order: foreground (False) and background (True).
        self._queues: dict[bool, deque[object]] = {False: deque(), True: deque()}
        self._passed = 0  # foreground turns taken while background work waited
        self._holder: int | None = None

    def _mine(self, background: bool, token: object) -> bool:
        if self._holder is not None or self._queues[background][0] is not token:
            return False
        others = len(self._queues[not background])
        if background:
            return others == 0 or self._passed >= self.PASS
        return others == 0 or self._passed < self.PASS

    @contextmanager
    def turn(self, background: bool = False) -> Iterator[None]:
        me = threading.get_ident()
        if self._holder == me:
            yield
            return
        token = object()
        queue = self._queues[background]
        with self._changed:
            queue.append(token)
            try:
                self._changed.wait_for(lambda: self._mine(background, token))
            except BaseException:
                queue.remove(token)
                self._changed.notify_all()
                raise
            queue.popleft()
            self._holder = me
            if background:
                self._passed = 0
            elif self._queues[True]:
                self._passed += 1
        try:
            yield
        finally:
            with self._changed:
                self._holder = None
                self._changed.notify_all()


class Store:
    def __init__(self, url: str, *, retries: int = 6) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.retries = retries
        self._turns = _Turns() if self.dialect == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed on success, rolled back on error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def run(self, work: Callable[[Session], T], *, background: bool = False) -> T:
        """Run ``work`` in its own transaction, retrying while the database is locked.
        ``background`` work (planning) gives way to other work waiting in this process."""
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                with self._turn(background), self.session() as session:
                    return work(session)
            except OperationalError as exc:
                if not _is_transient(exc) or attempt == self.retries:
                    if _is_transient(exc):
                        raise DatabaseBusyError(
                            "the database stayed locked; try again in a moment"
                        ) from exc
                    raise
                log.warning("database busy, retrying (attempt %d): %s", attempt + 1, exc.orig)
                time.sleep(delay + random.uniform(0, delay))
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _turn(self, background: bool) -> contextlib.AbstractContextManager[None]:
        if self._turns is None:
            return contextlib.nullcontext()
        return self._turns.turn(background)

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ migrations

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def upgrade(self) -> None:
        """Bring the schema to the newest revision; safe to run from several replicas."""
        config = self._alembic_config()
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_MIGRATION_LOCK})")
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_MIGRATION_LOCK})")
                    conn.commit()

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def is_current(self) -> bool:
        return self.current_revision() == self.head_revision()
