"""The platform-neutral language between adapters and the core.

Adapters turn platform events into ``IncomingEvent`` and render ``OutgoingMessage``;
nothing here knows what Slack or Discord is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class EventKind(StrEnum):
    COMMAND = "command"  # /mentor ... (slash command or typed)
    MESSAGE = "message"  # free text in the DM: a reply
    EDIT = "edit"  # the learner edited an earlier message
    ACTION = "action"  # a button press or a modal submission
    JOINED = "joined"  # the user joined the workspace (for auto-enrol)


@dataclass(frozen=True)
class UserRef:
    """What the platform knows about a mentioned user, so the core can refuse bots."""

    id: str
    name: str | None = None
    is_bot: bool = False


@dataclass(frozen=True)
class IncomingEvent:
    platform: str
    workspace: str  # Slack team id, Discord guild id, "local" for the console
    user: str  # platform user id
    kind: EventKind
    text: str = ""
    workspace_name: str | None = None
    user_name: str | None = None
    timezone: str | None = None  # IANA name when the platform knows it
    message_id: str | None = None  # platform id of this message (edits refer to it)
    answers_message: str | None = None  # platform id of the message this one replies to
    delivery_id: int | None = None  # the delivery a button or modal belongs to
    platform_is_lead: bool = False  # workspace admin / Manage Server, per the platform
    mentioned: tuple[UserRef, ...] = ()  # details of users mentioned in a command
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Action:
    """A button. ``command`` is the typed equivalent, so every button works as text too."""

    id: str
    label: str
    command: str
    style: str | None = None  # "primary", "danger" or None
    opens_reply_form: bool = False  # the Reply button opens a modal where the platform has one


@dataclass(frozen=True)
class Section:
    title: str | None
    body: str


@dataclass(frozen=True)
class Attachment:
    """A file to upload with a message (a digest's chart, a data export)."""

    filename: str
    content: bytes
    mime: str
    title: str | None = None


@dataclass(frozen=True)
class OutgoingMessage:
    """What the core wants said. ``ephemeral`` answers go back to where the command came
    from (visible to the caller only where the platform allows); the rest go to the
    learner's DM, or to ``channel`` when set."""

    platform: str
    workspace: str
    user: str
    text: str
    title: str | None = None
    sections: tuple[Section, ...] = ()
    question: str | None = None
    actions: tuple[Action, ...] = ()
    ephemeral: bool = False
    channel: str | None = None
    kind: str = "response"
    delivery_id: int | None = None
    delivery_key: str | None = None  # stable per delivery: idempotency key on retries
    attachments: tuple[Attachment, ...] = ()

    def plain_text(self) -> str:
        """The whole message as plain lines: the fallback every platform can show."""
        parts: list[str] = []
        if self.title:
            parts.append(self.title)
        for section in self.sections:
            parts.append(f"{section.title}\n{section.body}" if section.title else section.body)
        if self.text:
            parts.append(self.text)
        if self.question:
            parts.append(f"Question: {self.question}")
        return "\n\n".join(parts)


@dataclass
class Outcome:
    """What handling one event produced: answers to show now, deliveries to send."""

    replies: list[OutgoingMessage] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SendResult:
    """What the platform said it did with a message."""

    channel: str | None
    message_ids: tuple[str, ...] = ()
