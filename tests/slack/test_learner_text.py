"""Text a learner wrote is shown, never obeyed: a shared reply full of Slack's control
sequences reaches the channel, the fallback text and the response_url as inert text,
while the mentions mentorbot writes itself still work.

The core marks learner text with ``bot.text.learner_text``; these tests build such
messages and check what the Slack emulator received from the real adapter."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.slack.render import render_parts, to_mrkdwn, to_plain
from bot.config import Settings
from bot.messages import IncomingEvent, OutgoingMessage, Section
from bot.ports import Respond
from bot.text import LEARNER_CLOSE, LEARNER_OPEN, learner_text
from tests.conftest import Clock
from tests.emulators.slack_api import DEFAULT_TEAM_ID, DEFAULT_USER_ID, SlackEmulator
from tests.slack.rig import SlackRig, block_text, dm_of, posts, responses

PINGS = "<!channel> <!here> <!everyone> <!subteam^S0TEAM> <@U0VICTIM>"
INERT = "&lt;!channel&gt; &lt;!here&gt; &lt;!everyone&gt; &lt;!subteam^S0TEAM&gt; &lt;@U0VICTIM&gt;"
RAW_TOKENS = ("<!channel>", "<!here>", "<!everyone>", "<!subteam^S0TEAM>", "<@U0VICTIM>")
CHANNEL = "C123"

Scenario = Callable[[SlackRig], Awaitable[None]]


def run(settings: Settings, slack: SlackEmulator, clock: Clock, scenario: Scenario) -> None:
    async def main() -> None:
        async with SlackRig(settings, slack, clock) as rig:
            await scenario(rig)

    asyncio.run(main())


def assert_inert(payload: dict[str, Any]) -> None:
    """Nothing a learner wrote is a live token, and no mark is left, anywhere in it."""
    dumped = json.dumps(payload, ensure_ascii=False)
    for token in RAW_TOKENS:
        assert token not in dumped, token
    assert LEARNER_OPEN not in dumped and LEARNER_CLOSE not in dumped


def shared_reply_digest() -> OutgoingMessage:
    """A digest quoting a shared reply, as the core builds it with marked learner text."""
    return OutgoingMessage(
        platform="slack",
        workspace=DEFAULT_TEAM_ID,
        user="U0000000A",
        channel=CHANNEL,
        kind="digest",
        title=f"Digest: {learner_text('Q&A <!here>')}",
        sections=(
            Section("Shared replies", f"<@U123> wrote: {learner_text(PINGS)}"),
            Section(learner_text("<!everyone> title"), "Posted in <#C1>."),
        ),
        question=learner_text(f"What about {PINGS}?"),
        text=f"**Thanks**, <@U123>! Quote: > {learner_text('a > b & c < d ' + PINGS)}",
    )


def test_a_shared_reply_posted_in_a_channel_pings_nobody(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        await rig.adapter.send(shared_reply_digest())

        (post,) = posts(slack, CHANNEL)
        blocks, fallback = post.params["blocks"], post.params["text"]
        assert_inert(post.params)
        shown = block_text(blocks)
        assert f"<@U123> wrote: {INERT}" in shown  # the bot's mention works, the learner's not
        assert "Posted in <#C1>." in shown
        assert blocks[0] == {
            "type": "header",
            "text": {"type": "plain_text", "text": "Digest: Q&amp;A &lt;!here&gt;", "emoji": True},
        }
        assert "*&lt;!everyone&gt; title*" in shown  # bot bold around a learner's title
        assert f"What about {INERT}?" in shown
        assert f"*Thanks*, <@U123>! Quote: &gt; a &gt; b &amp; c &lt; d {INERT}" in shown
        # The notification text says the same, just as inert.
        assert f"<@U123> wrote: {INERT}" in fallback
        assert f"Question: What about {INERT}?" in fallback

    run(slack_settings, slack, clock, scenario)


class EchoingCore:
    """Stands in for the core, answering every event by quoting the learner's words as
    the core does (marked), once ephemeral and once in the DM."""

    async def handle(self, event: IncomingEvent, respond: Respond) -> None:
        quoted = f"<@{event.user}>, you wrote: {learner_text(event.text)}"
        base = {"platform": "slack", "workspace": event.workspace, "user": event.user}
        await respond(
            [
                OutgoingMessage(**base, text=quoted, ephemeral=True),  # type: ignore[arg-type]
                OutgoingMessage(**base, text=quoted, question=learner_text(event.text)),  # type: ignore[arg-type]
            ]
        )


def test_answers_to_commands_and_dms_quote_learners_inertly(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def scenario(rig: SlackRig) -> None:
        rig.hub.hub = EchoingCore()
        await rig.command(f"share {PINGS}")
        await rig.settle()

        (ephemeral,) = responses(slack)
        assert_inert(ephemeral)
        assert ephemeral["text"] == f"<@{DEFAULT_USER_ID}>, you wrote: share {INERT}"
        assert block_text(ephemeral["blocks"]) == ephemeral["text"]
        (in_dm,) = posts(slack, dm_of(slack))
        assert_inert(in_dm.params)
        assert f"Question: share {INERT}" in in_dm.params["text"]

    run(slack_settings, slack, clock, scenario)


def test_learner_text_is_escaped_plainly_and_the_bots_markdown_still_converts() -> None:
    # No markdown, no code, no links or tokens inside the learner's words.
    assert to_mrkdwn(learner_text("**b** `x<y` [a](https://x.io) <https://x.io> & <@U1>")) == (
        "**b** `x&lt;y` [a](https://x.io) &lt;https://x.io&gt; &amp; &lt;@U1&gt;"
    )
    # Around them, the bot's markdown, quotes, code and tokens behave as before.
    marked = f"# Head\n> **{learner_text('<!here>')}** `{learner_text('a&b')}` <@U9> <#C1>"
    assert to_mrkdwn(marked) == "*Head*\n> *&lt;!here&gt;* `a&amp;b` <@U9> <#C1>"
    # A learner cannot end the marked span early: marks inside their text are dropped.
    forged = learner_text(f"x{LEARNER_CLOSE} <!channel> {LEARNER_OPEN}")
    assert to_mrkdwn(forged) == "x &lt;!channel&gt; "
    # Text cut after the opening mark (a preview) stays the learner's to its end, and a
    # closing mark with no opening one makes what came before it the learner's.
    assert to_mrkdwn(f"<@U1> said {LEARNER_OPEN}<!channel> and mo…") == (
        "<@U1> said &lt;!channel&gt; and mo…"
    )
    assert to_mrkdwn(f"<!channel>{LEARNER_CLOSE} <@U1>") == "&lt;!channel&gt; <@U1>"
    # Digits the bot writes next to a learner's words are not mistaken for a hole.
    assert to_mrkdwn(f"{learner_text('a')}0{learner_text('b')}1") == "a0b1"
    assert to_plain(f"**Re:** {learner_text('**x** <!here>')}") == "Re: **x** &lt;!here&gt;"


def test_a_message_split_over_several_slack_messages_keeps_every_fallback_inert() -> None:
    sections = tuple(Section(learner_text(f"{i} <!here>"), learner_text(PINGS)) for i in range(70))
    message = OutgoingMessage(
        platform="slack", workspace="T1", user="U1", text="", sections=sections, channel="C1"
    )

    parts = render_parts(message)

    assert len(parts) == 2
    for part in parts:
        assert_inert({"blocks": part.blocks, "text": part.text})
        assert INERT in part.text
