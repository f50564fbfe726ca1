"""The numbers leads see, for many learners at once (SQLite and PostgreSQL): grouped
queries give exactly what the one-learner-at-a-time reading gave, ``team`` stays
readable past 40 learners, and a digest shows the shared replies it records as read."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from bot.messages import UserRef
from bot.models import Delivery, Enrolment, Learner, Reply, ReplyRead, Workspace
from bot.stats import Counts, counts, counts_for, streaks
from mentorbot.bootstrap import App
from tests.conftest import Clock
from tests.harness import Chat, InboxAdapter

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def reference_counts(session: Session, learner_id: int, enrolment_id: int | None) -> Counts:
    """The per-learner reading ``team`` and digests used before: the definition the
    grouped queries must match, kept here word for word."""
    query = select(Delivery.id, Delivery.kind).where(
        Delivery.learner_id == learner_id,
        col(Delivery.kind).in_(("lesson", "practice")),
        col(Delivery.question).is_not(None),
        Delivery.status == "sent",
    )
    if enrolment_id is not None:
        query = query.where(Delivery.enrolment_id == enrolment_id)
    asked = session.exec(
        query.order_by(col(Delivery.sent_at).desc(), col(Delivery.id).desc())
    ).all()
    answered = set(
        session.exec(
            select(Reply.delivery_id).where(
                Reply.learner_id == learner_id,
                Reply.kind == "answer",
                col(Reply.delivery_id).in_([d for d, _ in asked]),
            )
        ).all()
    )
    lessons = [d for d, kind in asked if kind == "lesson"]
    practice = [d for d, kind in asked if kind == "practice"]
    streak = 0
    for question_id in lessons:
        if question_id not in answered:
            break
        streak += 1
    last = session.exec(
        select(func.max(Reply.created_at)).where(
            Reply.learner_id == learner_id, Reply.kind == "answer"
        )
    ).one()
    return Counts(
        len(lessons),
        sum(1 for d in lessons if d in answered),
        len(practice),
        sum(1 for d in practice if d in answered),
        streak,
        last,
    )


def messy_history(app: App, learners: int = 30, seed: int = 5) -> list[tuple[int, list[int]]]:
    """Learners with several enrolments and every kind of row the counts must tell
    apart: unsent, failed and cancelled questions, questions without text, reminders,
    notes, ties in ``sent_at``, answers in any order. Returns (learner, enrolments)."""
    rng = random.Random(seed)
    made: list[tuple[int, list[int]]] = []
    with Session(app.store.engine) as session:
        workspace = Workspace(platform="console", external_id="many", created_at=T0)
        session.add(workspace)
        session.flush()
        for n in range(learners):
            learner = Learner(workspace_id=workspace.id or 0, user_id=f"m{n}", created_at=T0)
            session.add(learner)
            session.flush()
            enrolments = []
            for _ in range(rng.randint(1, 3)):
                enrolment = Enrolment(
                    learner_id=learner.id or 0,
                    course_id="data-engineering",
                    lesson_id="0.2.2",
                    status=rng.choice(["active", "stopped", "paused"]),
                    started_at=T0,
                    updated_at=T0,
                )
                session.add(enrolment)
                session.flush()
                enrolments.append(enrolment.id or 0)
            for q in range(rng.randint(0, 25)):
                kind = rng.choice(["lesson", "lesson", "lesson", "practice", "reminder"])
                status = rng.choice(["sent"] * 6 + ["pending", "failed", "cancelled"])
                # Whole hours and a few repeats: ties in sent_at fall back to the id.
                sent = T0 + timedelta(hours=rng.randint(0, 40))
                delivery = Delivery(
                    key=f"k:{n}:{q}",
                    learner_id=learner.id or 0,
                    enrolment_id=rng.choice(enrolments),
                    kind=kind,
                    course_id="data-engineering",
                    lesson_id="0.2.2",
                    question=None if rng.random() < 0.1 else f"question {q}?",
                    status=status,
                    due_at=sent,
                    # A few sent rows without a time: databases sort those differently.
                    sent_at=sent if status == "sent" and rng.random() > 0.05 else None,
                )
                session.add(delivery)
                session.flush()
                if rng.random() < 0.6:
                    session.add(
                        Reply(
                            learner_id=learner.id or 0,
                            delivery_id=delivery.id,
                            kind="answer",
                            course_id="data-engineering",
                            lesson_id="0.2.2",
                            question=delivery.question or "",
                            text="an answer",
                            created_at=sent + timedelta(minutes=rng.randint(1, 3000)),
                        )
                    )
                elif rng.random() < 0.3:
                    session.add(
                        Reply(
                            learner_id=learner.id or 0,
                            kind="note",
                            candidate_id=delivery.id,
                            course_id="",
                            lesson_id="",
                            question="",
                            text="a note",
                            created_at=sent + timedelta(minutes=5),
                        )
                    )
            made.append((learner.id or 0, enrolments))
        session.commit()
    return made


def test_grouped_counts_equal_the_per_learner_reading(app: App) -> None:
    made = messy_history(app)
    with Session(app.store.engine) as session:
        everything = counts_for(session, {learner: None for learner, _ in made})
        one_each = counts_for(session, {learner: enrolments[-1] for learner, enrolments in made})
        for learner, enrolments in made:
            assert everything[learner] == reference_counts(session, learner, None)
            assert one_each[learner] == reference_counts(session, learner, enrolments[-1])
            for enrolment in enrolments:
                assert counts(session, learner, enrolment) == reference_counts(
                    session, learner, enrolment
                )
        # The digest's streaks: everyone at once, over all their enrolments, read in
        # full or from a recent window (settled there, or read in full when it cannot be).
        for recent in (
            None,
            T0 - timedelta(days=1),
            T0 + timedelta(hours=20),
            T0 + timedelta(days=9),
        ):
            found_streaks = streaks(session, select(Learner.id), recent=recent)
            for learner, _ in made:
                assert found_streaks[learner] == everything[learner].streak, (recent, learner)
        # Someone with nothing at all, and a mix of scopes in one call.
        mixed = {made[0][0]: None, made[1][0]: made[1][1][0], 10**6: None}
        found = counts_for(session, mixed)
        assert found[10**6] == Counts()
        assert found[made[1][0]] == reference_counts(session, made[1][0], made[1][1][0])
    assert any(c.streak for c in everything.values())  # the data exercises streaks
    assert any(c.practice_asked for c in everything.values())


def test_grouped_counts_over_many_chunks(app: App, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import bot.stats

    made = messy_history(app, learners=12, seed=9)
    monkeypatch.setattr(bot.stats, "CHUNK", 5)
    with Session(app.store.engine) as session:
        found = counts_for(session, {learner: None for learner, _ in made})
        assert found == {learner: reference_counts(session, learner, None) for learner, _ in made}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def tick(app: App) -> None:
    asyncio.run(app.engine.tick())


def inbox(app: App) -> InboxAdapter:
    adapter = app.dispatcher.adapters["console"]
    assert isinstance(adapter, InboxAdapter)
    return adapter


def test_team_lists_the_first_40_by_name_and_counts_the_rest(app: App, clock: Clock) -> None:
    lena = Chat(app, user="lena", lead=True)
    names = [f"{first} {n:02d}" for n, first in enumerate(["Zoe", "ada", "Mia", "Bo", "kit"] * 9)]
    people = [UserRef(f"U{n:02d}", name) for n, name in enumerate(names)]
    rng = random.Random(1)
    rng.shuffle(people)
    for batch in (people[:25], people[25:]):
        lena.say("/mentor assign " + " ".join(f"<@{p.id}>" for p in batch), mentioned=tuple(batch))
    clock.now = at(26, 9)
    tick(app)
    Chat(app, user="U01").say("my answer on day 1")
    [report] = lena.say("/mentor team")
    assert report.text == "45 learners; the first 40 by name. Times are in UTC."
    # Writing to the bot records the platform's name for U01 (the harness says "U01").
    named = {p.id: ("U01" if p.id == "U01" else p.name or "") for p in people}
    by_name = sorted(people, key=lambda p: named[p.id].lower())
    listed = [s.title for s in report.sections[:-1]]
    assert listed == [f"<@{p.id}>" for p in by_name[:40]]
    assert report.sections[-1].title is None
    assert report.sections[-1].body.startswith("…and 5 more learners.")
    assert "`/mentor digest #channel weekly`" in report.sections[-1].body
    assert "`mentorbot export replies`" in report.sections[-1].body
    assert len(report.sections) == 41  # within Slack's 50 blocks with title and text
    # The numbers are each learner's own: U01 answered day 1.
    ada = next(s.body for s in report.sections if s.title == "<@U01>")
    assert "Lesson questions answered 1 of 1 · streak 1 · last answer 2026-11-26 09:00" in ada
    others = [s.body for s in report.sections[:-1] if s.title != "<@U01>"]
    assert all("answered 0 of 1 · streak 0 · last answer never · active" in b for b in others)


def test_team_of_exactly_40_has_no_extra_line(app: App) -> None:
    lena = Chat(app, user="lena", lead=True)
    people = tuple(UserRef(f"U{n:02d}", f"Person {n:02d}") for n in range(40))
    lena.say("/mentor assign " + " ".join(f"<@{p.id}>" for p in people), mentioned=people)
    [report] = lena.say("/mentor team")
    assert report.text == "40 learners. Times are in UTC."
    assert [s.title for s in report.sections] == [f"<@{p.id}>" for p in people]


def test_digest_shows_the_shared_replies_it_records_as_read(app: App, clock: Clock) -> None:
    lena = Chat(app, user="lena", lead=True)
    people = [f"p{n}" for n in range(7)]
    lena.say("/mentor assign " + " ".join(f"@{p}" for p in people))
    lena.say("/mentor digest #team weekly")
    clock.now = at(26, 9)
    tick(app)
    for n, person in enumerate(people):
        clock.now = at(26, 10, n)
        chat = Chat(app, user=person)
        chat.say(f"shared thought number {n}")
        chat.say("/mentor share")
    clock.now = at(30, 9)
    tick(app)
    [digest] = inbox(app).of_kind("digest")
    text = digest.plain_text()
    shown = [n for n in range(7) if f"shared thought number {n}" in text]
    assert shown == [0, 1, 2, 3, 4]
    assert "…and 2 more shared replies" in text
    with Session(app.store.engine) as session:
        read = session.exec(
            select(Reply.text)
            .join(ReplyRead, col(ReplyRead.reply_id) == Reply.id)
            .where(ReplyRead.via == "digest")
            .order_by(col(Reply.id))
        ).all()
    assert [t.rsplit(" ", 1)[-1] for t in read] == ["0", "1", "2", "3", "4"]


def test_team_reads_a_few_queries_not_some_per_learner(app: App, clock: Clock) -> None:
    """The statement count does not grow with the team: 12 learners cost what 3 do."""
    lena = Chat(app, user="lena", lead=True)

    def statements_for_team() -> int:
        seen: list[str] = []

        def count(*args: object) -> None:
            seen.append(str(args[2]))

        sa.event.listen(app.store.engine, "before_cursor_execute", count)
        try:
            lena.say("/mentor team")
        finally:
            sa.event.remove(app.store.engine, "before_cursor_execute", count)
        return len(seen)

    lena.say("/mentor assign @a1 @a2 @a3")
    small = statements_for_team()
    lena.say("/mentor assign " + " ".join(f"@b{n}" for n in range(9)))
    assert statements_for_team() == small


def test_a_digest_records_reads_only_of_replies_still_stored_when_posted(
    app: App, clock: Clock
) -> None:
    """The reads recorded are the replies the digest showed; an author erased between
    rendering and posting leaves no read behind (nor a broken reference)."""
    lena = Chat(app, user="lena", lead=True)
    lena.say("/mentor assign @ana @bo")
    lena.say("/mentor digest #team weekly")
    clock.now = at(26, 9)
    tick(app)
    for person in ("ana", "bo"):
        chat = Chat(app, user=person)
        chat.say(f"{person} shares this")
        chat.say("/mentor share")

    def erase_ana(message: object) -> None:
        if getattr(message, "kind", None) == "digest":
            with Session(app.store.engine) as session:
                ana = session.exec(select(Learner).where(Learner.user_id == "ana")).one()
                app.service.erase_learner(session, ana)
                session.commit()

    inbox(app).fail_when = erase_ana  # type: ignore[assignment]
    clock.now = at(30, 9)
    tick(app)
    [digest] = inbox(app).of_kind("digest")
    assert "ana shares this" in digest.plain_text() and "bo shares this" in digest.plain_text()
    with Session(app.store.engine) as session:
        read = session.exec(
            select(Reply.text).join(ReplyRead, col(ReplyRead.reply_id) == Reply.id)
        ).all()
    assert read == ["bo shares this"]
