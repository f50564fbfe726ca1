"""Course content: the markdown lesson format, its parser and its validator.

A course is a folder of lesson files (optionally with a ``course.yaml``); a content
directory is a folder of courses. Parsing never raises on bad content: it collects
``Problem`` records with file and line so an operator sees every mistake at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LESSON_SUFFIXES = (".md", ".markdown", ".txt")
MAX_LESSON_BYTES = 200 * 1024  # beyond this a lesson is more than a few days of reading
QUESTIONS_TITLE = "discussion questions"
PRACTICES_MARKER = "best practices"

_LESSON_ID = re.compile(r"^\d+(?:\.\d+)*$")
_SECTION_NUMBER = re.compile(r"^\d+(?:\.\d+)*\.?\s+")
_BULLET = re.compile(r"^(?P<indent>\s*)[-*+]\s+(?P<text>.*)$")
_NEXT_POINTER = re.compile(
    r"^should we continue with\s+[`\"“']?(?P<id>\d+(?:\.\d+)*)\s+(?P<title>.+?)[`\"”']?\s*\??$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,})\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
# Lines that can only be markdown, never front matter: a lesson heading or a section.
_MARKDOWN_START = re.compile(r"^(?:#\s+\d+(?:\.\d+)*\s|##\s)")


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or doubtful) with a content file, pinned to a line."""

    path: Path
    line: int
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else "warning: "
        return f"{self.path}:{self.line}: {prefix}{self.message}"


class ContentError(Exception):
    """Raised when a course cannot be used; carries every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = [p for p in problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid content")


@dataclass(frozen=True)
class Snippet:
    """One `##` section of a lesson: a short piece of reading."""

    title: str
    body: str


@dataclass(frozen=True)
class LessonDay:
    """What one lesson-day delivers: a share of the snippets, then (maybe) a question."""

    number: int  # 1-based
    snippets: tuple[Snippet, ...]
    question: str | None


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    snippets: tuple[Snippet, ...]
    questions: tuple[str, ...]
    practices: tuple[str, ...]
    next_id: str | None
    next_title: str | None
    path: Path
    next_line: int = 1  # where the next lesson is named, for warnings about it
    # Practices a question is pinned to (``- practice: NAME`` under it), by question.
    pinned: tuple[tuple[str, ...], ...] = ()
    # The split into lesson-days, per ``snippets_per_day``: a lesson never changes once
    # parsed, and the planner asks for a day of it for every due learner.
    _split: dict[int | None, tuple[LessonDay, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def pins_for(self, question: str | None) -> tuple[str, ...]:
        """The practices pinned to ``question`` (empty when none are)."""
        if question in self.questions:
            index = self.questions.index(question)
            if index < len(self.pinned):
                return self.pinned[index]
        return ()

    @property
    def name(self) -> str:
        return f"{self.id} {self.title}"

    def day_count(self, snippets_per_day: int | None = None) -> int:
        days = max(1, len(self.questions))
        if snippets_per_day:
            days = max(days, -(-len(self.snippets) // snippets_per_day))
        return days

    def days(self, snippets_per_day: int | None = None) -> tuple[LessonDay, ...]:
        """Split the lesson into lesson-days (worked out once per ``snippets_per_day``).

        Each day gets an even share of the snippets in order (earlier days take the
        remainder) followed by that day's question. ``snippets_per_day`` caps a day's
        share by adding days; the extra days come after the question days.
        """
        split = self._split.get(snippets_per_day)
        if split is None:
            split = self._split[snippets_per_day] = tuple(self._days(snippets_per_day))
        return split

    def _days(self, snippets_per_day: int | None) -> list[LessonDay]:
        count = self.day_count(snippets_per_day)
        base, extra = divmod(len(self.snippets), count)
        out: list[LessonDay] = []
        start = 0
        for index in range(count):
            size = base + (1 if index < extra else 0)
            question = self.questions[index] if index < len(self.questions) else None
            out.append(LessonDay(index + 1, self.snippets[start : start + size], question))
            start += size
        return out

    def day(self, number: int, snippets_per_day: int | None = None) -> LessonDay:
        return self.days(snippets_per_day)[number - 1]


@dataclass(frozen=True)
class Course:
    id: str
    title: str
    lessons: tuple[Lesson, ...]
    path: Path
    warnings: tuple[Problem, ...] = ()

    def lesson(self, lesson_id: str) -> Lesson | None:
        return next((lesson for lesson in self.lessons if lesson.id == lesson_id), None)

    def first_lesson(self) -> Lesson:
        return self.lessons[0]

    def following(self, lesson: Lesson) -> tuple[str | None, str | None, Lesson | None]:
        """The lesson after ``lesson``: (id, title, Lesson if it is in the content yet)."""
        if lesson.next_id:
            return lesson.next_id, lesson.next_title, self.lesson(lesson.next_id)
        index = self.lessons.index(lesson)
        if index + 1 < len(self.lessons):
            nxt = self.lessons[index + 1]
            return nxt.id, nxt.title, nxt
        return None, None, None


@dataclass
class Catalog:
    """Every course the bot can teach, keyed by course id, in a stable order."""

    courses: dict[str, Course] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)

    def get(self, course_id: str) -> Course | None:
        wanted = course_id.strip().lower()
        for course in self.courses.values():
            if course.id.lower() == wanted or course.title.lower() == wanted:
                return course
        return None

    @property
    def default(self) -> Course:
        return next(iter(self.courses.values()))


def lesson_sort_key(lesson_id: str) -> tuple[int, ...]:
    """Compare lesson ids numerically, so 0.2.10 follows 0.2.9."""
    return tuple(int(part) for part in lesson_id.split("."))


# --------------------------------------------------------------------------- parsing


def _decode(path: Path, raw: bytes, problems: list[Problem]) -> str | None:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.append(
            Problem(path, line, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save as UTF-8")
        )
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def yaml_problem(path: Path, exc: Exception, first_line: int, what: str) -> Problem:
    """A YAML error as one line, with the line (and column) in the file itself:
    PyYAML's own message counts lines from the start of the YAML it was given, which
    for front matter is not where the operator's editor is."""
    mark = getattr(exc, "problem_mark", None)
    reason = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    if mark is not None:
        reason += f" (column {mark.column + 1})"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        reason += f", {context} that starts on line {first_line + context_mark.line}"
    line = first_line + mark.line if mark is not None else first_line
    return Problem(path, line, f"{what} is not valid YAML: {reason}")


