"""Checks on every HTTP request before Bolt sees it: size, signature, age, replay, shape.

Slack signs ``v0:{timestamp}:{body}`` with the app's signing secret. A valid signature
older than five minutes is refused (Slack's own rule). Within those five minutes an
eavesdropper could send a captured request again, so every accepted signature is
remembered until its timestamp leaves the window and a second use is refused: a
request is accepted at most once per process. (Several replicas each keep their own
memory; a replay to another replica within the window is caught only by the event-id
check that the adapter also makes.)

Slack's payloads are small, so a body is read only up to ``MAX_BODY_BYTES``: a larger
one is refused by its Content-Length before any of it is read, or as soon as a chunked
body passes the cap. A signed payload is still only trusted as far as its shape goes:
Bolt and the listeners read fields such as ``event.type`` or ``actions[0].action_id``
without checking their types, so ``payload_problem`` checks them first.
"""

from __future__ import annotations

import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

MAX_AGE_SECONDS = 5 * 60
# Slack's largest payloads (a modal's state, a message with 50 blocks) are tens of KB.
MAX_BODY_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024


class RecentKeys:
    """Keys remembered until they expire, oldest forgotten first when full."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, key: str, expires_at: float, now: float) -> bool:
        """True if ``key`` is already remembered and still fresh; otherwise remember it."""
        self._forget_expired(now)
        known = self._expiry.get(key)
        if known is not None and known > now:
            return True
        self._expiry[key] = expires_at
        self._expiry.move_to_end(key)
        while len(self._expiry) > self.limit:
            self._expiry.popitem(last=False)
        return False

    def _forget_expired(self, now: float) -> None:
        while self._expiry:
            key, expiry = next(iter(self._expiry.items()))
            if expiry > now:
                break
            del self._expiry[key]


class RequestGuard:
    """Answers "why refuse this request?" (None when it is fine)."""

    def __init__(self, signing_secret: str, clock: Callable[[], float] = time.time) -> None:
        self._verifier = SignatureVerifier(signing_secret)
        self._clock = clock
        self.signatures = RecentKeys()

    def refusal(self, body: str, headers: Mapping[str, str]) -> str | None:
        timestamp = headers.get("X-Slack-Request-Timestamp")
        signature = headers.get("X-Slack-Signature")
        if not timestamp or not signature:
            return "missing signature"
        if not (timestamp.isascii() and timestamp.isdigit()):
            return "invalid timestamp"
        if not signature.isascii():  # bytes HTTP allows but no hex digest contains
            return "invalid signature"
        issued = int(timestamp)
        now = self._clock()
        if abs(now - issued) > MAX_AGE_SECONDS:
            return "stale timestamp"
        expected = self._verifier.generate_signature(timestamp=timestamp, body=body) or ""
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return "invalid signature"
        if self.signatures.seen(signature, issued + MAX_AGE_SECONDS + 1, now):
            return "replayed request"
        return None


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The request's body, or None when it is longer than ``limit`` bytes: refused by
    its Content-Length before reading, else (chunked) once more than ``limit`` bytes
    have arrived, so no request holds more than ``limit`` bytes in memory."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    body = bytearray()
    while chunk := await request.content.read(_READ_CHUNK):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def parse_body(body: str, content_type: str | None) -> dict[str, Any]:
    """The payload of a Slack request: a JSON object, a form, or a form whose
    ``payload`` field is a JSON object. Raises ``ValueError`` saying why not.

    Bolt parses bodies itself but crashes (HTTP 500) on invalid JSON and reads any form
    that merely contains the word "payload" (``/mentor start payload``) as empty, so the
    adapter parses them here and hands Bolt the result.
    """
    if not body.strip():
        raise ValueError("empty body")
    if content_type == "application/json" or body.lstrip().startswith("{"):
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise ValueError("body is not valid JSON") from exc
        if not isinstance(parsed, dict):
            raise ValueError("JSON body is not an object")
        return parsed
    try:
        fields = dict(parse_qsl(body, keep_blank_values=True, strict_parsing=True))
    except ValueError as exc:
        raise ValueError("body is not a valid form") from exc
    if "payload" not in fields:
        return fields
    try:
        payload = json.loads(fields["payload"])
    except (ValueError, RecursionError) as exc:
        raise ValueError("payload is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise ValueError("payload is not a JSON object")
    return payload


# ---------------------------------------------------------------------- payload shape

# Fields that, wherever they appear, are strings when Slack sends them.
_TEXT_FIELDS = (
    "type",
    "token",
    "team_id",
    "enterprise_id",
    "user_id",
    "channel_id",
    "api_app_id",
    "event_id",
    "trigger_id",
    "response_url",
    "command",
    "text",
    "team_domain",
    "channel_name",
    "user_name",
    "challenge",
    "callback_id",
    "subtype",
    "channel_type",
    "thread_ts",
    "ts",
    "tab",
    "bot_id",
    "private_metadata",
    "action_id",
    "value",
)
# Objects Bolt looks into (and recurses into, for the first group).
_NESTED = ("event", "message", "previous_message", "item", "assistant_thread")
_OBJECTS = (*_NESTED, "view", "container", "state", "function_data", "tokens")
# Either an id or an object holding one.
_REFERENCES = ("team", "user", "channel", "enterprise")
_LISTS = ("actions", "authorizations", "response_urls")
_MAX_DEPTH = 4  # an event inside the envelope, a message inside the event, and so on


class _Misshapen(ValueError):
    pass


_KIND_NAMES: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}


def _kind(value: Any) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def _get(obj: dict[str, Any], key: str, kind: type, where: str, required: bool = False) -> Any:
    """``obj[key]`` if it is a ``kind`` (or absent and not ``required``)."""
    value = obj.get(key)
    if value is None:
        if required:
            raise _Misshapen(f"{where}{key} is missing")
        return None
    if not isinstance(value, kind):
        raise _Misshapen(f"{where}{key} is {_kind(value)}, not {_KIND_NAMES[kind]}")
    return value


def _objects(obj: dict[str, Any], key: str, where: str, required: bool = False) -> list[Any]:
    """``obj[key]`` if it is a list of objects."""
    items = _get(obj, key, list, where, required) or []
    if required and not items:
        raise _Misshapen(f"{where}{key} is empty")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _Misshapen(f"{where}{key}[{index}] is {_kind(item)}, not an object")
    return list(items)


def _check_common(obj: dict[str, Any], where: str, depth: int = 0) -> None:
    """The fields any part of a payload may carry, wherever Bolt might read them."""
    for key in _TEXT_FIELDS:
        _get(obj, key, str, where)
    for key in _OBJECTS:
        _get(obj, key, dict, where)
    for key in _LISTS:
        _objects(obj, key, where)
    for key in _REFERENCES:
        value = obj.get(key)
        if value is None or isinstance(value, str):
            continue
        if not isinstance(value, dict):
            raise _Misshapen(f"{where}{key} is {_kind(value)}, not an id or an object")
        for inner in ("id", "team_id", "domain"):
            _get(value, inner, str, f"{where}{key}.")
    if depth >= _MAX_DEPTH:
        return
    for key in _NESTED:
        if isinstance(obj.get(key), dict):
            _check_common(obj[key], f"{where}{key}.", depth + 1)
    for index, item in enumerate(_objects(obj, "authorizations", where)):
        _check_common(item, f"{where}authorizations[{index}].", depth + 1)


def _check_event(event: dict[str, Any]) -> None:
    kind = _get(event, "type", str, "event.", required=True)
    if kind == "message":
        # A DM's author and channel are ids; Bolt would also accept objects, the
        # adapter not.
        _get(event, "user", str, "event.")
        _get(event, "channel", str, "event.")
        for key in ("message", "previous_message"):
            inner = _get(event, key, dict, "event.") or {}
            _get(inner, "user", str, f"event.{key}.")
    elif kind == "app_home_opened":
        _get(event, "user", str, "event.")


def _check_interaction(payload: dict[str, Any]) -> None:
    """block_actions, view_submission and view_closed: who, where, and what."""
    user = _get(payload, "user", dict, "", required=True)
    _get(user, "id", str, "user.", required=True)
    for key in ("team", "channel"):
        _get(payload, key, dict, "")
    if payload["type"] == "block_actions":
        for index, action in enumerate(_objects(payload, "actions", "", required=True)):
            _get(action, "action_id", str, f"actions[{index}].", required=True)
            _get(action, "value", str, f"actions[{index}].")
        container = _get(payload, "container", dict, "") or {}
        _get(container, "channel_id", str, "container.")
        message = _get(payload, "message", dict, "") or {}
        _objects(message, "blocks", "message.")
        view = _get(payload, "view", dict, "") or {}
        _get(view, "type", str, "view.")
        return
    view = _get(payload, "view", dict, "", required=True)
    _get(view, "type", str, "view.", required=True)
    _get(view, "callback_id", str, "view.", required=True)
    _get(view, "private_metadata", str, "view.")
    state = _get(view, "state", dict, "view.") or {}
    values = _get(state, "values", dict, "view.state.") or {}
    for block, inputs in values.items():
        if not isinstance(inputs, dict):
            raise _Misshapen(f"view.state.values.{block} is {_kind(inputs)}, not an object")


def payload_problem(payload: dict[str, Any]) -> str | None:
    """Why ``payload`` is not shaped like anything Slack sends, or None.

    Only what Bolt and this adapter read is checked, so a field Slack adds tomorrow
    does not turn its requests away.
    """
    try:
        _check_common(payload, "")
        kind = payload.get("type")
        if kind == "event_callback":
            _check_event(_get(payload, "event", dict, "", required=True))
        elif kind in ("block_actions", "view_submission", "view_closed"):
            _check_interaction(payload)
        elif kind == "url_verification":
            _get(payload, "challenge", str, "", required=True)
    except _Misshapen as problem:
        return str(problem)
    return None
