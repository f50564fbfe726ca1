"""Block Kit rendering of the core's ``OutgoingMessage`` and reading Slack text back.

Pure functions, no network: the adapter turns each ``OutgoingMessage`` into one or more
``Part`` (blocks + plain-text fallback) and posts them. Text the core marked as a
learner's (``bot.text.learner_text``) is shown exactly as written and never parsed: a
reply saying ``<!channel>`` must not ping a channel when a lead reads it.

Slack's limits shape everything here: 3,000 characters per section, 150 per header, 75
per button label, 50 blocks per message (100 in a Home tab), so long lessons become
several messages rather than being cut or rejected.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.messages import Action, OutgoingMessage
from bot.text import LEARNER_CLOSE, LEARNER_OPEN, learner_spans, split_text

SECTION_LIMIT = 3000
HEADER_LIMIT = 150
BUTTON_LABEL_LIMIT = 75
BUTTON_VALUE_LIMIT = 2000
MESSAGE_BLOCK_LIMIT = 50
HOME_BLOCK_LIMIT = 100
ACTIONS_PER_BLOCK = 25
# Slack truncates (and sometimes rejects) a message ``text`` above 40,000 characters.
FALLBACK_LIMIT = 39_000

ACTION_PREFIX = "mentor."  # every button's action_id starts with it; one handler serves all
REPLY_CALLBACK = "mentor.reply"  # the Reply modal's callback_id
ANSWER_BLOCK = "answer"
ANSWER_INPUT = "text"
QUESTION_BLOCK = "question"
REPLY_INPUT_LIMIT = 3000  # Slack's ceiling for plain_text_input

Block = dict[str, Any]

# ------------------------------------------------------------------ markdown -> mrkdwn

# Runs that keep their characters: fenced code, inline code.
_CODE = re.compile(r"```[\s\S]*?```|`[^`\n]+`")
# Slack control sequences the core may emit on purpose: mentions, channels, links.
_SLACK_TOKEN = re.compile(r"<(?:[@#!][^<>\s]+|(?:https?|mailto):[^<>\s]+)>")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.MULTILINE)
_QUOTE = re.compile(r"^(\s*)&gt;(?=\s)", re.MULTILINE)
_BOLD_MARK = "\x00B\x00"  # a placeholder no course text contains


def _escape(text: str) -> str:
    """Escape the three characters Slack treats as control, keeping its own tokens."""
    if "<" not in text:  # no token to keep (the common case, and the cheap one)
        escaped = _escape_plain(text)
    else:
        out: list[str] = []
        last = 0
        for match in _SLACK_TOKEN.finditer(text):
            out.append(_escape_plain(text[last : match.start()]))
            out.append(match.group(0))
            last = match.end()
        out.append(_escape_plain(text[last:]))
        escaped = "".join(out)
    # A ">" opening a line is a block quote in both markdown and mrkdwn: keep it.
    return _QUOTE.sub(r"\1>", escaped) if "&gt;" in escaped else escaped


def _escape_plain(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _convert_prose(text: str) -> str:
    """Light markdown outside code: headings, bullets, bold, italic, strike, links.

    Each rule runs only when the text holds the character it needs: the bot's answers
    are cut into many short pieces between code spans (a help text has dozens), and
    running every rule on each piece cost more than the rest of the answer's path."""
    if "#" in text:
        text = _HEADING.sub(lambda m: f"{_BOLD_MARK}{m.group(1)}{_BOLD_MARK}", text)
    if "-" in text or "*" in text or "+" in text:
        text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    if "**" in text or "__" in text:
        text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(1) or m.group(2)}{_BOLD_MARK}", text)
    if "*" in text:
        text = _ITALIC.sub(r"_\1_", text)
    if "~~" in text:
        text = _STRIKE.sub(r"~\1~", text)
    if "](" in text:
        text = _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", text)
    return text.replace(_BOLD_MARK, "*")


# Where a learner's words wait while the bot's text around them is converted: the
# marks themselves around a number, which no conversion rule touches.
_HOLE = re.compile(f"{LEARNER_OPEN}(\\d+){LEARNER_CLOSE}")


def _with_learner_text_inert(text: str, convert: Callable[[str], str]) -> str:
    """``convert`` the bot's words; the learner's are escaped, never converted: no
    markdown, and no ``<@U…>``, ``<!channel>`` or link is let through as a token."""
    spans = learner_spans(text)
    if all(not by_learner for _, by_learner in spans):
        return convert("".join(piece for piece, _ in spans))
    holes: list[str] = []
    masked: list[str] = []
    for piece, by_learner in spans:
        if by_learner:
            masked.append(f"{LEARNER_OPEN}{len(holes)}{LEARNER_CLOSE}")
            holes.append(_escape_plain(piece))
        else:
            masked.append(piece)
    return _HOLE.sub(lambda m: holes[int(m.group(1))], convert("".join(masked)))


