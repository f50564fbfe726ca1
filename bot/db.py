"""The store: one engine per process, a session per unit of work, migrations on demand.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE`` so two processes never deadlock upgrading a read lock; a unit of
work that still meets a locked database is retried with backoff before giving up.

A database that refuses writes (a SQLite file made read-only, a PostgreSQL that became
a standby) leaves connections behind that go on refusing after it is fixed: SQLite
opens a read-only file read-only and never upgrades that connection. So such an error
drops every pooled connection, and the unit of work is tried once more on new ones.
PostgreSQL connections carry a connect timeout and a statement timeout, so a frozen
server fails a unit of work instead of holding its thread forever.

SQLite's write-ahead log is copied into the database file by a thread of its own
(``_Checkpointer``), not inside whichever commit happens to pass 1,000 pages of log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from bot import models  # noqa: F401  (registers the tables on SQLModel.metadata)

T = TypeVar("T")
log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x6D656E74  # any constant shared by every replica
CONNECT_TIMEOUT_SECONDS = 5  # PostgreSQL: give up on a server that does not answer
STATEMENT_TIMEOUT_SECONDS = 30.0  # PostgreSQL: no unit of work needs longer
_SQLITE_READONLY = 8  # SQLITE_READONLY; extended codes keep it in the low byte
_PG_READ_ONLY_TRANSACTION = "25006"  # e.g. connected to a standby
CHECKPOINT_SECONDS = 1.0  # SQLite: how often the log is copied into the database file
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # SQLite: bytes of log file kept once it is reset
# SQLite: a commit still checkpoints by itself past this many pages of log (64 MiB), so
# the log stays bounded if the checkpoint thread falls behind a burst of writes.
WAL_BACKSTOP_PAGES = 16_384
ROOMY_CACHE_KIB = 16 * 1024  # SQLite: page cache of a unit of work that rewrites many pages
_ROOMY = "mentorbot_roomy_cache"  # connection record info: the cache size to go back to


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


def is_read_only_error(exc: BaseException) -> bool:
    """The database refused a write because it (or this connection) is read-only.
    Takes SQLAlchemy's error or the driver's own."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if getattr(orig, "sqlstate", None) == _PG_READ_ONLY_TRANSACTION:
        return True
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF == _SQLITE_READONLY:
        return True
    return "readonly database" in str(orig).lower()


