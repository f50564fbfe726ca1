"""The console adapter end to end, through a real ``mentorbot`` subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def mentorbot_command() -> list[str]:
    script = Path(sys.executable).parent / "mentorbot"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mentorbot"]


def run(
    args: list[str], tmp_path: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "DISCORD_", "MENTORBOT_"))
    }
    environment["MENTORBOT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'bot.db'}"
    environment.update(env)
    return subprocess.run(
        [*mentorbot_command(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
    )


def test_console_session_start_reply_restart_history_export(tmp_path: Path) -> None:
    first = run(
        ["run", "--adapter", "console"], tmp_path, "/mentor start\nI prefer guiding others\n"
    )
    assert first.returncode == 0, first.stderr
    assert first.stderr == "", "a normal piped session logs nothing, least of all a traceback"
    out = first.stdout
    assert "0.2.2 Senior / Lead Data Engineer — day 1 of 3" in out
    for title in ("Concept Explanation", "Responsibilities of a Senior / Lead Data Engineer"):
        assert f"## {title}" in out
    assert "Common Mistakes" not in out  # day 2 material
    assert "❓ Do you prefer individual work or guiding others?" in out
    assert out.index("❓") < out.index("Thanks, I kept your answer")
    last = out.rstrip().splitlines()[-2:]  # the acknowledgement is the last thing written
    assert "It is private to you." in last[0]
    assert last[1] == "[Share with my lead: /mentor share]"

    # A restart keeps the reply; no platform tokens means the console adapter by default.
    second = run(["run"], tmp_path, "/mentor history\n")
    assert second.returncode == 0, second.stderr
    assert "I prefer guiding others" in second.stdout

    jsonl = run(["export", "replies", "--format", "jsonl"], tmp_path)
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["reply"] == "I prefer guiding others"
    assert row["question"] == "Do you prefer individual work or guiding others?"
    assert (row["workspace"], row["lesson_id"]) == ("local", "0.2.2")
    assert row["replied_at"].endswith("+00:00")

    exported = run(["export", "replies", "--format", "csv", "--output", "r.csv"], tmp_path)
    assert exported.returncode == 0 and "wrote 1 reply" in exported.stderr
    with open(tmp_path / "r.csv", encoding="utf-8") as handle:
        assert next(csv.DictReader(handle))["reply"] == "I prefer guiding others"


def test_run_refuses_invalid_content_naming_file_and_line(tmp_path: Path) -> None:
    course = tmp_path / "content" / "broken"
    course.mkdir(parents=True)
    (course / "lesson.md").write_text("no heading here\n## A\ntext\n", encoding="utf-8")
    result = run(["run"], tmp_path, "", MENTORBOT_CONTENT_DIR=str(tmp_path / "content"))
    assert result.returncode == 2
    assert "refusing to start" in result.stderr
    assert f"{course / 'lesson.md'}:1: no lesson heading" in result.stderr


def test_content_check_and_show(tmp_path: Path) -> None:
    ok = run(["content", "check"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "1 lesson(s), 10 snippet(s), 3 question(s), 8 practice(s)" in ok.stdout
    assert "warning: next lesson 0.2.3" in ok.stdout

    broken = tmp_path / "broken"
    shutil.copytree(REPO / "content" / "data-engineering", broken)
    (broken / "dup.md").write_text("# 0.2.2 Again\n\n## A\nx\n", encoding="utf-8")
    (broken / "empty-q.md").write_text("# 0.3 T\n\n## A\nx\n## Discussion Questions\n", "utf-8")
    bad = run(["content", "check", str(broken)], tmp_path)
    assert bad.returncode == 1
    assert f"{broken / 'dup.md'}:1: duplicate lesson id 0.2.2" in bad.stderr
    assert f"{broken / 'empty-q.md'}:5: '## Discussion Questions' has no questions" in bad.stderr

    show = run(["content", "show", "0.2.2"], tmp_path)
    assert show.returncode == 0
    assert [line for line in show.stdout.splitlines() if " — day " in line] == [
        f"0.2.2 Senior / Lead Data Engineer — day {n} of 3" for n in (1, 2, 3)
    ]
    assert "continue with 0.2.3 Principal Data Engineer (GCP) (not in the content yet)?" in (
        show.stdout
    )
    assert run(["content", "show", "9.9"], tmp_path).returncode == 2


def test_unknown_command_in_the_console_gets_help(tmp_path: Path) -> None:
    result = run(["run", "--adapter", "console"], tmp_path, "/mentor dance\n")
    assert "Unknown command `dance`" in result.stdout and "/mentor start [COURSE]" in result.stdout


def test_console_render_has_no_trailing_garbage() -> None:
    from adapters.console import render
    from bot.messages import Action, OutgoingMessage

    text = render(
        OutgoingMessage(
            platform="console",
            workspace="local",
            user="u",
            text="Hi",
            actions=(Action("skip", "Skip", "skip"),),
        )
    )
    assert text == "Hi\n[Skip: /mentor skip]"
    assert io.StringIO(text).read() == text


def test_console_shows_a_scheduled_lesson_without_typing(tmp_path: Path) -> None:
    """A learner whose time has come sees the next lesson-day arrive on its own."""
    import queue
    import threading

    import sqlalchemy as sa

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "DISCORD_", "MENTORBOT_"))
    }
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    env.update(MENTORBOT_DATABASE_URL=url, MENTORBOT_TICK_SECONDS="0.2")
    bot = subprocess.Popen(
        [*mentorbot_command(), "run", "--adapter", "console"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in bot.stdout], daemon=True).start()

    seen: list[str] = []

    def wait_for(text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=deadline - time.monotonic()))
                if text in seen[-1]:
                    return
            except queue.Empty:
                break
        raise AssertionError(f"never saw {text!r}")

    try:
        assert bot.stdin is not None
        bot.stdin.write("/mentor start\n")
        bot.stdin.flush()
        wait_for("day 1 of 3")
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # the learner's delivery time has come
            conn.exec_driver_sql("UPDATE enrolment SET next_due_at = '2000-01-01 00:00:00'")
        engine.dispose()
        wait_for("day 2 of 3")  # arrives with nothing typed
        wait_for("Have you ever taken ownership of a system?")
        assert not any("[to " in line for line in seen), "it is the learner's own DM"
    finally:
        bot.terminate()
        bot.wait(10)
