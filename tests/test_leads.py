"""Leads and privacy, through the hub and the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import struct
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from bot.export import ReplyFilter, reply_rows
from bot.messages import EventKind, UserRef
from bot.models import Delivery, Digest, Learner, Reply, ReplyRead
from bot.ports import PermanentSendError
from bot.text import strip_learner_marks
from mentorbot.bootstrap import App
from tests.conftest import Clock
from tests.harness import Chat, InboxAdapter, due_instants

LEAD_COMMANDS = [
    "assign @bo",
    "unassign @bo",
    "team",
    "replies",
    "digest #team weekly",
    "settings",
    "leads add @bo",
]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def tick(app: App) -> None:
    asyncio.run(app.engine.tick())


def inbox(app: App) -> InboxAdapter:
    adapter = app.dispatcher.adapters["console"]
    assert isinstance(adapter, InboxAdapter)
    return adapter


def team(app: App, workspace: str = "local") -> tuple[Chat, Chat, Chat]:
    """A lead (lena) who enrols two learners (ana, bo); everyone has answered day 1."""
    lena = Chat(app, user="lena", workspace=workspace, lead=True)
    ana = Chat(app, user="ana", workspace=workspace)
    bo = Chat(app, user="bo", workspace=workspace)
    lena.say("/mentor assign @ana @bo")
    return lena, ana, bo


def test_learners_cannot_run_lead_commands(app: App) -> None:
    ana = Chat(app, user="ana")
    for command in LEAD_COMMANDS:
        answer = ana.text(f"/mentor {command}")
        assert f"Only leads can use `/mentor {command.split()[0]}`" in answer, command
    assert "For leads:" not in ana.text("/mentor help")
    assert "For leads:" in Chat(app, user="lena", lead=True).text("/mentor help")


def test_assign_enrols_and_welcomes_each_person(app: App, clock: Clock) -> None:
    lena = Chat(app, user="lena", lead=True)
    answer = lena.text("/mentor assign @ana @bo")
    assert "Enrolled <@ana>, <@bo> in **Data Engineering Leadership**" in answer
    welcomes = inbox(app).of_kind("welcome")
    assert sorted(m.user for m in welcomes) == ["ana", "bo"]
    text = welcomes[0].text
    assert "<@lena> enrolled you in **Data Engineering Leadership**" in text
    assert "09:00 weekdays (UTC)" in text and "Wednesday 25 November at 09:00" in text
    assert "private to you unless you share" in text
    assert "/mentor pause" in text and "/mentor forget-me" in text
    assert "Already taking" in lena.text("/mentor assign @ana")
    clock.now = at(25, 9)
    tick(app)
    assert sorted(m.user for m in inbox(app).of_kind("lesson")) == ["ana", "bo"]


def test_assign_refuses_nobody_bots_and_channels(app: App) -> None:
    lena = Chat(app, user="lena", lead=True)
    assert "Name the people to enrol" in lena.text("/mentor assign")
    assert "Name the people to enrol" in lena.text("/mentor assign #general")
    answer = lena.text(
        "/mentor assign <@U1> <@B9> #general",
        mentioned=(UserRef("U1", "Ana"), UserRef("B9", "Deploy Bot", is_bot=True)),
    )
    assert "<@B9> is a bot, so I left it out." in answer
    assert "takes people, not channels" in answer
    assert [m.user for m in inbox(app).of_kind("welcome")] == ["U1"]
    assert "no course called `cooking`" in lena.text("/mentor assign @ana cooking")


def test_unassign_stops_deliveries(app: App, clock: Clock) -> None:
    lena, _, bo = team(app)
    stopped = lena.text("/mentor unassign @bo")
    assert "Stopped deliveries for <@bo>; each gets a DM saying so." in stopped
    assert "Not taking a course here: <@zed>" in lena.text("/mentor unassign @zed")
    tick(app)
    [notice] = inbox(app).of_kind("notice")
    assert notice.user == "bo" and notice.text.startswith("<@lena> stopped your lessons in")
    assert "`/mentor start` begins the course again from its first lesson" in notice.text
    progress = bo.text("/mentor progress")
    assert progress.startswith("You are not taking a course now: a lead stopped your lessons")
    clock.now = at(26, 9)
    tick(app)
    assert [m.user for m in inbox(app).of_kind("lesson")] == ["ana"]
    # Typed in the DM without /mentor, a lead's command with its people is a command.
    assert "Not taking a course here: <@zed>" in lena.text("unassign @zed")
    assert "Saved: time = 19:30." in lena.text("settings time 7:30pm")


def test_after_unassign_nothing_more_comes_and_a_message_is_a_note(app: App, clock: Clock) -> None:
    """The notice promises "no more lessons or check-ins": the check-in an earlier answer
    had planned does not come, and what the person writes next is not filed as an
    answer to a question of the stopped course."""
    lena, _, bo = team(app)
    clock.now = at(26, 9)
    tick(app)
    bo.say("I prefer guiding others and reviewing designs early.")  # plans a check-in
    clock.now = at(26, 10)
    lena.say("/mentor unassign @bo")
    tick(app)
    before = len([m for m in inbox(app).sent if m.user == "bo"])
    for _ in due_instants(app, clock, datetime(2026, 12, 10, tzinfo=UTC)):
        pass
    assert [m.kind for m in inbox(app).sent if m.user == "bo"][before:] == []
    said = bo.text("wait, why did that stop?")
    assert said.startswith("I kept your message as a note. You are not taking a course now")
    with Session(app.store.engine) as session:
        kinds = [r.kind for r in session.exec(select(Reply).where(Reply.text.contains("why")))]
    assert kinds == ["note"]


def test_visibility_leads_keeps_the_promise_made_under_each_question(
    app: App, clock: Clock
) -> None:
    """A question sent while replies were private said "private to you": its answer
    stays private after a lead lets leads read replies. Learners are told by DM."""
    lena, ana, _ = team(app)
    clock.now = at(26, 9)
    tick(app)  # day 1, "your answer is private to you"
    said = lena.text("/mentor settings visibility leads")
    assert "2 learners taking a course got a DM saying so" in said
    tick(app)
    notices = [m for m in inbox(app).of_kind("notice") if m.user == "ana"]
    assert len(notices) == 1 and "your leads can read the replies you write" in notices[0].text
    assert "It is private to you." in ana.text("I prefer guiding others.")
    assert "No replies" in lena.text("/mentor replies @ana")
    clock.now = at(27, 9)
    tick(app)  # day 2, sent under the new setting
    assert "Your leads can read it" in ana.text("Yes, the billing pipeline.")
    shown = lena.say("/mentor replies @ana")[0]
    assert shown.title == "Replies leads may read"
    assert [strip_learner_marks(s.body) for s in shown.sections] == ["Yes, the billing pipeline."]


def test_a_new_workspace_time_is_told_to_whom_it_moves(app: App, clock: Clock) -> None:
    """The welcome promised 09:00; a lead's new default must not just happen to them."""
    lena, _, bo = team(app)
    assert "08:30" in bo.text("/mentor schedule 08:30")  # bo keeps his own time
    said = lena.text("/mentor settings time 7am")
    assert said == (
        "Saved: time = 07:00. 1 learner whose lessons it moves got a DM saying when they come now."
    )
    tick(app)
    [notice] = inbox(app).of_kind("notice")
    assert notice.user == "ana" and "Lessons arrive at 07:00 weekdays (UTC)" in notice.text


