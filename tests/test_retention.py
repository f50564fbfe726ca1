"""Retention on SQLite and PostgreSQL: old finished outbox rows go, what learners and
leads see stays whole, and a prune can be killed, rerun, or race with a fan-out,
forget-me and another replica without losing anything that must stay."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, col, func, select

from bot.db import Store
from bot.models import Delivery, Learner, Reply
from bot.retention import prune
from mentorbot.bootstrap import App, build
from tests.conftest import Clock
from tests.harness import Chat, due_instants

WEEKS = 6


@pytest.fixture
def app(settings: Any, clock: Clock) -> Iterator[App]:
    """An app whose engine never prunes on its own in these tests (a retention of ten
    years), so each test's explicit prune is the one that does the work."""
    application = build(replace(settings, retention_days=3650), clock=clock)
    yield application
    application.store.dispose()


def grow_history(app: App, clock: Clock) -> Chat:
    """A learner who answers some questions over six weeks, and a lead who reads."""
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("Saying no to stakeholders is hard.")
    for now in due_instants(app, clock, clock.now + timedelta(weeks=WEEKS)):
        if now.weekday() == 2 and now.hour == 11:
            chat.say(f"On {now:%d %B} I documented a decision.")
    return chat


def seen(app: App, chat: Chat, lead: Chat) -> dict[str, Any]:
    """Everything a learner and a lead can see, to compare before and after."""
    export = json.loads(chat.say("/mentor export-my-data")[0].attachments[0].content)
    return {
        "history": chat.text("/mentor history"),
        "progress": chat.text("/mentor progress"),
        "open": chat.text("/mentor open"),
        "team": lead.text("/mentor team"),
        "replies": export["replies"],
    }


def deliveries(app: App) -> int:
    with Session(app.store.engine) as session:
        return session.exec(select(func.count()).select_from(Delivery)).one()


def test_retention_removes_old_rows_and_keeps_everything_people_see(app: App, clock: Clock) -> None:
    chat = grow_history(app, clock)
    lead = Chat(app, user="lena", lead=True)
    before_rows = deliveries(app)
    before = seen(app, chat, lead)
    counted = prune(app.store, clock.now, days=1, dry_run=True)
    assert counted.removed > 0 and deliveries(app) == before_rows  # a dry run changes nothing
    result = prune(app.store, clock.now, days=1)
    assert (result.removed, result.compacted) == (counted.removed, counted.compacted)
    assert deliveries(app) == before_rows - result.removed
    assert seen(app, chat, lead) == before
    # Nothing old is left to remove; a second run is a no-op.
    assert prune(app.store, clock.now, days=1).removed == 0


def test_pending_and_sending_rows_are_never_touched(app: App, clock: Clock) -> None:
    grow_history(app, clock)
    with Session(app.store.engine) as session:
        old = session.exec(select(Delivery).order_by(col(Delivery.id))).all()[:3]
        for row, status in zip(old, ("pending", "sending", "pending"), strict=True):
            row.status = status
            session.add(row)
        session.commit()
        ids = [row.id for row in old]
    prune(app.store, clock.now, days=1)
    with Session(app.store.engine) as session:
        kept = session.exec(select(Delivery.status).where(col(Delivery.id).in_(ids))).all()
    assert sorted(kept) == ["pending", "pending", "sending"]


class DiesAfter(Store):
    """A store whose process dies after ``lives`` units of work (a SIGKILL mid-prune)."""

    def __init__(self, url: str, lives: int) -> None:
        super().__init__(url)
        self.lives = lives

    def run(self, work, *, read_only: bool = False):  # type: ignore[no-untyped-def]
        if self.lives == 0:
            raise SystemExit("killed")
        self.lives -= 1
        return super().run(work, read_only=read_only)


