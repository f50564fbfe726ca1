"""One command grammar for every platform: ``/mentor <command> [arguments]``.

Adapters hand over the text after ``/mentor`` (or the whole line; the prefix is
stripped here). Mentions arrive in each platform's native form and are normalised to
user ids, so lead commands can take ``@user`` arguments on any platform.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass

from bot.text import learner_text

PREFIX = "/mentor"
_MENTION = re.compile(r"^<@!?(?P<id>[A-Za-z0-9_.-]+)(?:\|[^>]*)?>$")
_CHANNEL = re.compile(r"^<#(?P<id>[A-Za-z0-9_.-]+)(?:\|[^>]*)?>$")
_PLAIN_MENTION = re.compile(r"^@(?P<id>[\w.-]+)$")  # the console's form
_PLAIN_CHANNEL = re.compile(r"^#(?P<id>[\w.-]+)$")


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    summary: str
    lead_only: bool = False
    hidden: bool = False  # button equivalents, not listed in help


SPECS: tuple[CommandSpec, ...] = (
    CommandSpec("help", "help", "show this help"),
    CommandSpec("courses", "courses", "list the courses you can take"),
    CommandSpec("start", "start [COURSE]", "enrol in a course (default: the first one)"),
    CommandSpec("next", "next", "get the next lesson-day now"),
    CommandSpec("skip", "skip", "skip the open question"),
    CommandSpec(
        "snooze", "snooze [HOURS]", "remind me about the open question later (default 2 h)"
    ),
    CommandSpec(
        "schedule",
        "schedule [HH:MM] [weekdays|daily|mon,tue,...] [TIME_ZONE]",
        "show or set when lessons arrive",
    ),
    CommandSpec("pause", "pause", "stop deliveries until you resume"),
    CommandSpec("resume", "resume", "start deliveries again (also ends an away period)"),
    CommandSpec(
        "away",
        "away 3d|2w|until YYYY-MM-DD",
        "step away for a while; I come back by myself on your next lesson-day after it",
    ),
    CommandSpec("progress", "progress", "where you are in your course"),
    CommandSpec("open", "open", "list your open questions, numbered"),
    CommandSpec("answer", "answer N TEXT", "answer open question N (see `open`)"),
    CommandSpec("history", "history", "the replies you have written, numbered"),
    CommandSpec("move", "move N [to Q|note]", "file reply N under another question, or as a note"),
    CommandSpec("share", "share", "share your last reply with your leads"),
    CommandSpec("export-my-data", "export-my-data", "get a file of everything stored about you"),
    CommandSpec("forget-me", "forget-me", "delete all your data (asks to confirm)"),
    CommandSpec("assign", "assign @user... [COURSE]", "enrol people and welcome them", True),
    CommandSpec("unassign", "unassign @user...", "stop people's deliveries", True),
    CommandSpec("team", "team", "everyone's progress", True),
    CommandSpec("replies", "replies [@user] [LESSON]", "replies shared with leads", True),
    CommandSpec(
        "digest", "digest #channel weekly|daily|off", "a scheduled summary in a channel", True
    ),
    CommandSpec(
        "settings",
        "settings [timezone|time|days|holidays|visibility|auto-enrol|course VALUE]",
        "show or change workspace defaults",
        True,
    ),
    CommandSpec("leads", "leads [add|remove @user...]", "list, add or remove leads", True),
    CommandSpec("reload", "reload", "pick up edited lesson files", True),
    CommandSpec("continue", "continue", "go on to the next lesson", hidden=True),
    CommandSpec("not-yet", "not-yet", "stay on this lesson for now", hidden=True),
    CommandSpec("yes", "yes", "yes, that message was my answer", hidden=True),
    CommandSpec("note", "note", "no, keep that message as a note", hidden=True),
)
_BY_NAME = {spec.name: spec for spec in SPECS}
_ALIASES = {
    "export": "export-my-data",
    "my-data": "export-my-data",
    "forgetme": "forget-me",
    "forget": "forget-me",
    "h": "help",
    "?": "help",
    "later": "snooze",
    "remind": "snooze",
    # What people type to make a bot go quiet; pausing keeps their place and replies.
    "stop": "pause",
    "unsubscribe": "pause",
    # What people say when they return from a pause or time away.
    "back": "resume",
}


class CommandError(ValueError):
    """A command that cannot be run as typed; ``str(exc)`` is what the user sees."""


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    @property
    def spec(self) -> CommandSpec:
        return _BY_NAME[self.name]


def is_command(text: str) -> bool:
    """The adapters' first guess; the core's router also catches other spellings. A
    lead's command naming people without the prefix ("assign <@U1>") counts here too,
    so the adapter looks the people up as it does for ``/mentor assign``."""
    stripped = text.lstrip().lower()
    if stripped == PREFIX or stripped.startswith(PREFIX + " "):
        return True
    words = stripped.split(None, 2)
    spec = _BY_NAME.get(words[0].lstrip("/")) if words else None
    return spec is not None and spec.lead_only and len(words) > 1 and is_mention(words[1])


def known_word(word: str) -> bool:
    """A command name or alias (``help``, ``export``), in any case."""
    word = word.lower()
    return word in _BY_NAME or word in _ALIASES


# The names `/mentor settings NAME VALUE` takes (bot.handlers.leads applies them).
SETTING_NAMES = frozenset(
    {"timezone", "tz", "zone", "time", "days", "holidays", "holiday", "visibility"}
    | {"auto-enrol", "auto-enroll", "autoenrol", "course"}
)


def is_mention(token: str) -> bool:
    """``<@U123>`` (Slack, Discord) or ``@name`` (the console)."""
    return bool(_MENTION.match(token) or _PLAIN_MENTION.match(token))


def is_channel(token: str) -> bool:
    """``<#C123>`` (Slack, Discord) or ``#name`` (the console)."""
    return bool(_CHANNEL.match(token) or _PLAIN_CHANNEL.match(token))


