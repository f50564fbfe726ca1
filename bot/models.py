"""Database tables. Every row belongs to one workspace (tenant), directly or through its
learner, and every query the core makes is scoped by it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Store naive UTC everywhere (SQLite has no time zones); hand back aware UTC."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _when(nullable: bool = True, index: bool = False) -> sa.Column[datetime]:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


def _set(table: str, column: str) -> sa.Index:
    """An index of the rows where ``column`` is set, named as ``index=True`` would.

    For columns empty on nearly every row (a reminder's parent, a digest, a time still
    to come): the NULL entries served no query, yet sat in row-id order across the
    whole index, so deleting one learner's rows (``forget-me``) rewrote an index page
    for nearly each of them. Every query on these columns compares them with a value
    or takes their least value, which both databases read from the partial index."""
    where = sa.text(f"{column} IS NOT NULL")
    return sa.Index(f"ix_{table}_{column}", column, sqlite_where=where, postgresql_where=where)


def _only_on(dialect: str, index: sa.Index) -> sa.Index:
    """An index only ``dialect`` is built with (``for_dialect`` tells migrations).

    Digests read one week of a whole workspace. SQLite, with no statistics, follows an
    index that leads with the learner: a seek per learner, then their week; and on
    SQLite an index in time order would cost ``forget-me`` a page write for nearly
    every one of the learner's rows. PostgreSQL never plans a seek per learner (it
    reads such an index whole), and its deletes write no index page, so it gets the
    index in time order instead, which it reads as one short range."""
    return index.ddl_if(dialect=dialect)


def _history_key(column: str, target: str) -> tuple[sa.ForeignKeyConstraint, ...]:
    """The foreign key of ``column`` to a row of history (an outbox row or a reply):
    ON DELETE RESTRICT on PostgreSQL, the default (NO ACTION) on SQLite.

    Both refuse a delete that would leave a row pointing at nothing, and both check when
    the statement ends, so one statement may delete a question and its reminder. For
    each row a delete removes, PostgreSQL's NO ACTION runs two queries: whether another
    row now holds the same key (only a deferred check, or a key rewritten in place, can
    meet one; these ids are never reused), then whether rows still point at it.
    RESTRICT runs the second only. ``forget-me`` deletes a year of one learner's rows,
    each checked by three keys (a reply's question and candidate, a reminder's parent):
    at five million outbox rows those checks took 30 of the 34 ms of its outbox delete,
    and 16 of 18 with RESTRICT. SQLite's RESTRICT acts as each row goes, so deleting a
    question before its reminder in the same statement would fail; its NO ACTION
    already looks each row up once. ``for_dialect`` tells migrations which is built."""
    return (
        sa.ForeignKeyConstraint([column], [target], ondelete="RESTRICT").ddl_if(
            dialect="postgresql"
        ),
        sa.ForeignKeyConstraint([column], [target]).ddl_if(dialect="sqlite"),
    )


def for_dialect(item: object, dialect: str) -> bool:
    """Whether a schema item of these models is built on ``dialect``."""
    only = getattr(item, "_ddl_if", None)
    return only is None or only.dialect in (None, dialect)


class Workspace(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("platform", "external_id", name="uq_workspace"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=20)
    external_id: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    # Workspace defaults a lead sets with `settings`; None falls back to the operator's.
    delivery_time: str | None = Field(default=None, max_length=5)
    delivery_days: str | None = Field(default=None, max_length=40)
    default_course: str | None = Field(default=None, max_length=100)
    reply_visibility: str = Field(
        default="private", max_length=10, sa_column_kwargs={"server_default": "private"}
    )  # private | leads
    auto_enrol: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # Public-holiday calendars of the `holidays` package, comma-separated ("DE-BY,US-CA"):
    # no lesson-day, reminder or check-in falls on those days in a learner's local calendar.
    holidays: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))


class Learner(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("workspace_id", "user_id", name="uq_learner"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    user_id: str = Field(max_length=64)
    display_name: str | None = Field(default=None, max_length=200)
    role: str = Field(default="learner", max_length=10)  # learner | lead
    timezone: str | None = Field(default=None, max_length=64)
    delivery_time: str | None = Field(default=None, max_length=5)  # HH:MM
    delivery_days: str | None = Field(default=None, max_length=40)  # mon,tue,...
    dm_channel: str | None = Field(default=None, max_length=64)
    dm_blocked_at: datetime | None = Field(default=None, sa_column=_when())
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))


class Enrolment(SQLModel, table=True):
    """A learner's place in a course. ``day`` is the last lesson-day delivered (0: none)."""

    __table_args__ = (
        # The planning pass reads ``next_due_at <= now``. Enrolments that wait for the
        # learner (finished, paused, DMs blocked, stopped) carry NULL and are left out
        # of the index, so a pass walks only what is due, however many are enrolled.
        sa.Index(
            "ix_enrolment_due",
            "next_due_at",
            sqlite_where=sa.text("next_due_at IS NOT NULL"),
            postgresql_where=sa.text("next_due_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    learner_id: int = Field(foreign_key="learner.id", index=True)
    course_id: str = Field(max_length=100)
    lesson_id: str = Field(max_length=40)
    day: int = 0
    # active | paused | awaiting_continue | waiting_content | stopped
    status: str = Field(default="active", max_length=20)
    waiting_for_lesson: str | None = Field(default=None, max_length=40)
    assigned_by: str | None = Field(default=None, max_length=64)  # the lead's user id
    # The last local day of an away period (`away until`, `away 3d`); the enrolment is
    # paused meanwhile and ``next_due_at`` is the instant it resumes by itself.
    away_until: date | None = Field(default=None)
    next_due_at: datetime | None = Field(default=None, sa_column=_when())
    started_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))


# The outbox rows retention (bot/retention.py) may still remove or compact: every kind
# but the two it keeps for good ("continue", "summary"), except sent questions (lesson,
# practice, review) with their text once compacted (no platform ids, error or lease).
# Word for word the condition of ``ix_delivery_retention`` and of the query that reads
# it, since both databases use a partial index only for queries that repeat it.
RETENTION_WORK = (
    "kind NOT IN ('continue', 'summary') AND (kind NOT IN ('lesson', 'practice', 'review') "
    "OR status <> 'sent' OR question IS NULL OR platform_message_ids IS NOT NULL "
    "OR error IS NOT NULL OR lease_owner IS NOT NULL)"
)


# The outbox's two queues: rows still to send and rows on their way. Each has a partial
# index holding only its rows (see ``on_its_way``); the conditions are written here once.
OUTBOX_QUEUES = {"pending": "status = 'pending'", "sending": "status = 'sending'"}


def _queue_index(status: str, *columns: str) -> sa.Index:
    """``ix_delivery_<status>``: the rows of one of the outbox's queues only."""
    where = sa.text(OUTBOX_QUEUES[status])
    return sa.Index(f"ix_delivery_{status}", *columns, sqlite_where=where, postgresql_where=where)


class Delivery(SQLModel, table=True):
    """The outbox: one row per message the bot owes a learner. ``key`` is unique, so the
    same lesson-day can never be queued twice."""

    __table_args__ = (
        # What is still to send, by due time, and what is on its way, by lease: the
        # only rows the outbox's claims and recovery look for (see ``on_its_way``).
        _queue_index("pending", "due_at", "id"),
        _queue_index("sending", "lease_until", "id"),
        # A learner's deliveries around an instant: the planner's daily cap reads them
        # for a whole batch of learners, however long each one's history has grown.
        sa.Index("ix_delivery_learner_due", "learner_id", "due_at"),
        # What retention still has to do, oldest first. Rows it has pruned or compacted
        # leave it, so an hourly pass reads what crossed its cutoff since the last one,
        # and the index holds about a retention period of rows, not all history.
        sa.Index(
            "ix_delivery_retention",
            "due_at",
            "id",
            sqlite_where=sa.text(RETENTION_WORK),
            postgresql_where=sa.text(RETENTION_WORK),
        ),
        # The lesson questions a workspace was sent in one week (digests, streaks).
        _only_on("sqlite", sa.Index("ix_delivery_learner_sent", "learner_id", "sent_at")),
        _only_on("postgresql", sa.Index("ix_delivery_sent_at", "sent_at")),
        _set("delivery", "parent_id"),
        *_history_key("parent_id", "delivery.id"),
        _set("delivery", "digest_id"),
        _set("delivery", "remind_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    learner_id: int = Field(foreign_key="learner.id")
    enrolment_id: int | None = Field(default=None, foreign_key="enrolment.id", index=True)
    # A reminder points at the question it is about.
    parent_id: int | None = Field(default=None)  # foreign key: _history_key
    kind: str = Field(max_length=20)  # lesson | continue | reminder | practice
    # Who asked for it: "schedule" (counts toward the daily cap) or "learner" (next, snooze).
    origin: str = Field(
        default="schedule", max_length=10, sa_column_kwargs={"server_default": "learner"}
    )
    course_id: str = Field(max_length=100)
    lesson_id: str = Field(max_length=40)
    day: int = 0
    question: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    # A notice's text, and a channel to post in instead of the learner's DM (digests).
    body: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    channel: str | None = Field(default=None, max_length=64)
    digest_id: int | None = Field(default=None, foreign_key="digest.id")
    status: str = Field(default="pending", max_length=10)  # pending|sending|sent|failed|cancelled
    due_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))
    attempts: int = 0
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = Field(default=None, sa_column=_when())
    sent_at: datetime | None = Field(default=None, sa_column=_when())
    skipped_at: datetime | None = Field(default=None, sa_column=_when())
    # When an unanswered question earns its reminder; cleared once decided.
    remind_at: datetime | None = Field(default=None, sa_column=_when())
    platform_channel: str | None = Field(default=None, max_length=64)
    platform_message_ids: str | None = Field(default=None, max_length=1000)  # comma-separated
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))


