"""Two Slack workspaces on one installation, for the fairness test and benchmark.

Workspace A has many learners due at one instant, behind a per-workspace limit on
``chat.postMessage``; workspace B has ten learners due at the same instant and one
reminder due a little later. Everything is measured on the Slack emulator's side: when
each message was accepted, which workspace it went to, and whether any was posted
twice. Replicas are the real ``mentorbot`` serving path (``bootstrap.serve``: the
default 60 s tick, the planning and sending loops, the Slack adapter in multi-workspace
mode), run in this process or as separate processes sharing one database.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from slack_sdk.oauth.installation_store import Installation

from adapters.slack import SlackAdapter
from bot.config import Settings, bundled_content_dir
from bot.crypto import generate_key
from bot.db import Store
from bot.models import Delivery
from mentorbot.bootstrap import build, serve
from tests.emulators.slack_api import DEFAULT_SIGNING_SECRET, RecordedCall, SlackEmulator
from tests.support.seeding import seed_workspace

REPO = Path(__file__).resolve().parents[2]
TEAM_A, TOKEN_A = "T0000000A", "xoxb-workspace-a"
TEAM_B, TOKEN_B = "T0000000B", "xoxb-workspace-b"
EVERY_DAY = "mon,tue,wed,thu,fri,sat,sun"


@dataclass(frozen=True)
class Plan:
    settings: Settings
    due_at: float  # epoch seconds: when A's and B's lessons fall due
    reminder_at: float  # epoch seconds: when B's reminder falls due
    a_learners: int
    b_learners: int
    rate: float


@dataclass(frozen=True)
class Figures:
    b_lessons_last: float  # seconds after the due instant B's last lesson was accepted
    b_reminder: float  # seconds after its due instant B's reminder was accepted
    a_sent: int
    a_seconds: float  # from the due instant to A's last accepted lesson
    a_share: float  # A's accepted lessons a second, as a share of its limit
    a_429: int
    duplicates: int
    missed: int

    def line(self) -> str:
        return (
            f"b_lessons_last_s={self.b_lessons_last:.2f} b_reminder_s={self.b_reminder:.2f} "
            f"a_sent={self.a_sent} a_seconds={self.a_seconds:.1f} a_share={self.a_share:.3f} "
            f"a_429={self.a_429} duplicates={self.duplicates} missed={self.missed}"
        )


def local_noon_zone() -> str:
    """A fixed-offset zone where it is around midday now, so a reminder (never sent in
    the evening) is due whenever the run happens."""
    offset = (12 - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 14 else offset
    # Etc/GMT signs are inverted: Etc/GMT-3 is UTC+3.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def prepare(
    url: str,
    slack: SlackEmulator,
    *,
    a_learners: int,
    b_learners: int = 10,
    rate: float = 10.0,
    lead: float = 4.0,
    reminder_after: float = 300.0,
) -> Plan:
    """Seed the emulator and the database; lessons fall due ``lead`` seconds from now."""
    settings = Settings(
        database_url=url,
        content_dir=bundled_content_dir(),
        slack_client_id="111.222",
        slack_client_secret="not-a-secret",
        slack_signing_secret=DEFAULT_SIGNING_SECRET,
        slack_api_url=slack.base_url,
        secret_key=generate_key(),
        http="on",
    )
    slack.add_team(TEAM_A, "Workspace A", domain="a")
    slack.add_team(TEAM_B, "Workspace B", domain="b")
    slack.add_bot_token(TOKEN_A, TEAM_A)
    slack.add_bot_token(TOKEN_B, TEAM_B)
    slack.rate_limit("chat.postMessage", rate, per="team")
    zone = local_noon_zone()
    now = datetime.now(UTC)
    due = (now + timedelta(seconds=lead)).replace(microsecond=0) + timedelta(seconds=1)
    remind = due + timedelta(seconds=reminder_after)
    store = Store(url)
    store.upgrade()
    try:
        with store.engine.begin() as conn:
            for team, size in ((TEAM_A, a_learners), (TEAM_B, b_learners + 1)):
                users = [f"U{team[-1]}{n:07d}" for n in range(size)]
                for user in users:
                    slack.add_user(user, team_id=team, name=user.lower(), tz=zone)
                last = size - 1 if team == TEAM_B else size  # B's last: not due today
                learner_ids, enrolment_ids = seed_workspace(
                    conn,
                    platform="slack",
                    external_id=team,
                    users=users,
                    now=now - timedelta(days=1),
                    learner=lambda user, team=team: {
                        "timezone": zone,
                        "delivery_days": EVERY_DAY,
                        "dm_channel": slack.dm_channel_id(user, team),
                    },
                    enrolment=lambda n, last=last: {
                        "next_due_at": due if n < last else due + timedelta(days=1)
                    },
                )
            # B's last learner was asked a question an hour ago and has not answered: its
            # reminder falls due ``reminder_after`` seconds after the lessons.
            conn.execute(
                sa.insert(Delivery.__table__),  # type: ignore[attr-defined]
                {
                    "key": "seed:asked-before",
                    "learner_id": learner_ids[-1],
                    "enrolment_id": enrolment_ids[-1],
                    "kind": "lesson",
                    "origin": "schedule",
                    "course_id": "data-engineering",
                    "lesson_id": "0.2.2",
                    "day": 1,
                    "question": "Have you ever taken ownership of a system?",
                    "status": "sent",
                    "attempts": 1,
                    "due_at": now - timedelta(hours=1),
                    "sent_at": now - timedelta(minutes=30),
                    "remind_at": remind,
                    "platform_channel": slack.dm_channel_id(users[-1], TEAM_B),
                    "created_at": now - timedelta(hours=1),
                },
            )
    finally:
        store.dispose()
    adapter = SlackAdapter(settings, Store(url))
    assert adapter.installations is not None
    for team, token in ((TEAM_A, TOKEN_A), (TEAM_B, TOKEN_B)):
        adapter.installations.sync.save(
            Installation(
                app_id="A0MENTOR",
                enterprise_id=None,
                team_id=team,
                bot_token=token,
                bot_id=f"B{team}",
                bot_user_id=f"UBOT{team[-1]}",
                user_id=f"U{team[-1]}0000000",
                bot_scopes=["chat:write", "im:write", "im:history", "users:read"],
            )
        )
    adapter.store.dispose()
    return Plan(settings, due.timestamp(), remind.timestamp(), a_learners, b_learners, float(rate))


def ok(call: RecordedCall) -> bool:
    """Whether Slack accepted the call (errors come as HTTP 200 with ``ok: false`` too)."""
    return call.status == 200 and isinstance(call.response, dict) and bool(call.response.get("ok"))


def _key(params: dict[str, object]) -> str | None:
    metadata = params.get("metadata")
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    payload = (metadata or {}).get("event_payload") or {}  # type: ignore[union-attr]
    return payload.get("delivery_key")  # type: ignore[no-any-return]


def expected(slack: SlackEmulator, plan: Plan) -> int:
    """Lessons and the reminder the emulator has accepted so far."""
    return sum(1 for call in slack.calls_to("chat.postMessage") if ok(call) and _key(call.params))


def measure(slack: SlackEmulator, plan: Plan) -> Figures:
    """The figures, from what the emulator accepted."""
    posts = [c for c in slack.calls_to("chat.postMessage") if _key(c.params)]
    accepted = [c for c in posts if ok(c)]
    counts = Counter(_key(c.params) for c in accepted)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    a_times = sorted(c.time for c in accepted if c.token == TOKEN_A)
    b_lessons = [
        c.time
        for c in accepted
        if c.token == TOKEN_B and not str(_key(c.params)).startswith("remind:")
    ]
    b_reminders = [c.time for c in accepted if str(_key(c.params)).startswith("remind:")]
    want = plan.a_learners + plan.b_learners + 1
    a_seconds = (a_times[-1] - plan.due_at) if a_times else float("inf")
    return Figures(
        b_lessons_last=(max(b_lessons) - plan.due_at) if b_lessons else float("inf"),
        b_reminder=(min(b_reminders) - plan.reminder_at) if b_reminders else float("inf"),
        a_sent=len(a_times),
        a_seconds=a_seconds,
        a_share=len(a_times) / a_seconds / plan.rate if a_times else 0.0,
        a_429=sum(1 for c in posts if c.token == TOKEN_A and c.status == 429),
        duplicates=duplicates,
        missed=max(0, want - len(counts)),
    )


async def _until_done(slack: SlackEmulator, plan: Plan, timeout: float) -> None:
    want = plan.a_learners + plan.b_learners + 1
    deadline = time.time() + timeout
    while time.time() < deadline:
        if expected(slack, plan) >= want and time.time() > plan.reminder_at:
            return
        await asyncio.sleep(0.2)


async def run_in_process(
    slack: SlackEmulator,
    plan: Plan,
    timeout: float,
    until: Callable[[], bool] | None = None,
    during: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """One replica on this event loop, until every message is accepted, or ``until``
    says so (or ``timeout``). ``during`` runs alongside, given the replica's HTTP port
    (to send it Slack events)."""
    from tests.support.slack_bot import free_port

    settings = replace(plan.settings, port=free_port())
    app = build(settings)
    adapter = SlackAdapter(settings, app.store)
    serving = asyncio.create_task(serve(app, [adapter]))
    side = asyncio.create_task(during(settings.port)) if during else None
    try:
        if until is None:
            await _until_done(slack, plan, timeout)
        else:
            deadline = time.time() + timeout
            while not until() and time.time() < deadline:
                await asyncio.sleep(0.1)
        if side is not None:
            await side
    finally:
        await adapter.stop()
        await serving


def run_replicas(slack: SlackEmulator, plan: Plan, count: int, timeout: float) -> None:
    """``count`` replicas as separate processes on one database, until every message is
    accepted (or ``timeout``); then each is stopped with SIGTERM, as an orchestrator does."""
    from tests.support.slack_bot import free_port

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = []
    for _ in range(count):
        settings = replace(plan.settings, port=free_port())
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.support.many_workspaces", _encode(settings)],
                cwd=REPO,
                env=env,
            )
        )
    try:
        asyncio.run(_until_done(slack, plan, timeout))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _encode(settings: Settings) -> str:
    fields = (
        "database_url",
        "slack_client_id",
        "slack_client_secret",
        "slack_signing_secret",
        "slack_api_url",
        "secret_key",
        "port",
    )
    return json.dumps({name: getattr(settings, name) for name in fields})


async def _replica(encoded: str) -> None:
    settings = Settings(content_dir=bundled_content_dir(), http="on", **json.loads(encoded))
    app = build(settings)
    await serve(app, [SlackAdapter(settings, app.store)])


if __name__ == "__main__":
    asyncio.run(_replica(sys.argv[1]))
