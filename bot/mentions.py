"""When adapters look up the people a command mentions, and how many one command may name.

The core refuses bots only if an adapter tells it who each mentioned user is, and on
Slack and Discord that costs an API call per person. Those calls come out of the
workspace's API budget, so they are made only for commands that take people, only for
someone the core will let run them, and for at most ``MAX_MENTIONS`` people: a
learner's ``/mentor assign`` naming thousands of people must cost nothing but its
refusal. The core still decides every command; this only decides what is worth asking.
"""

from __future__ import annotations

from sqlmodel import Session, select

from bot.commands import PREFIX, SPECS
from bot.models import Learner, Workspace

# Enough for a team; a longer list belongs in ``mentorbot assign --file``.
MAX_MENTIONS = 50
_LEAD_COMMANDS = frozenset(spec.name for spec in SPECS if spec.lead_only)


class TooManyMentions(ValueError):
    """A command naming more than ``MAX_MENTIONS`` people; ``str()`` is the answer."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"That names {count} people, and one command can take at most {MAX_MENTIONS}. "
            "Please split the list over several commands."
        )
        self.count = count


def takes_people(text: str) -> bool:
    """Whether the command in ``text`` (with or without the ``/mentor`` prefix) is one
    whose mentioned users the core looks at: only lead commands take people. Reads the
    first word only, so a huge command costs nothing to classify."""
    body = text.lstrip()
    if body.lower() == PREFIX or body.lower().startswith(PREFIX + " "):
        body = body[len(PREFIX) :]
    words = body.split(None, 1)
    return bool(words) and words[0].lower().lstrip("/") in _LEAD_COMMANDS


def has_lead_role(session: Session, platform: str, workspace: str, user: str) -> bool:
    """Whether a lead made ``user`` a lead (``/mentor leads add``) in ``workspace``, or,
    for a platform whose DMs name no workspace (``workspace`` empty), in any of them.

    Platform leads (admins, Manage Server) are known to the adapter already; this is
    the other half of the core's rule, read without changing anything.
    """
    query = (
        select(Learner.id)
        .join(Workspace, Workspace.id == Learner.workspace_id)  # type: ignore[arg-type]
        .where(Workspace.platform == platform, Learner.user_id == user, Learner.role == "lead")
    )
    if workspace:
        query = query.where(Workspace.external_id == workspace)
    return session.exec(query.limit(1)).first() is not None