def on_its_way(status: str) -> sa.ColumnElement[bool]:
    """``delivery.status = 'pending'`` (or ``'sending'``), the value written into the SQL.

    The outbox's own queries (claims, recovery, leases, the next due instant) read the
    rows still to send and those on their way through two partial indexes that hold
    only those: a few rows, where an index on every status held a year of sent ones,
    and ``forget-me`` rewrote a page of it for nearly every row it deleted. Both
    databases use a partial index only for a query that states its condition itself
    with the value in the text: SQLite compares the two term by term, and a PostgreSQL
    plan made for any bound value could not use it. Only ``OUTBOX_QUEUES``' two values
    are accepted, so nothing from outside reaches the SQL."""
    if status not in OUTBOX_QUEUES:
        raise ValueError(f"no partial index holds the {status!r} rows")
    column: sa.ColumnElement[str] = Delivery.__table__.c.status  # type: ignore[attr-defined]
    return column == sa.literal_column(f"'{status}'")


class Reply(SQLModel, table=True):
    """Something a learner wrote: an answer to one question, or a note.

    A note has no question (``delivery_id`` is None). When the bot was unsure whether a
    message answers a question it keeps it as a note and asks; ``candidate_id`` is the
    question it asked about, until the learner says yes (it becomes the answer) or no.
    """

    __table_args__ = (
        # One answer per question: a second message is appended to it instead.
        sa.Index(
            "uq_reply_answer",
            "delivery_id",
            unique=True,
            sqlite_where=sa.text("kind = 'answer'"),
            postgresql_where=sa.text("kind = 'answer'"),
        ),
        # A learner's replies by time: SQLite's digests read one week of a workspace's
        # through it (see ``_only_on``), and it serves the learner's foreign key.
        sa.Index("ix_reply_learner_created", "learner_id", "created_at"),
        _only_on("postgresql", sa.Index("ix_reply_created_at", "created_at")),
        # An edited message is looked up among its author's replies; with the learner
        # first, deleting a learner's replies touches a few pages, not one per reply.
        sa.Index("ix_reply_learner_message", "learner_id", "platform_message_id"),
        *_history_key("delivery_id", "delivery.id"),
        _set("reply", "candidate_id"),
        *_history_key("candidate_id", "delivery.id"),
        _set("reply", "follow_up_at"),
        _set("reply", "review_at"),
        _set("reply", "review_of_id"),
        *_history_key("review_of_id", "reply.id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    learner_id: int = Field(foreign_key="learner.id")
    delivery_id: int | None = Field(default=None, index=True)  # foreign key: _history_key
    kind: str = Field(
        default="answer", max_length=10, sa_column_kwargs={"server_default": "answer"}
    )  # answer | note
    candidate_id: int | None = Field(default=None)  # foreign key: _history_key
    course_id: str = Field(max_length=100)
    lesson_id: str = Field(max_length=40)
    question: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    text: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    platform_message_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))
    edited_at: datetime | None = Field(default=None, sa_column=_when())
    # The last time a follow-up message was added to this answer (the addition window).
    added_at: datetime | None = Field(default=None, sa_column=_when())
    moved_at: datetime | None = Field(default=None, sa_column=_when())  # filed elsewhere
    # When the practice follow-up about this answer is due; cleared once queued.
    follow_up_at: datetime | None = Field(default=None, sa_column=_when())
    # "leads" when the workspace made replies visible to leads at the time of writing.
    visibility: str = Field(
        default="private", max_length=10, sa_column_kwargs={"server_default": "private"}
    )
    shared_at: datetime | None = Field(default=None, sa_column=_when())  # the learner shared it
    # The leadership practice this answer touches on: named in the acknowledgement and
    # brought back in its check-in, so the two never disagree.
    practice: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    # Spaced review: when the learner next sees this answer again, and how often they have.
    review_at: datetime | None = Field(default=None, sa_column=_when())
    reviews_done: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # An answer to a spaced review points at the answer it revisits.
    review_of_id: int | None = Field(default=None)  # foreign key: _history_key


