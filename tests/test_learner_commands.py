"""Every learner command, driven through the hub and the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, select

from bot.hub import BUSY_TEXT
from bot.models import Delivery, Reply
from mentorbot.bootstrap import App, build
from tests.conftest import Clock
from tests.harness import Chat, sqlite_locked

Q1 = "Do you prefer individual work or guiding others?"
Q2 = "Have you ever taken ownership of a system?"
Q3 = "What part of leadership feels difficult to you?"


def test_start_delivers_day_one_with_its_question(app: App) -> None:
    chat = Chat(app)
    messages = chat.say("/mentor start")
    assert "Welcome to **Data Engineering Leadership**" in messages[0].text
    lesson = messages[1]
    assert lesson.kind == "lesson" and lesson.delivery_id is not None
    assert lesson.title == "0.2.2 Senior / Lead Data Engineer — day 1 of 3"
    assert next(s.title for s in lesson.sections) == "Concept Explanation"
    assert len(lesson.sections) == 4
    assert lesson.question == Q1
    assert [a.label for a in lesson.actions] == ["Reply", "Skip", "Remind me later"]


def test_reply_is_kept_and_acknowledged(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    ack = chat.text("I prefer guiding others")
    assert "Thanks, I kept your answer" in ack and "individual work" in ack
    assert "Next lesson-day: Thursday 26 November at 09:00 (UTC)" in ack
    history = chat.text("/mentor history")
    assert "I prefer guiding others" in history and Q1 in history


def test_a_second_message_is_added_not_lost(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("First thought.")
    assert "Added to your answer" in chat.text("And a second one.")
    with Session(app.store.engine) as session:
        # One answer, holding both messages: one history entry, one export line.
        assert [r.text for r in session.exec(select(Reply).order_by(Reply.id))] == [
            "First thought.\n\nAnd a second one."
        ]
    assert "1 reply." in chat.text("/mentor history")


def test_whole_lesson_then_continue_to_a_lesson_not_yet_published(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("answer one")
    day2 = chat.say("/mentor next")
    assert day2[0].question == Q2 and len(day2[0].sections) == 3
    chat.say("answer two")
    day3 = chat.say("/mentor next")
    assert day3[0].question == Q3 and day3[0].sections[-1].title == "Key Takeaway"
    after_last = chat.say("answer three")
    prompt = after_last[-1]
    assert prompt.kind == "continue"
    assert "0.2.3 Principal Data Engineer (GCP)" in prompt.text
    # The next lesson is not in the content yet: the offer says so before the click.
    assert "isn't published yet" in prompt.text and "as soon as it is" in prompt.text
    assert [a.label for a in prompt.actions] == ["Yes, send it when it's out", "Not yet"]
    assert chat.text("/mentor not-yet") == (
        "No rush. I'll ask once more on your next delivery day. Lesson 0.2.3 isn't published "
        "yet; say `/mentor continue` and I'll send it as soon as it is."
    )
    waiting = chat.text("/mentor continue")
    assert "isn't published yet" in waiting and "as soon as it is" in waiting
    progress = chat.text("/mentor progress")
    assert "waiting for lesson 0.2.3" in progress
    assert "Answers: lesson questions answered 3 of 3" in progress


def test_skip_closes_the_question(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    assert "Skipped" in chat.text("/mentor skip")
    assert "no open question to skip" in chat.text("/mentor skip")
    reply = chat.text("a reply after skipping")
    assert "no open question" in reply and "/mentor next" in reply


def test_pause_resume_and_progress(app: App) -> None:
    chat = Chat(app)
    assert "not taking a course" in chat.text("/mentor pause")
    chat.say("/mentor start")
    assert "Paused" in chat.text("/mentor pause")
    assert "already paused" in chat.text("/mentor pause")
    assert "Phase: paused" in chat.text("/mentor progress")
    assert "Welcome back" in chat.text("/mentor resume")
    progress = chat.text("/mentor progress")
    assert "lesson 1 of 1 (0.2.2 Senior / Lead Data Engineer), day 1 of 3" in progress
    assert "Answers: lesson questions answered 0 of 1" in progress
    assert "Schedule: 09:00 weekdays (UTC)" in progress


def test_help_courses_unknown_command_and_unknown_course(app: App) -> None:
    chat = Chat(app)
    assert "/mentor start [COURSE]" in chat.text("/mentor help")
    assert "`data-engineering` — Data Engineering Leadership" in chat.text("/mentor courses")
    unknown = chat.text("/mentor dance")
    assert "Unknown command `dance`" in unknown and "/mentor progress" in unknown
    assert "no course called `cooking`" in chat.text("/mentor start cooking")
    chat.say("/mentor start")
    assert "already taking" in chat.text("/mentor start data-engineering")


def test_free_text_before_enrolling_gets_an_invitation(app: App) -> None:
    assert "Say `/mentor start` to begin" in Chat(app).text("hello?")


def test_empty_reply_is_refused_clearly(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    assert "empty" in chat.text("   \n  ")


def test_huge_unicode_reply_is_stored_byte_for_byte(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    unit = "I lead 🧑🏽‍💻 by example — שלום עולם مرحبا e\u0301 "
    text = (unit * (40_000 // len(unit) + 1))[:40_000]
    assert "Thanks, I kept your answer" in chat.text(text)
    with Session(app.store.engine) as session:
        stored = session.exec(select(Reply)).one()
    assert stored.text.encode("utf-8") == text.encode("utf-8")
    too_long = chat.text("x" * 60_000)
    assert "60,000 characters" in too_long and "shorten" in too_long


def test_forget_me_needs_confirmation_then_erases_everything(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("something personal")
    ask = chat.say("/mentor forget-me")[0]
    assert "cannot be undone" in ask.text and ask.actions[0].command == "forget-me confirm"
    assert "Done" in chat.text("/mentor forget-me confirm")
    with Session(app.store.engine) as session:
        assert session.exec(select(Reply)).all() == []
        assert session.exec(select(Delivery)).all() == []
    assert "not replied" in chat.text("/mentor history")


def test_learners_and_workspaces_do_not_mix(app: App) -> None:
    ana, bo = Chat(app, user="ana"), Chat(app, user="bo", workspace="other")
    ana.say("/mentor start")
    ana.say("ana's answer")
    assert "not taking a course" in bo.text("/mentor progress")
    assert "not replied" in bo.text("/mentor history")


def test_edit_updates_the_stored_reply(app: App) -> None:
    from bot.messages import EventKind

    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("first draft", message_id="m-1")
    chat.send(chat.event(EventKind.EDIT, "final wording", message_id="m-1"))
    with Session(app.store.engine) as session:
        reply = session.exec(select(Reply)).one()
    assert reply.text == "final wording" and reply.edited_at is not None


def test_replies_survive_a_restart(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("kept across restarts")
    app.store.dispose()
    again = build(app.settings, clock=clock)
    try:
        assert "kept across restarts" in Chat(again).text("/mentor history")
    finally:
        again.store.dispose()


def test_a_briefly_locked_sqlite_database_is_waited_for(sqlite_url: str, clock: Clock) -> None:
    from bot.config import Settings, bundled_content_dir

    app = build(Settings(database_url=sqlite_url, content_dir=bundled_content_dir()), clock=clock)
    chat = Chat(app)
    chat.say("/mentor start")
    with sqlite_locked(sqlite_url, 0.5):
        ack = chat.text("written while locked")
    assert "Thanks, I kept your answer" in ack
    app.store.dispose()


def test_a_database_locked_too_long_gets_a_clear_answer_and_loses_nothing(
    sqlite_url: str, clock: Clock
) -> None:
    from bot.config import Settings, bundled_content_dir

    app = build(Settings(database_url=sqlite_url, content_dir=bundled_content_dir()), clock=clock)
    app.store.retries = 1
    chat = Chat(app)
    chat.say("/mentor start")
    locker = sa.create_engine(sqlite_url, connect_args={"timeout": 0.1})
    with locker.connect() as conn:
        conn.exec_driver_sql("PRAGMA busy_timeout=100")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        original = app.store.engine
        fast = sa.create_engine(sqlite_url, connect_args={"timeout": 0.1})
        sa.event.listen(fast, "connect", lambda c, _r: setattr(c, "isolation_level", None))
        sa.event.listen(fast, "begin", lambda c: c.exec_driver_sql("BEGIN IMMEDIATE"))
        app.store.engine = fast
        answer = chat.text("an answer that cannot be saved yet")
        conn.exec_driver_sql("ROLLBACK")
    app.store.engine = original
    fast.dispose()
    assert answer == BUSY_TEXT
    # Nothing half-written; the learner can simply send it again.
    assert "Thanks, I kept your answer" in chat.text("an answer that cannot be saved yet")
    app.store.dispose()
    locker.dispose()


def test_schedule_arguments_in_any_order(app: App) -> None:
    chat = Chat(app)
    assert "09:00 daily (Asia/Tokyo)" in chat.text("/mentor schedule Asia/Tokyo daily")
    assert "07:15 mon,wed (Asia/Tokyo)" in chat.text("/mentor schedule mon,wed 07:15")
    assert "unknown time zone 'Mars/Base'" in chat.text("/mentor schedule Mars/Base")
    assert "invalid day 'soonish', and not a time zone" in chat.text("/mentor schedule soonish")
    assert "two times given" in chat.text("/mentor schedule 08:00 09:00")


def test_buttons_for_a_question_that_is_gone_change_nothing(app: App) -> None:
    from bot.messages import EventKind

    chat = Chat(app)
    chat.say("/mentor start")
    for command in ("skip", "snooze"):
        answer = chat.send(chat.event(EventKind.ACTION, command, delivery_id=999))
        assert answer[0].text == "That question is no longer available; nothing was changed."
    # A reply sent through the form of a vanished question is kept as a note, and the
    # bot asks whether it answers the open question instead of filing it silently.
    kept = chat.text("my answer", delivery_id=999)
    assert "isn't one of your open questions" in kept and "Is this your answer to" in kept
    assert "answer to “Do you prefer" in chat.text("/mentor yes")
    assert "no open question" in chat.text("/mentor skip")
    noted = chat.text("another answer", delivery_id=999)
    assert "kept your message as a note" in noted
    assert "another answer" in chat.text("/mentor history")


def test_a_dm_without_workspace_follows_the_delivery_it_answers(app: App) -> None:
    from bot.messages import EventKind

    a = Chat(app, user="ana", workspace="A", platform="console")
    b = Chat(app, user="ana", workspace="B", platform="console")
    a.say("/mentor start")
    [lesson_b] = [m for m in b.say("/mentor start") if m.kind == "lesson"]
    dm = Chat(app, user="ana", workspace="", platform="console")
    # B is the most recent, but this reply is to A's question via its delivery id.
    [lesson_a] = [m for m in a.adapter.sent if m.kind == "lesson" and m.workspace == "A"]
    dm.send(dm.event(EventKind.MESSAGE, "for A", delivery_id=lesson_a.delivery_id))
    with Session(app.store.engine) as session:
        reply = session.exec(select(Reply)).one()
    assert reply.delivery_id == lesson_a.delivery_id
    assert lesson_b.delivery_id != lesson_a.delivery_id