def _bot_mrkdwn(text: str) -> str:
    if "`" not in text:
        return _escape(_convert_prose(text))
    out: list[str] = []
    last = 0
    for match in _CODE.finditer(text):
        out.append(_escape(_convert_prose(text[last : match.start()])))
        out.append(_escape_plain(match.group(0)))
        last = match.end()
    out.append(_escape(_convert_prose(text[last:])))
    return "".join(out)


def to_mrkdwn(text: str) -> str:
    """The core writes light markdown (``**bold**``); Slack speaks mrkdwn (``*bold*``).
    Learner-written text in it is escaped as plain text."""
    if len(text) > _REMEMBERED_TEXT:
        return _with_learner_text_inert(text, _bot_mrkdwn)
    return _remembered_mrkdwn(text)


# Many answers are the same text for everyone (help, a command's refusal), and each is
# converted twice (its blocks and its notification text): short texts are converted
# once. Bounded in count and size, so the cache holds at most about a megabyte.
_REMEMBERED_TEXT = 4000


@functools.lru_cache(maxsize=128)
def _remembered_mrkdwn(text: str) -> str:
    return _with_learner_text_inert(text, _bot_mrkdwn)


def _bot_plain(text: str) -> str:
    text = _BOLD.sub(lambda m: m.group(1) or m.group(2), text)
    text = _STRIKE.sub(r"\1", text)
    return _LINK.sub(r"\1", text)


def to_plain(text: str) -> str:
    """Markdown emphasis removed, for plain_text fields (headers, labels); a learner's
    words are escaped as in mrkdwn, so they read the same in either kind of field."""
    return _with_learner_text_inert(text, _bot_plain)


# ------------------------------------------------------------------ Slack text -> plain

_INCOMING_LINK = re.compile(r"<((?:https?|mailto):[^<>|\s]+)(?:\|([^<>]*))?>")


def from_slack_text(text: str) -> str:
    """What the learner typed: Slack sends ``&amp;``/``&lt;``/``&gt;`` and wraps links as
    ``<url|label>``. Mentions (``<@U123>``) stay, since the core's grammar reads them."""

    def link(match: re.Match[str]) -> str:
        url, label = match.group(1), match.group(2)
        if not label:
            return url.removeprefix("mailto:")
        bare = url.split("://", 1)[-1].removeprefix("mailto:")
        return label if label in (url, bare) else f"{label} ({url})"

    text = _INCOMING_LINK.sub(link, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# ------------------------------------------------------------------ blocks


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def header_block(title: str) -> Block:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": _clip(to_plain(title), HEADER_LIMIT), "emoji": True},
    }


def section_blocks(text: str, block_id: str | None = None) -> list[Block]:
    """One section per 3,000-character piece, cut at paragraph, line, then sentence ends."""
    blocks: list[Block] = []
    for index, piece in enumerate(split_text(to_mrkdwn(text), SECTION_LIMIT)):
        block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": piece}}
        if block_id and index == 0:
            block["block_id"] = block_id
        blocks.append(block)
    return blocks


def button_value(action: Action, delivery_id: int | None) -> str:
    """The button carries what the core needs back: the typed command and the delivery."""
    payload: dict[str, Any] = {"command": action.command, "delivery": delivery_id}
    if action.opens_reply_form:
        payload["form"] = True
    value = json.dumps(payload, separators=(",", ":"))
    if len(value) > BUTTON_VALUE_LIMIT:
        raise ValueError(f"button {action.id!r} carries more than Slack allows")
    return value


@dataclass(frozen=True)
class ButtonPress:
    command: str
    delivery_id: int | None
    opens_form: bool


def read_button_value(value: str | None) -> ButtonPress | None:
    """Decode a value written by ``button_value``; None for anything else (old or forged)."""
    try:
        payload = json.loads(value or "")
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("command"), str):
        return None
    delivery = payload.get("delivery")
    if delivery is not None and (not isinstance(delivery, int) or isinstance(delivery, bool)):
        return None
    return ButtonPress(payload["command"], delivery, bool(payload.get("form")))


def action_blocks(actions: tuple[Action, ...], delivery_id: int | None) -> list[Block]:
    blocks: list[Block] = []
    seen: set[str] = set()
    elements: list[Block] = []
    for action in actions:
        action_id = f"{ACTION_PREFIX}{action.id}"
        while action_id in seen:  # action_id must be unique within a message
            action_id += "_"
        seen.add(action_id)
        button: Block = {
            "type": "button",
            "action_id": action_id,
            "text": {
                "type": "plain_text",
                "text": _clip(to_plain(action.label), BUTTON_LABEL_LIMIT),
                "emoji": True,
            },
            "value": button_value(action, delivery_id),
        }
        if action.style in ("primary", "danger"):
            button["style"] = action.style
        elements.append(button)
    for start in range(0, len(elements), ACTIONS_PER_BLOCK):
        blocks.append({"type": "actions", "elements": elements[start : start + ACTIONS_PER_BLOCK]})
    return blocks


