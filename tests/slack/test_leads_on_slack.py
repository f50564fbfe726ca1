"""Leads and privacy on Slack, end to end: the real Bolt app over signed loopback HTTP,
the emulator as Slack, the real core on a real database. Who is a lead, mentions of
people and bots, sharing, digests in channels with their chart, data exports as files,
auto-enrolment on team_join, and no answer that crosses workspaces."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest
from sqlmodel import col, select

from adapters.slack.app import Profile, mentioned_ids, read_profile
from bot.commands import SPECS
from bot.config import Settings, bundled_content_dir
from bot.crypto import generate_key
from bot.mentions import MAX_MENTIONS
from bot.messages import Attachment, OutgoingMessage
from bot.models import Digest, Learner, ReplyRead, Workspace
from tests.conftest import Clock
from tests.emulators.slack_api import (
    DEFAULT_SIGNING_SECRET,
    DEFAULT_TEAM_ID,
    DEFAULT_USER_ID,
    SlackEmulator,
    message_event,
)
from tests.slack.rig import SlackRig, block_text, buttons, dm_of, lessons, posts, responses

Scenario = Callable[[SlackRig], Awaitable[None]]

LEARNER = DEFAULT_USER_ID  # alex, a plain member
LEAD = "U0000000A"  # lena, a workspace admin
ANA, BOB = "U00000002", "U00000003"
BUILDBOT, GONE = "U0000000B", "U0000000D"
CHANNEL = "C123"
LEAD_COMMANDS = {
    "assign": f"assign <@{ANA}>",
    "unassign": f"unassign <@{ANA}>",
    "team": "team",
    "replies": "replies",
    "digest": f"digest <#{CHANNEL}|team> weekly",
    "settings": "settings auto-enrol on",
    "leads": f"leads add <@{ANA}>",
    "reload": "reload",
}


def run(
    settings: Settings, slack: SlackEmulator, clock: Clock, scenario: Scenario, **options: Any
) -> None:
    """``options`` go to the adapter (see ``SlackRig``)."""

    async def main() -> None:
        async with SlackRig(settings, slack, clock, **options) as rig:
            await scenario(rig)

    asyncio.run(main())


@pytest.fixture
def people(slack: SlackEmulator) -> SlackEmulator:
    """The default workspace with an admin, two colleagues, a bot and a deactivated user."""
    slack.add_user(LEAD, name="lena", is_admin=True, tz="Europe/Berlin")
    slack.add_user(ANA, name="ana")
    slack.add_user(BOB, name="bob")
    slack.add_user(BUILDBOT, name="buildbot", is_bot=True)
    slack.add_user(GONE, name="gone", deleted=True)
    return slack


async def as_lead(rig: SlackRig, text: str) -> dict[str, Any]:
    """Run a command as the admin and return its (ephemeral) answer."""
    await rig.command(text, user_id=LEAD, user_name="lena")
    await rig.settle()
    return responses(rig.slack)[-1]


async def as_learner(rig: SlackRig, text: str) -> dict[str, Any]:
    await rig.command(text)
    await rig.settle()
    return responses(rig.slack)[-1]


def completed_uploads(slack: SlackEmulator) -> list[Any]:
    return [f for f in slack.files.values() if f.completed]


# ---------------------------------------------------------------------- who is a lead


def test_a_learner_is_refused_every_lead_command(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    assert set(LEAD_COMMANDS) == {spec.name for spec in SPECS if spec.lead_only}

    async def scenario(rig: SlackRig) -> None:
        for name, text in LEAD_COMMANDS.items():
            answer = await as_learner(rig, text)
            assert answer["response_type"] == "ephemeral"
            assert f"Only leads can use `/mentor {name}`" in answer["text"], name

        assert rig.deliveries() == []
        assert rig.db(lambda s: s.exec(select(Digest)).all()) == []
        (workspace,) = rig.db(lambda s: s.exec(select(Workspace)).all())
        assert workspace.auto_enrol is False
        assert {x.user_id: x.role for x in rig.learners()} == {LEARNER: "learner"}
        assert posts(people) == []  # nobody was welcomed or told anything in a DM

    run(slack_settings, people, clock, scenario)


def test_an_admin_assigns_people_and_bots_and_deactivated_accounts_are_left_out(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        answer = await as_lead(rig, f"assign <@{ANA}> <@{BOB}|bob> <@{BUILDBOT}> <@{GONE}|gone>")

        text = answer["text"]
        assert f"Enrolled <@{ANA}>, <@{BOB}> in *Data Engineering Leadership*" in text
        assert f"<@{BUILDBOT}> is a bot, so I left it out." in text
        assert f"<@{GONE}> is a bot, so I left it out." in text  # deactivated: never a learner
        for person in (ANA, BOB):
            (welcome,) = posts(people, dm_of(people, person))
            blocks = welcome.params["blocks"]
            assert blocks[0]["text"]["text"] == "Welcome to mentorbot"
            assert f"<@{LEAD}> enrolled you" in block_text(blocks)
            assert "private to you unless you share one" in block_text(blocks)
        assert posts(people, dm_of(people, BUILDBOT)) == []
        assert posts(people, dm_of(people, GONE)) == []
        names = {x.user_id: (x.display_name, x.role) for x in rig.learners()}
        assert names == {
            LEAD: ("lena", "learner"),  # a lead because Slack says admin, not a stored role
            ANA: ("ana", "learner"),
            BOB: ("bob", "learner"),
        }
        assert sorted(d.status for d in rig.deliveries()) == ["sent", "sent"]

        # One users.info per person; mentioning them again asks Slack nothing new.
        asked = [c.params["user"] for c in people.calls_to("users.info")]
        assert sorted(asked) == sorted([LEAD, ANA, BOB, BUILDBOT, GONE])
        team = await as_lead(rig, "team")
        again = await as_lead(rig, f"assign <@{ANA}>")
        assert len(people.calls_to("users.info")) == len(asked)

        assert team["blocks"][0]["text"]["text"] == "Your team"
        listed = block_text(team["blocks"])
        assert f"<@{ANA}>" in listed and f"<@{BOB}>" in listed
        assert f"<@{BUILDBOT}>" not in listed and f"<@{LEAD}>" not in listed
        assert "2 learners." in listed
        assert f"Already taking Data Engineering Leadership: <@{ANA}>." in again["text"]

    run(slack_settings, people, clock, scenario)


def test_a_command_typed_in_the_dm_resolves_its_mentions_too(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        dm = dm_of(people, LEAD)
        typed = message_event(f"/mentor assign <@{BUILDBOT}> <@{ANA}>", user=LEAD, channel=dm)
        await rig.event(typed)
        await rig.settle()

        answer = posts(people, dm)[-1].params["text"]
        assert f"Enrolled <@{ANA}>" in answer
        assert f"<@{BUILDBOT}> is a bot" in answer
        assert [x.user_id for x in rig.learners()] == [LEAD, ANA]
        # Without the prefix too: a lead's command naming people is a command.
        await rig.event(message_event(f"unassign <@{BUILDBOT}>", user=LEAD, channel=dm))
        await rig.settle()
        assert f"<@{BUILDBOT}> is a bot" in posts(people, dm)[-1].params["text"]

    run(slack_settings, people, clock, scenario)


def many(count: int) -> str:
    """``count`` mentions of ids nobody in the workspace has."""
    return " ".join(f"<@U9{n:07d}>" for n in range(count))


def users_asked(slack: SlackEmulator) -> list[str]:
    return [c.params["user"] for c in slack.calls_to("users.info")]


def test_a_learners_assign_naming_2900_people_asks_slack_about_nobody(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        # Far over the length of any real command: refused before it is even parsed.
        answer = await as_learner(rig, f"assign {many(2900)}")
        assert "commands are short" in answer["text"]
        await rig.event(message_event(f"/mentor unassign {many(2900)}", channel=dm_of(people)))
        await rig.settle()
        assert "commands are short" in posts(people)[-1].params["text"]
        answer = await as_learner(rig, f"assign {many(300)}")
        assert "Only leads can use `/mentor assign`" in answer["text"]
        # The caller is asked about once (is she an admin?), and then remembered.
        assert users_asked(people) == [LEARNER]
        assert [x.user_id for x in rig.learners()] == [LEARNER]

    run(slack_settings, people, clock, scenario)


def test_a_lead_naming_more_than_50_people_is_asked_to_split_the_list(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        answer = await as_lead(rig, f"assign {many(MAX_MENTIONS + 1)}")
        assert answer["response_type"] == "ephemeral"
        assert answer["text"] == (
            "That names 51 people, and one command can take at most 50. "
            "Please split the list over several commands."
        )
        assert users_asked(people) == [LEAD]
        assert rig.deliveries() == []

        await as_lead(rig, f"assign {many(MAX_MENTIONS)}")  # at the cap, each is asked once
        assert len(users_asked(people)) == 1 + MAX_MENTIONS

    # The lookups' pace at Slack's tier is tests/slack/test_api_pacing.py's subject.
    fast = {"users.info": 1000.0, "conversations.open": 1000.0}
    run(slack_settings, people, clock, scenario, api_rates=fast)


def test_a_lead_made_by_a_lead_gets_mentions_looked_up(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await as_lead(rig, f"leads add <@{ANA}>")
        assert users_asked(people) == [LEAD, ANA]

        answer = await rig.command(f"assign <@{BUILDBOT}> <@{BOB}>", user_id=ANA, user_name="ana")
        await rig.settle()
        text = responses(people)[-1]["text"]
        assert answer[0] == 200 and f"<@{BUILDBOT}> is a bot, so I left it out." in text
        assert f"Enrolled <@{BOB}>" in text
        assert users_asked(people)[:2] == [LEAD, ANA]
        assert sorted(users_asked(people)[2:]) == sorted([BUILDBOT, BOB])

    run(slack_settings, people, clock, scenario)


# ---------------------------------------------------------------------- privacy


def test_a_private_reply_reaches_the_lead_only_once_shared_and_the_export_shows_the_read(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await as_learner(rig, "start")
        dm = dm_of(people)
        await rig.event(message_event("I prefer guiding others", channel=dm))
        await rig.settle()
        confirmation = posts(people, dm)[-1]
        assert "It is private to you." in confirmation.params["text"]

        for text in ("replies", f"replies <@{LEARNER}>", "replies 0.2.2"):
            answer = await as_lead(rig, text)
            assert "have been shared with leads" in answer["text"]
            assert "I prefer guiding others" not in json.dumps(answer)
        assert rig.db(lambda s: s.exec(select(ReplyRead)).all()) == []

        # The learner presses "Share with my lead" on the confirmation in the DM.
        share = buttons(confirmation.params["blocks"])["mentor.share"]
        message = {
            "type": "message",
            "ts": confirmation.response["ts"],
            "blocks": confirmation.params["blocks"],
            "text": confirmation.params["text"],
        }
        await rig.press(share, message=message, channel_id=dm)
        await rig.settle()
        assert responses(people)[-1]["text"].startswith("Shared your answer to")

        shared = await as_lead(rig, f"replies <@{LEARNER}>")
        assert shared["blocks"][0]["text"]["text"] == "Replies leads may read"
        assert "I prefer guiding others" in block_text(shared["blocks"])
        (read,) = rig.db(lambda s: s.exec(select(ReplyRead)).all())
        assert (read.reader_name, read.via) == ("lena", "replies")

        # export-my-data from a channel: the file goes to the DM, the pointer only to them.
        posted_before = len(posts(people, dm))
        pointer = await as_learner(rig, "export-my-data")

        (upload,) = completed_uploads(people)
        assert upload.filename == "mentorbot-my-data.json"
        assert upload.channels == [dm]
        assert upload.content is not None
        data = json.loads(upload.content.decode("utf-8"))
        assert [r["text"] for r in data["replies"]] == ["I prefer guiding others"]
        assert data["replies"][0]["visible_to_leads"] is True
        assert [(r["reader"], r["via"]) for r in data["read_by"]] == [("lena", "replies")]
        assert data["profile"]["user_id"] == LEARNER
        (complete,) = people.calls_to("files.completeUploadExternal")
        assert complete.params["channel_id"] == dm
        assert complete.params["files"][0]["title"] == "My data"
        in_dm = people.messages(dm)
        intro, shared_file = in_dm[posted_before], in_dm[posted_before + 1]
        assert "everything I store about you" in intro["text"]
        assert [f["name"] for f in shared_file["files"]] == ["mentorbot-my-data.json"]
        assert pointer["response_type"] == "ephemeral"
        assert "sent <https://emulated.invalid/files/" in pointer["text"]
        assert "|mentorbot-my-data.json> to our direct messages" in pointer["text"]

    run(slack_settings, people, clock, scenario)


def test_an_answer_with_a_file_goes_to_the_dm_and_the_caller_is_told_where(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    """Slack has no ephemeral files: the file is posted in the DM, and an ephemeral note
    where the person asked says so. Without files:write the note says what is missing."""

    async def scenario(rig: SlackRig) -> None:
        dm = dm_of(people)
        message = OutgoingMessage(
            platform="slack",
            workspace=DEFAULT_TEAM_ID,
            user=LEARNER,
            text="Your notes, as a file.",
            ephemeral=True,
            attachments=(Attachment("notes.txt", b"hello", "text/plain", "Notes"),),
        )
        respond = rig.adapter._responder(
            rig.adapter.client,
            DEFAULT_TEAM_ID,
            LEARNER,
            response_url=people.new_response_url(),
            origin="C00000001",
        )
        await respond([message])

        text_post, file_post = people.messages(dm)
        assert text_post["text"] == "Your notes, as a file."
        assert file_post["files"][0]["name"] == "notes.txt"
        (note,) = responses(people)
        assert note["response_type"] == "ephemeral"
        assert "|notes.txt> to our direct messages" in note["text"]

        people.fail_next("files.getUploadURLExternal", status=200, error="missing_scope")
        await respond([message])
        *_, text_again, missing = people.messages(dm)
        assert text_again["text"] == "Your notes, as a file."
        assert "lacks the `files:write` permission" in missing["text"]
        assert "I sent you a direct message about that" in responses(people)[-1]["text"]
        assert len(completed_uploads(people)) == 1

        # Asked from inside the DM: no ephemeral note, the file is right there.
        in_dm = rig.adapter._responder(
            rig.adapter.client, DEFAULT_TEAM_ID, LEARNER, response_url=None, channel=dm
        )
        await in_dm([message])
        assert len(responses(people)) == 2
        assert len(completed_uploads(people)) == 2

    run(slack_settings, people, clock, scenario)


# ---------------------------------------------------------------------- digests


async def set_up_digest(rig: SlackRig, clock: Clock) -> Digest:
    answer = await as_lead(rig, f"digest <#{CHANNEL}|team> weekly")
    assert f"A weekly digest will be posted in <#{CHANNEL}>" in answer["text"]
    (digest,) = rig.db(lambda s: s.exec(select(Digest)).all())
    assert digest.channel == CHANNEL and digest.next_due_at is not None
    clock.now = digest.next_due_at  # Monday 09:00
    return digest


def test_a_weekly_digest_is_posted_in_its_channel_with_its_chart(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await set_up_digest(rig, clock)

        await rig.app.engine.tick()

        (post,) = posts(people, CHANNEL)
        assert post.params["blocks"][0]["text"]["text"].startswith("Weekly mentoring digest")
        assert "Participation:" in block_text(post.params["blocks"])
        (upload,) = completed_uploads(people)
        assert (upload.filename, upload.title, upload.alt_txt) == (
            "answered-per-day.png",
            "Answered per day",
            "Answered per day",
        )
        assert upload.content is not None and upload.content.startswith(b"\x89PNG\r\n\x1a\n")
        assert upload.channels == [CHANNEL]
        flow = [c.method for c in people.calls if c.method.startswith("file")]
        assert flow == ["files.getUploadURLExternal", "file_upload", "files.completeUploadExternal"]
        text_message, chart_message = people.messages(CHANNEL)
        assert text_message["ts"] == post.response["ts"]
        assert [f["name"] for f in chart_message["files"]] == ["answered-per-day.png"]
        (row,) = rig.deliveries()
        assert (row.kind, row.status, row.platform_channel) == ("digest", "sent", CHANNEL)
        assert posts(people, dm_of(people, LEAD)) == []  # the channel, not the lead's DM
        (learner,) = [x for x in rig.learners() if x.user_id == LEAD]
        assert learner.dm_channel is None  # a channel post never becomes someone's DM

    run(slack_settings, people, clock, scenario)


def test_a_digest_channel_the_bot_is_not_in_tells_the_lead_why(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await set_up_digest(rig, clock)
        people.set_channel_error(CHANNEL, "not_in_channel")

        await rig.app.engine.tick()

        digest_row, notice_row = rig.deliveries()
        reason = "mentorbot is not a member of that channel (slack: not_in_channel)"
        assert (digest_row.kind, digest_row.status, digest_row.error) == (
            "digest",
            "failed",
            reason,
        )
        assert (notice_row.kind, notice_row.status) == ("notice", "sent")
        (notice,) = posts(people, dm_of(people, LEAD))
        text = notice.params["text"]
        assert f"I couldn't post the weekly digest in <#{CHANNEL}>: {reason}." in text
        assert "Invite me to that channel" in text
        assert completed_uploads(people) == [] and posts(people, CHANNEL) == []

    run(slack_settings, people, clock, scenario)


def test_a_digest_whose_chart_upload_fails_is_completed_without_posting_twice(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await set_up_digest(rig, clock)
        people.fail_next("files.completeUploadExternal", status=500)

        await rig.app.engine.tick()
        (row,) = rig.deliveries()
        assert (row.status, row.attempts, row.lease_owner) == ("sending", 1, None)  # unsure
        assert len(posts(people, CHANNEL)) == 1 and completed_uploads(people) == []

        clock.advance(minutes=10)  # past the backoff
        await rig.app.engine.tick()

        (row,) = rig.deliveries()
        assert row.status == "sent"
        assert len(posts(people, CHANNEL)) == 1  # the text was not posted again
        (upload,) = completed_uploads(people)
        assert upload.channels == [CHANNEL]
        assert len(people.messages(CHANNEL)) == 2

    run(slack_settings, people, clock, scenario)


def test_an_install_without_files_write_still_gets_the_digest_text(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await set_up_digest(rig, clock)
        people.fail_next("files.getUploadURLExternal", status=200, error="missing_scope")

        await rig.app.engine.tick()

        (row,) = rig.deliveries()
        assert row.status == "sent"
        digest, note = people.messages(CHANNEL)
        assert digest["blocks"][0]["text"]["text"].startswith("Weekly mentoring digest")
        assert "answered-per-day.png" in note["text"]
        assert "lacks the `files:write` permission" in note["text"]

    run(slack_settings, people, clock, scenario)


# ---------------------------------------------------------------------- auto-enrol


def team_join(user: dict[str, Any]) -> dict[str, Any]:
    return {"type": "team_join", "user": user, "event_ts": "1700000000.000200"}


def test_team_join_enrols_and_welcomes_new_members_when_auto_enrol_is_on(
    slack_settings: Settings, people: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        early = people.add_user("U00000010", name="early")
        await rig.event(team_join(early.to_api()))
        await rig.settle()
        assert rig.deliveries() == []  # auto-enrol is off by default

        assert (await as_lead(rig, "settings auto-enrol on"))["text"].startswith("Saved")
        nico = people.add_user("U00000011", name="nico", tz="America/New_York")
        robot = people.add_user("U00000012", name="robot", is_bot=True)
        guest = people.add_user("U00000013", name="guest")
        guest_data = {**guest.to_api(), "is_restricted": True}
        for user in (nico.to_api(), robot.to_api(), guest_data):
            await rig.event(team_join(user))
        await rig.settle()

        (welcome,) = posts(people, dm_of(people, nico.id))
        assert welcome.params["blocks"][0]["text"]["text"] == "Welcome to mentorbot"
        assert "This workspace enrolled you" in block_text(welcome.params["blocks"])
        assert posts(people, dm_of(people, robot.id)) == []
        assert posts(people, dm_of(people, guest.id)) == []
        (learner,) = [x for x in rig.learners() if x.user_id == nico.id]
        assert (learner.display_name, learner.timezone) == ("nico", "America/New_York")
        assert not {robot.id, guest.id} & {x.user_id for x in rig.learners()}
        asked = {c.params["user"] for c in people.calls_to("users.info")}
        assert nico.id not in asked  # the event said who they are

    run(slack_settings, people, clock, scenario)


# ---------------------------------------------------------------------- workspaces

TEAM_B, BO = "T00000002", "U000000B0"
CY = "U000000C0"  # a plain member of the first workspace
NOBODY = "U000000F0"  # exists nowhere


@pytest.fixture
def oauth_settings(store_url: str, slack: SlackEmulator) -> Settings:
    return Settings(
        database_url=store_url,
        content_dir=bundled_content_dir(),
        slack_client_id="111.222",
        slack_client_secret="shh",
        slack_signing_secret=DEFAULT_SIGNING_SECRET,
        slack_api_url=slack.base_url,
        slack_channel_rate=100.0,
        slack_workspace_rate=100.0,
        secret_key=generate_key(),
    )


async def install(rig: SlackRig, code: str) -> None:
    """The browser side of "Add to Slack": install page, then Slack's redirect back."""
    async with rig.http.get(rig.url + "/slack/install") as page:
        state = page.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
    redirect = f"/slack/oauth_redirect?code={quote(code)}&state={quote(state)}"
    headers = {"Cookie": f"slack-app-oauth-state={state}"}
    async with rig.http.get(rig.url + redirect, headers=headers) as done:
        assert done.status == 200, await done.text()