def test_a_prune_killed_halfway_finishes_on_its_next_run(app: App, clock: Clock) -> None:
    chat = grow_history(app, clock)
    lead = Chat(app, user="lena", lead=True)
    before = seen(app, chat, lead)
    dying = DiesAfter(app.store.url, lives=2)
    try:
        try:
            prune(dying, clock.now, days=1, batch=3)
        except SystemExit:
            pass
        else:
            raise AssertionError("the prune should have been cut off")
    finally:
        dying.dispose()
    prune(app.store, clock.now, days=1, batch=3)
    assert prune(app.store, clock.now, days=1, dry_run=True).removed == 0
    assert seen(app, chat, lead) == before


def test_prunes_race_with_forget_me_and_another_replica(app: App, clock: Clock) -> None:
    chat = grow_history(app, clock)
    other = Chat(app, user="bo")
    other.say("/mentor start")
    other.say("A thought of mine.")
    replica = Store(app.store.url)
    errors: list[BaseException] = []

    def run(job) -> None:  # type: ignore[no-untyped-def]
        try:
            job()
        except BaseException as exc:
            errors.append(exc)

    jobs = [
        lambda: prune(app.store, clock.now, days=1, batch=2),
        lambda: prune(replica, clock.now, days=1, batch=2),
        lambda: chat.say("/mentor forget-me confirm"),
    ]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    replica.dispose()
    assert errors == []
    with Session(app.store.engine) as session:
        assert [lr.user_id for lr in session.exec(select(Learner))] == ["bo"]
        assert [r.text for r in session.exec(select(Reply))] == ["A thought of mine."]


def test_the_engine_prunes_on_its_own_about_hourly(settings: Any, clock: Clock) -> None:
    """With retention at one day and the clock moved past it, the engine's own tick
    removes old rows, and the exactly-once keys of what may still be sent are kept."""
    app = build(replace(settings, retention_days=1), clock=clock)
    try:
        chat = Chat(app)
        chat.say("/mentor start")
        chat.say("My answer.")
        clock.now = clock.now + timedelta(days=1, hours=2)
        asyncio.run(app.engine.tick())  # day 2; its lesson row is new and stays
        clock.now = clock.now + timedelta(days=4)  # Monday: day 3
        asyncio.run(app.engine.tick())
        with Session(app.store.engine) as session:
            rows = session.exec(select(Delivery)).all()
        old = [d.kind for d in rows if d.due_at < clock.now - timedelta(days=1)]
        assert old and set(old) <= {"lesson", "practice", "review"}  # only questions stay
        assert [d.kind for d in rows].count("lesson") == 3  # numbering and counts need them
        assert "Answers: lesson questions answered 1 of" in chat.text("/mentor progress")
        assert "My answer." in chat.text("/mentor history")
    finally:
        app.store.dispose()


def test_the_setting_is_checked(clock: Clock) -> None:
    from bot.config import SettingsError, load_settings

    for value in ("0", "-3", "soon"):
        try:
            load_settings({"MENTORBOT_RETENTION_DAYS": value}, dotenv=False)
        except SettingsError as exc:
            assert any("MENTORBOT_RETENTION_DAYS" in p for p in exc.problems)
        else:
            raise AssertionError(value)
    assert load_settings({}, dotenv=False).retention_days == 90


def test_a_pass_reads_what_crossed_the_cutoff_not_all_history(app: App, clock: Clock) -> None:
    """The first pass does the work; a pass right after it reads nothing, and one a week
    later reads only that week's rows, though the rows kept for good are still there."""
    grow_history(app, clock)
    week_ago = clock.now - timedelta(weeks=1)
    first = prune(app.store, week_ago, days=1, batch=3)
    assert first.removed and first.compacted and first.read >= first.removed + first.compacted
    again = prune(app.store, week_ago, days=1, batch=3)
    assert (again.read, again.removed, again.compacted) == (0, 0, 0)
    with Session(app.store.engine) as session:
        kept = session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(col(Delivery.due_at) < week_ago - timedelta(days=1))
        ).one()
    assert kept > 0  # sent questions and "continue?" rows stay, outside the index
    later = prune(app.store, clock.now, days=1, batch=3)
    assert later.read > 0 and later.read == later.removed + later.compacted
    assert prune(app.store, clock.now, days=1, batch=3).read == 0


