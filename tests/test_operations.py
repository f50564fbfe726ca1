"""Operating mentorbot: health and metrics, signals, reload, logs, shutdown."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from bot.config import Settings, bundled_content_dir
from bot.messages import OutgoingMessage, SendResult
from bot.models import Delivery
from mentorbot.bootstrap import App
from mentorbot.logs import JsonFormatter, KeyValueFormatter, redact
from tests.conftest import Clock
from tests.harness import Chat
from tests.test_console_e2e import mentorbot_command

LESSON_023 = (
    "# 0.2.3 Principal Data Engineer (GCP)\n\n## Scope\nWider than one team.\n\n"
    "## Discussion Questions\n- What is your scope today?\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Bot:
    """A real ``mentorbot run`` with the console adapter, driven through stdin."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "DISCORD_", "MENTORBOT_"))
        }
        environment.update(MENTORBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}", **env)
        self.process = subprocess.Popen(
            [*mentorbot_command(), "run", "--adapter", "console"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=environment,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        assert self.process.stdout and self.process.stderr
        stdout, stderr = self.process.stdout, self.process.stderr
        threading.Thread(target=lambda: [self.out.put(x) for x in stdout], daemon=True).start()
        threading.Thread(target=lambda: [self.err.append(x) for x in stderr], daemon=True).start()

    def type(self, line: str) -> None:
        assert self.process.stdin
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if text in self.out.get(timeout=max(0.01, deadline - time.monotonic())):
                    return
            except queue.Empty:
                break
        raise AssertionError(f"never saw {text!r}; stderr: {''.join(self.err)[-2000:]}")

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.err)):
                return
            time.sleep(0.05)
        raise AssertionError(f"never logged {text!r}; stderr: {''.join(self.err)[-2000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


@pytest.mark.slow
def test_health_readiness_metrics_and_sigterm(tmp_path: Path) -> None:
    port = free_port()
    bot = Bot(tmp_path, MENTORBOT_HTTP="on", PORT=str(port))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        assert get(f"{base}/healthz") == (200, '{"status": "ok"}')
        status, body = get(f"{base}/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"] == {
            "database": "ok",
            "migrations": "ok",
            "adapter:console": "ok",
        }
        bot.type("/mentor start")
        bot.wait_for("day 1 of 3")
        bot.type("my answer")
        bot.wait_for("Thanks, I kept your answer")
        status, metrics = get(f"{base}/metrics")
        assert status == 200
        for name in (
            "mentorbot_outbox_depth 0.0",
            "mentorbot_outbox_oldest_pending_seconds 0.0",
            "mentorbot_replies_stored 1.0",
            'mentorbot_deliveries_total{kind="lesson",status="sent"} 1.0',
            'mentorbot_send_seconds_count{platform="console"} 1.0',
            'mentorbot_command_ack_seconds_count{platform="console"} 2.0',
            "mentorbot_rate_limited_total",
            "mentorbot_send_retries_total",
        ):
            assert name in metrics, name
        queued = [line for line in metrics.splitlines() if line.startswith("mentorbot_outbox_rows")]
        assert not any('status="sent"' in line for line in queued), queued
        started = time.monotonic()
        assert bot.stop() == 0
        assert time.monotonic() - started < 20
        assert any("shutting down" in line for line in bot.err)
    finally:
        bot.stop()


@pytest.mark.slow
def test_sighup_and_reload_pick_up_lessons_and_keep_the_last_good_course(
    tmp_path: Path,
) -> None:
    content = tmp_path / "content"
    shutil.copytree(bundled_content_dir(), content)
    bot = Bot(tmp_path, MENTORBOT_CONTENT_DIR=str(content))
    try:
        bot.type("/mentor courses")
        bot.wait_for(", 1 lesson")
        (content / "data-engineering" / "0.2.3.md").write_text(LESSON_023, encoding="utf-8")
        bot.process.send_signal(signal.SIGHUP)
        bot.wait_for_log("content reloaded: 1 course(s)")
        bot.type("/mentor courses")
        bot.wait_for(", 2 lessons")
        broken = content / "data-engineering" / "0.2.4.md"
        broken.write_text("no heading\n## A\nx\n", encoding="utf-8")
        bot.process.send_signal(signal.SIGHUP)
        bot.wait_for_log(f"{broken}:1: no lesson heading")
        bot.wait_for_log("the last good course stays in use")
        bot.type("/mentor reload")  # the console user is a lead
        bot.wait_for("so I kept the last good version")
        bot.type("/mentor courses")
        bot.wait_for(", 2 lessons")
        broken.unlink()
        bot.type("/mentor reload")
        bot.wait_for("Reloaded: 1 course, 2 lessons")
    finally:
        assert bot.stop() == 0


def test_learners_waiting_for_a_lesson_get_it_after_a_reload(
    app: App, clock: Clock, tmp_path: Path
) -> None:
    content = tmp_path / "content"
    shutil.copytree(bundled_content_dir(), content)
    app.catalog.path = content
    chat = Chat(app)
    for text in ("/mentor start", "a", "/mentor next", "b", "/mentor next", "c"):
        chat.say(text)
    assert "isn't published yet" in chat.text("/mentor continue")
    (content / "data-engineering" / "0.2.3.md").write_text(LESSON_023, encoding="utf-8")
    assert "Reloaded: 1 course, 2 lessons" in Chat(app, user="lena", lead=True).text(
        "/mentor reload"
    )
    asyncio.run(app.engine.tick())
    lesson = chat.adapter.of_kind("lesson")[-1]
    assert lesson.title == "0.2.3 Principal Data Engineer (GCP) — day 1 of 1"


class SlowPlatform:
    platform = "console"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: OutgoingMessage) -> SendResult:
        await asyncio.sleep(0.02)
        self.sent.append(str(message.delivery_key))
        return SendResult("slow", (str(message.delivery_key),))

    async def start(self, sink: object) -> None:
        return None

    async def stop(self) -> None:
        return None


