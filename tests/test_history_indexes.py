"""The reads that would otherwise grow with a year of history go through their indexes,
on SQLite and PostgreSQL: the retention pass, a digest, ``forget-me`` and the engine's
look for what comes next. Several of those indexes are partial, which a database uses
only when the query's own conditions imply the index's: a query reworded later would
silently fall back to reading the whole table, and this fails instead.

Plans are read with EXPLAIN on the statements the code really runs (captured as they
run). On PostgreSQL, whose planner rightly reads tables this small in full, sequential
scans are priced out, so the plan shows whether the index can serve the query at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from bot.models import Delivery
from bot.planner import next_due
from bot.retention import prune
from mentorbot.bootstrap import App
from tests.conftest import Clock
from tests.harness import Chat, due_instants

Statement = tuple[str, Any]


@contextmanager
def captured(engine: sa.Engine) -> Iterator[list[Statement]]:
    """Every statement (and its parameters, as the driver got them) run meanwhile."""
    seen: list[Statement] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def plan(engine: sa.Engine, statement: Statement) -> str:
    """The database's plan for one captured statement, as one text."""
    sql, params = statement
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        if engine.dialect.name == "sqlite":
            rows = raw.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            return "\n".join(str(row[3]) for row in rows)
        with raw.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN (COSTS OFF) " + sql, params)
            text = "\n".join(str(row[0]) for row in cursor.fetchall())
        raw.rollback()
        return text


def plans_of(app: App, work: Callable[[], object], *needles: str) -> list[str]:
    """The plans of the statements ``work`` runs that mention all of ``needles``."""
    with captured(app.store.engine) as seen:
        work()
    chosen = [s for s in seen if all(n in s[0] for n in needles)]
    assert chosen, f"no statement with {needles}"
    return [plan(app.store.engine, statement) for statement in chosen]


def history(app: App, clock: Clock) -> Chat:
    """A lead with a weekly digest and two learners who answered for two weeks."""
    lead = Chat(app, user="lena", lead=True)
    ana, bo = Chat(app, user="ana"), Chat(app, user="bo")
    lead.say("/mentor assign @ana @bo")
    lead.say("/mentor digest #team weekly")
    for now in due_instants(app, clock, clock.now + timedelta(weeks=2)):
        if now.hour == 9:
            ana.say(f"On {now:%d %B} I wrote the decision down.")
            bo.say("I asked before answering.")
            bo.say("/mentor share")
    return lead


def test_a_digest_reads_one_period_through_the_learner_time_indexes(app: App, clock: Clock) -> None:
    history(app, clock)
    with Session(app.store.engine) as session:
        digest = session.exec(
            select(Delivery.id).where(Delivery.kind == "digest").order_by(col(Delivery.id))
        ).first()
    assert digest is not None

    def render() -> object:
        return app.service.render_delivery(digest)

    found = [
        ("ix_delivery_learner_sent", plans_of(app, render, "FROM delivery", "sent_at <")),
        ("ix_reply_learner_created", plans_of(app, render, "FROM reply", "created_at <")),
        ("ix_delivery_learner_sent", plans_of(app, render, "row_number()", "sent_at >=")),
    ]
    for index, plans in found:
        for text in plans:
            assert "SCAN delivery" not in text and "SCAN reply" not in text, text
            assert "Seq Scan" not in text, text
            # PostgreSQL picks among the usable indexes by cost, arbitrary at this size.
            assert app.store.engine.dialect.name != "sqlite" or index in text, text


def test_a_retention_pass_reads_its_partial_index(app: App, clock: Clock) -> None:
    history(app, clock)
    pages = plans_of(
        app,
        lambda: prune(app.store, clock.now, days=1),
        "FROM delivery",
        "ORDER BY delivery.due_at",
    )
    assert all("ix_delivery_retention" in p for p in pages), pages


def test_forget_me_deletes_through_indexes_only(app: App, clock: Clock) -> None:
    history(app, clock)
    ana = Chat(app, user="ana")
    found = plans_of(app, lambda: ana.say("/mentor forget-me confirm"), "DELETE FROM")
    for text in found:
        assert "SCAN delivery" not in text and "SCAN reply" not in text, text
        assert "Seq Scan" not in text, text


def test_the_next_instant_is_read_from_the_partial_indexes(app: App, clock: Clock) -> None:
    """With nothing to compare with, the engine asks for the least value that is set:
    the partial indexes hold exactly those."""
    history(app, clock)
    for column in ("remind_at", "follow_up_at", "review_at"):
        [found] = plans_of(app, lambda: app.store.read(next_due), "min(", f".{column})")
        assert f"_{column}" in found, found


