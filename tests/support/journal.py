"""A file-backed adapter for multi-process tests: every send appends one line (fsynced)
to a journal, so what reached the "platform" survives a SIGKILL of the sender and can be
counted afterwards; ``find_delivered`` reads it back, like the Slack adapter reads
conversation history."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from bot.messages import OutgoingMessage, SendResult


class JournalAdapter:
    platform = "console"

    def __init__(self, path: Path, delay_after: float = 0.0) -> None:
        self.path = path
        self.delay_after = delay_after

    async def start(self, sink: object) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, message: OutgoingMessage) -> SendResult:
        line = json.dumps({"key": message.delivery_key, "user": message.user, "pid": os.getpid()})
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.delay_after:
            await asyncio.sleep(self.delay_after)  # widens the send-then-crash window
        return SendResult(channel="journal", message_ids=(str(message.delivery_key),))

    async def find_delivered(self, message: OutgoingMessage) -> SendResult | None:
        for row in read_journal(self.path):
            if row["key"] == message.delivery_key:
                return SendResult(channel="journal", message_ids=(str(message.delivery_key),))
        return None


def read_journal(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
