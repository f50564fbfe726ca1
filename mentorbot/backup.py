"""Backups of a SQLite store with SQLite's online backup (safe while the bot runs), and
restores from them. PostgreSQL has its own tools (pg_dump / pg_restore): see README."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from bot.config import sqlite_file_of
from mentorbot.progress import Progress


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


def sqlite_path(url: str) -> Path:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        raise BackupError(
            "backups from mentorbot cover SQLite; for PostgreSQL use pg_dump "
            "(see the README's Deploy section)"
        )
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("the database is in memory; there is nothing to back up")
    return Path(parsed.database)


def _copy(source: sqlite3.Connection, target: sqlite3.Connection, label: str) -> None:
    pages = source.execute("PRAGMA page_count").fetchone()[0]
    progress = Progress(pages, label)

    def report(_status: int, remaining: int, total: int) -> None:
        progress.total = total
        progress.update(total - remaining)

    source.backup(target, pages=256, progress=report)
    progress.finish()


def backup(url: str, destination: Path) -> None:
    source_path = sqlite_path(url)
    if not source_path.exists():
        raise BackupError(f"{source_path} does not exist yet: run the bot once first")
    if destination.exists():
        raise BackupError(f"{destination} already exists; choose a new file name")
    folder = destination.absolute().parent
    if not folder.is_dir():
        raise BackupError(f"the folder {folder} does not exist; create it, or back up elsewhere")
    try:
        source = sqlite3.connect(source_path, timeout=30)
        target = sqlite3.connect(destination)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot write {destination}: {exc}") from exc
    try:
        _copy(source, target, f"backing up {source_path.name}")
    except sqlite3.Error as exc:
        target.close()
        destination.unlink(missing_ok=True)  # never leave half a backup behind
        raise BackupError(f"the backup to {destination} failed: {exc}") from exc
    finally:
        target.close()
        source.close()


def revision_of(path: Path) -> str:
    """The schema revision inside a backup file, or an error if it is not one of ours."""
    if not path.exists():
        raise BackupError(f"{path} does not exist")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a mentorbot SQLite backup ({exc})") from exc
    if not row:
        raise BackupError(f"{path} has no schema revision; it is not a mentorbot backup")
    return str(row[0])


def restore(url: str, source_file: Path) -> str:
    """Replace the store's contents with a backup's. Refused while a bot runs on the
    file: it would keep writing into the restored data from what it had in memory."""
    revision = revision_of(source_file)
    target_path = sqlite_path(url)
    with _locked(target_path, exclusive=True):
        source = sqlite3.connect(f"file:{source_file}?mode=ro", uri=True)
        target = sqlite3.connect(target_path, timeout=30)
        try:
            _copy(source, target, f"restoring {source_file.name}")
        finally:
            target.close()
            source.close()
    return revision


def lock_file(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextlib.contextmanager
def running_on(url: str) -> Iterator[None]:
    """Held by `mentorbot run` for as long as it runs on a SQLite file. The lock is
    shared (several processes may run on one file) and the kernel drops it when the
    process ends, however it ends, so it never goes stale the way a pid file can."""
    path = sqlite_file_of(url)
    if path is None:
        yield
        return
    with _locked(path, exclusive=False):
        yield


@contextlib.contextmanager
def _locked(database: Path, *, exclusive: bool) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no flock on this system: nothing to coordinate with
        yield
        return
    try:
        handle: IO[str] = open(lock_file(database), "a")  # noqa: SIM115 (held until the end)
    except OSError as exc:
        raise BackupError(f"cannot create {lock_file(database)}: {exc.strerror}") from exc
    with handle:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            if exclusive:
                raise BackupError(
                    f"mentorbot is running on {database}: stop it (Ctrl-C or SIGTERM), then restore"
                ) from exc
            raise BackupError(
                f"a restore into {database} is in progress: start the bot when it is done"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
