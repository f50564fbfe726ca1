"""A year of use: 10,000 learners, 260 lesson-days, about 5 million delivery rows.

Seeds a year of history the way a team leaves it: every lesson-day's question, a
reminder when it stayed unanswered for hours, practice check-ins after answers, a
continue prompt after each lesson, and the replies (about half the questions get an
answer, a few are notes, some are shared with leads). Rows are bulk-loaded
(executemany in large chunks on SQLite, COPY on PostgreSQL). Then it measures what
grows with history: the planning pass with 0 and 1,000 due, ``forget-me`` of one
learner, ``history``, ``team``, the digest render, ``mentorbot export replies`` (its own
process, as operators run it), a prune pass and the hourly pass after it, database
size and process RSS. It does that on the full year ("full"), applies the default
90-day retention, and measures again ("retained"). Each phase also pushes lessons
through the real dispatcher to an adapter that does nothing, with rate limits raised
out of the way: the per-process send ceiling.

Targets: ``forget-me`` at most 50 ms at 5,000,000 delivery rows; ``team`` and the
digest cost a few queries for the whole workspace, never some per learner; an hourly
prune pass costs what crossed its cutoff since the last one.
Run: .venv/bin/python bench/history.py [--learners N] [--sends N] [--skip-postgres]
[--skip-sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import NOW, database, make_app, postgres_available, seed
from bot.messages import EventKind, IncomingEvent, OutgoingMessage, SendResult
from bot.models import Delivery, Digest, Enrolment, Learner, Reply, Workspace
from bot.ratelimit import Limit
from bot.retention import prune
from mentorbot.bootstrap import App

LESSON_DAYS = 260  # a year of weekdays
WORKSPACE = "bench"
COURSE = "data-engineering"
RETENTION_DAYS = 90  # the default of MENTORBOT_RETENTION_DAYS
REMINDER_AFTER = timedelta(hours=4)  # the default of MENTORBOT_REMINDER_AFTER
CHUNK = 200_000  # rows per bulk statement and transaction

DELIVERY_COLUMNS = (
    "id",
    "key",
    "learner_id",
    "enrolment_id",
    "parent_id",
    "kind",
    "origin",
    "course_id",
    "lesson_id",
    "day",
    "question",
    "body",
    "status",
    "due_at",
    "attempts",
    "sent_at",
    "platform_channel",
    "platform_message_ids",
    "created_at",
)
REPLY_COLUMNS = (
    "id",
    "learner_id",
    "delivery_id",
    "kind",
    "course_id",
    "lesson_id",
    "question",
    "text",
    "platform_message_id",
    "created_at",
    "visibility",
    "shared_at",
    "practice",
    "reviews_done",
)

QUESTIONS = (
    "When did you last say no to a stakeholder request, and how did you explain the trade-off?",
    "Which decision in your current project would you reverse today, and what stops you?",
    "How do you decide when a pipeline is good enough to ship rather than perfect?",
    "Describe a time you coached someone through an incident instead of fixing it yourself.",
    "What is one piece of technical debt your team should pay down this quarter, and why?",
)
PRACTICES = (
    "Write the decision down",
    "Say no with a reason",
    "Delegate the outcome, not the task",
    "Ask before you answer",
    "Make the trade-off visible",
)
WORDS = (
    "I tried this with my team last week and it went better than I expected.",
    "Honestly I still default to fixing things myself when time is short.",
    "We agreed on a written decision record, which stopped the same debate coming back.",
    "The hardest part was explaining the cost to people outside engineering.",
    "Next sprint I want to pair with the newest engineer on the on-call handover.",
    "Our backfill job is the thing I would change first; it hides too many failures.",
    "I asked more questions in the design review instead of proposing my own answer.",
    "Saying no felt uncomfortable, but the roadmap is clearer because of it.",
    "A dashboard nobody reads is not monitoring, so we deleted three of them.",
    "I am not sure yet; I will come back to this after the planning meeting.",
)
FIRST = ("Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jia", "Kai", "Lu")
LAST = ("Adams", "Berg", "Costa", "Diaz", "Evans", "Fox", "Gray", "Holm", "Ito", "Jovic")


def lesson_days(now: datetime) -> list[date]:
    """The 260 weekdays before ``now``'s date, oldest first."""
    days: list[date] = []
    day = now.date() - timedelta(days=1)
    while len(days) < LESSON_DAYS:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return days[::-1]


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A naive UTC instant, as the store keeps them."""
    return datetime(day.year, day.month, day.day, hour, minute)


@dataclass
class Seeded:
    url: str
    learners: int
    user_ids: list[str]
    enrolment_ids: list[int]
    lead: str
    digest_delivery_id: int
    deliveries: int
    replies: int
    seconds: float


def delivery_row(**values: Any) -> tuple[Any, ...]:
    """A sent outbox row in ``DELIVERY_COLUMNS`` order (created when it was due)."""
    values.setdefault("status", "sent")
    values.setdefault("attempts", 1)
    values.setdefault("created_at", values["due_at"])
    values.setdefault("course_id", COURSE)
    return tuple(values.get(name) for name in DELIVERY_COLUMNS)


def reply_row(**values: Any) -> tuple[Any, ...]:
    """A private reply in ``REPLY_COLUMNS`` order."""
    values.setdefault("visibility", "private")
    values.setdefault("reviews_done", 0)
    values.setdefault("platform_message_id", f"m{values['id']}")
    return tuple(values.get(name) for name in REPLY_COLUMNS)


def year_rows(
    learner_ids: Sequence[int], enrolment_ids: Sequence[int], days: Sequence[date], seed: int = 7
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """A year of delivery and reply rows, one lesson-day at a time, ids in time order
    (as a real outbox fills), so each learner's rows are spread over the whole table."""
    rng = random.Random(seed)
    engagement = [0.15 + 0.7 * rng.random() for _ in learner_ids]  # share of days answered
    delivery_id, reply_id = 0, 0
    for index, day in enumerate(days):
        deliveries: list[tuple[Any, ...]] = []
        replies: list[tuple[Any, ...]] = []
        lesson = f"y{index // 5:02d}"
        number = index % 5 + 1
        question = QUESTIONS[index % len(QUESTIONS)]
        due = at(day, 9)
        following = days[index + 1] if index + 1 < len(days) else None
        pairs = zip(learner_ids, enrolment_ids, strict=True)
        for n, (learner_id, enrolment_id) in enumerate(pairs):
            mine = {"learner_id": learner_id, "enrolment_id": enrolment_id, "lesson_id": lesson}
            channel = {"platform_channel": f"D{learner_id}"}
            if index == 0:
                delivery_id += 1
                welcomed = due - timedelta(days=1)
                deliveries.append(
                    delivery_row(
                        id=delivery_id,
                        key=f"welcome:{enrolment_id}",
                        kind="welcome",
                        origin="learner",
                        day=0,
                        due_at=welcomed,
                        sent_at=welcomed,
                        platform_message_ids=f"w{n}",
                        **mine,
                        **channel,
                    )
                )
            sent = due + timedelta(milliseconds=2 * n)  # ~500 a second at the delivery hour
            delivery_id += 1
            question_id = delivery_id
            deliveries.append(
                delivery_row(
                    id=question_id,
                    key=f"lesson:{enrolment_id}:{lesson}:{number}",
                    kind="lesson",
                    origin="schedule",
                    day=number,
                    question=question,
                    due_at=due,
                    sent_at=sent,
                    platform_message_ids=f"{index}.{n:06d}",
                    **mine,
                    **channel,
                )
            )
            answered = rng.random() < engagement[n]
            answered_at = sent + timedelta(minutes=10 + rng.expovariate(1 / 150))
            if not answered or answered_at > sent + REMINDER_AFTER:
                delivery_id += 1
                reminded = sent + REMINDER_AFTER
                deliveries.append(
                    delivery_row(
                        id=delivery_id,
                        key=f"remind:{question_id}",
                        parent_id=question_id,
                        kind="reminder",
                        origin="schedule",
                        day=number,
                        due_at=reminded,
                        sent_at=reminded,
                        platform_message_ids=f"{index}.{n:06d}r",
                        **mine,
                        **channel,
                    )
                )
            if answered:
                reply_id += 1
                replies.append(
                    reply_row(
                        id=reply_id,
                        learner_id=learner_id,
                        delivery_id=question_id,
                        kind="answer",
                        course_id=COURSE,
                        lesson_id=lesson,
                        question=question,
                        text=" ".join(rng.sample(WORDS, rng.randint(1, 4))),
                        created_at=answered_at,
                        shared_at=answered_at + timedelta(minutes=1)
                        if rng.random() < 0.08
                        else None,
                        practice=PRACTICES[n % len(PRACTICES)] if rng.random() < 0.7 else None,
                    )
                )
                if following is not None and rng.random() < 0.4:
                    delivery_id += 1
                    checked = at(following, 15)
                    practice = PRACTICES[(n + index) % len(PRACTICES)]
                    prompt = f"How did “{practice}” go since you wrote about it?"
                    deliveries.append(
                        delivery_row(
                            id=delivery_id,
                            key=f"practice:{question_id}",
                            parent_id=question_id,
                            kind="practice",
                            origin="schedule",
                            day=number,
                            question=prompt,
                            body=practice,
                            due_at=checked,
                            sent_at=checked,
                            platform_message_ids=f"{index}.{n:06d}p",
                            **mine,
                            **channel,
                        )
                    )
                    if rng.random() < engagement[n] * 0.5:
                        reply_id += 1
                        replies.append(
                            reply_row(
                                id=reply_id,
                                learner_id=learner_id,
                                delivery_id=delivery_id,
                                kind="answer",
                                course_id=COURSE,
                                lesson_id=lesson,
                                question=prompt,
                                text=rng.choice(WORDS),
                                created_at=checked + timedelta(hours=2),
                                practice=practice,
                            )
                        )
            if rng.random() < 0.02:
                reply_id += 1
                replies.append(
                    reply_row(
                        id=reply_id,
                        learner_id=learner_id,
                        kind="note",
                        course_id="",
                        lesson_id="",
                        question="",
                        text=rng.choice(WORDS),
                        created_at=due + timedelta(hours=6),
                    )
                )
            if number == 5:
                delivery_id += 1
                asked = at(day, 18)
                deliveries.append(
                    delivery_row(
                        id=delivery_id,
                        key=f"continue:{enrolment_id}:{lesson}:asked",
                        kind="continue",
                        origin="learner",
                        day=number,
                        due_at=asked,
                        sent_at=asked,
                        attempts=0,
                        **mine,
                    )
                )
        yield deliveries, replies