def test_the_outbox_reads_its_queues_through_their_partial_indexes(app: App, clock: Clock) -> None:
    """Every statement that looks for pending or sending rows (claims, recovery, the
    leases, the next due instant, the metrics) reads ``ix_delivery_pending`` or
    ``ix_delivery_sending``, which hold only those rows, and never a year of sent ones.
    """
    from bot import outbox
    from bot.metrics import OutboxCollector

    history(app, clock)
    now, lease = clock.now, timedelta(minutes=5)

    def every_queue_query() -> None:
        def work(session: Session) -> None:
            outbox.claim(session, owner="a", now=now, lease=lease)
            outbox.claim(session, owner="a", now=now, lease=lease, ids=[1, 2])
            outbox.claim_fair(
                session, owner="a", now=now, lease=lease, limit=5, room={}, default_room=2
            )
            outbox.claim_expired(session, owner="a", now=now, lease=lease, dead_owners=["b"])
            outbox.lease_owners(session, prefix="a")
            outbox.next_due(session)
            outbox.renew_leases(session, owner="a", until=now + lease)
            outbox.release_owned(session, owner="a", now=now, unsure=[1])
            next_due(session, now)

        app.store.run(work)
        list(OutboxCollector(app.store).collect())

    for queue in ("pending", "sending"):
        found = plans_of(app, every_queue_query, f"status = '{queue}'")
        for text in found:  # each reads the queue's index, or looks rows up by id
            by_id = "INTEGER PRIMARY KEY" in text or "delivery_pkey" in text
            assert f"ix_delivery_{queue}" in text or by_id, text
            assert "Seq Scan on delivery" not in text, text
            whole = [line for line in text.splitlines() if line.strip() == "SCAN delivery"]
            assert not whole, text
        assert sum(f"ix_delivery_{queue}" in text for text in found) >= 3, found


def test_the_metrics_count_what_is_queued_not_the_history(app: App, clock: Clock) -> None:
    """/metrics reads the two queues only: rows pending or sending by kind, never a
    count over every row ever sent."""
    from bot.metrics import OutboxCollector

    history(app, clock)
    from bot import outbox
    from bot.models import Learner

    def queue_a_notice(session: Session) -> None:
        learner = session.exec(select(Learner).where(Learner.user_id == "ana")).one()
        outbox.queue_delivery(
            session,
            key="notice:metrics",
            learner_id=learner.id,
            kind="notice",
            course_id="c",
            lesson_id="l",
            body="later",
            due_at=clock.now + timedelta(days=1),
        )

    app.store.run(queue_a_notice)
    with captured(app.store.engine) as seen:
        families = {family.name: family for family in OutboxCollector(app.store).collect()}
    rows = {
        (s.labels["kind"], s.labels["status"]): s.value
        for s in families["mentorbot_outbox_rows"].samples
    }
    assert rows and {status for _, status in rows} <= {"pending", "sending"}, rows
    assert families["mentorbot_outbox_depth"].samples[0].value == sum(rows.values())
    for statement in seen:
        if "FROM delivery" in statement[0]:
            assert "'pending'" in statement[0] or "'sending'" in statement[0], statement


def test_partial_indexes_are_those_of_the_models(store_url: str) -> None:
    """Alembic compares index names and columns, not the condition of a partial index;
    the migrated database and the models must agree on which are partial (and, on
    SQLite, which keeps the text as written, on the condition itself), and on which
    indexes are built for this database only."""
    from bot.db import Store
    from bot.models import for_dialect

    store = Store(store_url)
    try:
        store.upgrade()
        inspector = sa.inspect(store.engine)
        dialect = store.engine.dialect.name
        for table in SQLModel.metadata.sorted_tables:
            if table.name.startswith("slack_"):
                continue
            reflected = {i["name"]: i for i in inspector.get_indexes(table.name)}
            for index in table.indexes:
                assert (index.name in reflected) == for_dialect(index, dialect), index.name
                if index.name not in reflected:
                    continue
                where = index.dialect_options[dialect]._non_defaults.get("where")
                found = reflected[index.name].get("dialect_options", {}).get(f"{dialect}_where")
                assert (where is None) == (found is None), index.name
                if dialect == "sqlite" and where is not None:
                    assert str(found) == str(where), index.name
    finally:
        store.dispose()
