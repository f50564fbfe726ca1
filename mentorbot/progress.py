"""Progress for long operations: a bar on a terminal, plain lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(0, total)
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self._last_step = -1

    def advance(self, count: int = 1) -> None:
        self.update(self.done + count)

    def update(self, done: int) -> None:
        self.done = min(done, self.total) if self.total else done
        percent = 100 if not self.total else int(self.done * 100 / self.total)
        if self.tty:
            filled = percent // 4
            bar = "#" * filled + "." * (25 - filled)
            self.stream.write(f"\r{self.label} [{bar}] {percent:3d}% ({self.done}/{self.total})")
            self.stream.flush()
            return
        step = percent // 10
        if step > self._last_step:
            self._last_step = step
            self.stream.write(f"{self.label}: {percent}% ({self.done}/{self.total})\n")
            self.stream.flush()

    def finish(self, summary: str | None = None) -> None:
        self.update(self.total)
        if self.tty:
            self.stream.write("\n")
        if summary:
            self.stream.write(summary + "\n")
        self.stream.flush()
