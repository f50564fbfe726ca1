"""The planning pass costs what is due: waiting learners carry nothing past due, the due
query is served by its partial index, a batch is one INSERT and one UPDATE however
many rows it holds, and a learner woken in the middle of a pass is planned once. On
SQLite and PostgreSQL, through the real core with a hand-moved clock."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.config import Settings, bundled_content_dir
from bot.models import Delivery, Enrolment, Learner
from bot.outbox import queue_many
from bot.planner import PlanResult
from bot.ports import PermanentSendError
from mentorbot.bootstrap import App, build
from tests.conftest import Clock
from tests.harness import Chat, InboxAdapter

SOLO_LESSON = """# 1.0 Solo

## Ownership
Own the outcome, not just the task.

Best practices:
- Document decisions

## Discussion Questions

- What did you decide this week?
"""

NEXT_LESSON = """# 0.2.3 Principal Data Engineer (GCP)

## Scope
Wider.

## Reach
Further.

## Depth
Deeper.

## Discussion Questions

- What is your scope?
- Who do you reach?
- Where do you go deep?
"""


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A UTC instant in the week of 23 November 2026 (Wednesday 25 is the clock's start)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def tick(app: App) -> None:
    asyncio.run(app.engine.tick())


def inbox(app: App) -> InboxAdapter:
    adapter = app.dispatcher.adapters["console"]
    assert isinstance(adapter, InboxAdapter)
    return adapter


def enrolments(app: App) -> dict[str, Enrolment]:
    """Each learner's newest enrolment, by user id."""
    with Session(app.store.engine) as session:
        rows = session.exec(
            select(Learner.user_id, Enrolment)
            .join(Enrolment, col(Enrolment.learner_id) == Learner.id)
            .order_by(col(Enrolment.id))
        ).all()
    return {user: enrolment for user, enrolment in rows}


def past_due(app: App, now: datetime) -> list[int]:
    with Session(app.store.engine) as session:
        return list(
            session.exec(select(Enrolment.id).where(col(Enrolment.next_due_at) <= now)).all()
        )


@contextmanager
def content_copy(tmp_path: Path) -> Iterator[Path]:
    """The bundled content plus a one-lesson course a learner can finish."""
    content = tmp_path / "content"
    shutil.copytree(bundled_content_dir(), content)
    solo = content / "solo"
    solo.mkdir()
    (solo / "course.yaml").write_text("id: solo\ntitle: Solo\n", encoding="utf-8")
    (solo / "1.0.md").write_text(SOLO_LESSON, encoding="utf-8")
    yield content


@contextmanager
def app_on(settings: Settings, clock: Clock, content: Path, batch: int = 500) -> Iterator[App]:
    app = build(Settings(database_url=settings.database_url, content_dir=content), clock=clock)
    app.catalog.path = content
    app.engine.planner.batch = batch
    try:
        yield app
    finally:
        app.store.dispose()


# ---------------------------------------------------------------------- waiting states


