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
