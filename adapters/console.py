"""The console adapter: a real adapter on stdin/stdout, for local use and for tests.

A line starting with ``/mentor`` is a command; any other line is a reply. With piped
input it handles each line to completion, in order, and returns at end of input. On a
terminal it is a REPL with a prompt, line editing and history.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import io
import re
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from bot.commands import PREFIX, is_command
from bot.messages import EventKind, IncomingEvent, OutgoingMessage, SendResult
from bot.ports import EventSink
from bot.text import learner_spans

PLATFORM = "console"
WORKSPACE = "local"


_USER = re.compile(r"<@!?([^>|]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#([^>|]+)(?:\|[^>]*)?>")


def plain(text: str) -> str:
    """The console's form of the bot's mentions: @name and #channel. A learner's own
    words are printed as written, without the core's marks around them."""
    return "".join(
        piece if by_learner else _CHANNEL.sub(r"#\1", _USER.sub(r"@\1", piece))
        for piece, by_learner in learner_spans(text)
    )


def render(message: OutgoingMessage) -> str:
    """Plain lines: headings underlined, buttons shown as the commands they stand for."""
    return plain(_render(message))


def _render(message: OutgoingMessage) -> str:
    out: list[str] = []
    if message.title:
        out += [message.title, "=" * min(len(message.title), 72)]
    for section in message.sections:
        if section.title:
            out += ["", f"## {section.title}"]
        out.append(section.body)
    if message.question:
        out += ["", f"❓ {message.question}"]
    if message.text:
        if out:
            out.append("")
        out.append(message.text)
    if message.actions:
        buttons = "  ".join(
            f"[{a.label}: type your answer]"
            if a.opens_reply_form
            else f"[{a.label}: {PREFIX} {a.command}]"
            for a in message.actions
        )
        out.append(buttons)
    return "\n".join(out)


PROMPT = "you> "
HISTORY_FILE = "console-history"