def _split_front_matter(
    path: Path, lines: list[str], problems: list[Problem]
) -> tuple[dict[str, object], int]:
    """Return (front matter mapping, index of the first body line)."""
    if not lines or lines[0].strip() != "---":
        return {}, 0
    for end in range(1, len(lines)):
        if _MARKDOWN_START.match(lines[end]):
            break  # the lesson began before the front matter ended
        if lines[end].strip() == "---":
            try:
                data = yaml.safe_load("\n".join(lines[1:end])) or {}
            except yaml.YAMLError as exc:
                problems.append(yaml_problem(path, exc, 2, "front matter"))
                return {}, end + 1
            if not isinstance(data, dict):
                problems.append(Problem(path, 1, "front matter must be a YAML mapping"))
                return {}, end + 1
            return data, end + 1
    problems.append(
        Problem(
            path,
            1,
            "front matter opened with '---' on line 1 is never closed: "
            "add a '---' line after it, before the lesson heading",
        )
    )
    return {}, 0


def _bullets(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Top-level bullet items (line number, text), with continuation lines folded in."""
    items: list[tuple[int, str]] = []
    base_indent: int | None = None
    for number, line in lines:
        match = _BULLET.match(line)
        if match:
            indent = len(match.group("indent").expandtabs(4))
            if base_indent is None:
                base_indent = indent
            if indent <= base_indent:
                items.append((number, match.group("text").strip()))
                continue
        if items and line.strip() and line.startswith((" ", "\t")):
            first, text = items[-1]
            items[-1] = (first, f"{text} {line.strip()}")
    return items


def _clean_body(lines: list[tuple[int, str]]) -> str:
    kept = [line.rstrip() for _, line in lines if not _RULE.match(line)]
    return "\n".join(kept).strip("\n").strip()


def parse_lesson(path: Path, raw: bytes | None = None) -> tuple[Lesson | None, list[Problem]]:
    """Parse one lesson file; returns the lesson (or None) and every problem found."""
    problems: list[Problem] = []
    if raw is None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            return None, [Problem(path, 1, f"cannot read file: {exc.strerror or exc}")]
    if len(raw) > MAX_LESSON_BYTES:
        problems.append(
            Problem(
                path,
                1,
                f"the lesson is {len(raw) // 1024} KB, over {MAX_LESSON_BYTES // 1024} KB: "
                "that is more than learners read in a few lesson-days; split it into lessons",
                "warning",
            )
        )
    text = _decode(path, raw, problems)
    if text is None:
        return None, problems
    lines = text.split("\n")
    meta, start = _split_front_matter(path, lines, problems)

    heading: tuple[int, str] | None = None
    sections: list[tuple[int, str, list[tuple[int, str]]]] = []
    preamble: list[tuple[int, str]] = []
    in_fence = False
    for index in range(start, len(lines)):
        number, line = index + 1, lines[index]
        if _FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and line.startswith("# ") and heading is None:
            heading = (number, line[2:].strip())
            continue
        if not in_fence and line.startswith("## "):
            title = _SECTION_NUMBER.sub("", line[3:].strip()).strip()
            sections.append((number, title, []))
            continue
        if sections:
            sections[-1][2].append((number, line))
        elif heading is not None:
            preamble.append((number, line))

    lesson_id = str(meta["id"]).strip() if meta.get("id") is not None else None
    title = str(meta["title"]).strip() if meta.get("title") else None
    if heading is None:
        if not (lesson_id and title):
            problems.append(
                Problem(path, start + 1, "no lesson heading: start with '# <id> <title>'")
            )
            return None, problems
    else:
        head_line, head_text = heading
        first, _, rest = head_text.partition(" ")
        if _LESSON_ID.match(first):
            lesson_id = lesson_id or first
            title = title or rest.strip()
        elif lesson_id is None:
            problems.append(
                Problem(
                    path,
                    head_line,
                    f"heading '# {head_text}' must start with a lesson id, "
                    f"e.g. '# 0.2.2 {head_text}'",
                )
            )
            return None, problems
        else:
            title = title or head_text
        if not title:
            problems.append(Problem(path, head_line, "lesson heading has an id but no title"))
    if lesson_id is None or not _LESSON_ID.match(lesson_id):
        problems.append(Problem(path, 1, f"lesson id {lesson_id!r} must look like 0.2.2"))
        return None, problems

    snippets: list[Snippet] = []
    intro = _clean_body(preamble)
    if intro:
        snippets.append(Snippet(title or lesson_id, intro))
    questions: list[str] = []
    pins: list[list[tuple[int, str]]] = []
    practices: list[str] = []
    next_id: str | None = None
    next_title: str | None = None
    next_line = 1
    saw_questions = False
    for number, section_title, body in sections:
        if section_title.lower() == QUESTIONS_TITLE:
            saw_questions = True
            body, pin_lines = _split_pins(body)
            for bullet_line, item in _bullets(body):
                pointer = _NEXT_POINTER.match(item.strip("*_ "))
                if pointer:
                    next_line = bullet_line
                    next_id = pointer.group("id")
                    next_title = pointer.group("title").strip().strip("`\"“”'")
                else:
                    questions.append(item)
                    pins.append(pin_lines.get(bullet_line, []))
            if not questions:
                problems.append(
                    Problem(
                        path,
                        number,
                        "'## Discussion Questions' has no questions: add '- <question>?' bullets",
                    )
                )
            continue
        if not section_title:
            problems.append(Problem(path, number, "section heading '##' has no title"))
            continue
        content = _clean_body(body)
        if not content:
            problems.append(Problem(path, number, f"section '{section_title}' is empty", "warning"))
            continue
        snippets.append(Snippet(section_title, content))
        if PRACTICES_MARKER in section_title.lower():
            practices.extend(item for _, item in _bullets(body))

    if meta.get("practices") is not None:
        value = meta["practices"]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            practices = [v.strip() for v in value if v.strip()]
        else:
            problems.append(Problem(path, 1, "front matter 'practices' must be a list of text"))
    if meta.get("next") is not None:
        nxt = str(meta["next"]).strip()
        next_id, _, rest = nxt.partition(" ")
        next_title = rest.strip() or next_title
        next_line = next(
            (n + 1 for n in range(1, start) if lines[n].startswith("next:")), next_line
        )
    problems.extend(_check_pins(path, pins, practices))
    if not snippets:
        problems.append(Problem(path, (heading or (1,))[0], "lesson has no '## ' sections"))
    if not saw_questions:
        problems.append(
            Problem(
                path,
                (heading or (1,))[0],
                "no '## Discussion Questions' section: learners will get no question",
                "warning",
            )
        )
    if any(p.severity == "error" for p in problems):
        return None, problems
    lesson = Lesson(
        id=lesson_id,
        title=title or lesson_id,
        snippets=tuple(snippets),
        questions=tuple(questions),
        practices=tuple(practices),
        next_id=next_id,
        next_title=next_title,
        path=path,
        next_line=next_line,
        pinned=tuple(tuple(_canonical(name, practices) for _, name in found) for found in pins),
    )
    return lesson, problems


_PIN = re.compile(r"^\s+[-*+]\s+practices?:\s*(?P<names>.+?)\s*$", re.IGNORECASE)


def _split_pins(
    lines: list[tuple[int, str]],
) -> tuple[list[tuple[int, str]], dict[int, list[tuple[int, str]]]]:
    """Take ``- practice: NAME`` sub-bullets out of the questions list: they pin
    practices to the question bullet above them (keyed by that bullet's line)."""
    kept: list[tuple[int, str]] = []
    pins: dict[int, list[tuple[int, str]]] = {}
    question_line: int | None = None
    for number, line in lines:
        match = _PIN.match(line)
        if match and question_line is not None:
            for name in match.group("names").split(";"):
                if name.strip():
                    pins.setdefault(question_line, []).append((number, name.strip()))
            continue
        if _BULLET.match(line) and not line[:1].isspace():
            question_line = number
        kept.append((number, line))
    return kept, pins


def _canonical(name: str, practices: list[str]) -> str:
    """A pinned name as the lesson spells the practice."""
    from bot.practices import normalise

    return next((p for p in practices if normalise(p) == normalise(name)), name)


def _check_pins(
    path: Path, pins: list[list[tuple[int, str]]], practices: list[str]
) -> list[Problem]:
    """Every pinned practice must be one of the lesson's practices."""
    from bot.practices import normalise

    known = {normalise(p): p for p in practices}
    problems = []
    for found in pins:
        for line, name in found:
            if normalise(name) not in known:
                listing = "; ".join(practices) or "none (no '## Best Practices' section)"
                problems.append(
                    Problem(
                        path,
                        line,
                        f"pinned practice {name!r} is not one of this lesson's practices: "
                        + listing,
                    )
                )
    return problems


def _lesson_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in LESSON_SUFFIXES and not p.name.startswith(".")
    )


def _course_meta(folder: Path) -> tuple[dict[str, object], list[Problem]]:
    """The course's ``course.yaml`` (empty if there is none) and its problems."""
    problems: list[Problem] = []
    meta: dict[str, object] = {}
    meta_path = folder / "course.yaml"
    if meta_path.exists():
        try:
            loaded = yaml.safe_load(meta_path.read_text(encoding="utf-8-sig"))
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                problems.append(Problem(meta_path, 1, "course.yaml must be a YAML mapping"))
            else:
                meta = loaded
        except yaml.YAMLError as exc:
            problems.append(yaml_problem(meta_path, exc, 1, "course.yaml"))
        except UnicodeDecodeError:
            problems.append(Problem(meta_path, 1, "course.yaml is not UTF-8: save it as UTF-8"))
    return meta, problems


def load_course(folder: Path, only: Path | None = None) -> tuple[Course | None, list[Problem]]:
    """Load one course folder; returns the course (None if unusable) and all problems.

    With ``only`` (one lesson file in the folder), the course holds just that lesson
    and only its problems are reported; the other lessons are still read, so a next
    lesson that exists beside it is not reported missing."""
    if only is not None:
        return _load_one_lesson(folder, only)
    meta, problems = _course_meta(folder)
    meta_path = folder / "course.yaml"

    lessons: list[Lesson] = []
    seen: dict[str, Lesson] = {}
    for path in _lesson_files(folder):
        lesson, found = parse_lesson(path)
        problems.extend(found)
        if lesson is None:
            continue
        if lesson.id in seen:
            problems.append(
                Problem(
                    path,
                    1,
                    f"duplicate lesson id {lesson.id}: already used by {seen[lesson.id].path.name}",
                )
            )
            continue
        seen[lesson.id] = lesson
        lessons.append(lesson)

    order = meta.get("order")
    if order is not None:
        if not isinstance(order, list):
            problems.append(Problem(meta_path, 1, "'order' must be a list of lesson ids"))
            order = None
        else:
            wanted = [str(item).strip() for item in order]
            for item in wanted:
                if item not in seen:
                    problems.append(
                        Problem(meta_path, 1, f"'order' names lesson {item}, which has no file")
                    )
            rest = sorted(
                (lesson for lesson in lessons if lesson.id not in wanted),
                key=lambda lesson: lesson_sort_key(lesson.id),
            )
            lessons = [seen[item] for item in wanted if item in seen] + rest
    if order is None:
        lessons.sort(key=lambda lesson: lesson_sort_key(lesson.id))

    if not lessons and not any(p.severity == "error" for p in problems):
        problems.append(Problem(folder, 1, "course folder has no lesson files (*.md)"))

    ids = {lesson.id for lesson in lessons}
    for lesson in lessons:
        if lesson.next_id and lesson.next_id not in ids:
            problems.append(_missing_next(lesson))
    if any(p.severity == "error" for p in problems):
        return None, problems
    course = Course(
        id=str(meta.get("id") or folder.name),
        title=str(meta.get("title") or folder.name.replace("-", " ").title()),
        lessons=tuple(lessons),
        path=folder,
        warnings=tuple(p for p in problems if p.severity == "warning"),
    )
    return course, problems


def _load_one_lesson(folder: Path, path: Path) -> tuple[Course | None, list[Problem]]:
    lesson, problems = parse_lesson(path)
    if lesson is None or any(p.severity == "error" for p in problems):
        return None, problems
    meta, _ = _course_meta(folder)  # its problems are the course's, not this lesson's
    others = set()
    for sibling in _lesson_files(folder):
        if sibling.resolve() != path.resolve():
            parsed, _ = parse_lesson(sibling)
            if parsed is not None:
                others.add(parsed.id)
    if lesson.next_id and lesson.next_id not in others:
        problems.append(_missing_next(lesson))
    course = Course(
        id=str(meta.get("id") or folder.name),
        title=str(meta.get("title") or folder.name.replace("-", " ").title()),
        lessons=(lesson,),
        path=folder,
        warnings=tuple(p for p in problems if p.severity == "warning"),
    )
    return course, problems


def _missing_next(lesson: Lesson) -> Problem:
    return Problem(
        lesson.path,
        lesson.next_line,
        f"next lesson {lesson.next_id} is not in this course yet "
        "(learners will be told it is coming)",
        "warning",
    )


def is_course_folder(folder: Path) -> bool:
    return (folder / "course.yaml").exists() or bool(_lesson_files(folder))


def load_catalog(path: Path) -> tuple[Catalog | None, list[Problem]]:
    """Load a content directory (a folder of courses), a single course folder, or a
    single lesson file (to check one lesson while writing it)."""
    if not path.exists():
        return None, [Problem(path, 1, "content folder does not exist")]
    if path.is_file():
        if path.suffix.lower() not in LESSON_SUFFIXES:
            suffixes = ", ".join(f"*{s}" for s in LESSON_SUFFIXES)
            return None, [Problem(path, 1, f"not a lesson file ({suffixes}) or a folder")]
        course, problems = load_course(path.parent, only=path)
        if course is None:
            return None, problems
        return Catalog({course.id: course}, [p for p in problems if p.severity == "warning"]), (
            problems
        )
    if not path.is_dir():
        return None, [Problem(path, 1, "content path is not a folder")]
    folders = (
        [path]
        if is_course_folder(path)
        else sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    )
    problems: list[Problem] = []
    catalog = Catalog()
    for folder in folders:
        if not is_course_folder(folder):
            continue
        course, found = load_course(folder)
        problems.extend(found)
        if course is None:
            continue
        if course.id in catalog.courses:
            problems.append(Problem(folder, 1, f"duplicate course id {course.id}"))
            continue
        catalog.courses[course.id] = course
    if not catalog.courses and not any(p.severity == "error" for p in problems):
        problems.append(Problem(path, 1, "no courses found (a course is a folder of *.md lessons)"))
    catalog.warnings = [p for p in problems if p.severity == "warning"]
    if any(p.severity == "error" for p in problems):
        return None, problems
    return catalog, problems


def load_catalog_or_raise(path: Path) -> Catalog:
    catalog, problems = load_catalog(path)
    if catalog is None:
        raise ContentError(problems)
    return catalog
