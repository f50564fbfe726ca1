"""Operator commands through the real `mentorbot` executable: doctor, backup and
restore, bulk assign, export filters and progress."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from mentorbot.progress import Progress
from tests.emulators.slack_api import SlackEmulator
from tests.test_console_e2e import mentorbot_command, run

pytestmark = pytest.mark.slow


def test_doctor_on_a_fresh_checkout_says_console_and_all_fine(tmp_path: Path) -> None:
    result = run(["doctor"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok    configuration: no Slack or Discord credentials")
    assert "console adapter" in lines[0]
    assert lines[1].startswith("ok    database:") and "does not exist yet" in lines[1]
    assert lines[2].startswith("ok    content: 1 course(s), 1 lesson(s)")
    assert lines[3].startswith("skip  slack") and lines[4].startswith("skip  discord")
    assert lines[-1] == "Everything looks fine."
    assert not (tmp_path / "bot.db").exists(), "doctor must not create the database"


def test_doctor_explains_each_failure_with_a_fix(tmp_path: Path) -> None:
    broken = tmp_path / "content" / "c"
    broken.mkdir(parents=True)
    (broken / "l.md").write_text("no heading\n", encoding="utf-8")
    with SlackEmulator() as slack:
        result = run(
            ["doctor"],
            tmp_path,
            MENTORBOT_CONTENT_DIR=str(tmp_path / "content"),
            MENTORBOT_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none",
            SLACK_BOT_TOKEN="xoxb-wrong",
            SLACK_SIGNING_SECRET="s",
            SLACK_API_URL=slack.base_url,
        )
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  database: cannot connect" in out and "fix: check MENTORBOT_DATABASE_URL" in out
    assert f"FAIL  content: 1 error(s): {broken / 'l.md'}:1: no lesson heading" in out
    assert "FAIL  slack: auth.test refused the bot token: invalid_auth" in out
    assert "fix: copy the Bot User OAuth Token" in out
    assert out.rstrip().endswith("3 problem(s) found.")


def test_doctor_checks_a_good_slack_token(tmp_path: Path) -> None:
    from tests.emulators.slack_api import DEFAULT_BOT_TOKEN

    with SlackEmulator() as slack:
        result = run(
            ["doctor"],
            tmp_path,
            SLACK_BOT_TOKEN=DEFAULT_BOT_TOKEN,
            SLACK_APP_TOKEN="xapp-1",
            SLACK_API_URL=slack.base_url,
        )
    assert result.returncode == 0, result.stdout
    assert "ok    slack: bot" in result.stdout
    assert "`mentorbot run` will start: Slack" in result.stdout


def test_backup_and_restore_bring_data_back(tmp_path: Path) -> None:
    assert run(["run"], tmp_path, "/mentor start\nworth keeping\n").returncode == 0
    backup = run(["db", "backup", "backup.db"], tmp_path)
    assert backup.returncode == 0, backup.stderr
    assert "backed up to backup.db" in backup.stdout
    assert "backing up bot.db: 100%" in backup.stderr  # plain progress lines off a terminal
    assert run(["db", "backup", "backup.db"], tmp_path).returncode == 2  # never overwrites
    run(["run"], tmp_path, "/mentor forget-me confirm\n")
    assert run(["export", "replies"], tmp_path).stdout == ""
    restored = run(["db", "restore", "backup.db"], tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert "restored backup.db (revision" in restored.stdout
    rows = [json.loads(x) for x in run(["export", "replies"], tmp_path).stdout.splitlines()]
    assert [r["reply"] for r in rows] == ["worth keeping"]
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    bad = run(["db", "restore", "junk.db"], tmp_path)
    assert bad.returncode == 2 and "is not a mentorbot SQLite backup" in bad.stderr
    pg = run(["db", "backup", "x.db"], tmp_path, MENTORBOT_DATABASE_URL="postgresql://h/db")
    assert pg.returncode == 2 and "pg_dump" in pg.stderr


def test_bulk_assign_from_a_file_with_progress(tmp_path: Path) -> None:
    (tmp_path / "team.txt").write_text("\n".join(f"user{n}" for n in range(120)) + "\n")
    result = run(["assign", "--file", "team.txt", "--by", "lena"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "enrolling: 0% (0/120)" not in result.stderr
    assert "enrolling: 100% (120/120)" in result.stderr
    assert "enrolled 120 of 120" in result.stderr
    again = run(["assign", "user1", "newbie"], tmp_path)
    assert "enrolled 1 of 2" in again.stderr
    with sqlite3.connect(tmp_path / "bot.db") as conn:
        welcomes = conn.execute("SELECT count(*) FROM delivery WHERE kind = 'welcome'").fetchone()
    assert welcomes == (121,)
    assert run(["assign", "x", "--course", "nope"], tmp_path).returncode == 2


def test_export_filters_and_progress(tmp_path: Path) -> None:
    run(["run"], tmp_path, "/mentor start\nfirst\n/mentor share\n")
    out = run(["export", "replies", "--for-leads", "--output", "o.jsonl"], tmp_path)
    assert "exporting replies: 100% (1/1)" in out.stderr
    assert json.loads((tmp_path / "o.jsonl").read_text())["visible_to_leads"] is True
    assert json.loads(run(["export", "replies"], tmp_path).stdout)["visible_to_leads"] is True
    assert run(["export", "replies", "--workspace", "local"], tmp_path).stdout != ""
    assert run(["export", "replies", "--since", "2999-01-01"], tmp_path).stdout == ""
    assert run(["export", "replies", "--since", "soon"], tmp_path).returncode == 2


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    tty = Tty()
    bar = Progress(4, "work", tty)
    for _ in range(4):
        bar.advance()
    bar.finish("done")
    assert "\rwork [#########################] 100% (4/4)" in tty.getvalue()
    plain = io.StringIO()
    lines = Progress(200, "work", plain)
    for n in range(200):
        lines.update(n + 1)
    lines.finish()
    assert plain.getvalue().splitlines()[-1] == "work: 100% (200/200)"
    assert len(plain.getvalue().splitlines()) == 11  # one line per 10 %


BAD_SETTINGS = {
    "MENTORBOT_TIMEZONE": "Mars/X",
    "MENTORBOT_DELIVERY_TIME": "9am",
    "MENTORBOT_DELIVERY_DAYS": "funday",
    "MENTORBOT_LOG_LEVEL": "LOUD",
    "PORT": "abc",
}


def test_doctor_fails_every_bad_setting_and_run_refuses_them(tmp_path: Path) -> None:
    doctor = run(["doctor"], tmp_path, **BAD_SETTINGS)
    assert doctor.returncode == 1
    fails = [line for line in doctor.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 5
    for name, value in BAD_SETTINGS.items():
        assert any(f"configuration: {name} " in f and repr(value) in f for f in fails), name
    assert doctor.stdout.rstrip().endswith("5 problem(s) found.")

    started = run(["run"], tmp_path, "/mentor start\n", **BAD_SETTINGS)
    assert started.returncode == 2
    lines = started.stderr.splitlines()
    assert len(lines) == 5 and all(line.startswith("mentorbot: ") for line in lines)
    assert "mentorbot: PORT must be a whole number from 1 to 65535, got 'abc'" in lines
    assert started.stdout == ""
    assert not (tmp_path / "bot.db").exists(), "nothing starts on bad settings"


def test_an_unknown_default_course_is_refused(tmp_path: Path) -> None:
    doctor = run(["doctor"], tmp_path, MENTORBOT_DEFAULT_COURSE="nope")
    assert doctor.returncode == 1
    assert "FAIL  content: MENTORBOT_DEFAULT_COURSE must name a course" in doctor.stdout
    started = run(["run"], tmp_path, "/mentor start\n", MENTORBOT_DEFAULT_COURSE="nope")
    assert started.returncode == 2
    assert started.stderr.strip().endswith("got 'nope'; courses: data-engineering")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """A user's mistake: exit 2, one line on stderr, nothing that looks like Python."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr
    return lines[0]