def test_every_waiting_state_carries_nothing_past_due_after_a_pass(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    with content_copy(tmp_path) as content, app_on(settings, clock, content) as app:
        chats = {name: Chat(app, user=name) for name in ("ana", "bo", "cy", "dee", "eve", "fay")}
        # ana stays active; bo finishes the one-lesson course.
        chats["ana"].say("/mentor start")
        chats["bo"].say("/mentor start solo")
        chats["bo"].say("I decided to document decisions from now on.")
        # cy answers every day of the lesson: "continue?", then the summary.
        # eve asks to continue, but the next lesson is not published: she waits for it.
        for name in ("cy", "eve"):
            chat = chats[name]
            for text in ("/mentor start", "a", "/mentor next", "b", "/mentor next", "c"):
                clock.advance(minutes=1)
                chat.say(text)
        assert "isn't published yet" in chats["eve"].text("/mentor continue")
        chats["dee"].say("/mentor start")  # her DMs close before day 2
        chats["fay"].say("/mentor start")
        chats["fay"].say("/mentor pause")
        lead = Chat(app, user="lena", lead=True)
        lead.say("/mentor assign @gus")
        assert "Stopped deliveries for <@gus>" in lead.text("/mentor unassign @gus")
        inbox(app).fail_when = lambda m: (
            PermanentSendError("DMs closed", code="dm_blocked") if m.user == "dee" else None
        )

        # Every delivery hour for four weeks: after each pass nothing is past due.
        clock.now = at(26, 9)
        while clock.now < at(26, 9) + timedelta(weeks=4):
            tick(app)
            assert past_due(app, clock.now) == []
            clock.now += timedelta(days=1)

        found = enrolments(app)
        now = clock.now - timedelta(days=1)  # the last pass
        assert found["ana"].status == "awaiting_continue"  # went through all three days
        assert (found["bo"].status, found["bo"].next_due_at) == ("awaiting_continue", None)
        assert found["cy"].status == "awaiting_continue"
        assert found["cy"].next_due_at is None or found["cy"].next_due_at > now
        assert [m.user for m in inbox(app).of_kind("summary")].count("cy") == 1
        assert (found["dee"].status, found["dee"].next_due_at) == ("active", None)
        assert found["eve"].status == "waiting_content"  # weekly check-ins meanwhile
        assert found["eve"].next_due_at is None or found["eve"].next_due_at > now
        assert (found["fay"].status, found["fay"].next_due_at) == ("paused", None)
        assert (found["gus"].status, found["gus"].next_due_at) == ("stopped", None)
        # Nobody waiting got a lesson-day: bo one, dee day 1 only, fay and gus none after
        # the welcome.
        lessons = Counter(m.user for m in inbox(app).of_kind("lesson"))
        assert (lessons["bo"], lessons["dee"], lessons["fay"], lessons["gus"]) == (1, 1, 1, 0)


def test_a_pass_clears_past_instants_of_waiting_learners_once(app: App, clock: Clock) -> None:
    """Instants left from before waiting states were cleared: the pass reads each such
    enrolment once, gives it nothing due and queues nothing for it."""
    for name in ("fay", "gus", "dee", "ana"):
        Chat(app, user=name).say("/mentor start")
    Chat(app, user="fay").say("/mentor pause")
    table = Enrolment.__table__  # type: ignore[attr-defined]
    stale = at(20, 9)
    with app.store.engine.begin() as conn:
        ids = dict(
            conn.execute(
                sa.select(Learner.__table__.c.user_id, Learner.__table__.c.id)  # type: ignore[attr-defined]
            ).all()
        )
        conn.execute(
            sa.update(Learner.__table__)  # type: ignore[attr-defined]
            .where(Learner.__table__.c.id == ids["dee"])  # type: ignore[attr-defined]
            .values(dm_blocked_at=stale)
        )
        conn.execute(
            sa.update(table)
            .where(table.c.learner_id == ids["gus"])
            .values(status="stopped", next_due_at=stale)
        )
        conn.execute(
            sa.update(table)
            .where(table.c.learner_id.in_([ids["fay"], ids["dee"]]))
            .values(next_due_at=stale)
        )
    clock.now = at(26, 9)
    before = len(inbox(app).sent)
    result = app.engine.planner.plan(clock.now)
    assert (result.lessons, result.enrolments) == (1, 1)  # ana's day 2 only
    found = enrolments(app)
    for name in ("fay", "gus", "dee"):
        assert found[name].next_due_at is None, name
    assert found["ana"].next_due_at == at(27, 9)
    tick(app)
    assert [m.user for m in inbox(app).sent[before:]] == ["ana"]


def test_the_due_query_is_served_by_the_partial_index(app: App) -> None:
    """The planner's query is ``next_due_at <= now`` (nothing else to filter) and the
    database reads it through ``ix_enrolment_due``, which holds only rows that carry an
    instant."""
    store = app.store
    query = app.engine.planner.due_query(store.dialect, at(26, 9))
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            definition = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_enrolment_due'"
            ).scalar_one()
            plan = " ".join(
                str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
            )
            assert "SEARCH enrolment USING INDEX ix_enrolment_due (next_due_at<?)" in plan
        else:
            definition = conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_enrolment_due' "
                "AND schemaname = current_schema()"
            ).scalar_one()
            # A table this small is cheaper to scan; forbidding that shows the index
            # can serve the predicate (if it could not, the plan would scan anyway).
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "ix_enrolment_due" in plan and "Seq Scan on enrolment" not in plan
    assert "WHERE next_due_at IS NOT NULL" in definition.replace("(", "").replace(")", "")


# ---------------------------------------------------------------------- set-based


