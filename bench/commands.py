"""Answers under load: how long people wait for mentorbot's answer, not just its ack.

On SQLite and on PostgreSQL (a fresh schema; skipped with a note when the server is not
reachable), the real app with the real Slack and Discord adapters on loopback:

1. Slack, read-only commands: 200 people who exist and are enrolled send ``/mentor
   help`` (their first command since the process started, so each costs a users.info
   call), then ``progress``, ``help`` and ``progress`` again, all 200 at once per round;
   figures for all four rounds, and for the two repeated ones (no first lookups).
   A load generator in another process (so it does not share the server's CPU and GIL)
   signs each request as Slack does and sends it to the app's HTTP endpoint; the answer
   counts when it reaches the Slack emulator (the POST to the command's response_url),
   measured from the moment the request was sent. Target: p99 at most 250 ms.
2. Slack, ``/mentor start`` from 200 new people at once; the answer is the welcome on
   the response_url (the first lesson-day then goes to their DM, paced by the
   dispatcher, and is not counted). Target: p99 at most 600 ms.
3. Discord, 50 interactions at once (``/mentor progress``, 10 rounds): from the
   emulator sending INTERACTION_CREATE to the answer being shown (the interaction
   callback, or the edit of a deferred one), both taken by the emulator. Target: p99 at
   most 100 ms.

Both emulators run in processes of their own, as Slack and Discord do not run on the
app's machine. ``--emulators thread`` puts them on threads of this process instead, as
bench/slack_ack.py and bench/discord_interactions.py do: they then share this process's
CPU and GIL (the Slack one takes a tenth to a fifth of each answer's CPU from the app,
and the Discord one needs 20 to 80 ms to send a round's 50 frames), so those figures are
pessimistic. Each round's CPU time of this process is printed per answer. Nothing is
judged here: figures are printed, and the last line is the RESULT line.

Run: ``.venv/bin/python bench/commands.py [--database sqlite|postgres|both]
[--emulators process|thread]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the emulators live with the tests

import aiohttp  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from adapters.discord import DiscordAdapter  # noqa: E402
from bench.common import database, postgres_available  # noqa: E402
from bench.discord_interactions import (  # noqa: E402
    CHANNEL,
    FIRST_USER,
    GUILD,
    TOKEN,
    report_latency,
    start_app,
    stop_app,
)
from bench.discord_interactions import Bench as DiscordBench  # noqa: E402
from bench.slack_ack import Running  # noqa: E402
from bot.config import Settings, bundled_content_dir  # noqa: E402
from bot.models import Enrolment, Learner, Workspace  # noqa: E402
from mentorbot.bootstrap import App, build  # noqa: E402
from tests.emulators.discord_api import (  # noqa: E402
    DiscordEmulator,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeUser,
    InteractionType,
)
from tests.emulators.slack_api import (  # noqa: E402
    DEFAULT_BOT_TOKEN,
    DEFAULT_SIGNING_SECRET,
    DEFAULT_TEAM_ID,
    SlackEmulator,
    sign_request,
    slash_command_body,
)

PEOPLE = 200  # concurrent Slack commands per round
READ_ROUNDS = ("help", "progress", "help", "progress")
DISCORD_CONCURRENCY = 50
DISCORD_ROUNDS = 10
ANSWER_TIMEOUT = 120.0  # seconds a round may take before the bench gives up
ZONE = "Europe/Berlin"
TARGETS = {"read": 250.0, "start": 600.0, "discord": 100.0}


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile, as bench/slack_ack.py reports it."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def enrolled_user(n: int) -> str:
    return f"UR{n:07d}"


def new_user(n: int) -> str:
    return f"UN{n:07d}"


def fire(url: str, commands: list[tuple[str, str, str]]) -> list[tuple[float, float]]:
    """Runs in the load generator's process: sign ``/mentor <text>`` from each (user,
    text, response_url), as Slack would (so the signing is not counted as the app's
    CPU), send every request at once and return, for each, the wall-clock time it was
    sent (to compare with the emulator's clock) and its time to the HTTP ack in
    milliseconds."""
    requests = [signed(user, text, response_url) for user, text, response_url in commands]

    async def one(
        http: aiohttp.ClientSession, body: str, headers: dict[str, str]
    ) -> tuple[float, float]:
        sent = time.time()
        began = time.perf_counter()
        async with http.post(url, data=body.encode(), headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"answered HTTP {response.status}: {await response.text()}")
        return sent, (time.perf_counter() - began) * 1000

    async def main() -> list[tuple[float, float]]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            return list(await asyncio.gather(*(one(http, b, h) for b, h in requests)))

    return asyncio.run(main())


class SlackHere:
    """The Slack emulator on a thread of this process; what the rounds ask of it."""

    def __init__(self, users: list[str]) -> None:
        self.slack = SlackEmulator()
        self.users = users

    def __enter__(self) -> SlackHere:
        self.slack.start()
        for user in self.users:
            self.slack.add_user(user, name=f"learner {user}", tz=ZONE)
        self.base_url = self.slack.base_url
        return self

    def __exit__(self, *exc: object) -> None:
        self.slack.stop()

    def new_response_url(self) -> str:
        return self.slack.new_response_url()

    async def answers_since(self, before: int) -> list[tuple[str, float]]:
        """(response_url, when it was posted to) of every answer after the first
        ``before``."""
        calls = self.slack.calls_to("response_url")[before:]
        return [(str(call.params.get("response_url")), call.time) for call in calls]


def _serve_slack(conn: Connection, users: list[str]) -> None:
    """The emulator's process: serve Slack, answer the bench's questions on ``conn``."""
    with SlackEmulator() as slack:
        for user in users:
            slack.add_user(user, name=f"learner {user}", tz=ZONE)
        conn.send((slack.url, slack.base_url))
        while (request := conn.recv()) is not None:
            calls = slack.calls_to("response_url")[request:]
            conn.send([(str(call.params.get("response_url")), call.time) for call in calls])


class SlackElsewhere:
    """The Slack emulator in a process of its own, so its work (answering users.info,
    taking the answers) is not counted as the app's; asked over a pipe."""

    def __init__(self, users: list[str]) -> None:
        self.users = users

    def __enter__(self) -> SlackElsewhere:
        spawn = multiprocessing.get_context("spawn")
        self.conn, theirs = spawn.Pipe()
        self.process = spawn.Process(target=_serve_slack, args=(theirs, self.users), daemon=True)
        self.process.start()
        self.url, self.base_url = self.conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.send(None)
        self.process.join(10)

    def new_response_url(self) -> str:
        return f"{self.url}/response_url/{uuid.uuid4().hex}"

    async def answers_since(self, before: int) -> list[tuple[str, float]]:
        def ask() -> list[tuple[str, float]]:
            self.conn.send(before)
            answers: list[tuple[str, float]] = self.conn.recv()
            return answers

        return await asyncio.to_thread(ask)


Slack = SlackHere | SlackElsewhere


def seed_enrolled(url: str, users: list[str], now: datetime) -> None:
    """The Slack workspace and ``users`` enrolled in the default course, with the name and
    time zone users.info gives them (so their read-only commands stay read-only)."""

    settings = Settings(database_url=url, content_dir=bundled_content_dir())
    app = build(settings)
    course = app.service.catalog.default
    try:
        with app.store.engine.begin() as conn:
            workspace_id = conn.execute(
                sa.insert(Workspace.__table__).returning(Workspace.__table__.c.id),  # type: ignore[attr-defined]
                {"platform": "slack", "external_id": DEFAULT_TEAM_ID, "created_at": now},
            ).scalar_one()
            ids = (
                conn.execute(
                    sa.insert(Learner.__table__).returning(Learner.__table__.c.id),  # type: ignore[attr-defined]
                    [
                        {
                            "workspace_id": workspace_id,
                            "user_id": user,
                            "display_name": f"learner {user}",
                            "timezone": ZONE,
                            "role": "learner",
                            "created_at": now,
                        }
                        for user in users
                    ],
                )
                .scalars()
                .all()
            )
            conn.execute(
                sa.insert(Enrolment.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "learner_id": learner_id,
                        "course_id": course.id,
                        "lesson_id": course.first_lesson().id,
                        "day": 1,
                        "status": "active",
                        "next_due_at": now + timedelta(hours=20),
                        "started_at": now,
                        "updated_at": now,
                    }
                    for learner_id in ids
                ],
            )
    finally:
        app.store.dispose()