def test_shutdown_mid_fan_out_finishes_or_gives_back_every_row(app: App, clock: Clock) -> None:
    for n in range(40):
        Chat(app, user=f"u{n}").say("/mentor start")
    clock.advance(days=1, hours=1)  # Thursday 09:00: forty day-2 lessons due
    platform = SlowPlatform()
    app.dispatcher.adapters["console"] = platform  # type: ignore[assignment]
    app.dispatcher.concurrency = 2

    async def scenario() -> int:
        ticking = asyncio.create_task(app.engine.tick())
        while len(platform.sent) < 5:
            await asyncio.sleep(0.005)
        app.dispatcher.accepting = False
        await app.engine.drain()
        await ticking
        return await app.dispatcher.release_all()

    released = asyncio.run(scenario())
    with Session(app.store.engine) as session:
        rows = session.exec(select(Delivery).where(Delivery.day == 2)).all()
    sent = [r for r in rows if r.status == "sent"]
    pending = [r for r in rows if r.status == "pending"]
    assert len(sent) == len(platform.sent) and 5 <= len(sent) < 40
    assert len(sent) + len(pending) == 40  # nothing left "sending"
    # Rows still in the workspace's queue went back; rows never claimed stayed as they were.
    assert all(r.lease_owner is None for r in pending) and 0 < released <= len(pending)
    # Another replica (a fresh dispatcher) picks them up at once.
    app.dispatcher.accepting = True
    asyncio.run(app.dispatcher.run_once())
    assert len(platform.sent) == 40 and len(set(platform.sent)) == 40
    assert app.dispatcher.lease == timedelta(minutes=2)


def test_logs_are_structured_and_never_carry_tokens() -> None:
    record = logging.makeLogRecord(
        {
            "name": "bot.dispatch",
            "levelname": "WARNING",
            "msg": "send failed with token xoxb-123-456-abcdef",
            "delivery": 42,
            "workspace": "T1",
        }
    )
    line = KeyValueFormatter().format(record)
    assert "level=warning" in line and "delivery=42" in line and "workspace=T1" in line
    assert "xoxb" not in line and "[redacted]" in line
    data = json.loads(JsonFormatter().format(record))
    assert data["delivery"] == 42 and "xoxb" not in data["msg"]
    assert redact("Bot MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDE.abcdefghijklmnopqrstuvwxyz12345") == (
        "Bot [redacted]"
    )


def test_log_lines_carry_the_ids_of_the_work_they_belong_to(app: App, clock: Clock) -> None:
    from bot.ports import TemporarySendError

    Chat(app, user="ana").say("/mentor start")
    clock.advance(days=1, hours=1)
    Chat(app).adapter.fail_with = [TemporarySendError("HTTP 503")]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("bot.dispatch")
    logger.addHandler(handler)
    try:
        asyncio.run(app.engine.tick())
    finally:
        logger.removeHandler(handler)
    [line] = [x for x in stream.getvalue().splitlines() if "will be retried" in x]
    assert "workspace=local" in line and "learner=ana" in line
    assert "delivery=" in line and "kind=lesson" in line and "platform=console" in line
    assert "Do you prefer" not in stream.getvalue()  # no lesson or reply text in logs


def test_watching_the_content_folder_reloads_edited_lessons(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    from dataclasses import replace

    from mentorbot.bootstrap import build

    content = tmp_path / "content"
    shutil.copytree(bundled_content_dir(), content)
    app = build(replace(settings, content_dir=content, content_watch=True), clock=clock)
    try:
        asyncio.run(app.engine.tick())
        assert len(app.catalog.catalog.default.lessons) == 1
        (content / "data-engineering" / "0.2.3.md").write_text(LESSON_023, encoding="utf-8")
        asyncio.run(app.engine.tick())
        assert len(app.catalog.catalog.default.lessons) == 2
        (content / "data-engineering" / "0.2.4.md").write_text("broken\n", encoding="utf-8")
        asyncio.run(app.engine.tick())
        assert len(app.catalog.catalog.default.lessons) == 2  # the last good one stays
    finally:
        app.store.dispose()
