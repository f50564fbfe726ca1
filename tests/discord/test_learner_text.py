"""Text a learner wrote reaches Discord as written, with the core's learner marks gone,
and never pings: every message and interaction answer says ``allowed_mentions`` with
nothing to parse, so ``@everyone`` or ``<@id>`` in a quoted reply is only text."""

from __future__ import annotations

import json
from typing import Any

from bot.messages import IncomingEvent, OutgoingMessage, Section
from bot.ports import Respond
from bot.text import LEARNER_CLOSE, LEARNER_OPEN, learner_text
from tests.conftest import Clock
from tests.discord.world import ACME, ACME_GENERAL, ALICE, message_text, run, running

PINGS = f"@everyone @here <@{ALICE}> <@&123> <#{ACME_GENERAL}>"


def unmarked(payload: Any) -> bool:
    dumped = json.dumps(payload, ensure_ascii=False)
    return LEARNER_OPEN not in dumped and LEARNER_CLOSE not in dumped


def test_a_shared_reply_in_a_channel_pings_nobody_and_keeps_no_marks(
    sqlite_url: str, clock: Clock
) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock) as world:
            digest = OutgoingMessage(
                platform="discord",
                workspace=str(ACME),
                user=str(ALICE),
                channel=str(ACME_GENERAL),
                kind="digest",
                title=learner_text("Digest <@&123>"),
                sections=(Section("Shared", f"<@{ALICE}> wrote: {learner_text(PINGS)}"),),
                question=learner_text(PINGS),
                text=f"Quote: {learner_text(PINGS)}",
                delivery_key="digest:test",
            )
            await world.adapter.send(digest)

            [post] = world.dc.requests_to("POST", rf"/channels/{ACME_GENERAL}/messages")
            assert post.json["allowed_mentions"] == {"parse": []}
            assert unmarked(post.json)
            [stored] = world.dc.messages(ACME_GENERAL)
            shown = message_text(stored)
            assert f"<@{ALICE}> wrote: {PINGS}" in shown
            assert "Digest <@&123>" in shown and f"Quote: {PINGS}" in shown

    run(scenario)


class EchoingCore:
    """Stands in for the core: answers every event by quoting the learner (marked)."""

    def __init__(self, _app: object) -> None:
        pass

    async def handle(self, event: IncomingEvent, respond: Respond) -> None:
        quoted = f"<@{event.user}>, you wrote: {learner_text(event.text + ' ' + PINGS)}"
        await respond(
            [
                OutgoingMessage(
                    platform="discord",
                    workspace=event.workspace,
                    user=event.user,
                    text=quoted,
                    ephemeral=True,
                )
            ]
        )


def test_answers_to_commands_and_dms_quote_learners_without_pings_or_marks(
    sqlite_url: str, clock: Clock
) -> None:
    async def scenario() -> None:
        async with running(sqlite_url, clock, sink=EchoingCore) as world:
            answer = await world.command(ALICE, "help")
            [callback] = answer.callbacks
            assert callback.data["allowed_mentions"] == {"parse": []}
            assert unmarked(callback.data)
            assert answer.text == f"<@{ALICE}>, you wrote: help {PINGS}"

            [reply] = await world.dm(ALICE, "hello @everyone")
            [post] = world.dc.requests_to("POST", r"/channels/\d+/messages")[-1:]
            assert post.json["allowed_mentions"]["parse"] == []
            assert unmarked(post.json)
            assert message_text(reply) == f"<@{ALICE}>, you wrote: hello @everyone {PINGS}"

    run(scenario)
