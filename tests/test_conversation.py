"""The conversation end to end through the core, on SQLite and PostgreSQL: every message
lands where the learner meant it, corrections work, and what the bot says never
contradicts the state. Each test plays a learner with the console harness and a
hand-moved clock; the engine ticks as it would on the default 60 s schedule."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from bot.messages import EventKind, OutgoingMessage
from bot.models import Delivery, Reply
from bot.text import strip_learner_marks
from mentorbot.bootstrap import App
from tests.conftest import Clock
from tests.harness import Chat, InboxAdapter

Q1 = "Do you prefer individual work or guiding others?"
Q2 = "Have you ever taken ownership of a system?"
Q3 = "What part of leadership feels difficult to you?"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def tick(app: App) -> None:
    asyncio.run(app.engine.tick())


def inbox(app: App) -> InboxAdapter:
    adapter = app.dispatcher.adapters["console"]
    assert isinstance(adapter, InboxAdapter)
    return adapter


def replies(app: App) -> list[Reply]:
    with Session(app.store.engine) as session:
        return list(session.exec(select(Reply).order_by(col(Reply.id))))


def plain(message: OutgoingMessage) -> str:
    return strip_learner_marks(message.plain_text())


def texts(messages: list[OutgoingMessage]) -> str:
    return "\n---\n".join(plain(m) for m in messages)


def test_commands_typed_any_way_are_never_stored_as_answers(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    assert "Commands (type them after /mentor)" in chat.text("/MENTOR HELP")
    assert "Commands (type them after /mentor)" in chat.text("mentor help")
    assert "Commands (type them after /mentor)" in chat.text("/help")
    assert "Commands (type them after /mentor)" in chat.text("help")
    assert "Answers: lesson questions answered 0 of 1" in chat.text("progress")
    assert "Did you mean `/mentor history`?" in chat.text("/mentr history")
    assert "Did you mean `/mentor help`?" in chat.text("/mentor hlep")
    assert replies(app) == []
    # A command the learner skipped to, then typed in capitals, is not an answer either.
    chat.say("/mentor skip")
    assert "Did you mean" in chat.text("/mentr history")
    assert replies(app) == []


def test_stop_and_a_schedule_typed_in_the_dm_are_commands_not_answers(app: App) -> None:
    """With a question open, "schedule 7:30 America/New_York" changes the schedule and
    "stop" pauses: neither is filed as the answer, which a learner would only find out
    from their history."""
    chat = Chat(app)
    chat.say("/mentor start")
    moved = chat.text("schedule 7:30 America/New_York")
    assert "07:30" in moved and "America/New_York" in moved
    assert "I kept your answer" not in moved
    stopped = chat.text("stop")
    assert stopped.startswith("Paused.") and "/mentor resume" in stopped
    assert replies(app) == []
    progress = chat.text("progress")
    assert "Phase: paused" in progress and "Schedule: 07:30 weekdays (America/New_York)" in progress
    chat.say("I think clearer goals matter")
    assert [strip_learner_marks(r.text) for r in replies(app)] == ["I think clearer goals matter"]
    # "start" after "stop" means going on where they were, not "you are already taking it".
    again = chat.text("start")
    assert again.startswith("Welcome back!") and "07:30 (America/New_York)" in again
    assert "Phase: lesson" in chat.text("progress")


def test_a_mistyped_schedule_or_snooze_in_the_dm_is_told_what_is_wrong(app: App) -> None:
    """A learner who types "schedule 25:00" or "snooze 100" in the DM wants the command,
    and hears what is wrong with it; "schedule 7:30pm", "snooze 2h" and "remind me later"
    work as typed. None of it is filed as an answer."""
    chat = Chat(app)
    chat.say("/mentor start")
    assert (
        chat.text("schedule 25:00")
        == "Sorry, invalid time '25:00': hours go to 23 and minutes to 59."
    )
    zone = chat.text("schedule 8:30 Mars/Olympus")
    assert zone.startswith("Sorry, unknown time zone 'Mars/Olympus'")
    assert "not a length of time I can snooze for" in chat.text("snooze 100")
    assert "lessons arrive at 19:30" in chat.text("schedule 7:30pm")
    assert chat.text("snooze 2h").startswith("OK, I'll remind you of")
    assert "already remind you" in chat.text("remind me later")
    assert replies(app) == []
    assert "Schedule: 19:30 weekdays" in chat.text("progress")


def test_a_question_to_the_bot_is_kept_and_the_learner_told_who_can_answer(app: App) -> None:
    """The bot cannot answer questions; a mentor that files one silently as an answer
    leaves the learner waiting. It keeps the text where it belongs and says so."""
    chat = Chat(app)
    chat.say("/mentor start")
    first = chat.text("What does ownership mean here?")
    assert first.startswith("Thanks, I kept your answer to")
    assert "I can't answer questions myself. To ask your lead, share this answer" in first
    added = chat.text("Is it the same as being on call?")
    assert added.startswith("Added to your answer") and "/mentor share" in added
    plain_answer = chat.text("I think it means caring about the outcome.")
    assert "question" not in plain_answer.split("answer to")[-1].split("”", 1)[-1]
    chat.say("/mentor share")
    shared = chat.text("Why does it matter?")
    assert "I can't answer questions myself, but your leads can read it." in shared


def test_what_is_this_bot_gets_what_the_bot_is(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    said = chat.text("what is this bot?")
    assert said.startswith("I'm mentorbot, a mentoring bot: each delivery day")
    assert "Reply here to answer your open question" in said
    assert [r.kind for r in replies(app)] == ["note"]
    assert chat.text("I prefer guiding others.").startswith("Thanks, I kept your answer")


def test_too_busy_today_is_not_filed_as_the_answer(app: App) -> None:
    """ "Honestly too busy today" puts the question off: the bot offers a reminder and
    keeps the message as a note, and "yes" still makes it the answer."""
    chat = Chat(app)
    chat.say("/mentor start")
    busy = chat.text("honestly too busy today")
    assert busy.startswith("No problem, it can wait. Shall I remind you of")
    assert "/mentor snooze" in busy and "kept your message as a note" in busy
    assert [r.kind for r in replies(app)] == ["note"]
    assert chat.text("snooze").startswith("OK, I'll remind you of")
    assert chat.text("yes").startswith("Thanks, I kept your answer to")
    assert [r.kind for r in replies(app)] == ["answer"]


def test_start_at_the_end_of_a_lesson_says_how_to_go_on(app: App, clock: Clock) -> None:
    """The next lesson of the bundled course is not published: "start" must not send
    the learner to `next` for a lesson-day that does not exist."""
    chat = Chat(app)
    for text in ("/mentor start", "a", "/mentor next", "b", "/mentor next", "c"):
        clock.advance(minutes=10)
        chat.say(text)
    # Not enrolled: "stop" finds nothing to pause, and says so.
    assert "there is nothing to pause" in Chat(app, user="zoe").text("stop")
    again = chat.text("start")
    assert again.startswith("You are already taking Data Engineering Leadership, lesson 1 of 1")
    assert "Lesson 0.2.3 isn't published yet" in again and "/mentor continue" in again
    assert "/mentor next" not in again


def test_yes_please_typed_after_go_on_answers_the_offer(app: App, clock: Clock) -> None:
    """After the last answer the bot asks whether to go on; "yes please" typed in the DM
    answers that, and is not glued onto the last answer. "thanks!" is not either."""
    chat = Chat(app)
    for text in ("/mentor start", "a", "/mentor next", "b", "/mentor next"):
        clock.advance(minutes=10)
        chat.say(text)
    clock.advance(minutes=10)
    last = chat.say("c")
    assert "Shall I send it to you as soon as it is?" in texts(last)
    assert "isn't published yet. I've noted that you want it" in chat.text("yes please")
    assert chat.text("thanks!").startswith("You have no open question, so I kept this as a note")
    assert [strip_learner_marks(r.text) for r in replies(app)] == ["a", "b", "c", "thanks!"]
    progress = chat.text("progress")
    assert "Phase: waiting for lesson 0.2.3 to be published" in progress, progress


def test_not_yet_typed_after_go_on_answers_the_offer(app: App, clock: Clock) -> None:
    chat = Chat(app)
    for text in ("/mentor start", "a", "/mentor next", "b", "/mentor next", "c"):
        clock.advance(minutes=10)
        chat.say(text)
    clock.advance(minutes=1)
    said = chat.text("Not yet.")
    assert "Added to your answer" not in said
    assert [strip_learner_marks(r.text) for r in replies(app)] == ["a", "b", "c"]


def test_start_on_the_last_day_does_not_promise_another_lesson_day(app: App, clock: Clock) -> None:
    chat = Chat(app)
    for text in ("/mentor start", "a", "/mentor next", "b", "/mentor next"):
        clock.advance(minutes=10)
        chat.say(text)
    again = chat.text("start")  # day 3 of 3 is out, its question still open
    assert "day 3 of 3" in again and "That was this lesson's last day" in again
    assert "next lesson-day" not in again


def test_empty_and_invisible_messages_are_refused_plainly(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    assert "empty" in chat.text("   ")
    said = chat.text("\u200b\u200d\u2060")
    assert "only invisible characters" in said and "isn't an answer" in said
    assert replies(app) == []


def test_open_lists_numbered_questions_and_answer_n_targets_one(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    clock.advance(minutes=10)
    chat.say("/mentor next")
    listing = chat.text("/mentor open")
    assert f"1. “{Q1}”" in listing and f"2. “{Q2}”" in listing
    assert "answer N your answer" in listing
    said = chat.text("/mentor answer 1 I like guiding others, with care.")
    assert Q1 in said and "Thanks, I kept your answer" in said
    assert [(r.kind, r.question, r.text) for r in replies(app)] == [
        ("answer", Q1, "I like guiding others, with care.")
    ]
    assert "There is no question 99" in chat.text("/mentor answer 99 hello")
    assert "Write your answer after the number" in chat.text("/mentor answer 2")
    assert f"1. “{Q1}”" not in chat.text("/mentor open")


def test_the_newest_open_question_wins_and_todays_lesson_beats_an_old_check_in(
    app: App, clock: Clock
) -> None:
    chat = Chat(app)
    chat.say("/mentor start")  # Wednesday 25, 08:00: day 1
    chat.say("I prefer guiding others, and I write down why we decide things.")
    clock.now = at(27, 11)  # Friday: day 2 at 09:00 and the practice check-in at 11:00
    tick(app)
    [check_in] = inbox(app).of_kind("practice")
    clock.now = at(30, 9)  # Monday: day 3, newer than the check-in
    tick(app)
    clock.now = at(30, 9, 30)
    said = chat.text("Saying no to stakeholders is the hard part.")
    assert Q3 in said
    with Session(app.store.engine) as session:
        answer = session.exec(select(Reply).where(Reply.text.startswith("Saying no"))).one()  # type: ignore[attr-defined]
        assert answer.question == Q3 and answer.delivery_id != check_in.delivery_id


def test_late_messages_and_small_talk_are_asked_about_and_kept_as_notes(
    app: App, clock: Clock
) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    asked = chat.say("thanks!")
    assert asked[0].kind == "ask" and f"Is this your answer to “{Q1}”" in plain(asked[0])
    assert [a.label for a in asked[0].actions] == ["Yes, it's my answer", "No, just a note"]
    assert [(r.kind, r.candidate_id is not None) for r in replies(app)] == [("note", True)]
    assert "stays a note" in chat.text("no")
    assert [(r.kind, r.candidate_id) for r in replies(app)] == [("note", None)]
    # Three days later the question is old: a real answer is checked, then filed on "yes".
    clock.advance(hours=72)
    later = chat.text("I lean towards guiding others.")
    assert "from a while ago" in later and Q1 in later
    assert "your answer to" in chat.text("/mentor yes")
    kinds = [(r.kind, r.text) for r in replies(app)]
    assert kinds == [("note", "thanks!"), ("answer", "I lean towards guiding others.")]
    assert "nothing waiting for a yes" in chat.text("/mentor yes")


def test_a_message_after_the_next_lesson_day_is_asked_about(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    clock.now = at(26, 9)
    tick(app)  # day 2 arrives: day 1's question is replaced
    chat.say("/mentor skip")  # day 2's question skipped: only day 1's is open
    said = chat.text("About ownership, I ran the migration.")
    assert "from a while ago" in said and Q1 in said


def test_a_second_message_within_five_minutes_is_added_to_the_same_answer(
    app: App, clock: Clock
) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("First thought.")
    clock.advance(minutes=4)
    assert "Added to your answer" in chat.text("Second thought.")
    clock.advance(minutes=6)
    assert "kept this as a note" in chat.text("A thought for later.")
    assert [(r.kind, r.text) for r in replies(app)] == [
        ("answer", "First thought.\n\nSecond thought."),
        ("note", "A thought for later."),
    ]


def test_history_numbers_replies_and_move_corrects_them(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    clock.advance(minutes=10)
    chat.say("/mentor next")
    chat.say("This was meant for the first question.")  # filed under Q2, the newest
    clock.advance(minutes=10)
    history = chat.say("/mentor history")[0]
    assert history.text.startswith("1 reply.")
    assert history.sections[0].title.startswith("1. ") and Q2 in history.sections[0].title
    assert [a.command for a in history.actions] == ["move 1", "move 1 note"]
    offer = chat.say("/mentor move 1")[0]
    assert "Where should reply 1 go?" in plain(offer) and f"1. “{Q1}”" in plain(offer)
    assert "move 1 to 1" in [a.command for a in offer.actions]
    assert f"now your answer to “{Q1}”" in chat.text("/mentor move 1 to 1")
    [moved] = replies(app)
    assert (moved.question, moved.moved_at is not None) == (Q1, True)
    # Moving it where it already is changes nothing; moving it again works.
    assert "already your answer" in chat.text("/mentor move 1 to 1")
    assert "is now a note" in chat.text("/mentor move 1 note")
    assert "already a note" in chat.text("/mentor move 1 note")
    assert "There is no reply 7" in chat.text("/mentor move 7")
    assert "There is no question 99" in chat.text("/mentor move 1 to 99")
    # Both questions are open again.
    listing = chat.text("/mentor open")
    assert Q1 in listing and Q2 in listing


def test_moving_onto_an_answered_question_is_refused_not_merged(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("Answer one.")
    clock.advance(minutes=10)
    chat.say("/mentor next")
    chat.say("Answer two.")
    refused = chat.text("/mentor move 2 to 1")
    assert "already has your answer (reply 1)" in refused
    assert [r.text for r in replies(app)] == ["Answer one.", "Answer two."]


def test_the_next_lesson_day_mentions_the_open_question_once(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")  # Q1 ignored
    clock.now = at(26, 9)
    tick(app)
    [_, day2] = inbox(app).of_kind("lesson")
    assert f"still open: “{Q1}”" in day2.text and "/mentor answer 1" in day2.text
    clock.now = at(27, 9)
    tick(app)
    day3 = inbox(app).of_kind("lesson")[-1]
    assert Q1 not in day3.text  # said once; day 3 speaks of day 2's question
    assert f"still open: “{Q2}”" in day3.text


def test_a_lesson_question_gets_one_reminder_and_so_does_a_check_in(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("I prefer guiding others.")
    clock.now = at(27, 11)  # Friday: day 2 (09:00) and the check-in (11:00)
    tick(app)
    clock.now = at(27, 13)
    tick(app)  # day 2's question is older than the check-in: the check-in is reminded
    clock.now = at(27, 16)
    tick(app)
    clock.now = at(27, 17)
    tick(app)
    reminders = inbox(app).of_kind("reminder")
    assert len(reminders) == 1 and "practice check-in is still open" in reminders[0].text
    chat.say("I owned the outage review.")
    progress = chat.text("/mentor progress")
    assert "lesson questions answered 1 of 2 · practice check-ins 1 of 1" in progress


def test_no_promise_of_a_lesson_day_that_does_not_exist(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    for text in ("a1", "/mentor next", "a2", "/mentor next"):
        clock.advance(minutes=10)
        chat.say(text)
    clock.advance(minutes=10)
    last = chat.say("My answer to the last question.")
    assert "Next lesson-day" not in texts(last)
    assert last[-1].kind == "continue"
    assert "none left in this lesson" in chat.text("/mentor progress")
    assert "Next lesson-day" not in chat.text("/mentor schedule")


def test_privacy_wording_follows_the_workspace_setting_everywhere(app: App, clock: Clock) -> None:
    lead = Chat(app, user="lena", lead=True)
    lead.say("/mentor settings visibility leads")
    chat = Chat(app)
    start = chat.say("/mentor start")
    assert "your leads can read the replies you write" in texts(start)
    lesson = next(m for m in start if m.kind == "lesson")
    assert "your leads can read your answer" in lesson.text
    assert "private" not in lesson.text
    ack = chat.text("I prefer guiding others.")
    assert "Your leads can read it" in ack and "private" not in ack
    clock.now = at(27, 11)
    tick(app)
    [check_in] = inbox(app).of_kind("practice")
    assert "your leads can read your answer" in check_in.text
    assert "private" not in check_in.text


def test_start_names_the_time_zone_even_when_it_is_the_default(app: App) -> None:
    said = Chat(app).text("/mentor start")
    assert "09:00 weekdays (UTC)" in said and "UTC is the default time zone" in said
    assert "/mentor schedule 09:00 Europe/Berlin" in said
    berlin = Chat(app, user="bo")
    berlin.say("/mentor schedule 08:30 Europe/Berlin")
    assert "08:30 weekdays (Europe/Berlin)" in berlin.text("/mentor schedule")
    assert "default time zone" not in berlin.text("/mentor schedule")


def test_starting_again_does_not_resend_day_one(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    again = chat.say("/mentor start")
    assert [m.kind for m in again] == ["response"]
    assert "already taking" in again[0].text and "didn't start it again" in again[0].text
    assert len(inbox(app).of_kind("lesson")) == 1


def test_two_answers_racing_from_two_devices_end_as_one_answer(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    [lesson] = inbox(app).of_kind("lesson")
    barrier = threading.Barrier(2)
    results: list[object] = []

    def answer(text: str) -> None:
        event = chat.event(EventKind.MESSAGE, text, delivery_id=lesson.delivery_id)
        barrier.wait()
        results.append(app.service.handle(event))

    threads = [
        threading.Thread(target=answer, args=(t,)) for t in ("From my phone.", "From my laptop.")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [kept] = replies(app)
    assert kept.kind == "answer"
    assert sorted(kept.text.split("\n\n")) == ["From my laptop.", "From my phone."]


def test_a_reply_to_another_learners_message_is_not_filed_there(app: App) -> None:
    ana, bo = Chat(app, user="ana"), Chat(app, user="bo")
    ana.say("/mentor start")
    bo.say("/mentor start")
    with Session(app.store.engine) as session:
        ana_lesson = session.exec(
            select(Delivery).where(Delivery.kind == "lesson").order_by(col(Delivery.id))
        ).first()
    assert ana_lesson is not None
    said = bo.text(
        "My answer", answers_message=(ana_lesson.platform_message_ids or "").split(",")[0]
    )
    assert "isn't one of your open questions" in said
    assert [(r.kind, r.learner_id) for r in replies(app)] == [("note", 2)]


def test_a_nul_character_is_removed_and_the_learner_told(app: App) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    said = chat.text("before\x00after")
    assert "removed a NUL control character" in said
    assert [r.text for r in replies(app)] == ["beforeafter"]


def test_one_reply_is_one_history_entry_and_plurals_are_right(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("One.")
    chat.say("Two.")
    assert chat.say("/mentor history")[0].text.startswith("1 reply.")
    clock.advance(minutes=10)
    chat.say("A note.")
    assert chat.say("/mentor history")[0].text.startswith("2 replies.")


def test_read_only_commands_answer_while_a_writer_holds_the_lock(
    sqlite_url: str, clock: Clock
) -> None:
    """On SQLite a writer holds the one write lock; help, progress, history, open and
    team must not queue behind it (they take no write lock at all)."""
    from bot.config import Settings, bundled_content_dir
    from mentorbot.bootstrap import build
    from tests.harness import sqlite_locked

    app = build(Settings(database_url=sqlite_url, content_dir=bundled_content_dir()), clock=clock)
    try:
        chat = Chat(app)
        chat.say("/mentor start")
        chat.say("I prefer guiding others.")
        lead = Chat(app, user="lena", lead=True)
        lead.say("/mentor help")
        with sqlite_locked(sqlite_url, seconds=120):
            assert "lesson questions answered 1 of 1" in chat.text("/mentor progress")
            assert "I prefer guiding others." in chat.text("/mentor history")
            assert "Commands (type them after /mentor)" in chat.text("/mentor help")
            assert "You have no open questions." in chat.text("/mentor open")
            assert "Your team" in lead.text("/mentor team")
            assert "Lessons arrive at 09:00" in chat.text("/mentor schedule")
    finally:
        app.store.dispose()


def test_a_huge_command_is_refused_unparsed_and_holds_no_one_up(app: App) -> None:
    """A 900,000-character command is refused on its length, before any parsing and
    before any transaction, while another learner's answer goes through."""
    chat, other = Chat(app), Chat(app, user="bo")
    chat.say("/mentor start")
    other.say("/mentor start")
    huge = "/mentor assign " + "<@U0VICTIM> " * 75_000
    assert len(huge) > 900_000
    said: list[str] = []
    worker = threading.Thread(target=lambda: said.append(chat.text(huge)))
    worker.start()
    answered = other.text("My answer.")
    worker.join()
    assert "commands are short" in said[0] and "Nothing was changed" in said[0]
    assert "your answer to" in answered
    assert [r.text for r in replies(app)] == ["My answer."]