def test_team_shows_progress_streaks_and_status(app: App, clock: Clock) -> None:
    lena, ana, bo = team(app)
    clock.now = at(26, 9)
    tick(app)
    ana.say("ana on day 1")
    clock.now = at(26, 10)
    bo.say("/mentor pause")
    [report] = lena.say("/mentor team")
    by_user = {s.title: s.body for s in report.sections}
    assert "day 1 of 3" in by_user["<@ana>"]
    assert (
        "Lesson questions answered 1 of 1 · streak 1 · last answer 2026-11-26 09:00 · active"
        in by_user["<@ana>"]
    )
    assert (
        "Lesson questions answered 0 of 1 · streak 0 · last answer never · paused"
        in by_user["<@bo>"]
    )
    assert report.text == "2 learners. Times are in UTC."
    # A learner on another clock: the lead still reads the time on their own.
    ana.say("/mentor schedule 09:00 America/New_York")
    [report] = lena.say("/mentor team")
    assert "last answer 2026-11-26 09:00" in {s.title: s.body for s in report.sections}["<@ana>"]


def test_private_replies_never_reach_leads_until_shared(app: App, clock: Clock) -> None:
    lena, ana, _ = team(app)
    clock.now = at(26, 9)
    tick(app)
    ack = ana.say("my private reflection")[0]
    assert "It is private to you." in ack.text
    assert [a.label for a in ack.actions] == ["Share with my lead"]
    assert "No replies have been shared with leads" in lena.text("/mentor replies")
    assert reply_rows(app.store, ReplyFilter(for_leads=True)) == []
    # The Share button on the acknowledgement shares exactly that reply.
    ana.send(ana.event(EventKind.ACTION, "share", delivery_id=ack.delivery_id))
    shared = lena.say("/mentor replies @ana")[0]
    assert [strip_learner_marks(s.body) for s in shared.sections] == ["my private reflection"]
    assert "· 2026-11-26 ·" in shared.sections[0].title
    with Session(app.store.engine) as session:
        [read] = session.exec(select(ReplyRead)).all()
    assert (read.reader_name, read.via) == ("Lena", "replies")
    data = json.loads(ana.say("/mentor export-my-data")[0].attachments[0].content)
    assert data["read_by"][0]["reader"] == "Lena"
    assert data["replies"][0]["visible_to_leads"] is True
    # Written at 09:00 UTC on the 26th: still the 25th on the lead's clock in Pago Pago.
    lena.say("/mentor settings timezone Pacific/Pago_Pago")
    [early] = lena.say("/mentor replies @ana")[0].sections
    assert "· 2026-11-25 ·" in early.title