@contextmanager
def statements(app: App) -> Iterator[list[str]]:
    """Every SQL statement the store runs meanwhile (executemany counts once)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split()))

    sa.event.listen(app.store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(app.store.engine, "before_cursor_execute", record)


def mixed_batch(app: App, clock: Clock, per_kind: int) -> str:
    """``per_kind`` learners of each kind the pass moves on at Thursday 09:00: a next
    lesson-day (in two time zones), a "continue?" summary after the last day, and a
    lesson just published for a learner who waits for it. Returns the name prefix."""
    prefix = f"b{per_kind}_"
    for n in range(per_kind):
        Chat(app, user=f"{prefix}day{n}").say("/mentor start")
        Chat(app, user=f"{prefix}zone{n}").say("/mentor schedule 10:00 Europe/Berlin")
        Chat(app, user=f"{prefix}zone{n}").say("/mentor start")
        for kind in ("last", "wait"):
            chat = Chat(app, user=f"{prefix}{kind}{n}")
            for text in ("/mentor start", "a", "/mentor next", "b", "/mentor next", "c"):
                clock.advance(seconds=1)
                chat.say(text)
        Chat(app, user=f"{prefix}wait{n}").say("/mentor continue")
    return prefix


def test_a_batch_is_one_insert_and_one_update_however_many_rows(
    settings: Settings, tmp_path: Path
) -> None:
    """Statements per batch do not grow with its rows: the rules run in Python, the
    lookups they need are one query per batch, the outbox rows are one INSERT and the
    enrolments one UPDATE."""
    counts = []
    thursday = at(26, 9)
    for per_kind in (1, 4):
        clock = Clock()
        with (
            content_copy(tmp_path / str(per_kind)) as content,
            app_on(settings, clock, content) as app,
        ):
            p = mixed_batch(app, clock, per_kind)
            (content / "data-engineering" / "0.2.3.md").write_text(NEXT_LESSON, "utf-8")
            Chat(app, user="lena", lead=True).say("/mentor reload")
            clock.now = thursday
            planner = app.engine.planner
            result = PlanResult()

            def batch(session: Session) -> int:
                return planner._due_enrolments(session, thursday, result)  # noqa: B023

            with statements(app) as seen:
                found = app.store.run(batch)
            assert found == 4 * per_kind == result.enrolments
            assert (result.lessons, result.prompts) == (3 * per_kind, per_kind)
            inserts = [s for s in seen if s.startswith(("INSERT INTO delivery", "WITH queued"))]
            updates = [s for s in seen if s.startswith("UPDATE enrolment")]
            assert (len(inserts), len(updates)) == (1, 1)
            counts.append(len(seen))
            moved = enrolments(app)
            for n in range(per_kind):
                assert moved[f"{p}day{n}"].day == 2 and moved[f"{p}zone{n}"].day == 2
                assert moved[f"{p}day{n}"].next_due_at == at(27, 9)
                assert moved[f"{p}zone{n}"].next_due_at == at(27, 9)  # 10:00 in Berlin
                waiting = moved[f"{p}wait{n}"]
                assert (waiting.lesson_id, waiting.day) == ("0.2.3", 1)
                assert moved[f"{p}last{n}"].status == "awaiting_continue"
    assert counts[0] == counts[1]


def test_queue_many_skips_existing_keys_and_counts_by_kind(app: App) -> None:
    ana = Chat(app, user="ana")
    ana.say("/mentor start")
    now = app.service.clock()
    later = now + timedelta(hours=1)

    def row(key: str, kind: str, **extra: object) -> dict[str, object]:
        return {
            "key": key,
            "learner_id": 1,
            "kind": kind,
            "origin": "schedule",
            "course_id": "data-engineering",
            "lesson_id": "0.2.2",
            "day": 1,
            "due_at": now,
            **extra,
        }

    assert app.store.run(lambda s: queue_many(s, [])) == Counter()
    # One row: every column has one value, the batch still has its row.
    assert app.store.run(lambda s: queue_many(s, [row("one", "lesson")])) == {"lesson": 1}
    rows = [
        row("one", "lesson"),  # exists: skipped
        row("two", "lesson", question="Why?"),
        row("three", "continue", due_at=later),
        row("four", "summary", body='text with "quotes", ünïcode and\nnew lines'),
    ]
    assert app.store.run(lambda s: queue_many(s, rows)) == {
        "lesson": 1,
        "continue": 1,
        "summary": 1,
    }
    with Session(app.store.engine) as session:
        stored = {
            d.key: d
            for d in session.exec(
                select(Delivery).where(col(Delivery.key).in_(["one", "two", "three", "four"]))
            )
        }
    assert stored["two"].question == "Why?" and stored["one"].question is None
    assert stored["three"].due_at == later and stored["two"].due_at == now
    assert stored["four"].body == 'text with "quotes", ünïcode and\nnew lines'
    assert {d.status for d in stored.values()} == {"pending"}


# ---------------------------------------------------------------------- woken mid-pass


def wake_during_first_batch(app: App, wake: Callable[[], object]) -> Callable[[], None]:
    """Run ``wake`` on another thread while the pass's first batch of due enrolments is
    in its transaction (rows read and locked, nothing written yet), and let it get as
    far as it can before the batch writes: done, or held up by the batch's locks (then
    it goes on once the batch commits). Returns a function that waits for it."""
    planner = app.engine.planner
    original = planner._write_back
    threads: list[threading.Thread] = []

    def write_back(*args: object) -> None:
        if not threads:
            threads.append(threading.Thread(target=wake))
            threads[0].start()
            threads[0].join(timeout=2)  # returns at once if the wake went through
        original(*args)  # type: ignore[arg-type]

    planner._write_back = write_back  # type: ignore[method-assign]

    def done() -> None:
        planner._write_back = original  # type: ignore[method-assign]
        for thread in threads:
            thread.join(30)
        assert threads and not threads[0].is_alive()

    return done


def lesson_days(app: App, user: str) -> list[tuple[str, int]]:
    with Session(app.store.engine) as session:
        return sorted(
            (d.lesson_id, d.day)
            for d in session.exec(
                select(Delivery)
                .join(Learner, col(Learner.id) == Delivery.learner_id)
                .where(Learner.user_id == user, Delivery.kind == "lesson")
            )
        )


def test_a_learner_resuming_in_the_middle_of_a_pass_is_planned_exactly_once(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    with app_on(settings, clock, bundled_content_dir(), batch=2) as app:
        for n in range(5):
            Chat(app, user=f"l{n}").say("/mentor start")
        zoe = Chat(app, user="zoe")
        zoe.say("/mentor start")
        zoe.say("/mentor pause")
        # An instant left in the past, so the pass reads (and locks) her row in its
        # first batch while she resumes.
        stale = enrolments(app)["zoe"]
        with app.store.engine.begin() as conn:
            table = Enrolment.__table__  # type: ignore[attr-defined]
            conn.execute(
                sa.update(table).where(table.c.id == stale.id).values(next_due_at=at(24, 9))
            )
        clock.now = at(26, 9)
        replies: list[str] = []
        done = wake_during_first_batch(app, lambda: replies.append(zoe.text("/mentor resume")))
        result = app.engine.planner.plan(clock.now)
        done()
        assert result.lessons == 5
        assert "Welcome back! Next lesson-day: Friday 27 November at 09:00" in replies[0]
        found = enrolments(app)
        assert (found["zoe"].status, found["zoe"].next_due_at) == ("active", at(27, 9))
        assert past_due(app, clock.now) == []
        for now in (at(26, 9, 1), at(27, 9), at(30, 9)):
            clock.now = now
            tick(app)
        assert lesson_days(app, "zoe") == [("0.2.2", 1), ("0.2.2", 2), ("0.2.2", 3)]
        for n in range(5):
            assert lesson_days(app, f"l{n}") == [("0.2.2", 1), ("0.2.2", 2), ("0.2.2", 3)]


def test_a_reload_in_the_middle_of_a_pass_plans_the_waiting_learner_exactly_once(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    with content_copy(tmp_path) as content, app_on(settings, clock, content, batch=2) as app:
        for n in range(5):
            Chat(app, user=f"l{n}").say("/mentor start")
        wes = Chat(app, user="wes")
        for text in ("/mentor start", "a", "/mentor next", "b", "/mentor next", "c"):
            clock.advance(minutes=1)
            wes.say(text)
        assert "isn't published yet" in wes.text("/mentor continue")
        (content / "data-engineering" / "0.2.3.md").write_text(NEXT_LESSON, "utf-8")
        lead = Chat(app, user="lena", lead=True)
        clock.now = at(26, 9)
        done = wake_during_first_batch(app, lambda: lead.say("/mentor reload"))
        app.engine.planner.plan(clock.now)
        done()
        # Whenever the reload landed, the next passes plan what is left, once.
        for now in (at(26, 9), at(26, 9, 1), at(27, 9)):
            clock.now = now
            tick(app)
            assert past_due(app, clock.now) == []
        assert lesson_days(app, "wes") == [
            ("0.2.2", 1),
            ("0.2.2", 2),
            ("0.2.2", 3),
            ("0.2.3", 1),
            ("0.2.3", 2),
        ]
        published = [m for m in inbox(app).of_kind("lesson", "wes") if "is out" in m.text]
        assert len(published) == 1
        for n in range(5):
            assert lesson_days(app, f"l{n}") == [("0.2.2", 1), ("0.2.2", 2), ("0.2.2", 3)]
