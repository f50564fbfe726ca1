"""Slack payloads to the core's words: which DM messages are replies, edits or commands.

Pure functions over the JSON Slack sends, so each rule is easy to test on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.slack.render import ANSWER_BLOCK, ANSWER_INPUT, from_slack_text
from bot.commands import is_command
from bot.messages import EventKind

# Message subtypes that still carry a person's own words in a DM.
_PERSON_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})


@dataclass(frozen=True)
class DirectMessage:
    """A DM event worth handing to the core."""

    user: str
    kind: EventKind
    text: str
    message_id: str
    channel: str | None
    answers_message: str | None = None  # the thread it replies in, if any
    thread_ts: str | None = None  # where to answer so the learner sees it in context


def _from_bot(message: dict[str, Any], bot_user_id: str | None) -> bool:
    return bool(
        message.get("bot_id")
        or message.get("bot_profile")
        or message.get("subtype") == "bot_message"
        or (bot_user_id and message.get("user") == bot_user_id)
    )


def read_dm(event: dict[str, Any], bot_user_id: str | None) -> DirectMessage | None:
    """A ``message`` event from a learner's DM with the bot, or None to ignore it.

    Ignored: other conversations, bots (this one included), joins, deletions and edits
    that did not change the text (Slack also sends ``message_changed`` for unfurls).
    """
    if event.get("channel_type") != "im":
        return None
    channel = event.get("channel")
    subtype = event.get("subtype")
    if subtype == "message_changed":
        message = event.get("message") or {}
        previous = event.get("previous_message") or {}
        user, ts = message.get("user"), message.get("ts")
        if not user or not ts or _from_bot(message, bot_user_id):
            return None
        if previous and previous.get("text") == message.get("text"):
            return None
        return DirectMessage(
            user=user,
            kind=EventKind.EDIT,
            text=from_slack_text(message.get("text") or ""),
            message_id=ts,
            channel=channel,
        )
    if subtype not in _PERSON_SUBTYPES or _from_bot(event, bot_user_id):
        return None
    user, ts = event.get("user"), event.get("ts")
    if not user or not ts:
        return None
    text = from_slack_text(event.get("text") or "")
    thread_ts = event.get("thread_ts")
    answers = thread_ts if thread_ts and thread_ts != ts else None
    return DirectMessage(
        user=user,
        kind=EventKind.COMMAND if is_command(text) else EventKind.MESSAGE,
        text=text,
        message_id=ts,
        channel=channel,
        answers_message=answers,
        thread_ts=answers,
    )


def submitted_answer(view: dict[str, Any]) -> str:
    """The text typed into the Reply modal (plain_text_input values are not escaped)."""
    values = ((view.get("state") or {}).get("values") or {}).get(ANSWER_BLOCK) or {}
    field = values.get(ANSWER_INPUT) or {}
    value = field.get("value") if isinstance(field, dict) else None
    return value if isinstance(value, str) else ""