# slack_sdk's AsyncWebClient itself still builds aiohttp.BasicAuth for oauth.v2.access.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
def test_the_installer_leads_and_learns_nothing_about_another_workspace(
    oauth_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    slack.add_team(TEAM_B, "Second Workspace", domain="second")
    slack.add_user(BO, team_id=TEAM_B, name="bo")
    slack.add_user(CY, name="cy")
    slack.add_oauth_code("code-a", DEFAULT_TEAM_ID, installer_user_id=LEARNER)
    slack.add_oauth_code("code-b", TEAM_B, installer_user_id=BO)

    async def in_b(rig: SlackRig, text: str) -> dict[str, Any]:
        await rig.command(text, team_id=TEAM_B, user_id=BO, team_domain="second")
        await rig.settle()
        return responses(slack)[-1]

    async def in_a(rig: SlackRig, text: str, user: str = LEARNER) -> dict[str, Any]:
        await rig.command(text, user_id=user)
        await rig.settle()
        return responses(slack)[-1]

    async def main() -> None:
        async with SlackRig(oauth_settings, slack, clock) as rig:
            await install(rig, "code-a")
            await install(rig, "code-b")

            # In B, bo (its installer) learns, replies and shares; B's lead can read it.
            await in_b(rig, "start")
            dm_b = slack.dm_channel_id(BO, TEAM_B)
            answer = message_event("Secret from B", user=BO, team=TEAM_B, channel=dm_b)
            await rig.event(answer, team_id=TEAM_B)
            await rig.settle()
            await in_b(rig, "share")
            assert "Secret from B" in json.dumps(await in_b(rig, f"replies <@{BO}>"))
            reads = rig.db(lambda s: len(s.exec(select(ReplyRead)).all()))

            # In A, alex installed the app: a lead, although not an admin; cy is not.
            assert "Only leads" in (await in_a(rig, "team", user=CY))["text"]
            assert "Nobody here is taking a course yet" in (await in_a(rig, "team"))["text"]
            about_bo = await in_a(rig, f"replies <@{BO}>")
            about_nobody = await in_a(rig, f"replies <@{NOBODY}>")
            assign_bo = await in_a(rig, f"assign <@{BO}>")
            assign_nobody = await in_a(rig, f"assign <@{NOBODY}>")

            def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
                strip = {"response_url"}
                one = json.dumps({k: v for k, v in a.items() if k not in strip})
                two = json.dumps({k: v for k, v in b.items() if k not in strip})
                return one.replace(BO, "someone") == two.replace(NOBODY, "someone")

            assert same(about_bo, about_nobody)
            assert "Secret from B" not in json.dumps(about_bo)
            assert same(assign_bo, assign_nobody)
            assert rig.db(lambda s: len(s.exec(select(ReplyRead)).all())) == reads
            in_first = rig.db(
                lambda s: s.exec(
                    select(Learner.user_id)
                    .join(Workspace, col(Workspace.id) == Learner.workspace_id)
                    .where(Workspace.external_id == DEFAULT_TEAM_ID)
                ).all()
            )
            assert sorted(in_first) == sorted([LEARNER, CY])
            assert not [
                d for d in rig.deliveries() if d.kind == "welcome"
            ]  # nobody was enrolled in A
            assert len(lessons(slack)) == 1  # bo's day 1, in B

    asyncio.run(main())


# ---------------------------------------------------------------------- pure helpers


def test_mentions_are_read_once_each_and_channels_are_not_people() -> None:
    text = "assign <@U1AA> <@W2BB|bob> <@U1AA> <#C3CC|team> @plain"
    assert mentioned_ids(text) == ["U1AA", "W2BB"]


def test_profiles_say_who_cannot_be_a_learner() -> None:
    assert read_profile({"id": "U1", "name": "x", "deleted": True}).active is False
    assert read_profile({"id": "USLACKBOT", "name": "slackbot"}).is_bot is True
    guest = read_profile({"id": "U2", "is_ultra_restricted": True})
    assert guest.guest is True and guest.is_lead is False
    owner = read_profile({"id": "U3", "is_owner": True, "profile": {"real_name": "Olu"}})
    assert owner == Profile(name="Olu", is_lead=True)
