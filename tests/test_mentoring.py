"""A mentor, not a form: practices chosen by fit, acknowledgements that respond, life
after the last lesson (one prompt, a summary, a weekly practice phase, spaced review),
and numbers leads can trust. Through the real core and engine on SQLite and
PostgreSQL, with a hand-moved clock."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from bot.config import bundled_content_dir
from bot.course import load_catalog, parse_lesson
from bot.messages import OutgoingMessage
from bot.models import Delivery, Reply
from bot.practices import best_sentence, choose, clip, rank, touches
from bot.text import strip_learner_marks
from mentorbot.bootstrap import App
from tests.conftest import Clock
from tests.harness import Chat, InboxAdapter, due_instants

SAY_NO = "Say “no” when needed, professionally"
DOCUMENT = "Document decisions"
SEED = bundled_content_dir() / "data-engineering" / "0.2.2-senior-lead-data-engineer.md"


def lesson():  # type: ignore[no-untyped-def]
    catalog, _ = load_catalog(bundled_content_dir())
    assert catalog is not None
    return catalog.default.first_lesson()


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def tick(app: App) -> None:
    asyncio.run(app.engine.tick())


def inbox(app: App) -> InboxAdapter:
    adapter = app.dispatcher.adapters["console"]
    assert isinstance(adapter, InboxAdapter)
    return adapter


def run_until(app: App, clock: Clock, end: datetime) -> None:
    """Tick at every due instant up to ``end``, as `mentorbot simulate` does."""
    for _ in due_instants(app, clock, end):
        pass


def plain(text: str | None) -> str:
    return strip_learner_marks(text or "")


# ---------------------------------------------------------------------- ranking


def test_the_seed_lessons_practices_fit_what_was_written() -> None:
    seed = lesson()
    assert choose(seed.practices, "Saying no to stakeholders is the hardest part.") == SAY_NO
    assert choose(seed.practices, "I push back too rarely when scope grows.") == SAY_NO
    assert choose(seed.practices, "We now document every design decision in ADRs.") == DOCUMENT
    assert choose(seed.practices, "I write down why we decided things.") == DOCUMENT
    # The question counts too, at half weight; the answer decides when both speak.
    ranked = rank(seed.practices, "Mostly documentation.", "Have you ever taken ownership?")
    assert ranked[0].practice == DOCUMENT


def test_best_unused_then_next_unused_and_never_twice_in_a_row() -> None:
    seed = lesson()
    used = [SAY_NO]
    assert choose(seed.practices, "saying no again", used=used, last=SAY_NO) != SAY_NO
    # Nothing scores: the next unused practice in lesson order.
    assert choose(seed.practices, "I like my team.", used=[seed.practices[0]]) == seed.practices[1]
    # Everything used: start again, but never the last one.
    again = choose(seed.practices, "Saying no", used=seed.practices, last=SAY_NO)
    assert again is not None and again != SAY_NO


def test_quotes_are_the_best_sentence_and_never_cut_a_word_or_an_emoji() -> None:
    text = "I like my team. Saying no to stakeholders is hard for me. Thanks for asking!"
    assert best_sentence(text, SAY_NO) == "Saying no to stakeholders is hard for me."
    long = "word " * 100
    clipped = clip(long, 40)
    assert clipped.endswith("…") and clipped[:-1].split() == ["word"] * len(clipped[:-1].split())
    family = "👩\u200d👩\u200d👧\u200d👦"
    cut = clip(family * 30, 21)
    assert not cut[:-1].endswith("\u200d") and (len(cut[:-1]) % len(family)) in (0, 1, 3, 5)
    assert clip("👍🏽" * 50, 9).rstrip("…")[-1] != "👍"  # the skin tone stays with its hand


def test_odd_answers_rank_without_error() -> None:
    seed = lesson()
    for text in ("x " * 20_000, "🙂" * 500, "\u200b", "", "ß" * 40_000):
        ranked = rank(seed.practices, text)
        assert len(ranked) == len(seed.practices)
        assert choose(seed.practices, text) in seed.practices
        best_sentence(text, SAY_NO)


@pytest.mark.parametrize(
    ("practice", "text", "about_it"),
    [
        (SAY_NO, "I said no to a rushed launch.", True),
        (SAY_NO, "I pushed back on the deadline.", True),
        (SAY_NO, "No, not really.", False),  # "no" alone says nothing about saying no
        (SAY_NO, "I had no time this week.", False),
        ("Ownership over blame", "Yes, I owned our ingestion platform.", True),
        ("Ownership over blame", "We own it end to end.", True),
        ("Ownership over blame", "I worked on my own project.", False),
        ("Write readable, maintainable code", "I prefer guiding others.", False),
    ],
)
def test_an_answer_touches_a_practice_only_through_its_own_words(
    practice: str, text: str, about_it: bool
) -> None:
    assert touches(practice, text) is about_it


def test_a_lesson_may_pin_practices_to_a_question(tmp_path: Path) -> None:
    source = SEED.read_text(encoding="utf-8").replace(
        "- What part of leadership feels difficult to you?",
        "- What part of leadership feels difficult to you?\n"
        "  - practice: say “no” when needed, professionally; Communication over silence",
    )
    path = tmp_path / "0.2.2.md"
    path.write_text(source, encoding="utf-8")
    pinned, problems = parse_lesson(path)
    assert pinned is not None and not [p for p in problems if p.severity == "error"]
    question = "What part of leadership feels difficult to you?"
    assert pinned.pins_for(question) == (SAY_NO, "Communication over silence")
    assert question in pinned.questions  # the pin lines are not part of the question
    assert (
        choose(pinned.practices, "Being silent", question, pinned=pinned.pins_for(question))
        == "Communication over silence"
    )
    # A pinned practice the lesson does not have is an error naming file and line.
    bad = source.replace("professionally; Communication over silence", "professionally; Be nice")
    path.write_text(bad, encoding="utf-8")
    _, problems = parse_lesson(path)
    line = bad.splitlines().index("  - practice: say “no” when needed, professionally; Be nice") + 1
    [problem] = [p for p in problems if p.severity == "error"]
    assert problem.line == line and "'Be nice' is not one of this lesson's practices" in str(
        problem
    )


# ---------------------------------------------------------------------- conversation


def test_the_acknowledgement_names_the_practice_and_when_the_bot_checks_back(
    app: App, clock: Clock
) -> None:
    chat = Chat(app)
    chat.say("/mentor start")  # Wednesday 25 November
    ack = chat.text("Saying no to stakeholders is the hardest part for me.")
    assert f"**{SAY_NO}**" in ack and "on Friday" in ack
    clock.now = at(11, 27, 11)
    tick(app)  # the check-in, two delivery days later, brings back the same practice
    [check_in] = inbox(app).of_kind("practice")
    assert f"**{SAY_NO}**" in (check_in.question or "")
    assert "Saying no to stakeholders" in plain(check_in.question)
    # Answering the check-in is thanked for that practice, in other words.
    clock.now = at(11, 27, 12)
    thanks = chat.text("I said no to a rushed launch and explained why.")
    assert f"Thank you for coming back to **{SAY_NO}**" in thanks


def test_an_answer_about_none_of_the_practices_is_offered_one_not_told_it_touched_it(
    app: App, clock: Clock
) -> None:
    """No practice shares a word with this answer: the one brought up is offered as
    something to try, and the check-in does not quote the answer as if it were about it."""
    chat = Chat(app)
    chat.say("/mentor start")
    ack = chat.text("I prefer guiding others.")
    assert "touches on" not in ack and "I hear" not in ack and "connects with" not in ack
    assert "One practice from this lesson to try: **" in ack and "on Friday" in ack
    clock.now = at(11, 27, 11)
    tick(app)
    [check_in] = inbox(app).of_kind("practice")
    assert "to try: **" in (check_in.question or "")
    assert "You wrote" not in plain(check_in.question) and "guiding others" not in plain(
        check_in.question
    )
    # Everyday words for a practice count: "I owned it" is about ownership.
    clock.now = at(11, 26, 9, 30)
    chat.say("/mentor next")
    owned = chat.text("Yes, I owned our ingestion platform and fixed its on-call mess.")
    assert "**Ownership over blame**" in owned and "to try" not in owned


def test_two_acknowledgements_in_a_row_are_never_identical(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    first = chat.text("I prefer guiding others.")
    clock.advance(minutes=10)
    chat.say("/mentor next")
    second = chat.text("I prefer guiding others.")
    assert first != second


def test_a_learner_who_answered_nothing_is_not_told_here_is_what_you_wrote(
    app: App, clock: Clock
) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    for day in range(26, 31):  # the days arrive by themselves; nothing is answered
        clock.now = at(11, day, 9)
        tick(app)
    for day in range(1, 8):
        clock.now = at(12, day, 9)
        tick(app)
    [summary] = inbox(app).of_kind("summary")
    assert "Here is what you wrote" not in summary.text
    assert summary.text.startswith("You didn't answer these")
    assert summary.title == "The questions of 0.2.2 Senior / Lead Data Engineer"
    assert [plain(s.body) for s in summary.sections] == ["(not answered)"] * 3
    [file] = summary.attachments
    assert file.filename == "questions-0.2.2.md" and file.title == "The questions"
    assert file.content.startswith(b"# The questions of 0.2.2")


def test_a_summary_sent_after_the_learner_asked_for_the_next_lesson_does_not_offer_it_again(
    app: App, clock: Clock
) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    for text in ("a", "/mentor next", "b", "/mentor next", "c"):
        clock.advance(minutes=10)
        chat.say(text)
    clock.now = at(11, 26, 9)
    app.engine.planner.plan(clock.now)  # the summary is queued...
    assert "isn't published yet" in chat.text("/mentor continue")  # ...then Yes is clicked
    tick(app)
    [summary] = inbox(app).of_kind("summary")
    assert summary.text.endswith("I'll send lesson 0.2.3 as soon as it is published.")
    assert summary.actions == ()


def test_the_practice_phase_moves_with_a_new_schedule(app: App, clock: Clock) -> None:
    """ "Lessons arrive at 08:00 daily" must hold for what comes after the last
    lesson-day too: the weekly check-in keeps its day and takes the new time."""
    chat = Chat(app)
    chat.say("/mentor start")
    for text in ("a", "/mentor next", "b", "/mentor next", "c"):
        clock.advance(minutes=10)
        chat.say(text)
    for day in (26, 27):  # the summary, then the practice phase is a week away
        clock.now = at(11, day, 9)
        tick(app)
    clock.now = at(11, 27, 12)
    assert "08:00 daily" in chat.text("schedule 08:00 daily")
    for _ in due_instants(app, clock, at(12, 12, 0)):
        pass
    with Session(app.store.engine) as session:
        phase = session.exec(
            select(Delivery).where(
                Delivery.kind == "practice", col(Delivery.question).contains("A week on from")
            )
        ).all()
    assert phase and {d.sent_at.strftime("%H:%M") for d in phase if d.sent_at} == {"08:00"}


def test_after_the_last_lesson_one_prompt_a_summary_then_a_weekly_practice_phase(
    app: App, clock: Clock
) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    for text in ("Saying no is hard.", "/mentor next", "/mentor skip", "/mentor next"):
        clock.advance(minutes=10)
        chat.say(text)
    clock.advance(minutes=10)
    last = chat.say("We document decisions now.")
    assert [m.kind for m in last][-1] == "continue"
    for day in range(26, 31):
        clock.now = at(11, day, 9)
        tick(app)
    for day in range(1, 21):
        clock.now = at(12, day, 9)
        tick(app)
    prompts = inbox(app).of_kind("continue")
    summaries = inbox(app).of_kind("summary")
    assert prompts == [] and len(summaries) == 1  # the in-chat prompt, then the summary
    [summary] = summaries
    assert "Here is what you wrote" in summary.text and "I won't ask again" in summary.text
    assert [s.title for s in summary.sections] == list(lesson().questions)
    assert [plain(s.body) for s in summary.sections] == [
        "Saying no is hard.",
        "(skipped)",
        "We document decisions now.",
    ]
    [file] = summary.attachments
    assert file.filename == "my-answers-0.2.2.md" and b"Saying no is hard." in file.content
    phase = [m for m in inbox(app).of_kind("practice") if m.delivery_key.startswith("phase:")]
    assert len(phase) == 2  # then nothing: both went unanswered (see below)
    assert "A week on from 0.2.2" in (phase[0].question or "")
    assert "Another practice from 0.2.2 Senior / Lead Data Engineer for this week" in (
        phase[1].question or ""
    )
    dates = sorted(m.delivery_key for m in phase)
    assert len(set(dates)) == len(dates)
    practices = [m.question.split("**")[1] for m in phase if m.question]
    assert len(set(practices)) == len(practices)  # each one new
    assert SAY_NO not in practices and DOCUMENT not in practices  # covered already
    # Weekly check-ins are invitations: no reminders for them.
    reminded = {m.delivery_id for m in inbox(app).of_kind("reminder")}
    assert not reminded & {m.delivery_id for m in phase}
    # Two unanswered in a row: the third week says it stops, once, instead of asking.
    [stopped] = inbox(app).of_kind("notice")
    assert stopped.text.startswith("The last two practice check-ins from 0.2.2")
    assert "Everything you wrote is kept" in stopped.text
    assert "Phase: finished" in chat.text("/mentor progress")
    run_until(app, clock, datetime(2027, 1, 31, tzinfo=UTC))
    assert (
        len([m for m in inbox(app).of_kind("practice") if m.delivery_key.startswith("phase:")]) == 2
    )


def test_a_learner_who_answers_the_weekly_check_ins_keeps_getting_them(
    app: App, clock: Clock
) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    for text in ("a", "/mentor next", "b", "/mentor next", "c"):
        clock.advance(minutes=10)
        chat.say(text)
    phase: list[OutgoingMessage] = []
    for _ in due_instants(app, clock, datetime(2027, 1, 10, tzinfo=UTC)):
        sent = [m for m in inbox(app).of_kind("practice") if m.delivery_key.startswith("phase:")]
        if len(sent) > len(phase):
            phase = sent
            clock.advance(minutes=5)
            chat.say("/mentor skip" if len(phase) % 2 else "I tried it in a review.")
    assert len(phase) >= 4 and inbox(app).of_kind("notice") == []


def test_spaced_review_shows_an_earlier_answer_and_links_the_new_one(
    app: App, clock: Clock
) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("I prefer guiding others.")
    run_until(app, clock, at(12, 3, 0))  # a week of lessons, check-ins and prompts
    [review] = inbox(app).of_kind("review")
    assert review.delivery_key and clock.now.date() >= at(12, 2, 0).date()
    assert "A week ago you wrote “I prefer guiding others.”" in plain(review.question)
    assert "What would you answer today?" in plain(review.question)
    said = chat.text("Now I also like deep work.")
    assert "history` shows both" in said
    with Session(app.store.engine) as session:
        first, second = session.exec(select(Reply).order_by(col(Reply.id))).all()
    assert second.review_of_id == first.id
    history = chat.say("/mentor history")[0]
    assert "a fresh look at reply 1" in history.sections[-1].title
    data = json.loads(chat.say("/mentor export-my-data")[0].attachments[0].content)
    assert data["replies"][1]["review_of"] == data["replies"][0]["id"]


def test_a_learner_waiting_for_a_lesson_is_told_once_it_is_published(
    app: App, clock: Clock, tmp_path: Path
) -> None:
    import shutil

    content = tmp_path / "content"
    shutil.copytree(bundled_content_dir(), content)
    app.catalog.path = content
    chat = Chat(app)
    for text in ("/mentor start", "a", "/mentor next", "b", "/mentor next", "c"):
        clock.advance(minutes=10)
        chat.say(text)
    assert "isn't published yet" in chat.text("/mentor continue")
    (content / "data-engineering" / "0.2.3.md").write_text(
        "# 0.2.3 Principal Data Engineer (GCP)\n\n## Scope\nWider.\n\n"
        "## Discussion Questions\n- What is wider?\n",
        encoding="utf-8",
    )
    Chat(app, user="lena", lead=True).say("/mentor reload")
    clock.now = at(11, 26, 9)
    tick(app)
    new = inbox(app).of_kind("lesson")[-1]
    assert "0.2.3 Principal Data Engineer (GCP) is out" in new.text
    clock.now = at(11, 27, 9)
    tick(app)
    assert sum("is out" in m.text for m in inbox(app).of_kind("lesson")) == 1


# ---------------------------------------------------------------------- numbers


def test_team_progress_and_digest_agree_and_say_what_finished_means(app: App, clock: Clock) -> None:
    lena = Chat(app, user="lena", lead=True)
    lena.say("/mentor assign @ana")
    ana = Chat(app, user="ana")
    lena.say("/mentor digest #team daily")
    clock.now = at(11, 26, 9)
    tick(app)  # a digest of a day when no question went out, and ana's day 1
    [digest] = inbox(app).of_kind("digest")
    assert "no questions went out in this period" in digest.sections[0].body
    for text in ("/mentor skip", "/mentor next", "/mentor skip", "/mentor next", "/mentor skip"):
        clock.advance(minutes=10)
        ana.say(text)
    progress = ana.text("/mentor progress")
    team = lena.say("/mentor team")[0].sections[0].body
    assert "lesson questions answered 0 of 3" in progress
    assert "Lesson questions answered 0 of 3" in team and "finished the lesson (0 of 3" in team


@pytest.mark.parametrize("days", [1, 14])
def test_the_digest_chart_has_a_dated_axis(days: int) -> None:
    from bot.chart import bar_chart_png

    plain_chart = bar_chart_png([1] * days)
    dated = bar_chart_png([1] * days, [f"11-{d:02d}" for d in range(1, days + 1)])
    assert dated != plain_chart


def test_the_daily_cap_holds_over_eight_weeks(app: App, clock: Clock) -> None:
    chat = Chat(app)
    chat.say("/mentor start")
    chat.say("Saying no is hard.")
    clock.advance(minutes=10)
    chat.say("/mentor next")
    chat.say("I document decisions.")
    run_until(app, clock, clock.now + timedelta(weeks=8))
    with Session(app.store.engine) as session:
        sent = session.exec(
            select(Delivery).where(Delivery.origin == "schedule", Delivery.status == "sent")
        ).all()
    per_day: dict[object, int] = {}
    for delivery in sent:
        day = delivery.due_at.date()
        per_day[day] = per_day.get(day, 0) + 1
    assert sent and max(per_day.values()) <= 3


def test_waiting_for_an_unpublished_lesson_the_weekly_check_in_starts_a_week_on(
    app: App, clock: Clock
) -> None:
    """ "Yes, send it when it's out" must not bring the first weekly check-in the next
    morning, on top of the check-ins of the lesson's last answers."""
    chat = Chat(app)
    chat.say("/mentor start")
    for text in ("a", "/mentor next", "b", "/mentor next", "c", "/mentor continue"):
        clock.advance(minutes=10)
        chat.say(text)
    asked_at = clock.now

    def phase() -> list[OutgoingMessage]:
        return [m for m in inbox(app).of_kind("practice") if m.delivery_key.startswith("phase:")]

    run_until(app, clock, asked_at + timedelta(days=6))
    assert phase() == []
    run_until(app, clock, asked_at + timedelta(days=8))
    assert len(phase()) == 1