def test_workspace_visibility_applies_only_to_new_replies(app: App, clock: Clock) -> None:
    lena, ana, _ = team(app)
    clock.now = at(26, 9)
    tick(app)
    ana.say("written while private")
    changed = lena.text("/mentor settings visibility leads")
    assert "applies to replies written from now on" in changed
    assert "your leads can read the replies you write" in ana.text("/mentor help")
    clock.advance(minutes=1)
    ana.say("/mentor next")
    clock.advance(minutes=10)  # past the addition window: a new answer, not an addition
    assert "Your leads can read it" in ana.text("written while visible")
    replies = lena.say("/mentor replies")[0]
    assert [strip_learner_marks(s.body) for s in replies.sections] == ["written while visible"]


def test_a_lead_of_one_workspace_learns_nothing_about_another(app: App, clock: Clock) -> None:
    lena_a, _, _ = team(app, "A")
    _, ana_b, _ = team(app, "B")
    clock.now = at(26, 9)
    tick(app)
    ana_b.say("shared in B")
    ana_b.say("/mentor share")
    about_b_user = lena_a.text("/mentor replies @ana")
    about_nobody = lena_a.text("/mentor replies @nobody")
    assert "shared in B" not in about_b_user
    assert about_b_user.replace("<@ana>", "X") == about_nobody.replace("<@nobody>", "X")
    team_a = lena_a.say("/mentor team")[0]
    assert len(team_a.sections) == 2  # only A's two learners


