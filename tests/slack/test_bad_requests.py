"""Requests that must be refused before anything is stored or answered."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import pytest

from adapters.slack.verify import RecentKeys, RequestGuard, parse_body
from bot.config import Settings
from tests.conftest import Clock
from tests.emulators.slack_api import (
    DEFAULT_SIGNING_SECRET,
    SlackEmulator,
    message_event,
    sign_request,
    slash_command_body,
)
from tests.slack.rig import SlackRig, dm_of, posts, responses


def refused(
    settings: Settings,
    slack: SlackEmulator,
    clock: Clock,
    *,
    body: str,
    headers: dict[str, str] | None,
    content_type: str = "application/x-www-form-urlencoded",
) -> tuple[int, str]:
    async def main() -> tuple[int, str]:
        async with SlackRig(settings, slack, clock) as rig:
            answer = await rig.post(body, headers=headers, content_type=content_type)
            await rig.settle()
            assert rig.learners() == [] and rig.workspaces() == []
            return answer

    answer = asyncio.run(main())
    assert [c.method for c in slack.calls] == []  # nothing answered, nothing looked up
    return answer


def command_body() -> str:
    return slash_command_body("/mentor", "start")


def test_forged_signature(slack_settings: Settings, slack: SlackEmulator, clock: Clock) -> None:
    body = command_body()
    status, text = refused(
        slack_settings, slack, clock, body=body, headers=sign_request("not-the-secret", body)
    )
    assert (status, text) == (401, '{"error": "invalid signature"}')


def test_missing_signature(slack_settings: Settings, slack: SlackEmulator, clock: Clock) -> None:
    status, text = refused(slack_settings, slack, clock, body=command_body(), headers={})
    assert (status, text) == (401, '{"error": "missing signature"}')


def test_timestamp_older_than_five_minutes(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    body = command_body()
    old = sign_request(DEFAULT_SIGNING_SECRET, body, int(time.time()) - 301)
    status, text = refused(slack_settings, slack, clock, body=body, headers=old)
    assert (status, text) == (401, '{"error": "stale timestamp"}')


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"type": "event_callback", ', "application/json"),
        ("[1, 2, 3]", "application/json"),
        ("payload=" + quote("{broken"), "application/x-www-form-urlencoded"),
        ("just some words", "application/x-www-form-urlencoded"),
        ("", "application/x-www-form-urlencoded"),
    ],
    ids=["truncated-json", "json-array", "bad-payload", "not-a-form", "empty"],
)
def test_body_that_is_not_form_or_json(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock, body: str, content_type: str
) -> None:
    headers = sign_request(DEFAULT_SIGNING_SECRET, body)
    status, _ = refused(
        slack_settings, slack, clock, body=body, headers=headers, content_type=content_type
    )
    assert status == 400


def test_a_replayed_request_is_handled_once(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def main() -> None:
        async with SlackRig(slack_settings, slack, clock) as rig:
            body = slash_command_body("/mentor", "help", response_url=slack.new_response_url())
            headers = sign_request(DEFAULT_SIGNING_SECRET, body)
            first = await rig.post(body, headers=headers)
            again = await rig.post(body, headers=headers)
            await rig.settle()
            assert first == (200, "")
            assert again == (401, '{"error": "replayed request"}')
            assert len(responses(slack)) == 1
            # The same command signed at another second is a new request.
            earlier = int(headers["X-Slack-Request-Timestamp"]) - 1
            assert (await rig.post(body, timestamp=earlier))[0] == 200
            await rig.settle()
            assert len(responses(slack)) == 2

    asyncio.run(main())


def test_an_event_slack_retries_is_handled_once(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    async def main() -> None:
        async with SlackRig(slack_settings, slack, clock) as rig:
            event = message_event("hello?", channel=dm_of(slack))
            await rig.event(event, event_id="Ev0000RETRY")
            await rig.event(event, event_id="Ev0000RETRY")  # signed again, as Slack retries
            await rig.settle()
            assert len(posts(slack)) == 1

    asyncio.run(main())


def test_request_guard_and_recent_keys_units() -> None:
    now = [1_000_000.0]
    guard = RequestGuard("secret", clock=lambda: now[0])
    body = "a=b"
    headers = sign_request("secret", body, int(now[0]))

    assert guard.refusal(body, headers) is None
    assert guard.refusal(body, headers) == "replayed request"
    assert guard.refusal(body, {**headers, "X-Slack-Request-Timestamp": "soon"}) == (
        "invalid timestamp"
    )
    future = sign_request("secret", body, int(now[0]) + 301)
    assert guard.refusal(body, future) == "stale timestamp"
    now[0] += 302  # the first signature left the window: the timestamp check now refuses it
    assert guard.refusal(body, headers) == "stale timestamp"
    assert guard.refusal(body, sign_request("secret", body, int(now[0]))) is None
    assert len(guard.signatures) == 1  # the expired signature was forgotten

    keys = RecentKeys(limit=2)
    assert not keys.seen("a", 10, 0) and not keys.seen("b", 10, 0) and not keys.seen("c", 10, 0)
    assert len(keys) == 2 and not keys.seen("a", 10, 1)  # the oldest was forgotten


def test_parse_body_reads_every_slack_shape() -> None:
    assert parse_body('{"type": "x"}', "application/json") == {"type": "x"}
    assert parse_body("command=%2Fmentor&text=payload", None) == {
        "command": "/mentor",
        "text": "payload",
    }
    assert parse_body("payload=" + quote('{"type": "block_actions"}'), None) == {
        "type": "block_actions"
    }
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_body("{", "application/json")