def _sqlite_text(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """SQLAlchemy keeps SQLite datetimes as text in this exact form; queries compare it."""
    return tuple(v.isoformat(" ", "microseconds") if isinstance(v, datetime) else v for v in row)


class BulkWriter:
    """Fast inserts outside the app's pool: executemany on SQLite, COPY on PostgreSQL.
    Foreign keys are not checked row by row (the rows are consistent by construction),
    which is what makes a year load in minutes."""

    def __init__(self, url: str) -> None:
        self.kind = "sqlite" if url.startswith("sqlite") else "postgresql"
        if self.kind == "sqlite":
            path = sa.engine.make_url(url).database or ""
            self.sqlite = sqlite3.connect(path)
            self.sqlite.execute("PRAGMA synchronous=OFF")
        else:
            self.engine = sa.create_engine(url, poolclass=NullPool)
            self.raw = self.engine.raw_connection()
            self.pg: Any = self.raw.driver_connection
            self.pg.execute("SET session_replication_role = replica")

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        names = ", ".join(columns)
        if self.kind == "sqlite":
            marks = ", ".join("?" for _ in columns)
            self.sqlite.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks})", map(_sqlite_text, rows)
            )
            self.sqlite.commit()
            return
        with self.pg.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        self.pg.commit()

    def close(self) -> None:
        if self.kind == "sqlite":
            self.sqlite.close()
            return
        with self.pg.cursor() as cursor:
            for table in ("delivery", "reply"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
        self.pg.commit()
        self.pg.autocommit = True
        with self.pg.cursor() as cursor:
            cursor.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()"
            )
            tables = ", ".join(name for (name,) in cursor.fetchall())
        self.pg.execute(f"VACUUM ANALYZE {tables}")  # what autovacuum does after a load
        self.raw.close()
        self.engine.dispose()