def test_weekly_digest_with_chart_and_only_shared_replies(app: App, clock: Clock) -> None:
    lena, ana, bo = team(app)
    answer = lena.text("/mentor digest #team weekly")
    assert "first on Monday 30 November at 09:00" in answer
    with Session(app.store.engine) as session:  # the bot's clock, which simulate moves
        assert session.exec(select(Digest)).one().created_at == clock.now
    clock.now = at(26, 9)
    tick(app)
    ana.say("ana keeps this private")
    bo.say("bo shares this")
    bo.say("/mentor share")
    clock.now = at(30, 9)
    tick(app)
    [digest] = inbox(app).of_kind("digest")
    assert digest.channel == "team"
    text = digest.plain_text()
    assert "Participation: 2 of 2" in text and "Completion: 2 of 2" in text
    assert "bo shares this" in text and "ana keeps this private" not in text
    [chart] = digest.attachments
    assert chart.content.startswith(b"\x89PNG\r\n\x1a\n") and chart.mime == "image/png"
    width, height = struct.unpack(">II", chart.content[16:24])
    assert (width, height) == (480, 180)
    with Session(app.store.engine) as session:
        reads = session.exec(select(ReplyRead)).all()
        assert [(r.via, r.reader_name) for r in reads] == [("digest", "digest in <#team>")]
        assert session.exec(select(Digest)).one().last_sent_at == at(30, 9)


def test_digest_to_a_channel_the_bot_cannot_post_to(app: App, clock: Clock) -> None:
    lena, ana, _ = team(app)
    lena.say("/mentor digest #secret daily")  # Wednesday 08:00: the first is at 09:00
    inbox(app).fail_when = lambda m: (
        PermanentSendError("not_in_channel", code="not_in_channel") if m.kind == "digest" else None
    )
    clock.now = at(25, 9)
    tick(app)
    [notice] = inbox(app).of_kind("notice", user="lena")
    assert "couldn't post the daily digest in <#secret>: not_in_channel" in notice.text
    assert "The next digest will cover this period too" in notice.text
    with Session(app.store.engine) as session:
        digest = session.exec(select(Digest)).one()
        assert (digest.last_sent_at, digest.next_due_at) == (None, at(26, 9))
    ana.say("an answer on Wednesday")
    ana.say("/mentor share")
    inbox(app).fail_when = lambda _m: None
    clock.now = at(26, 9)
    tick(app)
    [digest_message] = inbox(app).of_kind("digest")
    assert "an answer on Wednesday" in digest_message.plain_text()
    assert "25 Nov – 26 Nov" in (digest_message.title or "")


def test_settings_show_and_validate(app: App) -> None:
    lena = Chat(app, user="lena", lead=True)
    shown = lena.text("/mentor settings")
    assert "Reply visibility: private" in shown and "Auto-enrol new members: off" in shown
    assert "Saved: time = 08:30" in lena.text("/mentor settings time 08:30")
    assert "invalid time '25:00'" in lena.text("/mentor settings time 25:00")
    assert "unknown time zone 'Mars/Base'" in lena.text("/mentor settings timezone Mars/Base")
    assert "visibility must be private or leads" in lena.text("/mentor settings visibility all")
    assert "unknown setting 'colour'" in lena.text("/mentor settings colour blue")
    assert "Delivery time: 08:30" in lena.text("/mentor settings")


def test_leads_add_and_remove(app: App) -> None:
    lena = Chat(app, user="lena", lead=True)
    ana = Chat(app, user="ana")
    assert "<@ana> can now use lead commands" in lena.text("/mentor leads add @ana")
    assert "Your team" in ana.text("/mentor team") or "Nobody here" in ana.text("/mentor team")
    assert "<@ana>" in lena.text("/mentor leads")
    lena.say("/mentor leads remove @ana")
    assert "Only leads" in ana.text("/mentor team")


def test_auto_enrol_welcomes_new_members(app: App) -> None:
    lena = Chat(app, user="lena", lead=True)
    newcomer = Chat(app, user="nia")
    newcomer.send(newcomer.event(EventKind.JOINED))
    assert inbox(app).of_kind("welcome") == []
    lena.say("/mentor settings auto-enrol on")
    Chat(app, user="noor").send(Chat(app, user="noor").event(EventKind.JOINED))
    [welcome] = inbox(app).of_kind("welcome")
    assert welcome.user == "noor" and "This workspace enrolled you" in welcome.text