def test_database_mistakes_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    mysql = {"MENTORBOT_DATABASE_URL": "mysql://me:pw@db/x"}
    line = one_line_error(run(["run"], tmp_path, "", **mysql))
    assert "names a mysql database, which mentorbot does not support" in line
    assert "use sqlite:///FILE or postgresql://" in line and ":pw@" not in line
    assert (
        "FAIL  configuration: MENTORBOT_DATABASE_URL" in run(["doctor"], tmp_path, **mysql).stdout
    )
    nonsense = run(["export", "replies"], tmp_path, MENTORBOT_DATABASE_URL="nonsense")
    assert "MENTORBOT_DATABASE_URL must look like" in one_line_error(nonsense)

    unreachable = {"MENTORBOT_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    for args in (["run"], ["export", "replies"], ["db", "upgrade"], ["assign", "ana"]):
        line = one_line_error(run(args, tmp_path, "", **unreachable))
        assert line.startswith("mentorbot: cannot use the database 127.0.0.1:1/none: "), args
        assert line.endswith("check MENTORBOT_DATABASE_URL and that the database server is running")

    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    junk = run(["db", "current"], tmp_path, MENTORBOT_DATABASE_URL=f"sqlite:///{tmp_path}/junk.db")
    assert "file is not a database" in one_line_error(junk)


def test_a_sqlite_file_in_a_missing_folder_is_named_by_doctor_and_run(tmp_path: Path) -> None:
    missing = {"MENTORBOT_DATABASE_URL": f"sqlite:///{tmp_path}/nonexistent/dir/x.db"}
    doctor = run(["doctor"], tmp_path, **missing)
    assert doctor.returncode == 1
    assert (
        f"FAIL  database: the folder {tmp_path}/nonexistent/dir does not exist, "
        "so x.db cannot be created there"
    ) in doctor.stdout
    assert "creates and migrates it" not in doctor.stdout
    line = one_line_error(run(["run"], tmp_path, "/mentor start\n", **missing))
    assert f"the folder {tmp_path}/nonexistent/dir does not exist" in line
    assert "create the folder, or point MENTORBOT_DATABASE_URL at one that exists" in line


def test_file_mistakes_are_one_line_and_touch_nothing(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    folder = one_line_error(run(["export", "replies", "--output", "out"], tmp_path))
    assert (
        folder == "mentorbot: --output out is a folder: name a file in it, e.g. out/replies.jsonl"
    )
    missing = one_line_error(run(["export", "replies", "--output", "nope/r.csv"], tmp_path))
    assert missing == (
        f"mentorbot: --output nope/r.csv: the folder {tmp_path}/nope does not exist; "
        "create it first"
    )
    team = one_line_error(run(["assign", "--file", "team.txt"], tmp_path))
    assert team == "mentorbot: cannot read --file team.txt: No such file or directory"
    assert not (tmp_path / "bot.db").exists(), "nothing was opened for a mistyped path"

    assert run(["run"], tmp_path, "/mentor start\n").returncode == 0
    backup = one_line_error(run(["db", "backup", "nope/b.db"], tmp_path))
    assert backup == (
        f"mentorbot: the folder {tmp_path}/nope does not exist; create it, or back up elsewhere"
    )
    assert "already exists" in one_line_error(run(["db", "backup", "out"], tmp_path))


def test_output_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    """`mentorbot doctor | head -2`: the reader is gone before doctor writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MENTORBOT_")}
    environment["MENTORBOT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'bot.db'}"
    try:
        result = subprocess.run(
            [*mentorbot_command(), "doctor"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=environment,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141  # as a shell reports a command cut off by its reader


def test_version() -> None:
    result = subprocess.run(
        [*mentorbot_command(), "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert re.fullmatch(r"mentorbot \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout


def test_export_of_an_unknown_workspace_says_so(tmp_path: Path) -> None:
    run(["run"], tmp_path, "/mentor start\nfirst\n")
    line = one_line_error(run(["export", "replies", "--workspace", "nope"], tmp_path))
    assert (
        line
        == "mentorbot: there is no workspace 'nope' in the database; workspaces: local (console)"
    )


def test_assign_needs_a_workspace_off_the_console_and_reports_duplicates(tmp_path: Path) -> None:
    slack = one_line_error(run(["assign", "--platform", "slack", "U1"], tmp_path))
    assert slack == "mentorbot: --platform slack needs --workspace: the Slack team id (T0123...)"
    discord = one_line_error(run(["assign", "--platform", "discord", "1"], tmp_path))
    assert "--platform discord needs --workspace: the server (guild) id" in discord
    assert not (tmp_path / "bot.db").exists()

    (tmp_path / "team.txt").write_text("ana\nbo\n\nana\n", encoding="utf-8")
    result = run(["assign", "--file", "team.txt", "bo"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mentorbot: team.txt:2: bo is a duplicate (first at the command line)" in result.stderr
    assert "mentorbot: team.txt:4: ana is a duplicate (first at team.txt:1)" in result.stderr
    assert "enrolled 2 of 2" in result.stderr


def test_restore_refuses_while_the_bot_runs_on_that_file(tmp_path: Path) -> None:
    from tests.test_operations import Bot

    assert run(["run"], tmp_path, "/mentor start\nkeep me\n").returncode == 0
    assert run(["db", "backup", "backup.db"], tmp_path).returncode == 0
    bot = Bot(tmp_path)
    try:
        bot.type("/mentor history")
        bot.wait_for("keep me")  # it is up and holding the database
        refused = one_line_error(run(["db", "restore", "backup.db"], tmp_path))
        assert refused == (
            f"mentorbot: mentorbot is running on {tmp_path / 'bot.db'}: stop it "
            "(Ctrl-C or SIGTERM), then restore"
        )
    finally:
        assert bot.stop() == 0
    restored = run(["db", "restore", "backup.db"], tmp_path)
    assert restored.returncode == 0, restored.stderr


def test_stopping_while_slack_is_unreachable_is_quick_and_quiet(tmp_path: Path) -> None:
    import signal
    import time

    from tests.test_operations import free_port

    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "DISCORD_", "MENTORBOT_"))
    }
    environment.update(
        MENTORBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
        SLACK_BOT_TOKEN="xoxb-1-unreachable",
        SLACK_APP_TOKEN="xapp-1-unreachable",
        SLACK_API_URL=f"http://127.0.0.1:{free_port()}/api/",  # nothing listens there
        PORT=str(free_port()),
    )
    bot = subprocess.Popen(
        [*mentorbot_command(), "run"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=environment,
    )
    try:
        assert bot.stderr is not None
        for line in bot.stderr:
            if "Failed to connect" in line:
                break  # slack_sdk is now retrying every 10 s
        bot.send_signal(signal.SIGTERM)
        began = time.monotonic()
        _, stderr = bot.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        if bot.poll() is None:
            bot.kill()
    assert bot.returncode == 0
    assert took < 5, f"stopping took {took:.1f} s"
    assert "Traceback" not in line + stderr
    assert "shutdown took longer" not in stderr


def test_content_check_of_one_lesson_file_and_show_of_an_unknown_id(tmp_path: Path) -> None:
    from tests.conftest import REPO

    seed = REPO / "content" / "data-engineering" / "0.2.2-senior-lead-data-engineer.md"
    checked = run(["content", "check", str(seed)], tmp_path)
    assert checked.returncode == 0, checked.stderr
    lines = seed.read_text(encoding="utf-8").splitlines()
    warning = checked.stdout.splitlines()[0]
    assert warning.startswith(f"{seed}:") and "warning: next lesson 0.2.3" in warning
    line = int(warning[len(f"{seed}:") :].split(":")[0])
    assert "Should we continue with" in lines[line - 1]
    assert "0.2.2 Senior / Lead Data Engineer: 10 snippets, 3 questions" in checked.stdout

    unknown = one_line_error(run(["content", "show", "9.9"], tmp_path))
    assert unknown.endswith("; lessons there: data-engineering: 0.2.2")
    course = one_line_error(run(["content", "show", "0.2.2", "--course", "x"], tmp_path))
    assert course.endswith("; courses: data-engineering")


def test_help_is_plain_text_with_exit_codes() -> None:
    result = subprocess.run(
        [*mentorbot_command(), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "``" not in result.stdout and ":class:" not in result.stdout
    assert "mentorbot: a mentoring bot for Slack, Discord and the terminal." in result.stdout
    assert "exit codes: 0 ok, 1 a check failed, 2 a mistake" in result.stdout
    assert all(len(line) <= 100 for line in result.stdout.splitlines())