class ConsoleAdapter:
    """On piped input: reads ahead and handles each line in order (tests, scripts).

    On a terminal it is a small REPL: a prompt, line editing and history through
    ``readline``, one line handled before the next prompt, and messages that arrive
    while you type (a scheduled lesson) printed above the prompt without eating your
    half-typed line."""

    platform = PLATFORM

    def __init__(
        self,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        user: str | None = None,
        files_dir: Path | None = None,
    ) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.user = user or _local_user()
        self.files_dir = files_dir or Path.cwd()
        self._sent = 0
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self._prompting = False  # the reader thread is waiting at the prompt
        self._handled = threading.Event()  # the last line is answered: prompt again
        self._readline: Any = None

    @property
    def interactive(self) -> bool:
        return self.stdin.isatty()

    async def _write(self, text: str) -> None:
        async with self._lock:
            if self._prompting:
                # Clear the prompt line, print above it, then draw the prompt and what
                # was typed so far again, so the typist loses nothing.
                typed = self._readline.get_line_buffer() if self._readline else ""
                self.stdout.write(f"\r\x1b[K{text}\n{PROMPT}{typed}")
            else:
                self.stdout.write(text + "\n")
            self.stdout.flush()

    async def send(self, message: OutgoingMessage) -> SendResult:
        self._sent += 1
        where = "" if self._for_me(message) else self._audience(message)
        await self._write("\n" + where + render(message) + self._save(message) + "\n")
        return SendResult(channel=PLATFORM, message_ids=(f"console-{self._sent}",))

    def _for_me(self, message: OutgoingMessage) -> bool:
        """The local user's DMs: no channel, or the "console" channel ``send`` reports
        as where it delivered (scheduled deliveries come back addressed to it)."""
        return message.user == self.user and message.channel in (None, "", PLATFORM)

    def _audience(self, message: OutgoingMessage) -> str:
        """Messages for someone else (a welcome for @bo, a digest in #team) say so."""
        target = f"#{message.channel}" if message.channel else f"@{message.user}"
        return f"[to {target}]\n"

    def _save(self, message: OutgoingMessage) -> str:
        """Attachments become files in the data folder (never the working directory,
        which may be a checkout); the path is printed."""
        lines = []
        for attachment in message.attachments:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            path = self.files_dir / Path(attachment.filename).name
            stem, suffix, n = path.stem, path.suffix, 1
            while path.exists():
                n += 1
                path = path.with_name(f"{stem}-{n}{suffix}")
            path.write_bytes(attachment.content)
            lines.append(f"\n[file saved: {path}]")
        return "".join(lines)

    async def _respond(self, messages: list[OutgoingMessage]) -> None:
        for message in messages:
            await self._write(render(message) + self._save(message))

    def _use_readline(self) -> bool:
        """Line editing needs the real terminal on both ends: input() only uses
        readline for the process's own stdin and stdout."""
        if not (self.stdin is sys.stdin and self.stdout is sys.stdout):
            return False
        if not (self.stdin.isatty() and self.stdout.isatty()):
            return False
        try:
            import readline
        except ImportError:  # e.g. a Python built without it: plain lines still work
            return False
        self._readline = readline
        readline.set_history_length(1000)
        with contextlib.suppress(OSError):
            readline.read_history_file(self.files_dir / HISTORY_FILE)
        return True

    def _save_history(self) -> None:
        if self._readline is None:
            return
        with contextlib.suppress(OSError):
            self.files_dir.mkdir(parents=True, exist_ok=True)
            self._readline.write_history_file(self.files_dir / HISTORY_FILE)

    async def start(self, sink: EventSink) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str] = asyncio.Queue()
        editing = self.interactive and self._use_readline()
        terminal = _TerminalState(self.stdin) if self.interactive else None

        def read_piped() -> None:
            for line in iter(self.stdin.readline, ""):
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, "")  # end of input

        def read_typed() -> None:
            # One line at a time: the next prompt appears once the answer is printed.
            while True:
                self._handled.clear()
                try:
                    self._prompting = True
                    if editing:
                        line = input(PROMPT) + "\n"
                    else:
                        self.stdout.write(PROMPT)
                        self.stdout.flush()
                        line = self.stdin.readline()
                except (EOFError, OSError, ValueError):
                    line = ""
                finally:
                    self._prompting = False
                if line == "":
                    self.stdout.write("\n")  # leave the shell's prompt on a fresh line
                    self.stdout.flush()
                loop.call_soon_threadsafe(lines.put_nowait, line)
                if line == "":
                    return
                self._handled.wait()

        # A daemon thread, so a blocked read never holds up the process's exit.
        reader = read_typed if self.interactive else read_piped
        if self.interactive:
            await self._write(
                f"mentorbot console — type `{PREFIX} start` to begin, `{PREFIX} help` for "
                "commands; anything else is your reply. Ctrl-D quits."
            )
        threading.Thread(target=reader, name="console-stdin", daemon=True).start()
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                getting = asyncio.create_task(lines.get())
                done, _ = await asyncio.wait(
                    {getting, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if getting not in done:
                    getting.cancel()
                    break
                line = getting.result()
                if line == "":  # end of input
                    break
                try:
                    await self._handle_line(sink, line)
                finally:
                    self._handled.set()
        finally:
            stopping.cancel()
            if self._prompting:  # stopped at the prompt: give the shell a fresh line
                self.stdout.write("\n")
                self.stdout.flush()
            self._save_history()
            if terminal is not None:
                terminal.restore()

    async def _handle_line(self, sink: EventSink, line: str) -> None:
        text = line.rstrip("\r\n")
        if not text.strip():
            return
        event = IncomingEvent(
            platform=PLATFORM,
            workspace=WORKSPACE,
            user=self.user,
            user_name=self.user,
            workspace_name="console",
            kind=EventKind.COMMAND if is_command(text) else EventKind.MESSAGE,
            text=text,
            message_id=None,
            platform_is_lead=True,
        )
        await sink.handle(event, self._respond)

    async def stop(self) -> None:
        self._stopping.set()


class _TerminalState:
    """The terminal's modes as they were at start. readline switches echo and line
    mode off while it waits for a line; if the bot stops then (Ctrl-C, SIGTERM), they
    are put back so the shell is not left without echo."""

    def __init__(self, stream: TextIO) -> None:
        self._fd: int | None = None
        self._modes: list[Any] | None = None
        try:
            import termios

            self._fd = stream.fileno()
            self._modes = termios.tcgetattr(self._fd)
        except (ImportError, OSError, ValueError, io.UnsupportedOperation):
            self._modes = None

    def restore(self) -> None:
        if self._modes is None or self._fd is None:
            return
        import termios

        with contextlib.suppress(OSError):
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._modes)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"
