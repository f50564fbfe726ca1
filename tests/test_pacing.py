"""Pacing: a lesson spreads over max(1, questions) lesson-days, snippets shared evenly."""

from __future__ import annotations

from pathlib import Path

from bot.course import parse_lesson
from tests.test_course_parser import SEED


def test_seed_lesson_days_follow_the_rule() -> None:
    lesson, _ = parse_lesson(SEED)
    assert lesson is not None
    days = lesson.days()
    assert [len(d.snippets) for d in days] == [4, 3, 3]
    assert [s.title for s in days[0].snippets][
        -1
    ] == "Responsibilities of a Senior / Lead Data Engineer"
    assert days[0].question == "Do you prefer individual work or guiding others?"
    assert [s.title for s in days[2].snippets] == [
        "How This Role Appears in Interviews",
        "How This Course Prepares You for Senior / Lead Role",
        "Key Takeaway",
    ]
    assert days[2].question == "What part of leadership feels difficult to you?"


def test_snippets_per_day_adds_days_without_losing_snippets() -> None:
    lesson, _ = parse_lesson(SEED)
    assert lesson is not None
    days = lesson.days(snippets_per_day=2)
    assert len(days) == 5
    assert all(len(d.snippets) <= 2 for d in days)
    assert sum(len(d.snippets) for d in days) == 10
    assert [d.question is not None for d in days] == [True, True, True, False, False]


def test_lesson_without_questions_is_one_day(tmp_path: Path) -> None:
    path = tmp_path / "l.md"
    path.write_text("# 1.1 T\n\n## A\na\n\n## B\nb\n", encoding="utf-8")
    lesson, _ = parse_lesson(path)
    assert lesson is not None
    assert [(len(d.snippets), d.question) for d in lesson.days()] == [(2, None)]


def test_more_questions_than_snippets(tmp_path: Path) -> None:
    path = tmp_path / "l.md"
    path.write_text(
        "# 1.1 T\n\n## A\na\n\n## Discussion Questions\n- one?\n- two?\n- three?\n",
        encoding="utf-8",
    )
    lesson, _ = parse_lesson(path)
    assert lesson is not None
    assert [(len(d.snippets), d.question) for d in lesson.days()] == [
        (1, "one?"),
        (0, "two?"),
        (0, "three?"),
    ]