def first_line(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's SQL and background link."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _postgres_connect_args(url: sa.URL, statement_timeout: float) -> dict[str, Any]:
    """A connect timeout and a statement timeout, unless the URL sets its own; any
    ``options`` in the URL (say a search_path) are kept."""
    args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    options = url.query.get("options", "")
    if isinstance(options, tuple):
        options = " ".join(options)
    if statement_timeout > 0 and "statement_timeout" not in options:
        milliseconds = int(statement_timeout * 1000)
        options = f"{options} -c statement_timeout={milliseconds}".strip()
    if options:
        args["options"] = options
    return args


def _refuse_read_only_connections(engine: sa.Engine) -> None:
    """Treat "read-only" like a lost connection: SQLAlchemy then closes the one that
    failed and retires every older pooled connection as it is next checked out."""

    @sa.event.listens_for(engine, "handle_error")
    def _on_error(context: sa.engine.ExceptionContext) -> None:
        if is_read_only_error(context.original_exception):
            context.is_disconnect = True


class _Checkpointer:
    """Copies SQLite's write-ahead log into the database file, on one thread per process.

    Left to itself, SQLite does that inside the commit that takes the log past 1,000
    pages, so one command pays for everybody's writes since the last copy: a
    ``forget-me`` at five million delivery rows spent more time checkpointing than
    deleting. The store's connections leave it to this thread (their own threshold is
    raised to ``WAL_BACKSTOP_PAGES``, a bound should the thread fall behind), which
    runs a PASSIVE checkpoint of every registered file each second instead: it
    takes no lock a reader or writer waits for, copies what no reader still needs, and
    leaves the rest for next time. Once the whole log is copied the next writer starts
    it again from the top, and ``journal_size_limit`` trims the file then, so the log
    stays about as big as a second or two of writes. Other processes on the same file
    (the command line, another replica) keep SQLite's own checkpoints or run this same
    thread; a second checkpointer finds the first busy and tries again later.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held while registering and while checkpointing
        self._files: dict[str, int] = {}  # path -> stores using it
        self._connections: dict[str, sqlite3.Connection] = {}
        self._thread: threading.Thread | None = None

    def register(self, path: str) -> None:
        with self._lock:
            self._files[path] = self._files.get(path, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="sqlite-checkpoint", daemon=True
                )
                self._thread.start()

    def unregister(self, path: str) -> None:
        """A store closed: copy what is left once more, then forget the file."""
        with self._lock:
            count = self._files.get(path, 0) - 1
            if count > 0:
                self._files[path] = count
                return
            self._files.pop(path, None)
            connection = self._connections.pop(path, None)
            if connection is not None:
                self._checkpoint(path, connection)
                connection.close()

    def _run(self) -> None:
        while True:
            time.sleep(CHECKPOINT_SECONDS)
            with self._lock:
                for path in list(self._files):
                    connection = self._connections.get(path) or self._open(path)
                    if connection is not None:
                        self._checkpoint(path, connection)

    def _open(self, path: str) -> sqlite3.Connection | None:
        """The thread's own connection to ``path``; ``mode=rw`` so that a file removed
        meanwhile is not made again, empty (the path is quoted: a URI reads ``?`` and
        ``#`` as its own)."""
        try:
            connection = sqlite3.connect(
                f"file:{quote(path)}?mode=rw", uri=True, check_same_thread=False, timeout=0
            )
        except sqlite3.Error:
            return None
        self._connections[path] = connection
        return connection

    @staticmethod
    def _checkpoint(path: str, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # busy, read-only, gone: nothing to copy this time
            log.debug("no checkpoint of %s this time: %s", path, exc)


_CHECKPOINTS = _Checkpointer()


def _sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file, or None for one in memory."""
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return str(Path(database).resolve())


def make_engine(
    url: str,
    *,
    statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
    background_checkpoints: bool = False,
) -> sa.Engine:
    """An engine for ``url``. ``background_checkpoints`` (SQLite): the connections leave
    copying the log into the file to ``_Checkpointer``, which the caller registers."""
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
            if background_checkpoints:
                cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
                cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            cursor.close()

        @sa.event.listens_for(engine, "checkin")
        def _on_checkin(dbapi_connection: Any, record: Any) -> None:
            size = record.info.pop(_ROOMY, None)
            if size is not None and dbapi_connection is not None:
                with suppress(sqlite3.Error):
                    dbapi_connection.execute(f"PRAGMA cache_size={int(size)}")

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # A read-only unit of work takes no write lock: in WAL mode it neither waits
            # for writers nor holds them up.
            reading = conn.get_execution_options().get(READ_ONLY_OPTION)
            conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

        _refuse_read_only_connections(engine)
        return engine
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    parsed = sa.engine.make_url(url)
    connect_args = (
        _postgres_connect_args(parsed, statement_timeout)
        if parsed.get_backend_name() == "postgresql"
        else {}
    )
    engine = sa.create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=connect_args
    )
    _refuse_read_only_connections(engine)
    return engine


def make_room(session: Session) -> None:
    """The unit of work is about to rewrite pages all over the file: ``forget-me``
    deletes one learner's year of rows, one or two to a page, and each of their index
    entries. On SQLite its connection gets a page cache that holds them all until the
    commit (``ROOMY_CACHE_KIB``), and its usual size back when it returns to the pool.
    With the default 2 MiB, such a delete spilled pages to the log mid-way and evicted
    the index pages the next row needed, read them again, and took a third longer.
    Nothing to do on PostgreSQL, whose deletes write no index page."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    info = connection.connection.info
    if _ROOMY not in info:
        info[_ROOMY] = connection.exec_driver_sql("PRAGMA cache_size").scalar()
        connection.exec_driver_sql(f"PRAGMA cache_size=-{ROOMY_CACHE_KIB}")


def _match_sqlite_side_files(database: str | None) -> None:
    """Give ``-wal`` and ``-shm`` the database file's mode when the file is writable and
    they are not. SQLite creates them with the file's mode; made while the file was
    read-only, they stay read-only after it is fixed, and every new connection opens
    read-only again. Only a process that owns them may change them; others leave it."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    with suppress(OSError):
        if not os.access(path, os.W_OK):
            return
        mode = stat.S_IMODE(path.stat().st_mode)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists() and not os.access(side, os.W_OK):
                os.chmod(side, mode)
                log.warning("gave %s the database file's mode again so it can be written", side)


@dataclass(frozen=True)
class Readiness:
    """What a readiness probe found: whether the schema is current (None: could not
    tell), and why writes fail (None: they work)."""

    current: bool | None
    write_error: str | None = None
    read_only: bool = False  # the database refused as read-only


READ_ONLY_OPTION = "mentorbot_read_only"


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
    def __init__(
        self,
        url: str,
        *,
        retries: int = 6,
        statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
        secret_key: str | None = None,
    ) -> None:
        self.url = url
        self._checkpointed = _sqlite_file(url) if url.startswith("sqlite") else None
        self.engine = make_engine(
            url,
            statement_timeout=statement_timeout,
            background_checkpoints=self._checkpointed is not None,
        )
        if self._checkpointed is not None:
            _CHECKPOINTS.register(self._checkpointed)
        self.retries = retries
        self.secret_key = secret_key  # for the migration that encrypts stored tokens
        self._head: str | None = None
        self._turns = _Turns() if self.dialect == "sqlite" else None
        # The binds of read-only units, made once rather than per unit of work.
        self._reading = self.engine.execution_options(**{READ_ONLY_OPTION: True})
        self._reading_alone = (
            self._reading.execution_options(isolation_level="AUTOCOMMIT")
            if self.dialect == "postgresql"
            else self._reading
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, read_only: bool = False, autocommit: bool = False) -> Iterator[Session]:
        """One unit of work: committed on success, rolled back on error. A read-only
        one is always rolled back and, on SQLite, takes no write lock; it never flushes
        on its own either, so a change made to a loaded object by mistake is dropped,
        not written (with ``autocommit``, a write would stay). ``autocommit``
        (read-only only) opens no transaction on PostgreSQL, see ``read``."""
        bind = (self._reading_alone if autocommit else self._reading) if read_only else self.engine
        with Session(bind, expire_on_commit=False, autoflush=not read_only) as session:
            try:
                yield session
                if read_only:
                    session.rollback()
                else:
                    session.commit()
            except BaseException:
                session.rollback()
                raise

    def read(self, work: Callable[[Session], T], *, autocommit: bool = False) -> T:
        """Run ``work`` that only reads, without the write lock (see ``run``).

        With ``autocommit`` PostgreSQL runs each statement on its own, with no
        transaction around them: the BEGIN and ROLLBACK round trips are saved, and
        every statement still sees the data committed before it began, as it would in
        a transaction at PostgreSQL's READ COMMITTED. Not for work that needs one
        snapshot across statements, nor for a server-side cursor (``yield_per``),
        which lives in a transaction. SQLite reads in a transaction either way."""
        if not autocommit:  # run() as it was called before the option, for its wrappers
            return self.run(work, read_only=True)
        return self.run(work, read_only=True, autocommit=True)

    def run(
        self,
        work: Callable[[Session], T],
        *,
        read_only: bool = False,
        background: bool = False,
        autocommit: bool = False,
    ) -> T:
        """Run ``work`` in its own transaction, retrying while the database is locked,
        and once more on new connections when it refused a write as read-only.
        ``background`` work (planning) gives way to other work waiting in this process;
        ``read_only`` work takes no write lock and so waits for no turn."""
        delay = 0.05
        reopened = False
        attempt = 0
        while True:
            try:
                turn = contextlib.nullcontext() if read_only else self._turn(background)
                with turn, self.session(read_only=read_only, autocommit=autocommit) as session:
                    return work(session)
            except DBAPIError as exc:
                if is_read_only_error(exc) and not reopened:
                    log.warning("the database refused a write (%s); reopening", first_line(exc))
                    self.reconnect()
                    reopened = True
                    continue
                if not isinstance(exc, OperationalError):
                    raise
                if not _is_transient(exc) or attempt == self.retries:
                    if _is_transient(exc):
                        raise DatabaseBusyError(
                            "the database stayed locked; try again in a moment"
                        ) from exc
                    raise
                log.warning("database busy, retrying (attempt %d): %s", attempt + 1, exc.orig)
                time.sleep(delay + random.uniform(0, delay))
                delay = min(delay * 2, 2.0)
                attempt += 1

    def reconnect(self) -> None:
        """Close every pooled connection, so the next unit of work opens new ones."""
        self.engine.dispose()
        if self.dialect == "sqlite":
            _match_sqlite_side_files(self.engine.url.database)

    def probe(self) -> Readiness:
        """Read the schema revision and try a write that is rolled back, as readiness
        needs: reads can work while every write fails. A read-only refusal reopens the
        connections and probes again, so a database fixed since reports ready at once.
        Raises the driver's error when the database cannot be reached at all."""
        try:
            readiness = self._probe_once()
        except DBAPIError as exc:
            if not is_read_only_error(exc):
                raise
            readiness = Readiness(current=None, write_error=first_line(exc), read_only=True)
        if not readiness.read_only:
            return readiness
        self.reconnect()
        try:
            return self._probe_once()
        except DBAPIError as exc:
            if not is_read_only_error(exc):
                raise
            return Readiness(current=None, write_error=first_line(exc), read_only=True)

    def _probe_once(self) -> Readiness:
        with self.engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
            problem: str | None = None
            read_only = False
            if revision is not None:
                try:
                    # Touches a row without changing it; rolled back below either way.
                    conn.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
                except DBAPIError as exc:
                    problem, read_only = first_line(exc), is_read_only_error(exc)
            with suppress(DBAPIError):
                conn.rollback()
        current = revision == self.head_revision()
        return Readiness(current=current, write_error=problem, read_only=read_only)

    def _turn(self, background: bool) -> contextlib.AbstractContextManager[None]:
        if self._turns is None:
            return contextlib.nullcontext()
        return self._turns.turn(background)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._checkpointed is not None:
            _CHECKPOINTS.unregister(self._checkpointed)
            self._checkpointed = None

    # ------------------------------------------------------------------ migrations

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def upgrade(self) -> None:
        """Bring the schema to the newest revision; safe to run from several replicas."""
        config = self._alembic_config()
        config.attributes["secret_key"] = self.secret_key
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                # Waiting for another replica's migration, or a long one, is no timeout.
                conn.exec_driver_sql("SET statement_timeout = 0")
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_MIGRATION_LOCK})")
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                if self.dialect == "postgresql":
                    conn.rollback()  # a failed migration leaves its transaction aborted
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_MIGRATION_LOCK})")
                    conn.exec_driver_sql("RESET statement_timeout")
                    conn.commit()

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        if self._head is None:  # the scripts do not change while the process runs
            self._head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        return self._head

    def is_current(self) -> bool:
        return self.current_revision() == self.head_revision()
