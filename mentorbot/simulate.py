"""``mentorbot simulate``: a learner's weeks replayed in seconds on a virtual clock.

The real core, planner, dispatcher and console rendering run; only the clock is
virtual. It starts at the script's first line and jumps from one due instant to the
next (lessons, reminders, follow-ups, digests, retries), never backwards, so what the
transcript shows is exactly what the engine would do over those weeks.

A script line is ``YYYY-MM-DDTHH:MM TEXT`` (the learner, ``@learner`` to a lead) or
``YYYY-MM-DDTHH:MM @lead TEXT`` (a lead of the same workspace), in the local time of
``--tz``; ``#`` starts a comment.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from adapters.console import render
from bot.commands import is_command
from bot.config import Settings
from bot.messages import EventKind, IncomingEvent, OutgoingMessage, SendResult
from bot.planner import next_due
from bot.schedule import ScheduleError, parse_zone

PLATFORM = "console"
WORKSPACE = "simulated"
LEARNER = "learner"
LEAD = "lead"
DEFAULT_TAIL = timedelta(days=14)
MAX_STEPS = 1_000_000  # a guard against a loop that never reaches --until


class ScriptError(ValueError):
    """A script line that cannot be replayed; ``str`` names ``FILE:LINE``."""


@dataclass(frozen=True)
class Line:
    at: datetime  # UTC
    who: str  # you | lead
    text: str
    number: int


def parse_script(lines: Iterable[str], zone: ZoneInfo, name: str) -> list[Line]:
    """Parse a script; raises ``ScriptError`` naming the file and line of the problem."""
    out: list[Line] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        stamp, _, text = line.strip().partition(" ")
        try:
            local = datetime.strptime(stamp, "%Y-%m-%dT%H:%M")
        except ValueError:
            raise ScriptError(
                f"{name}:{number}: {stamp!r} is not a time; write YYYY-MM-DDTHH:MM, "
                "e.g. 2027-03-01T09:15"
            ) from None
        at = local.replace(tzinfo=zone).astimezone(UTC)
        who = "you"
        text = text.strip()
        if text.startswith("@lead"):
            who, text = "lead", text[len("@lead") :].strip()
        if not text:
            raise ScriptError(f"{name}:{number}: nothing to say after the time")
        if out and at < out[-1].at:
            raise ScriptError(
                f"{name}:{number}: {stamp} is earlier than the line before; time never goes "
                "backwards in a script"
            )
        out.append(Line(at, who, text, number))
    if not out:
        raise ScriptError(f"{name}: the script has no lines to replay")
    return out


def course_script(course_id: str, zone: ZoneInfo, today: date, at: time) -> list[Line]:
    """A silent learner who starts ``course_id`` on the next Monday at delivery time."""
    monday = today + timedelta(days=(7 - today.weekday()) or 7)
    start = datetime.combine(monday, at, tzinfo=zone).astimezone(UTC)
    return [Line(start, "you", f"/mentor start {course_id}", 0)]


class VirtualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Transcript:
    """Writes each message as ``--- YYYY-MM-DDTHH:MM WHO KIND`` and its text."""

    def __init__(self, out: TextIO, zone: ZoneInfo, clock: VirtualClock) -> None:
        self.out = out
        self.zone = zone
        self.clock = clock
        self.messages = 0

    def write(self, who: str, kind: str, text: str) -> None:
        stamp = self.clock.now.astimezone(self.zone).strftime("%Y-%m-%dT%H:%M")
        self.out.write(f"--- {stamp} {who} {kind}\n{text.rstrip()}\n\n")
        self.messages += 1

    def bot(self, message: OutgoingMessage) -> None:
        kind = {"response": "reply", "ack": "answer-ack"}.get(message.kind, message.kind)
        # Whom it reaches, unless it is the learner or the lead of the script: someone a
        # lead enrolled (``@lead /mentor assign @ana``), or a channel (a digest).
        if message.channel and message.channel != f"dm-{message.user}":
            kind += f" in #{message.channel}"
        elif message.user not in (LEARNER, LEAD):
            kind += f" to @{message.user}"
        files = "".join(f"\n[file: {a.filename}]" for a in message.attachments)
        self.write("bot", kind, render(message).strip("\n") + files)


class TranscriptAdapter:
    """The console adapter's rendering, written to the transcript: a real adapter port."""

    platform = PLATFORM

    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        self.sent = 0

    async def start(self, sink: object) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, message: OutgoingMessage) -> SendResult:
        self.sent += 1
        self.transcript.bot(message)
        return SendResult(channel=f"dm-{message.user}", message_ids=(f"sim-{self.sent}",))

    async def respond(self, messages: list[OutgoingMessage]) -> None:
        for message in messages:
            self.transcript.bot(message)


async def _replay(
    settings: Settings, script: list[Line], until: datetime, zone: ZoneInfo, out: TextIO
) -> int:
    from mentorbot.bootstrap import build

    clock = VirtualClock(script[0].at)
    # The script's times are in --tz, and so is everyone the simulation creates (people a
    # lead enrols have not said where they are yet).
    app = build(replace(settings, timezone=zone.key), clock=clock)
    transcript = Transcript(out, zone, clock)
    adapter = TranscriptAdapter(transcript)
    app.dispatcher.adapters[PLATFORM] = adapter

    async def run_due(up_to: datetime) -> None:
        """Let the engine do everything due up to ``up_to``, one due instant at a time."""
        await app.engine.tick()
        for _ in range(MAX_STEPS):
            upcoming = await asyncio.to_thread(
                app.store.run, lambda session: next_due(session, clock.now)
            )
            if upcoming is None or upcoming > up_to:
                break
            clock.now = upcoming
            await app.engine.tick()
        clock.now = max(clock.now, up_to)

    try:
        for line in script:
            await run_due(line.at)
            user = LEARNER if line.who == "you" else LEAD
            kind = EventKind.COMMAND if is_command(line.text) else EventKind.MESSAGE
            transcript.write(
                line.who, "command" if kind is EventKind.COMMAND else "message", line.text
            )
            event = IncomingEvent(
                platform=PLATFORM,
                workspace=WORKSPACE,
                workspace_name="simulation",
                user=user,
                user_name=user,
                timezone=zone.key,
                kind=kind,
                text=line.text,
                platform_is_lead=line.who == "lead",
                received_at=clock.now,
            )
            await app.hub.handle(event, adapter.respond)
        await run_due(until)
    finally:
        app.store.dispose()
    return transcript.messages


def simulate(
    settings: Settings,
    script: list[Line],
    *,
    zone: ZoneInfo,
    until: datetime | None,
    out: TextIO,
    database_url: str | None,
) -> int:
    """Replay ``script``; returns the number of messages written to ``out``."""
    end = until or script[-1].at + DEFAULT_TAIL
    if end < script[-1].at:
        raise ScriptError("--until is before the script's last line")
    if database_url:
        return asyncio.run(
            _replay(replace(settings, database_url=database_url), script, end, zone, out)
        )
    with tempfile.TemporaryDirectory(prefix="mentorbot-simulate-") as folder:
        url = f"sqlite:///{Path(folder) / 'simulation.db'}"
        return asyncio.run(_replay(replace(settings, database_url=url), script, end, zone, out))


def parse_until(value: str | None, zone: ZoneInfo) -> datetime | None:
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ScriptError(f"--until {value!r} is not a date; write YYYY-MM-DD") from None
    # The whole of that local day is included.
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


def zone_of(value: str) -> ZoneInfo:
    try:
        return parse_zone(value)
    except ScheduleError as exc:
        raise ScriptError(f"--tz: {exc}") from None
