"""Sentences more than one message needs, so they are written once and never disagree.

Privacy wording in particular comes only from here: every message that says who can
read a reply asks ``reply_privacy`` or ``workspace_privacy``, which read the same
fields the lead commands obey.
"""

from __future__ import annotations

from datetime import datetime

from bot.commands import PREFIX
from bot.models import Reply, Workspace
from bot.schedule import Schedule
from bot.text import learner_text, preview


def mention(user_id: str) -> str:
    """A user as every platform renders it (the console shows ``@id``)."""
    return f"<@{user_id}>"


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 reply``, ``2 replies``: never ``reply(ies)``."""
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def quote(text: str, length: int = 80) -> str:
    """A learner's words (or a question) in quotation marks, cut on a word boundary."""
    return f"“{learner_text(preview(text, length))}”"


def question_name(
    kind: str, question: str | None, practice: str | None, about: str | None = None
) -> str:
    """How to refer to a question in one line: a check-in by its practice, a look back
    by the question it revisits, a lesson question by its words."""
    if kind == "practice" and practice:
        return f"your check-in on “{practice}”"
    if kind == "review" and about:
        return f"the look back at {quote(about, 100)}"
    return quote(question or "", 120)


def workspace_privacy(workspace: Workspace) -> str:
    """Who reads replies written from now on in this workspace."""
    if workspace.reply_visibility == "leads":
        return (
            "In this workspace your leads can read the replies you write (the workspace "
            "chose this; it applies to replies written since)."
        )
    return (
        "Your replies are private to you unless you share one with your leads "
        f"(the Share button, or `{PREFIX} share`)."
    )


def question_privacy(workspace: Workspace) -> str:
    """The line under a question: how to answer, and who will read the answer."""
    if workspace.reply_visibility == "leads":
        return "Reply in this DM to answer; your leads can read your answer (a workspace setting)."
    return "Reply in this DM to answer; your answer is private to you unless you share it."


def reply_privacy(reply: Reply) -> str:
    """Who can read this one reply, from the reply's own record."""
    if reply.visibility == "leads":
        return "Your leads can read it (a workspace setting)."
    if reply.shared_at is not None:
        return "You shared it with your leads."
    return "It is private to you."


def when(schedule: Schedule, instant: datetime | None) -> str:
    if instant is None:
        return "not scheduled"
    return f"{schedule.local(instant):%A %d %B at %H:%M} ({schedule.zone.key})"


def schedule_sentence(schedule: Schedule, zone_is_default: bool) -> str:
    """When lessons come and in which time zone, and how to change it."""
    zone = schedule.zone.key
    if zone_is_default:
        change = (
            f"{zone} is the default time zone; set yours with "
            f"`{PREFIX} schedule {schedule.at:%H:%M} Europe/Berlin` (any IANA zone)."
        )
    else:
        change = f"Change it with `{PREFIX} schedule HH:MM [days] [TIME_ZONE]`."
    return f"Lessons arrive at {schedule.describe()}. {change}"
