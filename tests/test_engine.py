"""The delivery engine on a hand-moved clock: local-time lessons, nudges, caps, retries,
crash recovery and replicas, against the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.config import Settings, bundled_content_dir
from bot.dispatch import RetryPolicy, owner_is_gone, process_identity
from bot.models import Delivery, Enrolment, Learner, Reply
from bot.outbox import claim
from bot.ports import PermanentSendError, RateLimited, TemporarySendError
from mentorbot.bootstrap import App, build
from tests.conftest import REPO, Clock
from tests.harness import Chat, InboxAdapter, sqlite_locked
from tests.support.journal import read_journal

WED = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # the Clock fixture starts here


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A UTC instant in the week of 23 November 2026 (Monday 23 … Sunday 29)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def tick(app: App) -> None:
    asyncio.run(app.engine.tick())


def inbox(app: App) -> InboxAdapter:
    adapter = app.dispatcher.adapters["console"]
    assert isinstance(adapter, InboxAdapter)
    return adapter


def rows(app: App, *where: object) -> list[Delivery]:
    with Session(app.store.engine) as session:
        return list(session.exec(select(Delivery).where(*where).order_by(col(Delivery.id))))


def started(app: App, user: str = "ana") -> Chat:
    chat = Chat(app, user=user)
    chat.say("/mentor start")  # day 1 arrives at once, Wednesday 08:00 UTC
    return chat


# ---------------------------------------------------------------------- lessons


def test_scheduled_lesson_arrives_at_local_time_exactly_once(app: App, clock: Clock) -> None:
    started(app)
    clock.now = at(25, 9)  # Wednesday 09:00: day 1 came today already
    tick(app)
    assert len(inbox(app).of_kind("lesson")) == 1
    clock.now = at(26, 8, 59)
    tick(app)
    assert len(inbox(app).of_kind("lesson")) == 1
    clock.now = at(26, 9)
    tick(app)
    tick(app)
    lessons = inbox(app).of_kind("lesson")
    assert [m.title for m in lessons] == [
        "0.2.2 Senior / Lead Data Engineer — day 1 of 3",
        "0.2.2 Senior / Lead Data Engineer — day 2 of 3",
    ]
    assert lessons[1].question == "Have you ever taken ownership of a system?"


def test_after_downtime_one_lesson_not_a_backlog(app: App, clock: Clock) -> None:
    started(app)
    clock.now = at(30, 10)  # Monday, after four missed slots (Thu, Fri; weekend has none)
    tick(app)
    assert len(inbox(app).of_kind("lesson")) == 2
    with Session(app.store.engine) as session:
        enrolment = session.exec(select(Enrolment)).one()
    assert enrolment.next_due_at == datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_pause_resume_and_schedule_changes_take_effect_at_the_next_tick(
    app: App, clock: Clock
) -> None:
    chat = started(app)
    chat.say("/mentor pause")
    clock.now = at(26, 9)
    tick(app)
    assert len(inbox(app).of_kind("lesson")) == 1
    clock.now = at(26, 10)
    assert "Friday 27 November at 09:00" in chat.text("/mentor resume")
    answer = chat.text("/mentor schedule 07:30 daily Europe/Berlin")
    assert "07:30 daily (Europe/Berlin)" in answer and "Friday 27 November at 07:30" in answer
    clock.now = at(27, 6, 30)  # 07:30 in Berlin
    tick(app)
    assert len(inbox(app).of_kind("lesson")) == 2


def test_a_lesson_already_taken_today_is_not_repeated_by_a_schedule_change(
    app: App, clock: Clock
) -> None:
    chat = started(app)
    clock.now = at(25, 8, 30)
    assert "Thursday 26 November at 09:00" in chat.text("/mentor schedule 09:00")


def test_explicit_next_is_not_limited(app: App, clock: Clock) -> None:
    chat = started(app)
    chat.say("/mentor next")
    chat.say("/mentor next")
    assert len(inbox(app).of_kind("lesson")) == 3


def test_after_the_last_day_the_scheduler_asks_to_continue(app: App, clock: Clock) -> None:
    chat = started(app)
    chat.say("/mentor next")
    chat.say("/mentor next")  # all three days out; last question still open
    clock.now = at(26, 9)
    tick(app)
    prompts = inbox(app).of_kind("continue")
    assert len(prompts) == 1 and "0.2.3 Principal Data Engineer (GCP)" in prompts[0].text
    assert [a.command for a in prompts[0].actions] == ["continue", "not-yet"]
    assert "isn't published yet" in chat.text("/mentor continue")


def test_waiting_learner_gets_the_lesson_once_it_is_published(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    import shutil

    content = tmp_path / "content"
    shutil.copytree(bundled_content_dir(), content)
    app = build(Settings(database_url=settings.database_url, content_dir=content), clock=clock)
    try:
        chat = started(app)
        for text in ("a", "/mentor next", "b", "/mentor next"):
            chat.say(text)
        chat.say("c")
        assert "isn't published yet" in chat.text("/mentor continue")
        (content / "data-engineering" / "0.2.3.md").write_text(
            "# 0.2.3 Principal Data Engineer (GCP)\n\n## Scope\nWider.\n\n"
            "## Discussion Questions\n- What is your scope?\n",
            encoding="utf-8",
        )
        assert app.service.reload_content() == []  # wakes who waits for it
        clock.now = at(26, 9)
        tick(app)
        assert inbox(app).of_kind("lesson")[-1].title == (
            "0.2.3 Principal Data Engineer (GCP) — day 1 of 1"
        )
    finally:
        app.store.dispose()


# ---------------------------------------------------------------------- nudges


def test_reminder_four_hours_later_once_and_not_after_a_reply(app: App, clock: Clock) -> None:
    started(app, "ana")
    started(app, "bo")
    clock.now = at(26, 9)
    tick(app)
    Chat(app, user="bo").say("bo answers in time")
    clock.now = at(26, 12, 59)
    tick(app)
    assert inbox(app).of_kind("reminder") == []
    clock.now = at(26, 13)
    tick(app)
    clock.now = at(26, 14)
    tick(app)
    reminders = inbox(app).of_kind("reminder")
    assert [m.user for m in reminders] == ["ana"]
    assert reminders[0].question == "Have you ever taken ownership of a system?"
    # Replying via the reminder's Reply button answers the original question.
    ack = Chat(app, user="ana").text("late answer", delivery_id=reminders[0].delivery_id)
    assert "ownership of a system" in ack


def test_no_reminder_after_skip_or_after_the_quiet_hour(app: App, clock: Clock) -> None:
    skipper = started(app, "ana")
    late = started(app, "bo")
    late.say("/mentor schedule 15:00")
    clock.now = at(26, 9)
    tick(app)
    skipper.say("/mentor skip")
    clock.now = at(26, 15)
    tick(app)  # bo's lesson at 15:00; a reminder would fall at 19:00, after 18:00
    clock.now = at(26, 19)
    tick(app)
    assert inbox(app).of_kind("reminder") == []


def test_snooze_promises_only_what_will_happen(app: App, clock: Clock) -> None:
    """A reminder gives way to a newer question, so a snooze past the next one says so:
    the next lesson-day brings a lesson question up again, and a snooze past a planned
    check-in comes just before it."""
    chat = started(app)
    assert chat.text("/mentor snooze 30") == (
        "OK. Your next lesson-day comes first, Thursday 26 November at 09:00 (UTC), and it "
        "brings this question up again."
    )
    chat.say("I prefer guiding others and reviewing designs early.")  # plans a check-in
    chat.say("/mentor next")
    chat.say("/mentor next")  # day 3 of 3: no lesson-day left, the check-in is next
    said = chat.text("/mentor snooze 72")
    assert said.startswith("OK, I'll remind you of “What part of leadership")
    assert said.endswith("on Friday 27 November at 10:55 (UTC), before your next question.")


def test_snooze_reminds_later_once(app: App, clock: Clock) -> None:
    chat = started(app)
    assert "Wednesday 25 November at 10:00" in chat.text("/mentor snooze")
    assert "already remind you" in chat.text("/mentor snooze")
    assert "'soon' is not a length of time" in chat.text("/mentor snooze soon")
    zero = chat.text("/mentor snooze 0")  # 0 is not "between 0 and 72"
    assert "give more than 0 and at most 72 hours, like 3, 2h or 30m" in zero
    clock.now = at(25, 10)
    tick(app)
    assert len(inbox(app).of_kind("reminder")) == 1
    # The snooze replaced the question's own reminder (due four hours after it came).
    for hour in (12, 13, 17):
        clock.now = at(25, hour)
        tick(app)
    assert len(inbox(app).of_kind("reminder")) == 1


def test_a_snoozed_reminder_gives_way_to_a_newer_question(app: App, clock: Clock) -> None:
    """Snoozing names what it snoozes; when the next question comes first, the reminder
    is not sent on top of it (two open questions at once read as one too many)."""
    chat = started(app)
    said = chat.text("/mentor snooze 3")
    assert said == (
        "OK, I'll remind you of “Do you prefer individual work or guiding others?” on "
        "Wednesday 25 November at 11:00 (UTC)."
    )
    clock.now = at(25, 9)
    chat.say("/mentor next")  # day 2 and its question, now
    tick(app)
    clock.now = at(25, 11)
    tick(app)
    assert inbox(app).of_kind("reminder") == []
    [snoozed] = rows(app, col(Delivery.key).startswith("snooze:"))
    assert snoozed.status == "cancelled" and snoozed.error == "a newer question replaced it"


def test_a_snooze_of_an_older_question_keeps_its_promise(app: App, clock: Clock) -> None:
    """Snoozed after a newer question was already out, the reminder comes as promised:
    only a question that arrives after the snooze replaces it."""
    chat = started(app)
    chat.say("/mentor next")  # day 2, answered; day 1's question is the open one
    chat.say("Yes, the billing pipeline.")
    clock.now = at(25, 9)
    assert "“Do you prefer individual work" in chat.text("/mentor snooze 1")
    clock.now = at(25, 10)
    tick(app)
    [reminder] = inbox(app).of_kind("reminder")
    assert reminder.question == "Do you prefer individual work or guiding others?"


def test_practice_follow_up_two_delivery_days_after_a_reply(app: App, clock: Clock) -> None:
    chat = started(app)
    chat.say("I prefer guiding others, and I write down why we decide things.")
    clock.now = at(26, 11)  # one delivery day later: too early
    tick(app)
    assert inbox(app).of_kind("practice") == []
    clock.now = at(27, 11)  # Friday 09:00 + 2 h: two delivery days after the reply
    tick(app)
    [practice] = inbox(app).of_kind("practice")
    assert "**Document decisions**" in (practice.question or "")
    assert "I prefer guiding others" in (practice.question or "")
    assert "applied it" in (practice.question or "")
    chat.say("I owned the outage review this week.")
    with Session(app.store.engine) as session:
        reply = session.exec(select(Reply).order_by(col(Reply.id).desc())).first()
    assert reply is not None and reply.delivery_id == practice.delivery_id


def test_no_nudges_on_paused_enrolments_or_outside_delivery_days(app: App, clock: Clock) -> None:
    paused = started(app, "ana")
    paused.say("an answer")
    paused.say("/mentor pause")
    weekend = started(app, "bo")
    weekend.say("/mentor schedule 09:00 mon,wed")
    weekend.say("bo's answer")  # practice would be Monday+Wednesday → fine; check Saturday
    clock.now = at(28, 11)  # Saturday
    tick(app)
    clock.now = at(27, 11)
    tick(app)
    assert [m.user for m in inbox(app).of_kind("practice")] == []


def test_at_most_three_bot_messages_a_day(app: App, clock: Clock) -> None:
    started(app)
    clock.now = at(26, 9)
    with Session(app.store.engine) as session:
        learner = session.exec(select(Learner)).one()
        for n in range(3):
            session.add(
                Delivery(
                    key=f"earlier:{n}",
                    learner_id=learner.id or 0,
                    kind="reminder",
                    origin="schedule",
                    course_id="data-engineering",
                    lesson_id="0.2.2",
                    status="sent",
                    due_at=at(26, 1 + n),
                )
            )
        session.commit()
    tick(app)
    assert len(inbox(app).of_kind("lesson")) == 1  # today's lesson held back by the cap


# ---------------------------------------------------------------------- sending faults


def test_429_waits_for_retry_after_and_does_not_count_as_an_attempt(app: App, clock: Clock) -> None:
    started(app)
    clock.now = at(26, 9)
    inbox(app).fail_with = [RateLimited(0.05)] * 3
    for n in range(3):
        tick(app)
        [row] = rows(app, Delivery.day == 2)
        assert (row.status, row.attempts) == ("pending", 0), f"after 429 number {n + 1}"
        assert row.due_at == clock.now + timedelta(seconds=0.05)
        tick(app)  # not due again before Retry-After
        assert rows(app, Delivery.day == 2)[0].attempts == 0
        clock.now += timedelta(seconds=1)
    tick(app)
    [row] = rows(app, Delivery.day == 2)
    assert row.status == "sent" and len(inbox(app).of_kind("lesson")) == 2
    assert app.dispatcher.stats.rate_limited == 3


def test_5xx_backs_off_then_succeeds_and_gives_up_after_the_limit(app: App, clock: Clock) -> None:
    started(app, "ana")
    app.dispatcher.policy = RetryPolicy(max_attempts=3, base_seconds=10, cap_seconds=60)
    clock.now = at(26, 9)
    inbox(app).fail_with = [TemporarySendError("HTTP 500")] * 2
    tick(app)
    [row] = rows(app, Delivery.day == 2)
    first_retry = row.due_at
    assert row.status == "pending" and row.error == "HTTP 500"
    assert at(26, 9) + timedelta(seconds=5) <= first_retry <= at(26, 9) + timedelta(seconds=10)
    clock.now = first_retry
    tick(app)
    [row] = rows(app, Delivery.day == 2)
    assert row.due_at - clock.now >= timedelta(seconds=10)  # backoff grew
    clock.now = row.due_at
    tick(app)
    assert rows(app, Delivery.day == 2)[0].status == "sent"

    started(app, "bo")
    clock.now = at(27, 9)
    inbox(app).fail_with = [TemporarySendError("HTTP 503")] * 10
    for _ in range(4):
        tick(app)
        clock.now += timedelta(minutes=5)
    failed = rows(app, Delivery.status == "failed")
    assert [(r.day, r.error) for r in failed] == [
        (3, "gave up after 3 attempts: HTTP 503"),  # ana's day 3
        (2, "gave up after 3 attempts: HTTP 503"),  # bo's day 2
    ]


def test_permanent_errors_fail_at_once_and_blocked_dms_are_recorded(app: App, clock: Clock) -> None:
    started(app)
    clock.now = at(26, 9)
    inbox(app).fail_with = [PermanentSendError("DMs closed", code="dm_blocked")]
    tick(app)
    tick(app)
    [row] = rows(app, Delivery.day == 2)
    assert (row.status, row.error) == ("failed", "DMs closed")
    with Session(app.store.engine) as session:
        assert session.exec(select(Learner)).one().dm_blocked_at == at(26, 9)
        # Nothing is planned for them any more, so they cost the planning pass nothing.
        assert session.exec(select(Enrolment)).one().next_due_at is None
    # Writing to the bot again shows DMs work: the next lesson-day is due again.
    Chat(app, user="ana").say("Sorry, I had DMs closed.")
    with Session(app.store.engine) as session:
        assert session.exec(select(Learner)).one().dm_blocked_at is None
        assert session.exec(select(Enrolment)).one().next_due_at == at(27, 9)


def test_waiting_enrolments_carry_nothing_due(app: App, clock: Clock) -> None:
    """Paused, finished and waiting learners are skipped by the planning pass through
    the index: their next_due_at is empty or in the future, never in the past."""
    chat = started(app)
    chat.say("/mentor pause")
    with Session(app.store.engine) as session:
        assert session.exec(select(Enrolment)).one().next_due_at is None
    chat.say("/mentor resume")
    with Session(app.store.engine) as session:
        assert session.exec(select(Enrolment)).one().next_due_at == at(26, 9)


def test_a_send_that_reached_the_platform_before_a_crash_is_not_repeated(
    app: App, clock: Clock
) -> None:
    started(app, "ana")
    started(app, "bo")
    clock.now = at(26, 9)
    asyncio.run(asyncio.to_thread(app.engine.planner.plan))
    # A process claimed both rows and died: ana's message had reached the platform.
    claimed = app.store.run(
        lambda s: claim(s, owner="dead:1", now=clock.now, lease=timedelta(minutes=2))
    )
    assert len(claimed) == 2
    ana_row = next(r for r in rows(app, Delivery.day == 2) if r.learner_id == 1)
    rendered = app.service.render_delivery(ana_row.id or 0)
    assert not isinstance(rendered, str)
    inbox(app).sent.append(rendered)
    tick(app)  # leases still held: nothing happens
    assert len(inbox(app).of_kind("lesson")) == 3
    clock.now = at(26, 9, 3)
    tick(app)
    lessons = inbox(app).of_kind("lesson")
    assert Counter(m.user for m in lessons) == {"ana": 2, "bo": 2}
    assert {r.status for r in rows(app, Delivery.day == 2)} == {"sent"}
    assert app.dispatcher.stats.recovered == 1


def test_a_process_knows_which_earlier_processes_on_its_host_are_gone() -> None:
    me = process_identity()
    host, pid, _ = me.split(":")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its pid is gone
    assert owner_is_gone(f"{host}:{pid}:0ldb00t", me)  # this pid in an earlier life
    assert owner_is_gone(f"{host}:{ended.pid}:cafe", me)
    assert owner_is_gone(f"{host}:{ended.pid}", me)  # named before boot ids
    assert not owner_is_gone(f"{host}:{os.getppid()}:beef", me)  # alive
    assert not owner_is_gone(f"elsewhere:{ended.pid}:cafe", me)  # cannot be checked
    assert not owner_is_gone(me, me)


# ---------------------------------------------------------------------- replicas


def _seed_due_learners(url: str, count: int) -> None:
    """``count`` learners with day 1 behind them and day 2 due now (real time)."""
    app = build(Settings(database_url=url, content_dir=bundled_content_dir()), clock=Clock(WED))
    for n in range(count):
        Chat(app, user=f"learner{n:04d}").say("/mentor start")
    with app.store.engine.begin() as conn:
        conn.execute(
            sa.update(Enrolment.__table__).values(  # type: ignore[attr-defined]
                next_due_at=datetime.now(UTC) - timedelta(minutes=1)
            )
        )
    app.store.dispose()


def _worker(
    url: str,
    journal: Path,
    delay_after: float,
    concurrency: int,
    batch: int = 200,
    barrier: bool = False,
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if barrier:
        env["MENTORBOT_TEST_BARRIER"] = "1"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.fanout_worker",
            url,
            str(journal),
            str(delay_after),
            str(concurrency),
            str(batch),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _assert_exactly_once(url: str, journal: Path, count: int) -> None:
    keys = Counter(str(row["key"]) for row in read_journal(journal))
    day2 = {k: n for k, n in keys.items() if k.endswith(":0.2.2:2")}
    assert len(day2) == count, f"missed {count - len(day2)}"
    assert [k for k, n in day2.items() if n > 1] == []
    engine = sa.create_engine(url)
    with Session(engine) as session:
        statuses = Counter(r.status for r in session.exec(select(Delivery)))
    engine.dispose()
    assert statuses == {"sent": 2 * count}


@pytest.mark.slow
def test_sigkill_mid_fan_out_then_restart_delivers_each_lesson_once(
    store_url: str, tmp_path: Path
) -> None:
    count = 60
    _seed_due_learners(store_url, count)
    journal = tmp_path / "journal.jsonl"
    first = _worker(store_url, journal, delay_after=0.03, concurrency=1)
    deadline = time.monotonic() + 30
    while len(read_journal(journal)) < count // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    sent_before = len(read_journal(journal))
    assert 0 < sent_before < count, "the kill must land mid fan-out"
    second = _worker(store_url, journal, delay_after=0.0, concurrency=4)
    _, err = second.communicate(timeout=90)
    assert second.returncode == 0, err[-3000:]
    _assert_exactly_once(store_url, journal, count)


@pytest.mark.slow
def test_two_processes_on_one_database_deliver_each_row_once(
    store_url: str, tmp_path: Path
) -> None:
    count = 120
    _seed_due_learners(store_url, count)
    journal = tmp_path / "journal.jsonl"
    # Each send takes 50 ms, so one process alone would need 1.5 s for all 120: time
    # enough for the other to finish its first planning pass (which may wait for the
    # write lock) and take its share, however the two are scheduled.
    workers = [
        _worker(store_url, journal, delay_after=0.05, concurrency=4, batch=8, barrier=True)
        for _ in range(2)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("journal.ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    journal.with_suffix(".go").touch()
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-3000:]
    _assert_exactly_once(store_url, journal, count)
    pids = Counter(row["pid"] for row in read_journal(journal))
    assert len(pids) == 2, f"both processes should have sent some rows: {pids}"


def test_a_briefly_locked_database_does_not_stop_the_engine(sqlite_url: str, clock: Clock) -> None:
    app = build(Settings(database_url=sqlite_url, content_dir=bundled_content_dir()), clock=clock)
    try:
        started(app)
        clock.now = at(26, 9)
        with sqlite_locked(sqlite_url, 0.4):
            tick(app)
        assert len(inbox(app).of_kind("lesson")) == 2
    finally:
        app.store.dispose()