class ReplyRead(SQLModel, table=True):
    """Every time a lead (or a digest they set up) read a reply: the learner may ask."""

    __tablename__ = "reply_read"
    __table_args__ = _history_key("reply_id", "reply.id")

    id: int | None = Field(default=None, primary_key=True)
    reply_id: int = Field(index=True)  # foreign key: _history_key
    reader_id: int | None = Field(default=None, foreign_key="learner.id", index=True)
    reader_name: str = Field(max_length=200)
    via: str = Field(max_length=20)  # replies | digest | export
    read_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))


class Digest(SQLModel, table=True):
    """A scheduled summary posted to a channel."""

    __table_args__ = (sa.UniqueConstraint("workspace_id", "channel", name="uq_digest_channel"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    channel: str = Field(max_length=64)
    frequency: str = Field(max_length=10)  # daily | weekly
    created_by: int | None = Field(default=None, foreign_key="learner.id", index=True)
    next_due_at: datetime | None = Field(default=None, sa_column=_when(index=True))
    last_sent_at: datetime | None = Field(default=None, sa_column=_when())
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))


class RateBucket(SQLModel, table=True):
    """One platform budget (a Slack conversation, a workspace, Discord's global limit),
    shared by every process on the database. ``tat`` is the GCRA "theoretical arrival
    time" of the next send, and ``blocked_until`` the end of a 429's Retry-After, both
    in seconds since the epoch, so replicas pace together and a 429 seen by one stops
    all of them. ``rate`` is the pace the cell has learned (0: not learned, the
    configured rate), ``peak`` the rate at which the last 429 came (0: none known),
    ``busy_at`` the last time a send had to wait for this cell and ``cut_at`` the last
    time a 429 cut its rate: shared too, so replicas learn one pace together."""

    __tablename__ = "rate_bucket"

    key: str = Field(primary_key=True, max_length=200)
    tat: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    blocked_until: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    rate: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    peak: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    busy_at: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    cut_at: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
