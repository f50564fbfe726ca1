"""The console adapter: a real adapter on stdin/stdout, for local use and for tests.

A line starting with ``/mentor`` is a command; any other line is a reply. With piped
input it handles each line to completion, in order, and returns at end of input.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import sys
import threading
from pathlib import Path
from typing import TextIO

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


class ConsoleAdapter:
    platform = PLATFORM

    def __init__(
        self,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        user: str | None = None,
    ) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.user = user or _local_user()
        self._sent = 0
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def interactive(self) -> bool:
        return self.stdin.isatty()

    async def _write(self, text: str) -> None:
        async with self._lock:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    async def send(self, message: OutgoingMessage) -> SendResult:
        self._sent += 1
        where = "" if message.user == self.user and not message.channel else self._audience(message)
        await self._write("\n" + where + render(message) + self._save(message) + "\n")
        return SendResult(channel="console", message_ids=(f"console-{self._sent}",))

    def _audience(self, message: OutgoingMessage) -> str:
        """Messages for someone else (a welcome for @bo, a digest in #team) say so."""
        target = f"#{message.channel}" if message.channel else f"@{message.user}"
        return f"[to {target}]\n"

    def _save(self, message: OutgoingMessage) -> str:
        """Attachments become files in the working directory; the path is printed."""
        lines = []
        for attachment in message.attachments:
            path = Path.cwd() / attachment.filename
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

    async def start(self, sink: EventSink) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str] = asyncio.Queue()

        def read() -> None:
            # A daemon thread, so a blocked read never holds up the process's exit.
            for line in iter(self.stdin.readline, ""):
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, "")  # end of input

        threading.Thread(target=read, name="console-stdin", daemon=True).start()
        if self.interactive:
            await self._write(
                f"mentorbot console — type `{PREFIX} start` to begin, `{PREFIX} help` for "
                "commands; anything else is your reply. Ctrl-D quits."
            )
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
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
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
        finally:
            stopping.cancel()

    async def stop(self) -> None:
        self._stopping.set()


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"
