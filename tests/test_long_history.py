"""What must stay cheap as history grows, on SQLite and PostgreSQL: an export reads in
one read-only transaction (the bot keeps writing meanwhile), and a question's number is
counted in the database, the same number the learner's list shows."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from bot.export import ReplyFilter, reply_rows, write_replies
from bot.models import Delivery, Learner, Reply, Workspace
from bot.questions import number_of, questions
from mentorbot.bootstrap import App
from tests.conftest import Clock
from tests.harness import Chat

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def test_an_export_takes_no_write_lock_while_it_runs(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("first answer")
    chat.say("/mentor next")
    clock.advance(minutes=10)  # past the addition window: a new answer
    chat.say("second answer")
    out = io.StringIO()
    seen: list[int] = []

    def on_row(done: int) -> None:
        seen.append(done)
        if done == 1:
            # Halfway through the export (its transaction still open) a learner writes:
            # on SQLite this would wait for the write lock, and give up, if the export
            # held it.
            assert out.getvalue().count("\n") == 1
            chat.say("/mentor pause")

    assert write_replies(app.store, out, "jsonl", on_row=on_row) == 2
    assert seen == [-2, 1, 2]
    assert [json.loads(line)["reply"] for line in out.getvalue().splitlines()] == [
        "first answer",
        "second answer",
    ]
    assert "Phase: paused" in chat.text("/mentor progress")
    csv_out = io.StringIO()
    assert write_replies(app.store, csv_out, "csv", ReplyFilter(for_leads=True)) == 0
    assert csv_out.getvalue().startswith("workspace_platform,workspace,")
    assert [row["reply"] for row in reply_rows(app.store)] == ["first answer", "second answer"]


def test_a_questions_number_is_its_place_in_the_learners_list(app: App) -> None:
    rng = random.Random(4)
    with Session(app.store.engine) as session:
        workspace = Workspace(platform="console", external_id="numbers", created_at=T0)
        session.add(workspace)
        session.flush()
        learners = []
        for n in range(2):
            learner = Learner(workspace_id=workspace.id or 0, user_id=f"n{n}", created_at=T0)
            session.add(learner)
            session.flush()
            learners.append(learner.id or 0)
        for q in range(150):
            session.add(
                Delivery(
                    key=f"n:{q}",
                    learner_id=rng.choice(learners),
                    kind=rng.choice(["lesson", "practice", "review", "reminder", "continue"]),
                    course_id="data-engineering",
                    lesson_id="0.2.2",
                    question=None if rng.random() < 0.15 else f"question {q}?",
                    status=rng.choice(["sent", "sent", "sending", "pending", "failed"]),
                    due_at=T0 + timedelta(hours=q),
                )
            )
        session.commit()
        for learner in learners:
            listed = {d.id: n for n, d in enumerate(questions(session, learner), start=1)}
            assert len(listed) > 5
            every = session.exec(select(Delivery.id).where(Delivery.learner_id == learner)).all()
            for delivery_id in every:
                assert number_of(session, learner, delivery_id) == listed.get(delivery_id)
        # Someone else's question has no number in this learner's list.
        other = questions(session, learners[1])[0].id or 0
        assert number_of(session, learners[0], other) is None
        assert session.exec(select(Reply)).all() == []
