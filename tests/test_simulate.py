"""``mentorbot simulate`` through the real executable: a learner's weeks on a virtual
clock, the transcript format, course previews, and every script mistake as one line."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from tests.conftest import REPO

MENTORBOT = str(REPO / ".venv" / "bin" / "mentorbot")
HEADER = re.compile(r"^--- (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}) (you|lead|bot) ([a-z-]+)$")

FOUR_WEEKS = """\
# A learner who answers day 1, ignores day 2, answers day 3, mistypes a command and
# writes small talk a week later.
2027-03-01T08:30 /mentor start
2027-03-01T09:40 I prefer guiding others; reviewing designs early saves the team pain.
2027-03-03T10:05 Saying no to stakeholders is the hardest part for me.
2027-03-03T10:30 /mentr history
2027-03-10T12:00 ok thanks, please ping me when it's out!
2027-03-10T12:05 @lead /mentor team
"""


def simulate(tmp_path: Path, *args: str, script: str | None = None, **env: str):  # type: ignore[no-untyped-def]
    if script is not None:
        (tmp_path / "script.txt").write_text(script, encoding="utf-8")
        args = (str(tmp_path / "script.txt"), *args)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MENTORBOT_")}
    environment.update(env)
    return subprocess.run(
        [MENTORBOT, "simulate", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=300,
    )


def blocks(transcript: str) -> list[tuple[str, str, str, str]]:
    """(time, who, kind, text) of every message in a transcript."""
    out: list[tuple[str, str, str, str]] = []
    for chunk in transcript.split("\n--- ")[0:]:
        chunk = chunk if chunk.startswith("--- ") else "--- " + chunk
        head, _, text = chunk.partition("\n")
        match = HEADER.match(head)
        assert match, head
        out.append((*match.groups(), text.strip()))  # type: ignore[arg-type]
    return out


def test_four_weeks_of_a_learner_through_the_real_engine(tmp_path: Path) -> None:
    result = simulate(tmp_path, "--tz", "Europe/Berlin", "--until", "2027-03-26", script=FOUR_WEEKS)
    assert result.returncode == 0, result.stderr
    messages = blocks(result.stdout)
    times = [m[0] for m in messages]
    assert times == sorted(times)  # the clock never goes backwards
    kinds = [(who, kind) for _, who, kind, _ in messages]
    assert kinds[:3] == [("you", "command"), ("bot", "reply"), ("bot", "lesson")]
    lessons = [m for m in messages if m[2] == "lesson"]
    assert [m[0] for m in lessons] == [
        "2027-03-01T08:30",  # asked for with start
        "2027-03-02T09:00",  # local delivery time, Berlin
        "2027-03-03T09:00",
    ]
    # Day 2 is ignored: one reminder, then a mention on day 3.
    assert any(m[2] == "reminder" and m[0].startswith("2027-03-02") for m in messages)
    assert "Have you ever taken ownership of a system?” Answer it with" in lessons[2][3]
    acks = [m for m in messages if m[2] == "answer-ack"]
    assert "Do you prefer individual work" in acks[0][3]
    assert "What part of leadership feels difficult" in acks[1][3]
    assert "Next lesson-day" not in acks[1][3]  # there is none after day 3
    assert any("Did you mean `/mentor history`?" in m[3] for m in messages)
    # The small talk a week later is asked about, not filed.
    ask = next(m for m in messages if m[2] == "ask")
    assert ask[0] == "2027-03-10T12:00" and "Is this your answer to" in ask[3]
    # Continue? is asked once, then a summary of the answers reminds once, in other words.
    prompts = [m for m in messages if m[2] in ("continue", "summary")]
    assert [m[2] for m in prompts] == ["continue", "summary"]
    assert (
        "Here is what you wrote" in prompts[1][3] and "[file: my-answers-0.2.2.md]" in prompts[1][3]
    )
    # The lead's command is answered as the lead sees it.
    team = next(m for m in messages if m[1] == "lead")
    assert team[2] == "command"
    assert messages[messages.index(team) + 1][3].startswith("Your team")
    # Nothing the bot says repeats itself word for word.
    said = [m[3] for m in messages if m[1] == "bot"]
    assert len(said) == len(set(said))
    assert messages[-1][0] <= "2027-03-26T23:59"


def test_a_course_preview_is_a_silent_learner_from_next_monday(tmp_path: Path) -> None:
    result = simulate(tmp_path, "--course", "data-engineering", "--weeks", "1")
    assert result.returncode == 0, result.stderr
    messages = blocks(result.stdout)
    assert messages[0][1:3] == ("you", "command")
    assert [m[0][11:] for m in messages if m[2] == "lesson"] == ["09:00", "09:00", "09:00"]
    first_day = messages[0][0][:10]
    assert time.strptime(first_day, "%Y-%m-%d").tm_wday == 0  # a Monday


def test_the_result_can_be_exported_from_a_database_of_ones_choice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    result = simulate(tmp_path, script=FOUR_WEEKS, MENTORBOT_DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    exported = subprocess.run(
        [MENTORBOT, "export", "replies", "--format", "jsonl"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MENTORBOT_DATABASE_URL": url},
        timeout=120,
    )
    assert exported.returncode == 0, exported.stderr
    assert "Saying no to stakeholders" in exported.stdout


def test_script_mistakes_exit_2_naming_file_and_line(tmp_path: Path) -> None:
    bad_date = simulate(tmp_path, script="2027-03-01T08:30 /mentor start\n2027-13-01T09:00 hi\n")
    assert bad_date.returncode == 2
    assert bad_date.stderr.strip().endswith(
        "is not a time; write YYYY-MM-DDTHH:MM, e.g. 2027-03-01T09:15"
    )
    assert "script.txt:2:" in bad_date.stderr and "Traceback" not in bad_date.stderr
    backwards = simulate(
        tmp_path, script="# c\n2027-03-02T08:30 /mentor start\n2027-03-01T09:00 hi\n"
    )
    assert backwards.returncode == 2 and "script.txt:3:" in backwards.stderr
    assert "time never goes backwards" in backwards.stderr
    zone = simulate(tmp_path, "--tz", "Mars/Olympus", script="2027-03-01T08:30 hi\n")
    assert zone.returncode == 2 and "Mars/Olympus" in zone.stderr
    assert len(zone.stderr.strip().splitlines()) == 1
    missing = simulate(tmp_path, str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "no script file" in missing.stderr
    empty = simulate(tmp_path, script="# only comments\n\n")
    assert empty.returncode == 2 and "no lines to replay" in empty.stderr
    unknown_course = simulate(tmp_path, "--course", "nope")
    assert unknown_course.returncode == 2 and "data-engineering" in unknown_course.stderr


def test_a_script_of_10000_lines(tmp_path: Path) -> None:
    lines = ["2027-03-01T08:30 /mentor start"]
    lines += ["# a comment line"] * 9_000
    lines += [f"2027-03-02T{i // 60:02d}:{i % 60:02d} thought {i}" for i in range(999)]
    result = simulate(tmp_path, "--until", "2027-03-03", script="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    messages = blocks(result.stdout)
    assert sum(1 for m in messages if m[1] == "you") == 1_000


EASTER_2027 = """\
# German holidays set by the lead; the learner starts the Wednesday before Easter.
2027-03-24T08:00 @lead /mentor settings holidays DE
2027-03-24T08:30 /mentor start
2027-03-24T09:40 Saying no to stakeholders is the hard part; I write down why we decide.
"""


def test_no_message_on_good_friday_or_easter_monday_with_german_holidays(
    tmp_path: Path,
) -> None:
    args = ("--tz", "Europe/Berlin", "--until", "2027-04-09")
    result = simulate(tmp_path, *args, script=EASTER_2027)
    assert result.returncode == 0, result.stderr
    messages = blocks(result.stdout)
    assert (
        "Saved: no lessons, reminders or check-ins on the public holidays of DE" in (messages[1][3])
    )
    days = {m[0][:10] for m in messages if m[1] == "bot"}
    assert "2027-03-26" not in days and "2027-03-29" not in days
    # The day that would have been Good Friday's comes on Tuesday, with the check-in.
    lessons = [m[0] for m in messages if m[2] == "lesson"]
    assert lessons == ["2027-03-24T08:30", "2027-03-25T09:00", "2027-03-30T09:00"]
    assert any(m[2] == "practice" and m[0].startswith("2027-03-30") for m in messages)
    # Without the holidays, the same weeks do send on both days.
    plain = simulate(tmp_path, *args, script=EASTER_2027.replace("holidays DE", "holidays off"))
    assert plain.returncode == 0, plain.stderr
    plain_days = {m[0][:10] for m in blocks(plain.stdout) if m[1] == "bot"}
    assert {"2027-03-26", "2027-03-29"} <= plain_days
