"""Every foreign key has an index that serves it, so deletes (forget-me, unassign,
uninstall, retention) and lookups by parent never scan a whole table. A table added
later without its index fails here. And the keys to history rows refuse what would
leave a row pointing at nothing on both databases, checked when the statement ends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bot.db import Store
from bot.models import Delivery, Learner, Reply, ReplyRead, Workspace
from bot.service import MentorService


def test_every_foreign_key_is_served_by_an_index(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.upgrade()
        inspector = sa.inspect(store.engine)
        missing = []
        for table in inspector.get_table_names():
            leading = [tuple(index["column_names"]) for index in inspector.get_indexes(table)]
            for constraint in inspector.get_unique_constraints(table):
                leading.append(tuple(constraint["column_names"]))
            primary = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
            leading.append(primary)
            for key in inspector.get_foreign_keys(table):
                columns = tuple(key["constrained_columns"])
                if not any(found[: len(columns)] == columns for found in leading):
                    missing.append(f"{table}({', '.join(columns)})")
        assert missing == [], f"foreign keys without an index: {missing}"
    finally:
        store.dispose()


def test_history_keys_refuse_orphans_yet_let_a_learner_go_at_once(store_url: str) -> None:
    """On PostgreSQL these keys are ON DELETE RESTRICT, on SQLite NO ACTION
    (``bot.models._history_key``): the same deletes are refused on both, and a chain of
    a question, its check-in and that check-in's reminder goes in one statement."""
    store = Store(store_url)
    try:
        store.upgrade()
        with Session(store.engine) as session:
            workspace = Workspace(platform="console", external_id="w")
            session.add(workspace)
            session.flush()
            ana = Learner(workspace_id=workspace.id or 0, user_id="ana")
            session.add(ana)
            session.flush()

            def add(row: Delivery | Reply | ReplyRead) -> int:
                session.add(row)
                session.flush()
                return row.id or 0

            def outbox(key: str, parent: int | None = None) -> int:
                return add(
                    Delivery(
                        key=key,
                        learner_id=ana.id or 0,
                        parent_id=parent,
                        kind="lesson",
                        course_id="c",
                        lesson_id="l",
                    )
                )

            def reply(**values: object) -> int:
                values = {"course_id": "c", "lesson_id": "l", "question": "q", **values}
                return add(Reply(learner_id=ana.id or 0, text="t", **values))

            answered, asked, reminded = outbox("answered"), outbox("asked"), outbox("reminded")
            checked = outbox("checked", parent=reminded)
            outbox("reminder", parent=checked)
            read = reply(delivery_id=answered)
            reply(kind="note", candidate_id=asked)
            reviewed = reply(delivery_id=outbox("reviewed"))
            reply(review_of_id=reviewed)
            add(ReplyRead(reply_id=read, reader_name="Lena", via="replies"))
            session.commit()
            learner_id = ana.id

        refused = [
            (Delivery, answered),  # a reply's question
            (Delivery, asked),  # a note's candidate question
            (Delivery, reminded),  # a check-in's parent
            (Reply, read),  # a lead's read
            (Reply, reviewed),  # a review's answer
        ]
        for model, row_id in refused:
            with Session(store.engine) as session, pytest.raises(IntegrityError):
                session.exec(sa.delete(model).where(model.id == row_id))  # type: ignore[call-overload]
                session.commit()

        with Session(store.engine) as session:
            MentorService.erase_learner(session, session.get_one(Learner, learner_id))
            session.commit()
            assert session.exec(select(Delivery)).all() == []
            assert session.exec(select(Reply)).all() == []
            assert session.exec(select(ReplyRead)).all() == []
    finally:
        store.dispose()