def seed_year(app: App, url: str, learners: int) -> Seeded:
    """A workspace with a lead, ``learners`` enrolled a year ago, their year of
    history, and a weekly digest."""
    started = time.perf_counter()
    now = NOW.replace(tzinfo=None)
    days = lesson_days(NOW)
    rng = random.Random(3)
    engine = app.store.engine
    with engine.begin() as conn:
        workspace_id = conn.execute(
            sa.insert(Workspace.__table__).returning(Workspace.__table__.c.id),  # type: ignore[attr-defined]
            {"platform": "console", "external_id": WORKSPACE, "created_at": NOW},
        ).scalar_one()
        lead_id = conn.execute(
            sa.insert(Learner.__table__).returning(Learner.__table__.c.id),  # type: ignore[attr-defined]
            {
                "workspace_id": workspace_id,
                "user_id": "lead",
                "display_name": "Lena Lead",
                "role": "lead",
                "created_at": NOW,
            },
        ).scalar_one()
    learner_ids: list[int] = []
    enrolment_ids: list[int] = []
    user_ids = [f"u{n:05d}" for n in range(learners)]
    start = datetime.combine(days[0] - timedelta(days=1), datetime.min.time(), NOW.tzinfo)
    tomorrow = NOW + timedelta(days=1)
    for first in range(0, learners, 5000):
        batch = user_ids[first : first + 5000]
        with engine.begin() as conn:
            ids = (
                conn.execute(
                    sa.insert(Learner.__table__).returning(Learner.__table__.c.id),  # type: ignore[attr-defined]
                    [
                        {
                            "workspace_id": workspace_id,
                            "user_id": user,
                            "display_name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                            "role": "learner",
                            "dm_channel": f"D{user}",
                            "created_at": start,
                        }
                        for user in batch
                    ],
                )
                .scalars()
                .all()
            )
            learner_ids.extend(ids)
            enrolments = [
                {
                    "learner_id": learner_id,
                    "course_id": COURSE,
                    "lesson_id": "0.2.2",
                    "day": 1,
                    "status": "paused" if rng.random() < 0.05 else "active",
                    "assigned_by": "lead",
                    "next_due_at": tomorrow,
                    "started_at": start,
                    "updated_at": NOW,
                }
                for learner_id in ids
            ]
            enrolment_ids.extend(
                conn.execute(
                    sa.insert(Enrolment.__table__).returning(Enrolment.__table__.c.id),  # type: ignore[attr-defined]
                    enrolments,
                )
                .scalars()
                .all()
            )
    writer = BulkWriter(url)
    deliveries: list[tuple[Any, ...]] = []
    replies: list[tuple[Any, ...]] = []
    total_deliveries = total_replies = 0
    for day_deliveries, day_replies in year_rows(learner_ids, enrolment_ids, days):
        deliveries += day_deliveries
        replies += day_replies
        if len(deliveries) >= CHUNK:
            writer.write("delivery", DELIVERY_COLUMNS, deliveries)
            writer.write("reply", REPLY_COLUMNS, replies)
            total_deliveries += len(deliveries)
            total_replies += len(replies)
            deliveries, replies = [], []
            print(f"  … {total_deliveries:,} delivery rows", end="\r", flush=True)
    writer.write("delivery", DELIVERY_COLUMNS, deliveries)
    writer.write("reply", REPLY_COLUMNS, replies)
    total_deliveries += len(deliveries)
    total_replies += len(replies)
    writer.close()
    with engine.begin() as conn:
        digest_id = conn.execute(
            sa.insert(Digest.__table__).returning(Digest.__table__.c.id),  # type: ignore[attr-defined]
            {
                "workspace_id": workspace_id,
                "channel": "team",
                "frequency": "weekly",
                "created_by": lead_id,
                "next_due_at": NOW + timedelta(days=5),
                "last_sent_at": NOW - timedelta(days=7),
                "created_at": start,
            },
        ).scalar_one()
        # The digest due now, to render as the dispatcher does. Cancelled, so the
        # dispatcher of the send-ceiling run never posts it; rendering ignores status.
        digest_delivery_id = conn.execute(
            sa.insert(Delivery.__table__).returning(Delivery.__table__.c.id),  # type: ignore[attr-defined]
            {
                "key": f"digest:{digest_id}:{now.date().isoformat()}",
                "learner_id": lead_id,
                "digest_id": digest_id,
                "channel": "team",
                "kind": "digest",
                "origin": "learner",
                "course_id": COURSE,
                "lesson_id": "0.2.2",
                "day": 0,
                "status": "cancelled",
                "due_at": NOW,
                "attempts": 0,
                "created_at": NOW,
            },
        ).scalar_one()
    return Seeded(
        url,
        learners,
        user_ids,
        enrolment_ids,
        "lead",
        digest_delivery_id,
        total_deliveries + 1,
        total_replies,
        time.perf_counter() - started,
    )


