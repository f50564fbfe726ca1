"""Away periods and public holidays through the core, on SQLite and PostgreSQL.

Each test plays a learner (and a lead) with the console harness and a hand-moved
clock, ticking the engine the way the scheduler would, and asserts on what reaches the
learner. The default schedule is 09:00 on weekdays, UTC; the clock starts on
Wednesday 25 November 2026 at 08:00.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime

from sqlmodel import Session, col, select

from bot.models import Delivery, Enrolment, Workspace
from mentorbot.bootstrap import App
from tests.conftest import Clock
from tests.harness import Chat, InboxAdapter

Q2 = "Have you ever taken ownership of a system?"


def at(month: int, day: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def tick(app: App) -> None:
    asyncio.run(app.engine.tick())


def inbox(app: App) -> InboxAdapter:
    adapter = app.dispatcher.adapters["console"]
    assert isinstance(adapter, InboxAdapter)
    return adapter


def enrolment(app: App) -> Enrolment:
    with Session(app.store.engine) as session:
        found = session.exec(select(Enrolment).order_by(col(Enrolment.id).desc())).first()
        assert found is not None
        return found


def run_until(app: App, clock: Clock, until: datetime, step_minutes: int = 30) -> None:
    """Tick every ``step_minutes`` up to ``until``, as a running bot would."""
    while clock.now < until:
        clock.advance(minutes=step_minutes)
        tick(app)


def sent(app: App) -> list[tuple[str, int, str]]:
    """Kind, lesson-day and UTC date of every message that went out, in order."""
    with Session(app.store.engine) as session:
        rows = session.exec(
            select(Delivery).where(Delivery.status == "sent").order_by(col(Delivery.sent_at))
        ).all()
        return [(d.kind, d.day, f"{d.sent_at:%Y-%m-%d}") for d in rows if d.kind != "welcome"]


# ---------------------------------------------------------------------- away


def test_away_3d_holds_everything_and_comes_back_on_the_next_lesson_day(
    app: App, clock: Clock
) -> None:
    chat = Chat(app)
    chat.say("/mentor start")  # Wednesday 25: day 1
    chat.say("I prefer guiding others, and I write down why we decide things.")
    clock.now = at(11, 25, 8, 30)
    said = chat.text("/mentor away 3d")
    assert "You are away for 3 days, through Friday 27 November" in said
    assert "I'll be back on Monday 30 November at 09:00 (UTC) with your next lesson-day" in said
    assert "`/mentor resume`" in said
    # No past-due instant: the planner reads this enrolment once, when it is back.
    away = enrolment(app)
    assert (away.status, away.away_until) == ("paused", date(2026, 11, 27))
    assert away.next_due_at == at(11, 30, 9)
    before = len(inbox(app).sent)
    run_until(app, clock, at(11, 30, 8, 30))  # Thursday's and Friday's lessons, the check-in
    assert inbox(app).sent[before:] == []
    clock.now = at(11, 30, 9)
    tick(app)
    [day2] = inbox(app).sent[before:]
    assert (day2.kind, day2.question) == ("lesson", Q2)
    back = enrolment(app)
    assert (back.status, back.away_until) == ("active", None)
    # The check-in due while away comes after it, not never.
    clock.now = at(11, 30, 11)
    tick(app)
    assert [m.kind for m in inbox(app).sent[before:]] == ["lesson", "practice"]
    assert "away" not in chat.text("/mentor progress")


def test_away_until_a_date_shows_in_progress_and_team(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    said = chat.text("/mentor away until 2026-12-04")
    assert "You are away for 10 days, through Friday 04 December" in said
    assert "I'll be back on Monday 07 December at 09:00 (UTC)" in said
    progress = chat.text("/mentor progress")
    assert "Phase: away until Friday 04 December" in progress
    assert "Next lesson-day: Monday 07 December at 09:00 (UTC)" in progress
    assert chat.say("/mentor progress")[0].actions[0].command == "resume"
    team = Chat(app, user="lena", lead=True).text("/mentor team")
    assert "away until 2026-12-04" in team
    exported = json.loads(chat.say("/mentor export-my-data")[0].attachments[0].content)
    assert exported["enrolments"][0]["away_until"] == "2026-12-04"
    # Saying it again changes the period.
    again = chat.text("/mentor away 1w")
    assert again.startswith("Changed: you are away for 7 days, through Tuesday 01 December")
    assert enrolment(app).next_due_at == at(12, 2, 9)


def test_resume_ends_an_away_period_early(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("/mentor away 2w")
    clock.now = at(11, 25, 10)
    said = chat.text("/mentor resume")
    # Day 1 came today, so the next lesson-day is tomorrow, not later today.
    assert said == "Welcome back! Next lesson-day: Thursday 26 November at 09:00 (UTC)."
    assert enrolment(app).away_until is None
    clock.now = at(11, 26, 9)
    tick(app)
    assert [m.kind for m in inbox(app).sent][-1] == "lesson"
    assert chat.text("/mentor resume") == "You are not paused."


def test_pause_while_away_is_an_open_pause(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("/mentor away 3d")
    said = chat.text("/mentor pause")
    assert "You were away until Friday 27 November; now you are paused with no end date" in said
    paused = enrolment(app)
    assert (paused.status, paused.away_until, paused.next_due_at) == ("paused", None, None)
    assert "Next lesson-day: when you say `/mentor resume`" in chat.text("/mentor progress")
    before = len(inbox(app).sent)
    run_until(app, clock, at(12, 1, 12), step_minutes=60)
    assert inbox(app).sent[before:] == []


def test_nothing_the_bot_starts_reaches_an_away_learner(app: App, clock: Clock) -> None:
    """No reminder (the scheduled one or a snoozed one), check-in or continue prompt."""
    chat = Chat(app)
    chat.say("/mentor start")  # Wednesday 25, 08:00: day 1; its reminder is due at 12:00
    chat.say("/mentor snooze 3")  # and one more at 11:00, asked for by the learner
    for text in ("a1", "/mentor next", "a2", "/mentor next"):
        clock.advance(minutes=10)
        chat.say(text)  # answers make check-ins due on Friday
    clock.now = at(11, 25, 9)
    chat.say("/mentor away until 2026-11-30")
    before = len(inbox(app).sent)
    run_until(app, clock, at(12, 1, 8, 30))  # the lesson's end: a prompt would come Thursday
    assert inbox(app).sent[before:] == []
    clock.now = at(12, 1, 9)
    tick(app)
    assert [m.kind for m in inbox(app).sent[before:]] == ["continue"]


def test_next_while_away_sends_the_day_and_keeps_the_away_period(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("/mentor away 3d")
    clock.advance(minutes=30)
    messages = chat.say("/mentor next")
    assert [m.kind for m in messages].count("lesson") == 1
    note = (
        "Day 2, as you asked. You are still away until Friday 27 November: I send nothing by "
        "myself until then."
    )
    assert any(note in m.text for m in messages)
    assert enrolment(app).away_until == date(2026, 11, 27)
    # Finishing the lesson and going on to the next one while away keeps the period.
    chat.say("/mentor next")
    chat.say("My last answer.")
    said = chat.text("/mentor continue")
    assert "still away until Friday 27 November" in said
    assert enrolment(app).next_due_at == at(11, 30, 9)
    before = len(inbox(app).sent)
    run_until(app, clock, at(11, 30, 8, 30), step_minutes=60)
    assert inbox(app).sent[before:] == []


def test_bad_away_input_gets_one_clear_line_and_changes_nothing(app: App) -> None:
    chat = Chat(app)
    assert "You are not taking a course yet" in chat.text("/mentor away 3d")
    chat.say("/mentor start")
    for typed, expected in (
        ("/mentor away until 2026-11-24", "Sorry, 2026-11-24 is in the past: give today or a"),
        ("/mentor away 0d", "Sorry, `0d` is no time away: give at least 1d."),
        ("/mentor away 0w", "Sorry, `0w` is no time away"),
        ("/mentor away 366d", "Sorry, 366d is more than a year away: the longest away period"),
        ("/mentor away 53w", "Sorry, 53w is more than a year away"),
        (
            "/mentor away until 2027-11-25",
            "Sorry, 2027-11-25 is more than a year away: the latest is 2027-11-24",
        ),
        ("/mentor away banana", "Sorry, I can't read `banana` as a time away: use"),
        ("/mentor away until 2027-02-30", "Sorry, 2027-02-30 is not a date in the calendar"),
        ("/mentor away 3x", "Sorry, I can't read `3x` as a time away"),
        ("/mentor away", "Sorry, say for how long: `/mentor away 3d`"),
        ("/mentor away until", "Sorry, say for how long"),
    ):
        said = chat.text(typed)
        assert said.startswith(expected), (typed, said)
        assert len(said.splitlines()) == 1, said
    still = enrolment(app)
    assert (still.status, still.away_until) == ("active", None)
    # The edges that are fine: today alone, and a year less a day.
    assert "You are away for 1 day, through Wednesday 25 November" in chat.text(
        "/mentor away until 2026-11-25"
    )
    assert "away for 365 days, through Wednesday 24 November 2027" in chat.text("/mentor away 365d")


def test_a_changed_schedule_moves_the_day_an_away_learner_is_back(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("/mentor away 3d")
    chat.say("/mentor schedule 08:00 tue,thu Europe/Berlin")
    assert enrolment(app).next_due_at == at(12, 1, 7)  # Tuesday 08:00 in Berlin


# ---------------------------------------------------------------------- holidays


def test_workspace_holidays_move_lesson_days_check_ins_and_reminders(
    app: App, clock: Clock
) -> None:
    lead = Chat(app, user="lena", lead=True)
    said = lead.text("/mentor settings holidays DE")
    assert "Saved: no lessons, reminders or check-ins on the public holidays of DE (Germany)" in (
        said
    )
    assert "Public holidays: DE (Germany)" in lead.text("/mentor settings")
    clock.now = at(3, 24, 8, year=2027)  # the Wednesday before Easter
    chat = Chat(app)
    start = chat.text("/mentor start")
    assert "09:00 weekdays (UTC), skipping public holidays in DE" in start
    chat.say("I prefer guiding others.")  # a check-in two delivery days on: Tuesday 30
    run_until(app, clock, at(3, 31, 8, year=2027), step_minutes=60)
    # Nothing on Good Friday, the weekend or Easter Monday: day 3 and the check-in wait.
    assert sent(app) == [
        ("lesson", 1, "2027-03-24"),
        ("lesson", 2, "2027-03-25"),
        ("reminder", 2, "2027-03-25"),
        ("lesson", 3, "2027-03-30"),
        ("practice", 1, "2027-03-30"),
        ("reminder", 1, "2027-03-30"),  # about the check-in, the newer question
    ]


def test_no_reminder_on_a_holiday_even_for_a_lesson_asked_for(app: App, clock: Clock) -> None:
    Chat(app, user="lena", lead=True).say("/mentor settings holidays DE-BY")
    clock.now = at(1, 6, 8, year=2027)  # Epiphany, a holiday in Bavaria
    chat = Chat(app)
    chat.say("/mentor start")  # asked for, so it comes; its reminder would be at 12:00
    run_until(app, clock, at(1, 6, 20, year=2027))
    assert [m.kind for m in inbox(app).sent] == ["lesson"]


def test_setting_holidays_moves_a_lesson_day_already_planned(app: App, clock: Clock) -> None:
    clock.now = at(3, 25, 10, year=2027)  # Thursday before Good Friday
    chat = Chat(app)
    chat.say("/mentor start")
    assert enrolment(app).next_due_at == at(3, 26, 9, year=2027)
    Chat(app, user="lena", lead=True).say("/mentor settings holidays DE")
    assert enrolment(app).next_due_at == at(3, 30, 9, year=2027)
    assert "Next lesson-day: Tuesday 30 March at 09:00 (UTC)" in chat.text("/mentor progress")


def test_a_holiday_set_after_planning_still_moves_the_day(app: App, clock: Clock) -> None:
    """An instant planned before the holiday was known is moved when it comes."""
    clock.now = at(3, 25, 10, year=2027)
    Chat(app).say("/mentor start")
    with Session(app.store.engine) as session:
        workspace = session.exec(select(Workspace)).one()
        workspace.holidays = "DE"  # as if set by another replica, without rescheduling
        session.add(workspace)
        session.commit()
    run_until(app, clock, at(3, 30, 10, year=2027), step_minutes=60)
    lessons = [row for row in sent(app) if row[0] == "lesson"]
    assert lessons == [("lesson", 1, "2027-03-25"), ("lesson", 2, "2027-03-30")]
    assert enrolment(app).next_due_at == at(3, 31, 9, year=2027)


def test_holiday_settings_bad_codes_close_matches_and_off(app: App) -> None:
    lead = Chat(app, user="lena", lead=True)
    said = lead.text("/mentor settings holidays DX")
    assert said == (
        "Sorry, unknown holiday calendar 'DX': use a country code like DE, or a country and "
        "region like DE-BY (did you mean DE, DJ or DK?)."
    )
    assert "DE has no region 'BX'" in lead.text("/mentor settings holidays DE-BX")
    assert "did you mean DE?" in lead.text("/mentor settings holidays Germany")
    assert "Public holidays: none" in lead.text("/mentor settings")
    several = lead.text("/mentor settings holidays de-by, US-CA")
    assert "DE-BY (Germany, Bayern), US-CA (United States, California)" in several
    with Session(app.store.engine) as session:
        assert session.exec(select(Workspace.holidays)).one() == "DE-BY,US-CA"
    assert "Saved: no public holidays" in lead.text("/mentor settings holidays off")
    assert "Public holidays: none" in lead.text("/mentor settings")
    assert "Give a value" in lead.text("/mentor settings holidays")
    assert "Only leads can use" in Chat(app).text("/mentor settings holidays DE")


def test_away_over_holidays_names_them_and_comes_back_after(app: App, clock: Clock) -> None:
    Chat(app, user="lena", lead=True).say("/mentor settings holidays DE")
    clock.now = at(3, 22, 10, year=2027)
    chat = Chat(app)
    chat.say("/mentor start")
    said = chat.text("/mentor away until 2027-03-25")
    assert (
        "I'll be back on Tuesday 30 March at 09:00 (UTC) with your next lesson-day, after the "
        "public holidays Good Friday and Easter Monday." in said
    )


def test_away_days_are_the_learners_local_days(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor schedule Pacific/Auckland")  # UTC+13 in November
    clock.now = at(11, 25, 20)  # Thursday 26 November, 09:00 in Auckland
    chat.say("/mentor start")
    said = chat.text("/mentor away 1d")
    assert "You are away for 1 day, through Thursday 26 November" in said
    assert "I'll be back on Friday 27 November at 09:00 (Pacific/Auckland)" in said
    assert enrolment(app).next_due_at == at(11, 26, 20)  # still Thursday in UTC


def test_an_away_learner_who_is_unassigned_stays_stopped(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("/mentor away 3d")
    lead = Chat(app, user="lena", lead=True)
    lead.say("/mentor unassign @ana")
    lead.say("/mentor settings holidays DE")  # reschedules the workspace's learners
    before = len(inbox(app).sent)
    run_until(app, clock, at(12, 2, 12), step_minutes=60)
    # Only the word that a lead stopped the lessons, and not before the away days end.
    [notice] = inbox(app).sent[before:]
    assert notice.kind == "notice" and "stopped your lessons" in notice.text
    with Session(app.store.engine) as session:
        sent = session.exec(select(Delivery).where(Delivery.kind == "notice")).one().sent_at
    assert sent is not None and sent.replace(tzinfo=UTC) >= at(11, 30, 9)
    assert enrolment(app).status == "stopped"


def test_back_after_the_lessons_last_day_says_how_to_go_on(app: App, clock: Clock) -> None:
    """Asked "continue?" before going away, the learner is not promised the question
    again on coming back (the planner asks at most twice): they are told how to go on.
    ``back`` is what people type for ``resume``."""
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("/mentor next")
    chat.say("/mentor next")
    assert "Shall I send it to you as soon as it is?" in chat.text("/mentor next")
    chat.say("/mentor away 1w")
    clock.now = at(11, 26, 10)
    assert chat.text("back") == (
        "Welcome back! You've had every day of 0.2.2 Senior / Lead Data Engineer. Lesson "
        "0.2.3 isn't published yet; say `/mentor continue` and I'll send it as soon as it is."
    )
    assert enrolment(app).away_until is None
