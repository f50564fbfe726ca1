"""Checks on every HTTP request before Bolt sees it: signature, age, replay, shape.

Slack signs ``v0:{timestamp}:{body}`` with the app's signing secret. A valid signature
older than five minutes is refused (Slack's own rule). Within those five minutes an
eavesdropper could send a captured request again, so every accepted signature is
remembered until its timestamp leaves the window and a second use is refused: a
request is accepted at most once per process. (Several replicas each keep their own
memory; a replay to another replica within the window is caught only by the event-id
check that the adapter also makes.)
"""

from __future__ import annotations

import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from slack_sdk.signature import SignatureVerifier

MAX_AGE_SECONDS = 5 * 60


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
        try:
            issued = int(timestamp)
        except ValueError:
            return "invalid timestamp"
        now = self._clock()
        if abs(now - issued) > MAX_AGE_SECONDS:
            return "stale timestamp"
        expected = self._verifier.generate_signature(timestamp=timestamp, body=body) or ""
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return "invalid signature"
        if self.signatures.seen(signature, issued + MAX_AGE_SECONDS + 1, now):
            return "replayed request"
        return None


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
        except ValueError as exc:
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
    except ValueError as exc:
        raise ValueError("payload is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise ValueError("payload is not a JSON object")
    return payload