def canonical(word: str) -> str:
    """The command a word names: ``later`` is ``snooze``, ``back`` is ``resume``."""
    word = word.lower()
    return _ALIASES.get(word, word)


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        # An unbalanced quote: fall back to plain words rather than refusing.
        return text.split()


def parse_command(text: str) -> Command:
    """Parse a command line; raises ``CommandError`` with a helpful message."""
    body = text.strip()
    if body.lower() == PREFIX or body.lower().startswith(PREFIX + " "):
        body = body[len(PREFIX) :].strip()
    tokens = _tokens(body)
    if not tokens:
        return Command("help")
    word = tokens[0].lower().lstrip("/")
    name = _ALIASES.get(word, word)
    if name not in _BY_NAME:
        known = [spec.name for spec in SPECS if not spec.hidden]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean `{PREFIX} {close[0]}`?" if close else ""
        raise CommandError(f"Unknown command `{learner_text(tokens[0][:40])}`.{hint}")
    args: list[str] = []
    mentions: list[str] = []
    channels: list[str] = []
    for token in tokens[1:]:
        mention = _MENTION.match(token) or _PLAIN_MENTION.match(token)
        channel = _CHANNEL.match(token) or _PLAIN_CHANNEL.match(token)
        if mention:
            mentions.append(mention.group("id"))
        elif channel:
            channels.append(channel.group("id"))
        else:
            args.append(token)
    return Command(name, tuple(args), tuple(mentions), tuple(channels))


def help_text(include_lead: bool = False) -> str:
    lines = ["Commands (type them after /mentor):"]
    for spec in SPECS:
        if spec.hidden or spec.lead_only:
            continue
        lines.append(f"• `{PREFIX} {spec.usage}` — {spec.summary}")
    if include_lead:
        lines.append("For leads:")
        lines.extend(
            f"• `{PREFIX} {spec.usage}` — {spec.summary}" for spec in SPECS if spec.lead_only
        )
    lines.append(
        "Anything else you write to me in this DM is your answer to your newest open "
        "question; reply in a question's thread to answer that one. When I'm not sure, I ask."
    )
    return "\n".join(lines)