def test_rows_left_for_a_reason_go_once_the_reason_does(app: App, clock: Clock) -> None:
    """A pass keeps no watermark: a row it had to leave (still pending, or pointed at by
    a reply) is pruned by the first pass after that changes, however old it is by then."""
    grow_history(app, clock)
    with Session(app.store.engine) as session:
        old = session.exec(
            select(Delivery)
            .where(Delivery.kind == "reminder", Delivery.status == "sent")
            .order_by(col(Delivery.id))
        ).all()
        stuck, pointed = old[0], old[1]
        stuck.status = "pending"
        note = session.exec(select(Reply).order_by(col(Reply.id))).first()
        assert note is not None
        note.candidate_id = pointed.id
        session.add_all([stuck, note])
        session.commit()
        stuck_id, pointed_id, note_id = stuck.id, pointed.id, note.id
    prune(app.store, clock.now, days=1)
    assert prune(app.store, clock.now, days=1).read == 2  # only the two left behind

    def ids() -> set[int | None]:
        with Session(app.store.engine) as session:
            return set(session.exec(select(Delivery.id)).all())

    assert {stuck_id, pointed_id} <= ids()
    clock.advance(days=30)  # long after both crossed the cutoff
    with Session(app.store.engine) as session:
        row = session.get(Delivery, stuck_id)
        reply = session.get(Reply, note_id)
        assert row is not None and reply is not None
        row.status = "cancelled"
        reply.candidate_id = None
        session.add_all([row, reply])
        session.commit()
    assert prune(app.store, clock.now, days=1).removed >= 2
    assert not {stuck_id, pointed_id} & ids()


def test_the_retention_index_names_the_kinds_retention_keeps() -> None:
    """The index condition is SQL text (a partial index cannot be built from Python
    values): it names the same kinds as the code, and the migration has the same text."""
    import importlib.util

    from bot.context import QUESTION_KINDS
    from bot.models import RETENTION_WORK
    from bot.retention import COUNTED_KINDS
    from tests.conftest import REPO

    assert RETENTION_WORK.startswith(f"kind NOT IN {COUNTED_KINDS} AND (")
    assert f"kind NOT IN {QUESTION_KINDS} OR status <> 'sent'" in RETENTION_WORK
    path = REPO / "bot" / "migrations" / "versions" / "0013_history_indexes.py"
    spec = importlib.util.spec_from_file_location("migration_0013", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.RETENTION_WORK == RETENTION_WORK


def test_every_row_a_pass_would_prune_is_in_the_retention_index(app: App, clock: Clock) -> None:
    """The index condition and the pass's rules are written apart (SQL text and Python):
    whatever the rules would remove or compact, of every kind and status, must be in
    the index, or a pass would never see it."""
    import sqlalchemy as sa

    from bot.models import RETENTION_WORK
    from bot.retention import _compactable, _removable

    grow_history(app, clock)
    with Session(app.store.engine) as session:
        rows = session.exec(select(Delivery).order_by(col(Delivery.id))).all()
        variants = [
            {"status": "failed", "error": "boom"},
            {"status": "cancelled"},
            {"question": None},
            {"lease_owner": "gone", "platform_message_ids": None},
            {"error": "late", "platform_message_ids": None},
        ]
        for row, changes in zip(rows, variants * len(rows), strict=False):
            for name, value in changes.items():
                setattr(row, name, value)
            session.add(row)
        session.commit()
        cutoff = clock.now
        outside = sa.text(f"NOT ({RETENTION_WORK})")
        for rule in (_removable(cutoff), _compactable(cutoff)):
            assert session.exec(rule).all()  # the rules find work here...
            assert session.exec(rule.where(outside)).all() == []  # ...all of it indexed
