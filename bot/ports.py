"""What the core needs from an adapter, and the errors an adapter reports sends with.

The error classes are the shared vocabulary of failure: each adapter maps its
platform's answers onto them, and the core alone decides what to do about each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.messages import IncomingEvent, OutgoingMessage, SendResult

Respond = Callable[[list[OutgoingMessage]], Awaitable[None]]


class EventSink(Protocol):
    async def handle(self, event: IncomingEvent, respond: Respond) -> None: ...


class Adapter(Protocol):
    """A platform connection: ``start`` runs until ``stop`` (or, for the console, EOF)."""

    platform: str

    async def start(self, sink: EventSink) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, message: OutgoingMessage) -> SendResult: ...


class SendError(Exception):
    """Base of every failure an adapter reports from ``send``."""


class RateLimited(SendError):
    """A 429. ``scope`` names the rate-limit bucket it concerns (one of the keys the
    adapter returned from ``rate_limits``); None means every bucket of the message,
    as for a global limit."""

    def __init__(
        self, retry_after: float, detail: str = "rate limited", scope: str | None = None
    ) -> None:
        super().__init__(f"{detail} (retry after {retry_after:g}s)")
        self.retry_after = retry_after
        self.scope = scope


class TemporarySendError(SendError):
    """5xx, timeouts, connection resets: worth retrying with backoff.

    ``maybe_delivered`` says the platform may have acted although the answer was a
    failure (a timeout, a dropped connection, a 5xx after the request went out). The
    core then keeps the row in a state that makes whichever process retries it ask the
    platform first (``find_delivered``), even after a restart.
    """

    def __init__(self, reason: str, maybe_delivered: bool = False) -> None:
        super().__init__(reason)
        self.maybe_delivered = maybe_delivered


class PermanentSendError(SendError):
    """The platform will never accept this (user gone, DMs blocked): do not retry."""

    def __init__(self, reason: str, code: str | None = None, workspace_gone: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        # The installation itself is gone (the app was uninstalled, its token revoked):
        # every message to that workspace would fail the same way, so its whole queue
        # fails now with this reason instead of one platform call per row.
        self.workspace_gone = workspace_gone
