"""The console on a real terminal: a ``mentorbot run`` subprocess on a pseudo-terminal,
typed at key by key, as a person at a shell would."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import sqlite3
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.test_console_e2e import mentorbot_command, run

pytestmark = pytest.mark.slow

LEFT, UP, CTRL_C, CTRL_D = b"\x1b[D", b"\x1b[A", b"\x03", b"\x04"


class Terminal:
    """``mentorbot run`` with the pty as its controlling terminal (so Ctrl-C is a
    SIGINT, as in a shell) and everything it writes kept in ``screen``."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.master, slave = pty.openpty()
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "DISCORD_", "MENTORBOT_"))
        }
        environment.update(
            MENTORBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}", TERM="xterm", **env
        )

        def controlling_terminal() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            [*mentorbot_command(), "run"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=tmp_path,
            env=environment,
            start_new_session=True,
            preexec_fn=controlling_terminal,
        )
        os.close(slave)
        self.screen = ""
        self._seen = 0

    def _pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the process is gone and the pty closed
            return False
        self.screen += data.decode("utf-8", errors="replace")
        return bool(data)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """Wait until ``text`` appears after what was waited for last; returns the
        output in between."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.screen.find(text, self._seen)
            if found >= 0:
                between = self.screen[self._seen : found + len(text)]
                self._seen = found + len(text)
                return between
            if time.monotonic() > deadline or not self._pump(0.1):
                raise AssertionError(f"never saw {text!r}; screen:\n{self.screen[-3000:]}")

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._pump(0.05)
        while self._pump(0.05) and self.process.poll() is None:
            pass
        return self.process.wait(1)

    def echo_is_on(self) -> bool:
        modes = termios.tcgetattr(self.master)
        return bool(modes[3] & termios.ECHO) and bool(modes[3] & termios.ICANON)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        os.close(self.master)


def test_a_terminal_session_has_a_prompt_line_editing_and_no_log_lines(tmp_path: Path) -> None:
    data = tmp_path / "mentorbot-data"
    term = Terminal(tmp_path, MENTORBOT_LOG_LEVEL="DEBUG", MENTORBOT_TICK_SECONDS="0.3")
    try:
        term.wait_for(f"mentorbot: logs go to {data / 'mentorbot.log'}")
        term.wait_for("Ctrl-D quits.")
        term.wait_for("you> ")
        term.type(b"/mentor start\r")
        term.wait_for("day 1 of 3")
        term.wait_for("you> ")  # the next prompt comes once the answer is printed
        term.type(b"abc" + LEFT + LEFT + b"X\r")  # the arrow keys move, not insert ^[[D
        term.wait_for("Thanks, I kept your answer")
        term.wait_for("you> ")
        term.type(UP + UP + b"\r")  # history: the line before the answer
        term.wait_for("You are already taking")
        term.wait_for("you> ")

        # A scheduled lesson-day arrives while a reply is half typed: it is printed
        # above the prompt, which comes back with the typing intact.
        term.type(b"half typed")
        term.wait_for("half typed")
        with sqlite3.connect(tmp_path / "bot.db") as conn:
            conn.execute("UPDATE enrolment SET next_due_at = '2000-01-01 00:00:00'")
        lesson = term.wait_for("day 2 of 3")
        assert "[to #console]" not in lesson
        term.wait_for("[Remind me later: /mentor snooze]")
        term.wait_for("you> half typed")
        term.type(CTRL_C)
        assert term.finish() == 0
        assert term.echo_is_on(), "the terminal is left as it was found"
    finally:
        term.close()

    assert "level=" not in term.screen and "Traceback" not in term.screen
    assert "level=debug" in (data / "mentorbot.log").read_text(encoding="utf-8")
    exported = run(["export", "replies"], tmp_path).stdout.splitlines()
    assert [json.loads(line)["reply"] for line in exported] == ["aXbc"]


def test_history_survives_a_restart_and_ctrl_d_quits(tmp_path: Path) -> None:
    first = Terminal(tmp_path)
    try:
        first.wait_for("you> ")
        first.type(b"/mentor courses\r")
        first.wait_for("you> ")
        first.type(CTRL_D)
        assert first.finish() == 0
    finally:
        first.close()
    assert (tmp_path / "mentorbot-data" / "console-history").exists()

    second = Terminal(tmp_path)
    try:
        second.wait_for("you> ")
        second.type(UP)
        second.wait_for("/mentor courses")
        second.type(b"\r")
        second.wait_for("Data Engineering Leadership")
        second.wait_for("you> ")
        second.type(CTRL_D)
        assert second.finish() == 0
    finally:
        second.close()


def test_piped_input_has_no_prompt_and_keeps_logs_on_stderr(tmp_path: Path) -> None:
    result = run(["run"], tmp_path, "/mentor start\n", MENTORBOT_LOG_LEVEL="DEBUG")
    assert result.returncode == 0
    assert "you> " not in result.stdout and "level=debug" in result.stderr
    assert not (tmp_path / "mentorbot-data").exists()


def test_export_my_data_is_saved_in_the_data_folder_not_the_working_directory(
    tmp_path: Path,
) -> None:
    result = run(["run"], tmp_path, "/mentor start\n/mentor export-my-data\n")
    saved = tmp_path / "mentorbot-data" / "mentorbot-my-data.json"
    assert f"[file saved: {saved}]" in result.stdout
    assert json.loads(saved.read_text(encoding="utf-8"))
    assert not list(tmp_path.glob("*.json")), "nothing lands in the working directory"

    chosen = tmp_path / "my files"
    again = run(["run"], tmp_path, "/mentor export-my-data\n", MENTORBOT_DATA_DIR=str(chosen))
    assert f"[file saved: {chosen / 'mentorbot-my-data.json'}]" in again.stdout
