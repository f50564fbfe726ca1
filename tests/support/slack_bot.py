"""Real ``mentorbot run`` processes against the loopback Slack emulator, for the stop,
crash and replica tests: seed learners whose lesson is due, start and signal the
processes, and count what reached the emulated Slack."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from adapters.slack.app import API_TIERS
from bot.config import Settings, bundled_content_dir
from bot.db import Store
from bot.models import RateBucket
from mentorbot.bootstrap import build
from tests.emulators.slack_api import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_SIGNING_SECRET,
    DEFAULT_TEAM_ID,
    RecordedCall,
    SlackEmulator,
)
from tests.support.seeding import seed_workspace
from tests.test_console_e2e import mentorbot_command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slack_users(slack: SlackEmulator, count: int, prefix: str = "UL") -> list[str]:
    """``count`` members of the emulated workspace."""
    users = [f"{prefix}{n:06d}" for n in range(count)]
    for user in users:
        slack.add_user(user, tz="UTC")
    return users


def seed_due_learners(url: str, users: list[str], due_at: datetime | None = None) -> None:
    """Each user enrolled in the bundled course, day 1 due at ``due_at`` (default: a
    minute ago, real time)."""
    app = build(Settings(database_url=url, content_dir=bundled_content_dir()))
    now = datetime.now(UTC)
    due_at = due_at or now - timedelta(minutes=1)
    try:
        with app.store.engine.begin() as conn:
            seed_workspace(
                conn,
                platform="slack",
                external_id=DEFAULT_TEAM_ID,
                users=users,
                now=now,
                enrolment=lambda _n: {"day": 0, "next_due_at": due_at},
            )
    finally:
        app.store.dispose()


def allow_web_api(url: str, rate: float = 1000.0, team: str = DEFAULT_TEAM_ID) -> None:
    """A workspace known to allow ``rate`` calls a second of each Web API method the
    adapter paces besides posting (opening DMs, looking people up, ...): the pace each
    method's budget learned, stored where running bots keep it. For tests about
    something else (a stop, a crash, the workspace's posting budget) whose learners
    are new, so each of them still has a DM to open. The cells are stamped as in use
    now: the retention pass forgets a cell idle for a week, learned pace and all."""
    store = Store(url)
    try:
        store.upgrade()
        table = RateBucket.__table__  # type: ignore[attr-defined]
        with store.engine.begin() as conn:
            conn.execute(
                sa.insert(table),
                [
                    {"key": f"slack:{team}:api:{method}", "tat": time.time(), "rate": rate}
                    for method in API_TIERS
                ],
            )
    finally:
        store.dispose()


def delivery_key(call: RecordedCall) -> str | None:
    payload = (call.params.get("metadata") or {}).get("event_payload") or {}
    key = payload.get("delivery_key")
    return str(key) if key else None


def lesson_posts(calls: list[RecordedCall]) -> list[RecordedCall]:
    """chat.postMessage calls Slack accepted that carry a delivery: each one is a
    message in someone's DM, whether or not its sender lived to read the answer."""
    return [
        c
        for c in calls
        if c.method == "chat.postMessage" and c.status == 200 and delivery_key(c) is not None
    ]


def posted_keys(slack: SlackEmulator) -> Counter[str]:
    return Counter(str(delivery_key(c)) for c in lesson_posts(slack.calls))


class SlackBot:
    """``mentorbot run --adapter slack`` in HTTP mode against the emulator; stderr (the
    log) is collected line by line."""

    def __init__(self, tmp_path: Path, url: str, slack: SlackEmulator, **env: str) -> None:
        self.port = free_port()
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "DISCORD_", "MENTORBOT_"))
            and k.lower() not in ("http_proxy", "https_proxy")
        }
        environment.update(
            MENTORBOT_DATABASE_URL=url,
            SLACK_BOT_TOKEN=DEFAULT_BOT_TOKEN,
            SLACK_SIGNING_SECRET=DEFAULT_SIGNING_SECRET,
            SLACK_API_URL=slack.base_url,
            PORT=str(self.port),
            **env,
        )
        self.process = subprocess.Popen(
            [*mentorbot_command(), "run", "--adapter", "slack"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=environment,
        )
        self.log: list[str] = []
        self._changed = threading.Condition()
        assert self.process.stderr is not None
        stderr = self.process.stderr

        def read() -> None:
            for line in stderr:
                with self._changed:
                    self.log.append(line)
                    self._changed.notify_all()

        threading.Thread(target=read, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        with self._changed:
            if not self._changed.wait_for(
                lambda: any(text in line for line in self.log), timeout=timeout
            ):
                raise AssertionError(f"never logged {text!r}: {''.join(self.log)[-3000:]}")

    def terminate(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        """Make sure the process is gone (test clean-up)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