def signed(user: str, text: str, response_url: str) -> tuple[str, dict[str, str]]:
    """The body and headers of ``/mentor <text>`` from ``user``, signed as Slack signs."""
    body = slash_command_body(
        "/mentor", text, user_id=user, user_name=user.lower(), response_url=response_url
    )
    headers = {
        **sign_request(DEFAULT_SIGNING_SECRET, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return body, headers


async def answered(slack: Slack, wanted: set[str], before: int) -> dict[str, float]:
    """Wait until every response_url in ``wanted`` was posted to (``before``: how many
    response_url posts there were before); when each was first. Looks every 50 ms:
    this process is the app's, and its CPU is measured."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    found: dict[str, float] = {}
    seen = before
    while True:
        answers = await slack.answers_since(seen)
        seen += len(answers)
        for url, at in answers:
            if url in wanted:
                found.setdefault(url, at)  # the first answer; more may follow
        if len(found) >= len(wanted):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(wanted) - len(found)} answers never arrived")
        await asyncio.sleep(0.05)


async def slack_round(
    slack: Slack,
    running: Running,
    client: ProcessPoolExecutor,
    users: list[str],
    text: str,
) -> tuple[list[float], list[float]]:
    """One round of ``/mentor <text>`` from every user at once: (answer ms, ack ms)."""
    urls = [slack.new_response_url() for _ in users]
    commands = [(user, text, url) for user, url in zip(users, urls, strict=True)]
    before = len(await slack.answers_since(0))
    loop = asyncio.get_running_loop()
    results = await loop.run_in_executor(client, fire, running.url, commands)
    times = await answered(slack, set(urls), before)
    answers = [(times[url] - sent) * 1000 for url, (sent, _) in zip(urls, results, strict=True)]
    return answers, [ack for _, ack in results]


def describe(label: str, samples: list[float], target: float | None = None) -> str:
    goal = f"; target p99 <= {target:.0f} ms" if target is not None else ""
    return (
        f"  {label:<22} p50 {percentile(samples, 50):6.1f} ms   "
        f"p99 {percentile(samples, 99):6.1f} ms   max {max(samples):6.1f} ms   "
        f"(mean {statistics.fmean(samples):.1f} ms{goal})"
    )


async def slack_bench(kind: str, figures: dict[str, str], emulator: str = "process") -> None:
    now = datetime.now(UTC)
    readers = [enrolled_user(n) for n in range(PEOPLE)]
    starters = [new_user(n) for n in range(PEOPLE)]
    spawn = multiprocessing.get_context("spawn")
    everyone = [*readers, *starters, "UWARMUP"]
    with (
        database(kind) as url,
        SlackElsewhere(everyone) if emulator == "process" else SlackHere(everyone) as slack,
        ProcessPoolExecutor(max_workers=1, mp_context=spawn) as client,
    ):
        seed_enrolled(url, readers, now)
        settings = Settings(
            database_url=url,
            content_dir=bundled_content_dir(),
            slack_bot_token=DEFAULT_BOT_TOKEN,
            slack_signing_secret=DEFAULT_SIGNING_SECRET,
            slack_api_url=slack.base_url,
        )
        async with Running(settings) as running:
            # One request first, so imports, the first connections and the workspace's
            # first lookups are not counted.
            await slack_round(slack, running, client, ["UWARMUP"], "help")
            reads: list[float] = []
            warm: list[float] = []  # once every command has been asked before
            acks: list[float] = []
            print(
                f"Slack, {kind} (emulator in a {emulator} of its own): "
                f"{PEOPLE} enrolled people at once, answer time per round"
            )
            for number, text in enumerate(READ_ROUNDS, start=1):
                began, cpu = time.perf_counter(), time.process_time()
                answers, round_acks = await slack_round(slack, running, client, readers, text)
                wall = (time.perf_counter() - began) * 1000
                used = (time.process_time() - cpu) * 1000 / PEOPLE
                reads += answers
                if text in READ_ROUNDS[: number - 1]:
                    warm += answers
                acks += round_acks
                print(
                    describe(f"{number}. /mentor {text}", answers)
                    + f" round {wall:.0f} ms, CPU {used:.2f} ms/answer"
                )
            print(describe("all read-only answers", reads, TARGETS["read"]))
            print(describe("the repeated rounds", warm, TARGETS["read"]))
            print(describe("their acks", acks))
            began, cpu = time.perf_counter(), time.process_time()
            starts, start_acks = await slack_round(slack, running, client, starters, "start")
            wall = (time.perf_counter() - began) * 1000
            used = (time.process_time() - cpu) * 1000 / PEOPLE
            print(
                describe("/mentor start (new)", starts, TARGETS["start"])
                + f" round {wall:.0f} ms, CPU {used:.2f} ms/answer"
            )
            print(describe("their acks", start_acks))
            running.app.dispatcher.stop()  # the lesson-days still paced out are not measured
    figures[f"slack_read_p50_ms_{kind}"] = f"{percentile(reads, 50):.1f}"
    figures[f"slack_read_p99_ms_{kind}"] = f"{percentile(reads, 99):.1f}"
    figures[f"slack_read_repeated_p99_ms_{kind}"] = f"{percentile(warm, 99):.1f}"
    figures[f"slack_start_p50_ms_{kind}"] = f"{percentile(starts, 50):.1f}"
    figures[f"slack_start_p99_ms_{kind}"] = f"{percentile(starts, 99):.1f}"


def _serve_discord(conn: Connection, learners: int) -> None:
    """The Discord emulator's process: serve Discord, run the bench's rounds on ``conn``."""
    asyncio.run(_discord_server(conn, learners))


async def _discord_server(conn: Connection, learners: int) -> None:
    users = [FakeUser(FIRST_USER + n, f"learner{n}") for n in range(learners)]
    guild = FakeGuild(
        id=GUILD,
        name="Bench",
        channels=[FakeChannel(CHANNEL, "general")],
        members=[FakeMember(u) for u in users],
    )
    dc = DiscordEmulator(guilds=[guild], users=users, token=TOKEN, heartbeat_interval_ms=30_000)
    await dc.start()
    conn.send((dc.base_url, dc.gateway_url))
    loop = asyncio.get_running_loop()
    while (request := await loop.run_in_executor(None, conn.recv)) is not None:
        first, count, name = request
        conn.send(await _discord_round(dc, users[first : first + count], name))
    await dc.close()


async def _discord_round(
    dc: DiscordEmulator, users: list[FakeUser], name: str
) -> list[tuple[float, float]]:
    """In the emulator's process: ``/mentor <name>`` from every user at once; for each,
    seconds from sending INTERACTION_CREATE to the callback (the ack), and to the answer
    being shown (the callback itself, or the edit of a deferred one)."""
    payloads = [
        dc.make_interaction(
            InteractionType.APPLICATION_COMMAND, u.id, guild_id=GUILD, command=f"mentor {name}"
        )
        for u in users
    ]
    await asyncio.gather(*(dc.dispatch("INTERACTION_CREATE", p) for p in payloads))
    wanted = {str(p["id"]): str(p["token"]) for p in payloads}
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        sent_at = {
            str(frame.data["id"]): frame.time
            for frame in list(dc.gateway_sent)
            if frame.event == "INTERACTION_CREATE" and str(frame.data["id"]) in wanted
        }
        edits: dict[str, float] = {}
        for request in dc.requests_to(None, r"/webhooks/.*"):
            edits.setdefault(request.path.split("/")[3], request.time)
        timings = []
        for itx, started in sent_at.items():
            callbacks = dc.callbacks_for(int(itx))
            if not callbacks:
                break
            ack = callbacks[0]
            shown = ack.time if ack.type == 4 else edits.get(wanted[itx])
            if shown is None:
                break
            timings.append((ack.time - started, shown - started))
        if len(timings) == len(wanted):
            return timings
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(wanted) - len(timings)} interactions never answered")
        await asyncio.sleep(0.01)


class DiscordElsewhere:
    """The real app and Discord adapter here, the Discord emulator in a process of its
    own that sends the interactions and times the answers; asked over a pipe."""

    def __init__(self, learners: int, url: str) -> None:
        self.learners = learners
        self.url = url
        self.figures: dict[str, str] = {}
        self.app: App | None = None
        self.adapter: DiscordAdapter | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.conn, theirs = spawn.Pipe()
        self.process = spawn.Process(
            target=_serve_discord, args=(theirs, self.learners), daemon=True
        )
        self.process.start()
        api_url, gateway_url = await asyncio.to_thread(self.conn.recv)
        self.app, self.adapter, self.task = await start_app(self.url, api_url, gateway_url)

    async def stop(self) -> None:
        await stop_app(self.app, self.adapter, self.task)
        self.conn.send(None)
        self.process.join(10)

    async def round(self, first: int, count: int, name: str) -> list[tuple[float, float]]:
        def ask() -> list[tuple[float, float]]:
            self.conn.send((first, count, name))
            timings: list[tuple[float, float]] = self.conn.recv()
            return timings

        return await asyncio.to_thread(ask)

    async def latency(self, concurrency: int, rounds: int) -> None:
        """As bench/discord_interactions.py measures it: a warm-up (the first person
        alone, as it creates the workspace, then the rest), then ``rounds`` rounds."""
        await self.round(0, 1, "help")
        await self.round(1, concurrency - 1, "help")
        samples: list[tuple[float, float]] = []
        for _ in range(rounds):
            samples += await self.round(0, concurrency, "progress")
        print(f"interactions: {len(samples)} in {rounds} rounds of {concurrency} concurrent")
        report_latency(samples, self.figures)


async def discord_bench(kind: str, figures: dict[str, str], emulator: str = "process") -> None:
    print(
        f"Discord, {kind} (emulator in a {emulator} of its own): "
        f"{DISCORD_CONCURRENCY} interactions at once"
    )
    with database(kind) as url:
        bench: DiscordBench | DiscordElsewhere = (
            DiscordElsewhere(DISCORD_CONCURRENCY, url)
            if emulator == "process"
            else DiscordBench(DISCORD_CONCURRENCY, url)
        )
        await bench.start()
        try:
            await bench.latency(DISCORD_CONCURRENCY, DISCORD_ROUNDS)
        finally:
            await bench.stop()
    figures[f"discord_answer_p50_ms_{kind}"] = bench.figures["answer_p50_ms"]
    figures[f"discord_answer_p99_ms_{kind}"] = bench.figures["answer_p99_ms"]
    figures[f"discord_ack_p99_ms_{kind}"] = bench.figures["ack_p99_ms"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--emulators", choices=["process", "thread"], default="process")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(
        f"mentorbot answers under load — Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    if "postgres" in kinds and not postgres_available():
        print("PostgreSQL is not reachable: its figures are left out")
        kinds.remove("postgres")
    figures: dict[str, str] = {}
    for kind in kinds:
        await slack_bench(kind, figures, args.emulators)
        await discord_bench(kind, figures, args.emulators)
    figures["load"] = f"{os.getloadavg()[0]:.2f}"
    print(f"RESULT name=commands {' '.join(f'{k}={v}' for k, v in figures.items())}")


if __name__ == "__main__":
    asyncio.run(main())
