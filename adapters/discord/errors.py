"""Mapping discord.py's failures onto the core's send errors.

The core decides what to do (retry, back off, give up); this only says which kind of
failure Discord reported. discord.py already retries 429s and some 5xx itself, so what
reaches us is what it gave up on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import discord

from bot.ports import PermanentSendError, RateLimited, SendError, TemporarySendError

# Discord JSON error codes we act on.
UNKNOWN_CHANNEL = 10003
UNKNOWN_USER = 10013
MISSING_ACCESS = 50001
CANNOT_DM = 50007
MISSING_PERMISSIONS = 50013
INVALID_RECIPIENTS = 50033

DM_BLOCKED_REASON = "the user does not accept DMs from this server"
DEFAULT_RETRY_AFTER = 1.0


def _retry_after(exc: discord.HTTPException) -> float:
    """Seconds to wait from a 429 discord.py gave up on: the body, else the header."""
    response: Any = getattr(exc, "response", None)
    retry = getattr(exc, "retry_after", None)
    if isinstance(retry, int | float) and retry > 0:
        return float(retry)
    header = getattr(response, "headers", {}).get("Retry-After") if response else None
    try:
        return max(float(header), 0.0) if header else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER


def translate(exc: BaseException) -> SendError:
    """The core's view of a failed Discord call."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, discord.RateLimited):
        return RateLimited(exc.retry_after, "Discord rate limit")
    if isinstance(exc, discord.HTTPException):
        code = exc.code
        if exc.status == 429:
            return RateLimited(_retry_after(exc), "Discord rate limit")
        if code == CANNOT_DM:
            return PermanentSendError(DM_BLOCKED_REASON, code="dm_blocked")
        if code in (UNKNOWN_USER, INVALID_RECIPIENTS):
            return PermanentSendError("Discord does not know this user", code="unknown_user")
        if code == UNKNOWN_CHANNEL:
            return PermanentSendError("the channel no longer exists", code="unknown_channel")
        # Both read well in the core's note to a lead ("I couldn't post … : {reason}").
        if code == MISSING_ACCESS:
            return PermanentSendError("I can't see that channel", code="missing_access")
        if code == MISSING_PERMISSIONS:
            return PermanentSendError(
                "I'm not allowed to post there (missing permissions)", code="missing_permissions"
            )
        if isinstance(exc, discord.DiscordServerError) or exc.status >= 500:
            return TemporarySendError(f"Discord server error {exc.status}: {exc.text}")
        if exc.status in (408, 409):
            return TemporarySendError(f"Discord answered {exc.status}: {exc.text}")
        # Any other 4xx is Discord refusing this message as it is (missing access, a
        # payload it rejects): sending it again unchanged would fail the same way.
        return PermanentSendError(
            f"Discord refused the message ({exc.status}, code {code}): {exc.text}",
            code="rejected",
        )
    if isinstance(exc, aiohttp.ClientError | OSError | asyncio.TimeoutError):
        return TemporarySendError(f"could not reach Discord: {exc!r}")
    if isinstance(exc, discord.GatewayNotFound | discord.ConnectionClosed):
        return TemporarySendError(f"Discord connection problem: {exc!r}")
    return TemporarySendError(f"unexpected error talking to Discord: {exc!r}")
