"""Turning the core's ``OutgoingMessage`` into Discord messages, within Discord's limits.

Discord caps a message at 2,000 characters of content, 10 embeds and 6,000 characters
across all its embeds, an embed description at 4,096 and a title at 256. A lesson-day
can exceed that, so one ``OutgoingMessage`` may become several Discord messages
(``Part``); text is split with the core's ``split_text`` so no sentence is cut.

Everything here is pure (no network), so the limits are easy to test exhaustively.
Learner-written text needs no escaping here: every message goes out with
``allowed_mentions`` that parse nothing, so ``@everyone`` in a reply is only text. The
core's learner marks are dropped before anything is measured or split.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field, replace

import discord

from bot.messages import Action, Attachment, OutgoingMessage, Section
from bot.text import preview, split_text, strip_learner_marks

CONTENT_LIMIT = 2000
DESCRIPTION_LIMIT = 4096
TITLE_LIMIT = 256
EMBEDS_PER_MESSAGE = 10
EMBED_TOTAL_LIMIT = 6000
CUSTOM_ID_LIMIT = 100
BUTTON_LABEL_LIMIT = 80
BUTTONS_PER_MESSAGE = 25
# Room kept free in each message for the footer that marks a delivery (see ``marker``).
FOOTER_RESERVE = 64

LESSON_COLOUR = discord.Colour(0x5865F2)
QUESTION_COLOUR = discord.Colour(0x57F287)
NOTE_COLOUR = discord.Colour(0x99AAB5)

QUESTION_HEADING = "Question"
FOOTER_PREFIX = "mentorbot · "
_FOOTER = re.compile(r"mentorbot · (?P<ref>[0-9a-f]{12})(?: · (?P<part>\d+)/(?P<parts>\d+))?$")

# Button custom ids. A button carries everything needed to act on it, so it keeps
# working after a restart without any lookup table:
#   mentor:{action}:{delivery}:{workspace}:{command}   an action (the typed command)
#   mentor:{action}:{delivery}:{workspace}              opens the reply form instead
# ``delivery`` and ``workspace`` may be empty. The workspace is the one the message was
# sent for, so a press in a DM (which names no guild) reaches the right learner.
BUTTON_TEMPLATE = (
    r"mentor:(?P<action>[A-Za-z0-9_-]+):(?P<delivery>\d*):(?P<workspace>[A-Za-z0-9_-]*)"
    r"(?::(?P<command>.+))?"
)
# The reply form: mentor-answer:{delivery}:{workspace}
MODAL_PREFIX = "mentor-answer"
_MODAL = re.compile(r"mentor-answer:(?P<delivery>\d*):(?P<workspace>[A-Za-z0-9_-]*)")
ANSWER_INPUT_ID = "answer"


@dataclass
class Part:
    """One Discord message: content and/or embeds; buttons and files only on the last."""

    content: str | None = None
    embeds: list[discord.Embed] = field(default_factory=list)
    actions: tuple[Action, ...] = ()
    files: tuple[Attachment, ...] = ()

    def discord_files(self) -> list[discord.File]:
        """Fresh upload objects (a ``discord.File`` is spent once sent)."""
        return [
            discord.File(io.BytesIO(f.content), filename=f.filename, description=f.title)
            for f in self.files
        ]

    def size(self) -> int:
        return sum(len(embed) for embed in self.embeds)


def reference(message: OutgoingMessage) -> str:
    """A short, stable id for one outbox row, used for the nonce and the footer.

    It hashes ``delivery_key`` (unique per row) rather than using ``delivery_id``:
    a reminder is rendered with its *question's* delivery id (so its buttons act on
    the question), and must not be mistaken for the lesson that asked it.
    """
    key = message.delivery_key or f"delivery:{message.delivery_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def nonce(message: OutgoingMessage, part: int) -> str:
    """Discord nonces are at most 25 characters: ``mb-`` + 12 hex + ``-`` + part."""
    return f"mb-{reference(message)}-{part}"


def footer_text(ref: str, part: int, parts: int) -> str:
    suffix = f" · {part}/{parts}" if parts > 1 else ""
    return f"{FOOTER_PREFIX}{ref}{suffix}"


def parse_footer(text: str | None) -> tuple[str, int, int] | None:
    """(reference, part, parts) from a delivery footer, or None for other messages."""
    match = _FOOTER.search(text or "")
    if match is None:
        return None
    part = int(match.group("part") or 1)
    parts = int(match.group("parts") or 1)
    return match.group("ref"), part, parts


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else preview(text, limit)


def _blocks(message: OutgoingMessage) -> list[tuple[str | None, str, discord.Colour]]:
    """(heading, body, colour) in reading order: title, sections, question, text.

    A title with nothing of its own is folded into the block after it (as the embed
    title, with that block's heading as a bold first line) so no embed is left empty.
    """
    blocks: list[tuple[str | None, str, discord.Colour]] = []
    for section in message.sections:
        blocks.append((section.title, section.body, LESSON_COLOUR))
    if message.question:
        blocks.append((QUESTION_HEADING, message.question, QUESTION_COLOUR))
    if message.text:
        colour = NOTE_COLOUR if blocks else LESSON_COLOUR
        blocks.append((None, message.text, colour))
    if message.title:
        if blocks:
            heading, body, colour = blocks[0]
            lead = f"**{heading}**\n{body}" if heading else body
            blocks[0] = (message.title, lead, colour)
        else:
            blocks.append((message.title, "", LESSON_COLOUR))
    return blocks


def _embeds(message: OutgoingMessage) -> list[discord.Embed]:
    embeds: list[discord.Embed] = []
    for heading, body, colour in _blocks(message):
        chunks = split_text(body, DESCRIPTION_LIMIT) or [""]
        for index, chunk in enumerate(chunks):
            title = _clip(heading, TITLE_LIMIT) if heading and index == 0 else None
            embeds.append(discord.Embed(title=title, description=chunk or None, colour=colour))
    return embeds


def _pack(embeds: list[discord.Embed], reserve: int) -> list[Part]:
    parts: list[Part] = []
    current = Part()
    for embed in embeds:
        fits = (
            len(current.embeds) < EMBEDS_PER_MESSAGE
            and current.size() + len(embed) + reserve <= EMBED_TOTAL_LIMIT
        )
        if current.embeds and not fits:
            parts.append(current)
            current = Part()
        current.embeds.append(embed)
    if current.embeds:
        parts.append(current)
    return parts


def unmarked(message: OutgoingMessage) -> OutgoingMessage:
    """``message`` without the core's learner marks (Discord needs no other treatment)."""

    def plain(text: str | None) -> str | None:
        return None if text is None else strip_learner_marks(text)

    return replace(
        message,
        text=strip_learner_marks(message.text),
        title=plain(message.title),
        question=plain(message.question),
        sections=tuple(
            Section(plain(s.title), strip_learner_marks(s.body)) for s in message.sections
        ),
    )


def render(message: OutgoingMessage, *, mark: bool = False) -> list[Part]:
    """The Discord messages for ``message``, in order; buttons on the last one.

    Plain answers (text only) go out as message content; anything with a title,
    sections or a question, and every delivery (``mark``), goes out as embeds. With
    ``mark`` each part's last embed gets a footer naming the delivery, so after a crash
    ``find_delivered`` can tell whether it reached the learner.
    """
    message = unmarked(message)
    structured = bool(message.title or message.sections or message.question or mark)
    if structured:
        parts = _pack(_embeds(message), FOOTER_RESERVE if mark else 0)
    else:
        parts = [Part(content=chunk) for chunk in split_text(message.text, CONTENT_LIMIT)]
    files = tuple(message.attachments)
    if not parts and files:
        parts = [Part()]  # a message of files alone
    if not parts and message.actions:
        # Buttons need a message to sit on; the core always says something, but be safe.
        parts = [Part(content=_clip(", ".join(a.label for a in message.actions), CONTENT_LIMIT))]
    if mark:
        ref = reference(message)
        for number, part in enumerate(parts, start=1):
            if part.embeds:
                part.embeds[-1].set_footer(text=footer_text(ref, number, len(parts)))
    if parts:
        last = parts[-1]
        last.actions = message.actions[:BUTTONS_PER_MESSAGE]
        last.files = files
        image = next((f for f in files if f.mime.startswith("image/")), None)
        if image is not None and last.embeds:
            # Show a chart inside the message rather than as a separate download.
            last.embeds[-1].set_image(url=f"attachment://{image.filename}")
    return parts


# ---------------------------------------------------------------------------- custom ids


def button_custom_id(action: Action, delivery_id: int | None, workspace: str) -> str | None:
    """The custom id for an action button (see ``BUTTON_TEMPLATE``), or None when the
    action cannot fit Discord's 100 characters (the button is then left out; every
    action can also be typed as a command)."""
    delivery = "" if delivery_id is None else str(delivery_id)
    space = workspace if re.fullmatch(r"[A-Za-z0-9_-]*", workspace) else ""
    candidates = [f"mentor:{action.id}:{delivery}:{space}"]
    if not action.opens_reply_form:
        # Drop the workspace before ever cutting the command: the command is the action.
        candidates = [
            f"mentor:{action.id}:{delivery}:{space}:{action.command}",
            f"mentor:{action.id}:{delivery}::{action.command}",
        ]
    return next((c for c in candidates if len(c) <= CUSTOM_ID_LIMIT), None)


def modal_custom_id(delivery_id: int | None, workspace: str) -> str:
    delivery = "" if delivery_id is None else str(delivery_id)
    return f"{MODAL_PREFIX}:{delivery}:{workspace}"


def parse_modal_custom_id(custom_id: str) -> tuple[int | None, str] | None:
    """(delivery id, workspace) of a reply form, or None if the id is not ours."""
    match = _MODAL.fullmatch(custom_id)
    if match is None:
        return None
    delivery = match.group("delivery")
    return (int(delivery) if delivery else None), match.group("workspace")
