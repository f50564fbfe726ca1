"""The command table: one small handler per command, registered by name.

Adding a command touches its ``CommandSpec`` in ``bot.commands`` and one function
here; the service looks the name up in ``HANDLERS`` and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.commands import Command
    from bot.context import Context
    from bot.messages import Outcome
    from bot.service import MentorService

Handler = Callable[["MentorService", "Context", "Command", "Outcome"], None]
HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    """Register a function as the handler of the named commands."""

    def register(function: Handler) -> Handler:
        for name in names:
            if name in HANDLERS:
                raise RuntimeError(f"two handlers for {name!r}")
            HANDLERS[name] = function
        return function

    return register


# Importing the families registers their handlers.
from bot.handlers import answers, leads, learning, privacy  # noqa: E402

__all__ = ["HANDLERS", "Handler", "answers", "handles", "leads", "learning", "privacy"]