@dataclass(frozen=True)
class _Piece:
    """Blocks that belong together, with the plain text they stand for."""

    blocks: list[Block]
    plain: str


def _pieces(message: OutgoingMessage) -> tuple[list[_Piece], list[Block]]:
    """Content pieces in reading order, and the trailing action blocks."""
    pieces: list[_Piece] = []
    if message.title:
        pieces.append(_Piece([header_block(message.title)], message.title))
    for section in message.sections:
        body = f"**{section.title}**\n{section.body}" if section.title else section.body
        plain = f"{section.title}\n{section.body}" if section.title else section.body
        for block in section_blocks(body):
            pieces.append(_Piece([block], plain))
            plain = ""  # a long section's plain text is counted once
    if message.question:
        blocks = section_blocks(f"**Question**\n{message.question}", QUESTION_BLOCK)
        pieces.append(_Piece(blocks, f"Question: {message.question}"))
    if message.text:
        blocks = section_blocks(message.text)
        if message.question or message.sections:
            blocks = [{"type": "divider"}, *blocks]
        pieces.append(_Piece(blocks, message.text))
    return pieces, action_blocks(message.actions, message.delivery_id)


@dataclass(frozen=True)
class Part:
    """One Slack message: blocks plus the plain-text fallback used for notifications."""

    blocks: list[Block]
    text: str


def render_parts(message: OutgoingMessage, block_limit: int = MESSAGE_BLOCK_LIMIT) -> list[Part]:
    """Render a message as few Slack messages as the block limit allows, buttons last."""
    pieces, actions = _pieces(message)
    groups: list[list[_Piece]] = [[]]
    for piece in pieces:
        used = sum(len(p.blocks) for p in groups[-1])
        if groups[-1] and used + len(piece.blocks) > block_limit:
            groups.append([])
        groups[-1].append(piece)
    last_used = sum(len(p.blocks) for p in groups[-1])
    if actions and groups[-1] and last_used + len(actions) > block_limit:
        groups.append([])
    parts: list[Part] = []
    for index, group in enumerate(groups):
        blocks = [block for piece in group for block in piece.blocks]
        if index == len(groups) - 1:
            blocks += actions
        if not blocks:
            continue
        if len(groups) == 1:
            fallback = message.plain_text()
        else:
            fallback = "\n\n".join(p.plain for p in group if p.plain) or message.title or ""
        # Slack reads ``text`` as mrkdwn too: the same conversion keeps it readable and safe.
        parts.append(Part(blocks, _clip(to_mrkdwn(fallback) or " ", FALLBACK_LIMIT)))
    return parts


def home_view(messages: list[OutgoingMessage], extra: tuple[Action, ...] = ()) -> dict[str, Any]:
    """The App Home tab: the core's answers, one after another, within 100 blocks."""
    blocks: list[Block] = []
    for message in messages:
        if blocks:
            blocks.append({"type": "divider"})
        for part in render_parts(message, HOME_BLOCK_LIMIT):
            blocks.extend(part.blocks)
    blocks.extend(action_blocks(extra, None))
    if len(blocks) > HOME_BLOCK_LIMIT:
        keep = [b for b in blocks if b["type"] == "actions"][-1:]
        blocks = blocks[: HOME_BLOCK_LIMIT - len(keep)] + keep
    return {"type": "home", "blocks": blocks}


def reply_modal(
    delivery_id: int | None, question: str | None, channel: str | None
) -> dict[str, Any]:
    """The Reply form: the question for context, and one multi-line answer field."""
    blocks: list[Block] = []
    if question:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(question, SECTION_LIMIT)}}
        )
    blocks.append(
        {
            "type": "input",
            "block_id": ANSWER_BLOCK,
            "label": {"type": "plain_text", "text": "Your answer"},
            "element": {
                "type": "plain_text_input",
                "action_id": ANSWER_INPUT,
                "multiline": True,
                "max_length": REPLY_INPUT_LIMIT,
            },
        }
    )
    return {
        "type": "modal",
        "callback_id": REPLY_CALLBACK,
        "title": {"type": "plain_text", "text": "Your answer"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps({"delivery": delivery_id, "channel": channel}),
        "blocks": blocks,
    }


def question_from_blocks(blocks: list[Block] | None) -> str | None:
    """The question text of a rendered message (its ``question`` block), for the modal."""
    for block in blocks or []:
        if block.get("block_id") == QUESTION_BLOCK:
            text = block.get("text") or {}
            value = text.get("text") if isinstance(text, dict) else None
            return value if isinstance(value, str) else None
    return None