# ---------------------------------------------------------------------- measuring


class NoopPlatform:
    """Accepts everything at once; a per-conversation limit like Slack's, and a
    workspace limit raised far above what one process can reach."""

    platform = "console"

    def __init__(self) -> None:
        self.sent = 0

    def rate_limits(self, message: OutgoingMessage) -> list[Limit]:
        return [
            Limit(f"noop:conversation:{message.user}", 1.0, burst=3),
            Limit("noop:workspace", 1_000_000.0, burst=1_000),
        ]

    async def start(self, sink: object) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.sent += 1
        return SendResult(channel="noop", message_ids=(str(self.sent),))


def command(app: App, user: str, text: str) -> Any:
    return app.service.handle(IncomingEvent("console", WORKSPACE, user, EventKind.COMMAND, text))


def timed(work: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    """Median milliseconds of ``repeat`` runs (one run when a run takes over 2 s)."""
    samples, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = work()
        samples.append((time.perf_counter() - t0) * 1000)
        if samples[-1] > 2000:
            break
    return statistics.median(samples), result


def rss_mib() -> tuple[float, float]:
    """Current and peak resident memory of this process."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    current = int(fields["VmRSS"].split()[0]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def database_mib(app: App) -> tuple[float, float]:
    """Size on disk, and the part in use (SQLite keeps freed pages for reuse; on
    PostgreSQL freed space is reused too, so both stay near the high-water mark)."""
    if app.store.engine.dialect.name == "sqlite":
        path = app.store.engine.url.database or ""
        with sqlite3.connect(path) as own:  # outside the app's transactions
            # Busy while the store's checkpoint thread copies the log (gigabytes after
            # a VACUUM): wait for it, so the log is empty when the file is measured.
            deadline = time.monotonic() + 120
            while own.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            size = own.execute("PRAGMA page_size").fetchone()[0]
            pages = own.execute("PRAGMA page_count").fetchone()[0]
            free = own.execute("PRAGMA freelist_count").fetchone()[0]
        own.close()
        disk = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
        return disk / 2**20, (pages - free) * size / 2**20
    with app.store.engine.connect() as conn:
        total = conn.exec_driver_sql(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).scalar_one()
        return int(total) / 2**20, int(total) / 2**20


def rows(app: App) -> tuple[int, int]:
    with app.store.engine.connect() as conn:
        deliveries = conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one()
        replies = conn.execute(sa.select(sa.func.count()).select_from(Reply)).scalar_one()
    return int(deliveries), int(replies)


def make_due(app: App, enrolment_ids: Sequence[int]) -> None:
    table = Enrolment.__table__  # type: ignore[attr-defined]
    with app.store.engine.begin() as conn:
        for first in range(0, len(enrolment_ids), 1000):
            conn.execute(
                sa.update(table)
                .where(table.c.id.in_(enrolment_ids[first : first + 1000]))
                .values(status="active", next_due_at=NOW - timedelta(minutes=1))
            )


def export_replies(url: str) -> tuple[float, float, int]:
    """``mentorbot export replies`` in its own process: seconds, peak RSS, lines.

    The peak is the child's own high-water mark (VmHWM), read while it runs: the
    rusage of a child started by this process would count this process's memory too,
    because Linux carries the peak across fork and exec."""
    mentorbot = Path(sys.executable).parent / "mentorbot"
    env = {**os.environ, "MENTORBOT_DATABASE_URL": url, "MENTORBOT_LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "replies.jsonl"
        env["MENTORBOT_DATA_DIR"] = folder
        log = (Path(folder) / "stderr").open("w+b")  # a pipe could fill and stall it
        t0 = time.perf_counter()
        process = subprocess.Popen(
            [str(mentorbot), "export", "replies", "--format", "jsonl", "--output", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        status = Path(f"/proc/{process.pid}/status")
        peak = 0
        while process.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(0.05)
        process.wait()
        elapsed = time.perf_counter() - t0
        log.seek(0)
        error = log.read().decode(errors="replace")
        log.close()
        if process.returncode != 0:
            raise RuntimeError(f"export failed ({process.returncode}): {error[-2000:]}")
        with out.open("rb") as lines:
            count = sum(1 for _ in lines)
    return elapsed, peak / 1024, count


async def drain(app: App, platform: NoopPlatform, expected: int) -> float:
    app.dispatcher.adapters["console"] = platform
    start = time.perf_counter()
    while platform.sent < expected and time.perf_counter() - start < 600:
        if await app.dispatcher.run_once() == 0:
            break
    return time.perf_counter() - start


def send_ceiling(app: App, enrolment_ids: Sequence[int]) -> tuple[int, float]:
    """Lessons for ``enrolment_ids`` (and anything else due) through the dispatcher."""
    make_due(app, enrolment_ids)
    app.engine.planner.plan(NOW)
    with app.store.engine.connect() as conn:
        pending = conn.execute(
            sa.select(sa.func.count())
            .select_from(Delivery)
            .where(Delivery.status == "pending", Delivery.due_at <= NOW)
        ).scalar_one()
    platform = NoopPlatform()
    elapsed = asyncio.run(drain(app, platform, int(pending)))
    return platform.sent, platform.sent / elapsed if elapsed else 0.0


@dataclass
class Slices:
    """Disjoint learners for each destructive or state-changing measurement."""

    due: list[int]
    sends: list[int]
    forget: list[str]
    history: list[str]


def slices(seeded: Seeded, phase: int, sends: int) -> Slices:
    n = seeded.learners
    due = min(1000, n // 10)
    base = 2 * due + phase * sends
    return Slices(
        due=seeded.enrolment_ids[phase * due : (phase + 1) * due],
        sends=seeded.enrolment_ids[base : base + sends],
        forget=seeded.user_ids[n - 1 - phase * 5 : n - 6 - phase * 5 : -1],
        history=seeded.user_ids[n - 20 - phase * 5 : n - 15 - phase * 5],
    )


def measure_phase(
    kind: str, app: App, seeded: Seeded, phase: str, index: int, sends: int
) -> dict[str, str]:
    part = slices(seeded, index, sends)
    planner = app.engine.planner
    planner._pruned_at = NOW  # retention is measured as its own figure below
    figures: dict[str, str] = {}
    deliveries, replies = rows(app)
    figures["deliveries"] = str(deliveries)
    figures["replies"] = str(replies)
    print(f"[{kind}/{phase}] {deliveries:,} delivery rows, {replies:,} replies")

    planner.plan(NOW)
    samples = []
    for _ in range(10):
        t0 = time.perf_counter()
        result = planner.plan(NOW)
        samples.append((time.perf_counter() - t0) * 1000)
        assert result.queued == 0, result
    figures["plan_0_due_ms"] = f"{statistics.median(samples):.1f}"
    print(f"[{kind}/{phase}] planning pass, 0 due: {figures['plan_0_due_ms']} ms (median of 10)")

    make_due(app, part.due)
    t0 = time.perf_counter()
    result = planner.plan(NOW)
    due_ms = f"{(time.perf_counter() - t0) * 1000:.0f}"
    figures[f"plan_{len(part.due)}_due_ms"] = due_ms
    assert result.lessons == len(part.due), result
    print(f"[{kind}/{phase}] planning pass, {len(part.due):,} due: {due_ms} ms")

    forget = []
    for user in part.forget:
        ms, outcome = timed(lambda user=user: command(app, user, "forget-me confirm"), 1)
        assert "is deleted" in outcome.replies[0].text, outcome.replies[0].text
        forget.append(ms)
    figures["forget_me_ms"] = f"{statistics.median(forget):.1f}"
    figures["forget_me_max_ms"] = f"{max(forget):.1f}"
    print(
        f"[{kind}/{phase}] forget-me of one learner: median {figures['forget_me_ms']} ms, "
        f"max {figures['forget_me_max_ms']} ms over {len(forget)} learners (target ≤ 50 ms)"
    )

    history = []
    for user in part.history:
        ms, outcome = timed(lambda user=user: command(app, user, "history"), 1)
        history.append(ms)
    figures["history_ms"] = f"{statistics.median(history):.1f}"
    print(
        f"[{kind}/{phase}] history: median {figures['history_ms']} ms "
        f"({outcome.replies[0].text.split('.')[0]})"
    )

    ms, outcome = timed(lambda: command(app, seeded.lead, "team"))
    figures["team_ms"] = f"{ms:.0f}"
    report = outcome.replies[0]
    size = len(report.plain_text())
    print(
        f"[{kind}/{phase}] team: {ms:.0f} ms, {len(report.sections):,} sections, "
        f"{size:,} characters"
    )

    ms, message = timed(lambda: app.service.render_delivery(seeded.digest_delivery_id))
    figures["digest_ms"] = f"{ms:.0f}"
    assert isinstance(message, OutgoingMessage), message
    print(
        f"[{kind}/{phase}] digest render: {ms:.0f} ms ({message.sections[0].body.splitlines()[0]})"
    )

    seconds, peak, count = export_replies(seeded.url)
    figures["export_s"] = f"{seconds:.1f}"
    figures["export_rss_mib"] = f"{peak:.0f}"
    print(
        f"[{kind}/{phase}] export replies: {count:,} lines in {seconds:.1f}s, "
        f"peak RSS of that process {peak:.0f} MiB"
    )

    sent, rate = send_ceiling(app, part.sends)
    figures["send_per_s"] = f"{rate:.0f}"
    print(
        f"[{kind}/{phase}] send ceiling: {sent:,} messages through the dispatcher at "
        f"{rate:.0f}/s (no-op adapter, limits raised)"
    )

    disk, used = database_mib(app)
    figures["db_mib"] = f"{disk:.0f}"
    figures["db_used_mib"] = f"{used:.0f}"
    current, peak_rss = rss_mib()
    figures["rss_mib"] = f"{current:.0f}"
    figures["rss_peak_mib"] = f"{peak_rss:.0f}"
    print(
        f"[{kind}/{phase}] database {disk:,.0f} MiB on disk ({used:,.0f} MiB in use); "
        f"this process: RSS {current:.0f} MiB, peak {peak_rss:.0f} MiB"
    )
    # Last: after "full" this is the first pass over a year (what the engine does in its
    # first hour); "retained" then measures the smaller database and a steady-state pass.
    t0 = time.perf_counter()
    pruned = prune(app.store, NOW, RETENTION_DAYS)
    figures["prune_s"] = f"{time.perf_counter() - t0:.1f}"
    figures["pruned"] = str(pruned.removed)
    figures["compacted"] = str(pruned.compacted)
    print(f"[{kind}/{phase}] prune pass ({RETENTION_DAYS} days): {pruned} in {figures['prune_s']}s")
    if phase == "full" and kind == "postgresql":
        # What autovacuum does after a change this big, before anything is measured on
        # the pruned database: dead rows marked free, statistics renewed.
        seconds = vacuum(app, seeded.url, full=False)
        print(f"[{kind}/{phase}] VACUUM ANALYZE (as autovacuum would) in {seconds:.0f}s")
    # The engine's hourly pass after that: an hour later "full" crosses the cutoff with
    # the lesson questions of that morning (about one per learner), "retained" two
    # hours later with nothing. Either should cost what crossed, not all history.
    later = NOW + timedelta(hours=index + 1)
    t0 = time.perf_counter()
    hourly = prune(app.store, later, RETENTION_DAYS)
    figures["prune_hour_ms"] = f"{(time.perf_counter() - t0) * 1000:.1f}"
    figures["prune_hour_rows"] = str(hourly.read)
    print(
        f"[{kind}/{phase}] hourly pass {index + 1}h later: {hourly} in "
        f"{figures['prune_hour_ms']} ms ({hourly.read:,} rows of the retention index read)"
    )
    if phase == "retained":
        # Freed space is reused, never returned: what retention saves on disk shows only
        # after a rewrite (VACUUM; VACUUM FULL on PostgreSQL), which an operator may run.
        seconds = vacuum(app, seeded.url, full=True)
        disk, _ = database_mib(app)
        figures["db_rewritten_mib"] = f"{disk:.0f}"
        print(f"[{kind}/{phase}] after a rewrite ({seconds:.0f}s): {disk:,.0f} MiB on disk")
    return figures


def vacuum(app: App, url: str, full: bool) -> float:
    """Seconds to VACUUM: rewrite the file, or on PostgreSQL without ``full`` only mark
    dead rows free and ANALYZE. Its own connection: the bot's carry a statement timeout
    a rewrite of gigabytes outlasts."""
    t0 = time.perf_counter()
    if app.store.engine.dialect.name == "sqlite":
        app.store.engine.dispose()  # VACUUM wants no other connection in a transaction
        with sqlite3.connect(app.store.engine.url.database or "") as own:
            own.execute("VACUUM")
        own.close()
    else:
        engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("SET statement_timeout = 0")
            tables = ", ".join(own_tables(conn))  # never other schemas in the database
            conn.exec_driver_sql(f"VACUUM {'(FULL, ANALYZE)' if full else 'ANALYZE'} {tables}")
        engine.dispose()
    return time.perf_counter() - t0


def own_tables(conn: Any) -> list[str]:
    """The tables of this benchmark's schema (the first on the search path)."""
    found = conn.exec_driver_sql(
        "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()"
    )
    return [name for (name,) in found]


def fresh_ceiling(kind: str, sends: int) -> float:
    """The same send ceiling on a database with no history: ``sends`` learners due."""
    with database(kind) as url:
        app = make_app(url, NOW)
        seed(app, sends, sends, NOW)
        app.engine.planner.plan(NOW)
        platform = NoopPlatform()
        elapsed = asyncio.run(drain(app, platform, sends))
        app.store.dispose()
    return platform.sent / elapsed if elapsed else 0.0


def run(kind: str, learners: int, sends: int) -> list[str]:
    results = []
    fresh = fresh_ceiling(kind, sends)
    print(
        f"[{kind}] send ceiling on a database with no history: {sends:,} messages at "
        f"{fresh:.0f}/s (no-op adapter, limits raised)"
    )
    with database(kind) as url:
        app = make_app(url, NOW)
        seeded = seed_year(app, url, learners)
        print(
            f"[{kind}] seeded {learners:,} learners, {seeded.deliveries:,} delivery rows and "
            f"{seeded.replies:,} replies in {seeded.seconds:.0f}s"
        )
        for index, phase in enumerate(("full", "retained")):
            figures = measure_phase(kind, app, seeded, phase, index, sends)
            figures["send_per_s_no_history"] = f"{fresh:.0f}"
            line = " ".join(f"{name}={value}" for name, value in figures.items())
            results.append(
                f"RESULT name=history db={kind} phase={phase} learners={learners} {line}"
            )
        app.store.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--learners", type=int, default=10_000)
    parser.add_argument("--sends", type=int, default=3_000, help="messages per ceiling run")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    if args.learners < 100:
        parser.error("--learners must be at least 100")
    sends = min(args.sends, (args.learners - 2 * min(1000, args.learners // 10) - 40) // 2)
    started = time.perf_counter()
    results = [] if args.skip_sqlite else run("sqlite", args.learners, sends)
    if not args.skip_postgres:
        if postgres_available():
            results += run("postgresql", args.learners, sends)
        else:
            print("[postgresql] skipped: server unreachable")
    print(f"whole run: {time.perf_counter() - started:.0f}s")
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
