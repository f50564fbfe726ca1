"""The router on its own: what a message is, decided from its words and a snapshot of
the learner's questions. No database, no adapters: the rules, one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.router import (
    OpenQuestion,
    Route,
    RouteKind,
    Situation,
    Target,
    Verdict,
    is_small_talk,
    puts_off,
    read_text,
    reads_as_question,
    route,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LIMIT = 50_000


def reading(text: str):  # type: ignore[no-untyped-def]
    return read_text(text, max_reply_chars=LIMIT)


# ---------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("/mentor help", "/mentor help"),
        ("/MENTOR HELP", "/mentor HELP"),
        ("mentor help", "/mentor help"),
        ("Mentor progress", "/mentor progress"),
        ("/help", "/mentor help"),
        ("/Progress", "/mentor progress"),
        ("help", "/mentor help"),
        ("progress", "/mentor progress"),
        ("History?", "/mentor history"),
        ("mentor", "/mentor help"),
        ("stop", "/mentor stop"),
        ("Stop!", "/mentor stop"),
        ("unsubscribe", "/mentor unsubscribe"),
        ("Back", "/mentor back"),
        # A command word whose other words read in full as its arguments.
        ("schedule 7:30 America/New_York", "/mentor schedule 7:30 America/New_York"),
        ("Schedule daily 08:15", "/mentor schedule daily 08:15"),
        ("snooze 3", "/mentor snooze 3"),
        ("snooze 2h", "/mentor snooze 2h"),
        ("later 3", "/mentor later 3"),
        ("remind 30 min", "/mentor remind 30 min"),
        ("schedule 7:30am", "/mentor schedule 7:30am"),
        ("schedule at 7 pm", "/mentor schedule at 7 pm"),
        ("away 2w", "/mentor away 2w"),
        ("away until 2026-12-24", "/mentor away until 2026-12-24"),
        # The "Remind me later" button, typed.
        ("Remind me later", "/mentor snooze"),
        ("remind me in 2 hours", "/mentor snooze 2 hours"),
        # A short try at a command's arguments that does not parse is still the command,
        # so the answer names what is wrong instead of filing it as an answer.
        ("schedule 25:00", "/mentor schedule 25:00"),
        ("schedule 8:30 Mars/Olympus", "/mentor schedule 8:30 Mars/Olympus"),
        ("snooze 100", "/mentor snooze 100"),
        ("away 3 months", "/mentor away 3 months"),
        # Numbered questions and replies, and the deletion, as `open`, `history` and
        # `forget-me` tell people to type them.
        ("answer 2 I think guiding matters", "/mentor answer 2 I think guiding matters"),
        ("skip 2", "/mentor skip 2"),
        ("move 3 note", "/mentor move 3 note"),
        ("forget-me confirm", "/mentor forget-me confirm"),
        ("Forget me", "/mentor forget-me"),
        ("Hello? I'm back early", "/mentor back"),
        ("I am back from vacation!", "/mentor back"),
        ("forget me confirm", "/mentor forget-me confirm"),
        # A lead's commands with the people, channel or setting they take.
        ("assign @ana @bo", "/mentor assign @ana @bo"),
        ("unassign <@U123>", "/mentor unassign <@U123>"),
        ("replies @ana", "/mentor replies @ana"),
        ("digest #team weekly", "/mentor digest #team weekly"),
        ("settings time 8:30am", "/mentor settings time 8:30am"),
        ("leads add @ana", "/mentor leads add @ana"),
    ],
)
def test_commands_in_any_spelling_are_commands(typed: str, command: str) -> None:
    result = reading(typed)
    assert result.verdict is Verdict.COMMAND
    assert (result.command or "").lower() == command.lower()


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        ("/mentr history", "`/mentor history`"),
        ("/mentro help", "`/mentor help`"),
        ("/hlep", "`/mentor help`"),
        ("progres", "`/mentor progress`"),
        ("histroy", "`/mentor history`"),
        # A misspelt command word followed by words that read in full as its arguments.
        ("schedul 8:30", "`/mentor schedule 8:30`"),
        ("Shedule 7:30 mon,wed Europe/Berlin", "`/mentor schedule 7:30 mon,wed Europe/Berlin`"),
        ("snoze 2", "`/mentor snooze 2`"),
        ("awaay 2w", "`/mentor away 2w`"),
    ],
)
def test_near_misses_get_did_you_mean_and_are_never_answers(typed: str, suggested: str) -> None:
    result = reading(typed)
    assert result.verdict is Verdict.SUGGEST
    assert "Did you mean" in (result.message or "") and suggested in (result.message or "")


def test_an_unknown_slash_word_is_not_kept_as_an_answer() -> None:
    result = reading("/shrug")
    assert result.verdict is Verdict.SUGGEST
    assert "didn't keep it as an answer" in (result.message or "")


@pytest.mark.parametrize(
    "text",
    [
        "I prefer guiding others",
        "Mentoring others is what I enjoy",  # starts with a word close to "mentor"
        "leading",  # one word, but no command is close enough
        "yes",  # a bare yes is an answer unless the bot asked a yes/no question
        "Both",
        # Command words leading words that are not that command's arguments.
        "schedule weekly 1:1s with each report",
        "schedule time for the hard conversations",
        "stop micromanaging",
        "next time I will listen first",
        "snooze less, plan more",
        "schedule 2 meetings a week",
        "schedule 1:1s weekly",
        "remind me to write it down",
        "assign clear owners to every pipeline",
        "answer the call when on duty",
        "skip the meetings that do not need me",
        "move fast and fix things",
        "forget me not",
        "I'm back to writing design docs",
        "settings matter less than habits",
        "digest the feedback before reacting",
        "later today I will ask for feedback",
        "away from the keyboard more often",
        "start with the why",
        # Close to a command word, but the other words are not its arguments.
        "scheduled a retro for friday",
        "aways ask why",
    ],
)
def test_ordinary_text_is_text(text: str) -> None:
    assert reading(text).verdict is Verdict.TEXT


def test_empty_invisible_and_oversized_messages() -> None:
    assert reading("   ").verdict is Verdict.EMPTY
    assert reading("\u200b\u200c\u2060\ufeff").verdict is Verdict.INVISIBLE
    assert reading("x" * (LIMIT + 1)).verdict is Verdict.TOO_LONG
    long_command = reading("/mentor assign " + "<@U1> " * 2000)
    assert long_command.verdict is Verdict.TOO_LONG
    assert "commands are short" in (long_command.message or "")


def test_small_talk() -> None:
    for text in (
        "thanks!",
        "ok thanks, please ping me when it's out!",
        "👍",
        "Hi there",
        "ok",
        "sorry was busy.",
        "Sorry, I was away",
    ):
        assert is_small_talk(text), text
    for text in ("I owned the outage review", "Okay so the hard part is saying no to people"):
        assert not is_small_talk(text), text


# ---------------------------------------------------------------------- routing


def q(id: int, hours_ago: float, kind: str = "lesson", superseded: bool = False) -> OpenQuestion:
    return OpenQuestion(id, kind, NOW - timedelta(hours=hours_ago), superseded)


def test_the_newest_open_question_wins_by_when_it_was_asked() -> None:
    # Today's lesson question (asked 3 h ago) beats an older practice check-in, even
    # when the check-in's row id is higher.
    situation = Situation(NOW, [q(9, 26, "practice"), q(5, 3)])
    assert route(situation, "It is hard to say no to stakeholders") == Route(RouteKind.ANSWER, 5)
    # A check-in asked after today's lesson is the newest.
    situation = Situation(NOW, [q(5, 3), q(9, 1, "practice")])
    assert route(situation, "I owned the outage review") == Route(RouteKind.ANSWER, 9)


def test_an_explicit_target_always_wins() -> None:
    situation = Situation(NOW, [q(5, 1), q(3, 30)], target=Target(3))
    assert route(situation, "this is about the old one") == Route(RouteKind.ANSWER, 3)
    answered = Situation(NOW, [q(5, 1)], target=Target(3, answer_id=7))
    assert route(answered, "more on that") == Route(RouteKind.ADDITION, 3, 7)


def test_a_gone_target_asks_about_the_open_question() -> None:
    situation = Situation(NOW, [q(5, 1)], target=Target(None))
    assert route(situation, "my answer") == Route(RouteKind.ASK, 5, reason="gone")
    assert route(Situation(NOW, [], target=Target(None)), "x").kind is RouteKind.NOTE


def test_a_second_message_within_minutes_is_an_addition() -> None:
    situation = Situation(
        NOW, [q(3, 30)], last_answer_id=4, last_answer_at=NOW - timedelta(minutes=4)
    )
    assert route(situation, "and another thought") == Route(RouteKind.ADDITION, reply_id=4)
    later = Situation(NOW, [q(3, 3)], last_answer_id=4, last_answer_at=NOW - timedelta(minutes=6))
    assert route(later, "a new thought") == Route(RouteKind.ANSWER, 3)
    # A question asked after the answer is what the learner is answering now.
    fresh = Situation(
        NOW,
        [OpenQuestion(8, "lesson", NOW - timedelta(minutes=1))],
        last_answer_id=4,
        last_answer_at=NOW - timedelta(minutes=2),
    )
    assert route(fresh, "answer to the new one") == Route(RouteKind.ANSWER, 8)


def test_late_or_small_talk_asks_instead_of_filing() -> None:
    # Six days after the lesson ended.
    old = Situation(NOW, [q(3, 24 * 6)])
    assert route(old, "A real thought about ownership") == Route(RouteKind.ASK, 3, reason="late")
    # After the next lesson-day was delivered.
    replaced = Situation(NOW, [q(3, 5, superseded=True)])
    assert route(replaced, "about that one").reason == "late"
    fresh = Situation(NOW, [q(3, 1)])
    assert route(fresh, "thanks!") == Route(RouteKind.ASK, 3, reason="small-talk")


def test_the_answer_window_is_configurable() -> None:
    situation = Situation(NOW, [q(3, 30)], answer_window=timedelta(hours=24))
    assert route(situation, "my answer").kind is RouteKind.ASK
    situation = Situation(NOW, [q(3, 30)], answer_window=timedelta(hours=72))
    assert route(situation, "my answer").kind is RouteKind.ANSWER


def test_no_open_question_makes_a_note() -> None:
    assert route(Situation(NOW, []), "just thinking out loud") == Route(RouteKind.NOTE)


def test_yes_and_no_answer_a_pending_question() -> None:
    pending = Situation(NOW, [q(3, 1)], pending_ask=True)
    assert route(pending, "Yes!") == Route(RouteKind.CONFIRM, command="yes")
    assert route(pending, "no") == Route(RouteKind.CONFIRM, command="note")
    assert route(Situation(NOW, [q(3, 1)]), "yes").kind is RouteKind.ANSWER


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("What do you mean by ownership exactly?", True),
        ("how do I get my team to write things down?", True),
        ("Is this the same as being a manager? ", True),
        ("I like guiding others, but is that leadership?", False),  # an answer first
        ("Guiding others. Why? Because it scales.", False),
        ("Guiding others, definitely.", False),
        ("Why " + "really " * 60 + "?", False),  # a long message is an answer
    ],
)
def test_a_short_question_to_the_bot_is_told_apart(text: str, asks: bool) -> None:
    assert reads_as_question(text) is asks


@pytest.mark.parametrize(
    ("text", "busy"),
    [
        ("honestly too busy today", True),
        ("Too busy, sorry", True),
        ("no time right now", True),
        ("Swamped this week!", True),
        ("too busy today, will answer tomorrow", True),
        ("busy people need leaders who protect focus", False),  # the whole of it must be
        ("no time to reflect is my biggest problem", False),
    ],
)
def test_putting_a_question_off_is_asked_about_not_filed(text: str, busy: bool) -> None:
    assert puts_off(text) is busy
    expected = Route(RouteKind.ASK, 3, reason="busy") if busy else Route(RouteKind.ANSWER, 3)
    assert route(Situation(NOW, [q(3, 1)]), text) == expected


def test_yes_or_not_yet_after_the_go_on_offer_answers_it() -> None:
    offered = NOW - timedelta(minutes=1)
    asked = Situation(NOW, [], last_answer_id=4, last_answer_at=offered, offered_at=offered)
    assert route(asked, "yes please") == Route(RouteKind.CONFIRM, command="continue")
    assert route(asked, "Not yet.") == Route(RouteKind.CONFIRM, command="not-yet")
    # A question asked after the offer is what "yes" answers; the offer is not newest.
    later = Situation(NOW, [q(7, 0.01)], offered_at=NOW - timedelta(hours=1))
    assert route(later, "yes") == Route(RouteKind.ANSWER, 7)
    # Small talk right after an answer is not added to it.
    thanks = Situation(NOW, [], last_answer_id=4, last_answer_at=NOW - timedelta(minutes=1))
    assert route(thanks, "thanks!") == Route(RouteKind.NOTE)


def test_text_that_plainly_answers_an_older_current_question_goes_there() -> None:
    lesson = OpenQuestion(
        3,
        "lesson",
        NOW - timedelta(hours=3),
        topic=("What part of leadership feels difficult to you?"),
    )
    check_in = OpenQuestion(5, "practice", NOW - timedelta(hours=1), topic="Review designs early")
    both = Situation(NOW, [lesson, check_in])
    said = "Giving difficult feedback is the hardest part of leadership for me."
    assert route(both, said) == Route(RouteKind.ANSWER, 3)
    # Nothing plain to go by: the newest question asked.
    assert route(both, "I tried it with my team.") == Route(RouteKind.ANSWER, 5)
    assert route(both, "We review every design early now.") == Route(RouteKind.ANSWER, 5)


def test_what_is_this_bot_is_never_an_answer() -> None:
    situation = Situation(NOW, [q(3, 1)])
    for text in ("what is this bot?", "Who are you?", "hi, what is this?", "what do you do?"):
        assert route(situation, text) == Route(RouteKind.NOTE, reason="about-bot"), text
    assert route(situation, "what is this pipeline doing wrong") == Route(RouteKind.ANSWER, 3)
