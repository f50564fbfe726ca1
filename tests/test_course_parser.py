"""The lesson format, parsed from the real seed lesson and from deliberately bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.course import load_catalog, load_course, parse_lesson
from tests.conftest import REPO

SEED = REPO / "content" / "data-engineering" / "0.2.2-senior-lead-data-engineer.md"


def test_seed_lesson_parses_into_snippets_questions_practices_and_next() -> None:
    lesson, problems = parse_lesson(SEED)
    assert lesson is not None
    assert not [p for p in problems if p.severity == "error"]
    assert (lesson.id, lesson.title) == ("0.2.2", "Senior / Lead Data Engineer")
    assert len(lesson.snippets) == 10
    assert lesson.snippets[0].title == "Concept Explanation"  # "1." numbering stripped
    assert lesson.snippets[-1].title == "Key Takeaway"
    assert all("---" not in s.body.splitlines() for s in lesson.snippets)
    assert lesson.questions == (
        "Do you prefer individual work or guiding others?",
        "Have you ever taken ownership of a system?",
        "What part of leadership feels difficult to you?",
    )
    assert (lesson.next_id, lesson.next_title) == ("0.2.3", "Principal Data Engineer (GCP)")
    assert "Document decisions" in lesson.practices
    assert "Ownership over blame" in lesson.practices
    assert len(lesson.practices) == 8


def test_crlf_bom_and_unicode_parse_the_same(tmp_path: Path) -> None:
    raw = SEED.read_bytes()
    variant = tmp_path / "crlf.md"
    variant.write_bytes(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n"))
    original, _ = parse_lesson(SEED)
    copy, problems = parse_lesson(variant)
    assert copy is not None and original is not None
    assert copy.snippets == original.snippets
    assert copy.questions == original.questions
    assert not [p for p in problems if p.severity == "error"]


def test_front_matter_overrides_heading_next_and_practices(tmp_path: Path) -> None:
    path = tmp_path / "l.md"
    path.write_text(
        "---\nid: 1.0.1\ntitle: Écouter — listening\nnext: 1.0.2 Speaking up\n"
        "practices:\n  - Ask before telling\n---\n"
        "# Anything\n\n## Why\nBecause 你好 and שלום.\n\n## Discussion Questions\n- Who listens?\n",
        encoding="utf-8",
    )
    lesson, problems = parse_lesson(path)
    assert lesson is not None, problems
    assert (lesson.id, lesson.title) == ("1.0.1", "Écouter — listening")
    assert (lesson.next_id, lesson.next_title) == ("1.0.2", "Speaking up")
    assert lesson.practices == ("Ask before telling",)
    assert "שלום" in lesson.snippets[0].body


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _lesson(lesson_id: str, questions: str = "- Why?\n") -> str:
    heading = f"# {lesson_id} Title {lesson_id}"
    return f"{heading}\n\n## Intro\nText.\n\n## Discussion Questions\n{questions}"


def test_lessons_are_ordered_numerically(tmp_path: Path) -> None:
    course = tmp_path / "c"
    for lesson_id in ("0.2.10", "0.2.9", "0.2.1"):
        _write(course, f"{lesson_id}.md", _lesson(lesson_id))
    loaded, problems = load_course(course)
    assert loaded is not None, problems
    assert [lesson.id for lesson in loaded.lessons] == ["0.2.1", "0.2.9", "0.2.10"]


def test_course_yaml_sets_title_and_order(tmp_path: Path) -> None:
    course = tmp_path / "c"
    _write(course, "a.md", _lesson("1.1"))
    _write(course, "b.md", _lesson("1.2"))
    _write(course, "course.yaml", "title: Leading People\norder: ['1.2', '1.1']\n")
    loaded, _ = load_course(course)
    assert loaded is not None
    assert loaded.title == "Leading People"
    assert [lesson.id for lesson in loaded.lessons] == ["1.2", "1.1"]


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        ("Just text, no heading\n\n## A\nx\n", 1, "no lesson heading"),
        ("# Leadership\n\n## A\nx\n", 1, "must start with a lesson id"),
        ("# 1.0 T\n\n## A\ntext\n\n## Discussion Questions\n\n---\n", 6, "has no questions"),
    ],
)
def test_malformed_lessons_report_file_and_line(
    tmp_path: Path, content: str, line: int, fragment: str
) -> None:
    path = _write(tmp_path / "c", "bad.md", content)
    catalog, problems = load_catalog(tmp_path / "c")
    assert catalog is None
    errors = [p for p in problems if p.severity == "error"]
    assert errors and errors[0].path == path and errors[0].line == line
    assert fragment in str(errors[0])
    assert str(errors[0]).startswith(f"{path}:{line}: ")


def test_unreadable_bytes_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c" / "bad.md"
    path.parent.mkdir()
    path.write_bytes(b"# 1.0 Title\n\n## A\nfine\n\xff\xfe broken\n")
    _, problems = load_catalog(tmp_path / "c")
    assert [(p.line, "UTF-8" in p.message) for p in problems] == [(5, True)]


def test_duplicate_lesson_id_is_an_error(tmp_path: Path) -> None:
    course = tmp_path / "c"
    _write(course, "a.md", _lesson("2.1"))
    _write(course, "b.md", _lesson("2.1"))
    catalog, problems = load_catalog(course)
    assert catalog is None
    assert any("duplicate lesson id 2.1" in p.message and "a.md" in p.message for p in problems)


def test_missing_next_lesson_is_only_a_warning(tmp_path: Path) -> None:
    course = tmp_path / "c"
    _write(course, "a.md", _lesson("3.1", "- Why?\n- Should we continue with `3.2 Later`?\n"))
    catalog, problems = load_catalog(course)
    assert catalog is not None
    assert [p.severity for p in problems] == ["warning"]
    assert "3.2" in problems[0].message


def test_bundled_content_is_valid() -> None:
    catalog, problems = load_catalog(REPO / "content")
    assert catalog is not None
    assert not [p for p in problems if p.severity == "error"]
    assert catalog.default.lessons[0].id == "0.2.2"


def test_missing_next_lesson_warning_points_at_the_bullet(tmp_path: Path) -> None:
    course = tmp_path / "c"
    path = _write(
        course, "a.md", _lesson("3.1", "- Why?\n- Should we continue with `3.2 Later`?\n")
    )
    _, problems = load_catalog(course)
    assert [str(p) for p in problems] == [
        f"{path}:8: warning: next lesson 3.2 is not in this course yet "
        "(learners will be told it is coming)"
    ]
    meta = _write(course, "b.md", "---\ntitle: B\nnext: 9.9 Far\n---\n" + _lesson("3.3"))
    _, problems = load_catalog(course)
    assert any(p.path == meta and p.line == 3 and "9.9" in p.message for p in problems)


def test_the_seed_lessons_next_warning_is_on_its_last_bullet() -> None:
    _, problems = load_catalog(SEED.parent)
    [warning] = problems
    lines = SEED.read_text(encoding="utf-8").splitlines()
    assert "Should we continue with" in lines[warning.line - 1]


def test_front_matter_without_its_closing_rule_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "c", "a.md", "---\ntitle: Forgot\n" + _lesson("4.1") + "\n---\n")
    catalog, problems = load_catalog(tmp_path / "c")
    assert catalog is None
    errors = [p for p in problems if p.severity == "error"]
    assert [str(p) for p in errors] == [
        f"{path}:1: front matter opened with '---' on line 1 is never closed: "
        "add a '---' line after it, before the lesson heading"
    ]


def test_yaml_errors_name_the_line_in_the_file(tmp_path: Path) -> None:
    course = tmp_path / "c"
    lesson = _write(course, "a.md", "---\nid: 4.2\ntitle: [oops\nnext: 4.3\n---\n" + _lesson("4.2"))
    _, problems = load_catalog(course)
    [error] = [p for p in problems if p.severity == "error"]
    assert (error.path, error.line) == (lesson, 4)
    assert error.message == (
        "front matter is not valid YAML: expected ',' or ']', but got ':' (column 5), "
        "while parsing a flow sequence that starts on line 3"
    )
    assert "\n" not in str(error) and "<unicode string>" not in str(error)

    (course / "a.md").unlink()
    _write(course, "a.md", _lesson("4.2"))
    meta = _write(course, "course.yaml", "title: T\norder:\n  - 4.2\n  - [4.3\n")
    _, problems = load_catalog(course)
    [error] = problems
    assert (error.path, error.line) == (meta, 5)
    assert "course.yaml is not valid YAML:" in error.message and "starts on line 4" in error.message


def test_a_lesson_over_200_kb_gets_a_warning(tmp_path: Path) -> None:
    filler = "A paragraph of reading. " * 9000  # about 216 KB
    path = _write(tmp_path / "c", "big.md", _lesson("5.1").replace("Text.", filler))
    catalog, problems = load_catalog(tmp_path / "c")
    assert catalog is not None
    assert [str(p) for p in problems] == [
        f"{path}:1: warning: the lesson is 210 KB, over 200 KB: that is more than learners "
        "read in a few lesson-days; split it into lessons"
    ]


def test_a_single_lesson_file_is_checked_with_its_course_around_it(tmp_path: Path) -> None:
    course = tmp_path / "c"
    first = _write(course, "a.md", _lesson("6.1", "- Why?\n- Should we continue with `6.2 B`?\n"))
    _write(course, "b.md", "not a lesson at all\n")
    catalog, problems = load_catalog(first)
    assert catalog is not None
    assert [lesson.id for lesson in catalog.default.lessons] == ["6.1"]
    assert [p.message for p in problems] == [  # b.md's problem is not this file's
        "next lesson 6.2 is not in this course yet (learners will be told it is coming)"
    ]
    _write(course, "b.md", _lesson("6.2"))
    assert load_catalog(first)[1] == []  # the next lesson exists beside it
    notes = _write(course, "notes.yaml", "x: 1\n")
    assert "not a lesson file" in load_catalog(notes)[1][0].message
