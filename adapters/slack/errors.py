"""Slack's failures in the core's vocabulary (``bot.ports``).

The core alone decides what to do about a failure; this module only says which kind it
is. A 429 must reach the core's rate limiter, so the Web API client used for sends has
no retry handlers of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.ports import PermanentSendError, RateLimited, SendError, TemporarySendError

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 5.0  # when a 429 comes without a usable Retry-After header

# Answers that will not change however often the same message is sent again.
PERMANENT_ERRORS = frozenset(
    {
        # the person or conversation is gone or unreachable
        "user_not_found",
        "account_inactive",
        "cannot_dm_bot",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "user_disabled",
        # the installation is gone or lacks rights
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "team_access_not_granted",
        "ekm_access_denied",
        "restricted_action",
        "not_installed",
        # the message itself is unacceptable
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
    }
)
# Errors that mean the workspace's token is no longer good: forget the cached one.
TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired"})
# Answers that say the installation is gone, not this one message: the workspace's
# queue fails at once (see ``PermanentSendError.workspace_gone``).
INSTALLATION_GONE = TOKEN_ERRORS | {"not_installed", "team_access_not_granted"}


def _error_code(exc: SlackApiError) -> str | None:
    data = getattr(exc.response, "data", None)
    if isinstance(data, Mapping):
        code = data.get("error")
        return str(code) if code else None
    return None


def _status(exc: SlackApiError) -> int:
    return int(getattr(exc.response, "status_code", 0) or 0)


def _retry_after(exc: SlackApiError) -> float:
    headers: Any = getattr(exc.response, "headers", None) or {}
    value = None
    for name in ("Retry-After", "retry-after"):
        value = headers.get(name) if hasattr(headers, "get") else None
        if value is not None:
            break
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER
    except (TypeError, ValueError):
        seconds = DEFAULT_RETRY_AFTER
    return max(0.0, seconds)


def error_code(exc: BaseException) -> str | None:
    """Slack's ``error`` string for an API refusal, None for anything else."""
    return _error_code(exc) if isinstance(exc, SlackApiError) else None


def to_send_error(exc: BaseException, scope: str | None = None) -> SendError:
    """Classify any exception raised while talking to Slack. ``scope`` is the core's
    rate-limit bucket a 429 concerns (Slack limits posting per conversation, and other
    methods per workspace)."""
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, SlackApiError):
        status, code = _status(exc), _error_code(exc)
        if status == 429 or code == "ratelimited":
            detail = f"slack: {code or 'ratelimited'}"
            return RateLimited(_retry_after(exc), detail=detail, scope=scope)
        if status >= 500:
            return TemporarySendError(
                f"slack answered HTTP {status} ({code or 'no error code'})", maybe_delivered=True
            )
        if code in INSTALLATION_GONE:
            return PermanentSendError(
                f"mentorbot's access to this Slack workspace is gone (slack: {code}); "
                "add the app to the workspace again to resume",
                code=code,
                workspace_gone=True,
            )
        if code in PERMANENT_ERRORS:
            return PermanentSendError(f"slack: {code}", code=code)
        return TemporarySendError(f"slack: {code or f'HTTP {status}'}")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return TemporarySendError("slack did not answer in time", maybe_delivered=True)
    if isinstance(exc, aiohttp.ClientError | OSError | SlackClientError):
        return TemporarySendError(
            f"could not reach slack: {exc!r}", maybe_delivered=outcome_unknown(exc)
        )
    return TemporarySendError(f"unexpected error talking to slack: {exc!r}")


def outcome_unknown(exc: BaseException) -> bool:
    """Could Slack have posted the message although we saw a failure? (a timeout, a
    dropped connection or a 5xx): then look before posting it again."""
    if isinstance(exc, SlackApiError):
        return _status(exc) >= 500
    return isinstance(exc, asyncio.TimeoutError | TimeoutError | aiohttp.ClientError | OSError)


# A refusal to post in a channel (a digest's), in words the lead who set it up can act
# on; the core quotes the reason in the DM it sends them.
CHANNEL_REASONS = {
    "not_in_channel": "mentorbot is not a member of that channel",
    "channel_not_found": (
        "Slack cannot find that channel (or it is private and mentorbot is not in it)"
    ),
    "is_archived": "that channel is archived",
    "restricted_action": "the workspace does not let mentorbot post in that channel",
    "missing_scope": "mentorbot's installation lacks a permission it needs there",
}
# Refusals that mean the installation was never granted files:write (it predates the
# scope): the message still goes out, with a note instead of the file.
FILE_SCOPE_ERRORS = frozenset({"missing_scope", "not_allowed_token_type"})


def explain_channel_refusal(error: SendError) -> SendError:
    """Reword a permanent refusal to post in a channel; anything else is returned as is."""
    if isinstance(error, PermanentSendError) and error.code in CHANNEL_REASONS:
        return PermanentSendError(
            f"{CHANNEL_REASONS[error.code]} (slack: {error.code})", code=error.code
        )
    return error