def test_export_my_data_has_everything_about_me(app: App, clock: Clock) -> None:
    _, ana, _ = team(app)
    clock.now = at(26, 9)
    tick(app)
    ana.say("my answer")
    [message] = ana.say("/mentor export-my-data")
    [file] = message.attachments
    data = json.loads(file.content)
    assert file.filename == "mentorbot-my-data.json"
    assert data["profile"]["user_id"] == "ana"
    assert data["enrolments"][0]["assigned_by"] == "lena"
    # With retention at one day (MENTORBOT_TEST_RETENTION_DAYS=1) the day-old welcome
    # is pruned, as every welcome is after the retention age; the lesson with its
    # question is history and stays.
    kept = ["welcome", "lesson"] if app.settings.retention_days > 1 else ["lesson"]
    assert [d["kind"] for d in data["deliveries"]] == kept
    assert data["replies"][0]["text"] == "my answer"
    assert data["replies"][0]["visible_to_leads"] is False


def test_forget_me_is_reflected_everywhere_and_nothing_resurrects(app: App, clock: Clock) -> None:
    lena, ana, bo = team(app)
    lena.say("/mentor digest #team weekly")
    clock.now = at(26, 9)
    asyncio.run(asyncio.to_thread(app.engine.planner.plan))  # ana's day 1 queued, not sent
    ana.say("/mentor forget-me confirm")
    tick(app)  # the queued delivery was erased with everything else: nothing is sent
    assert [m.user for m in inbox(app).of_kind("lesson")] == ["bo"]
    bo.say("bo's answer")
    bo.say("/mentor share")
    clock.now = at(30, 9)
    tick(app)
    assert "<@ana>" not in inbox(app).of_kind("digest")[0].plain_text()
    assert [s.title for s in lena.say("/mentor team")[0].sections] == ["<@bo>"]
    assert {row["learner"] for row in reply_rows(app.store)} == {"bo"}
    with Session(app.store.engine) as session:
        assert session.exec(select(Learner).where(Learner.user_id == "ana")).first() is None
        assert session.exec(select(Delivery).where(col(Delivery.learner_id).is_(None))).all() == []


def test_operator_export_filters(app: App, clock: Clock) -> None:
    _, ana, _ = team(app, "A")
    _, carl, _ = team(app, "B")
    clock.now = at(26, 9)
    tick(app)
    ana.say("A reply")
    clock.now = at(27, 9)
    carl.say("B reply")
    carl.say("/mentor share")
    assert [r["reply"] for r in reply_rows(app.store, ReplyFilter(workspace="A"))] == ["A reply"]
    assert [r["reply"] for r in reply_rows(app.store, ReplyFilter(since=at(27, 0)))] == ["B reply"]
    assert [r["reply"] for r in reply_rows(app.store, ReplyFilter(for_leads=True))] == ["B reply"]
    with Session(app.store.engine) as session:
        assert {r.text for r in session.exec(select(Reply))} == {"A reply", "B reply"}


def test_joins_store_nothing_without_auto_enrol_and_admin_status_is_not_kept(app: App) -> None:
    Chat(app, user="nia").send(Chat(app, user="nia").event(EventKind.JOINED))
    with Session(app.store.engine) as session:
        assert session.exec(select(Learner).where(Learner.user_id == "nia")).first() is None
    admin = Chat(app, user="max", lead=True)
    assert "Your team" in admin.text("/mentor team") or "Nobody here" in admin.text("/mentor team")
    demoted = Chat(app, user="max", lead=False)  # lost the admin role on the platform
    assert "Only leads" in demoted.text("/mentor team")
    lena = Chat(app, user="lena", lead=True)
    only_bots = lena.text("/mentor unassign <@B1>", mentioned=(UserRef("B1", "Bot", True),))
    assert "Name the people" in only_bots and "<@B1> is a bot" in only_bots
