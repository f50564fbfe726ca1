"""Requests that must be refused before anything is stored or answered: unsigned,
forged, stale, replayed, malformed, misshapen or oversized. A refusal is a 4xx and one
log line, never a 500 with a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlencode

import pytest

from adapters.slack.verify import (
    MAX_BODY_BYTES,
    RecentKeys,
    RequestGuard,
    parse_body,
    payload_problem,
)
from bot.config import Settings
from tests.conftest import Clock
from tests.emulators.slack_api import (
    DEFAULT_SIGNING_SECRET,
    SlackEmulator,
    block_actions_payload,
    event_callback_payload,
    message_event,
    sign_request,
    slash_command_body,
    view_submission_payload,
)
from tests.slack.rig import FORM, SlackRig, dm_of, posts, responses


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


SIGNED_ELSEWHERE = {
    "event": (json.dumps(event_callback_payload(message_event("hello?"))), "application/json"),
    "button": (urlencode({"payload": json.dumps(block_actions_payload("mentorbot:x"))}), FORM),
}


@pytest.mark.parametrize(("body", "content_type"), SIGNED_ELSEWHERE.values(), ids=SIGNED_ELSEWHERE)
@pytest.mark.parametrize("wrong", ["forged", "stale"])
def test_events_and_buttons_forged_or_stale_are_refused_by_the_guard_alone(
    slack_settings: Settings,
    slack: SlackEmulator,
    clock: Clock,
    body: str,
    content_type: str,
    wrong: str,
) -> None:
    """Bolt's own signature check is off (the guard's is the same check), so for every
    kind of request the guard's is the one that refuses."""
    if wrong == "forged":
        headers = sign_request("not-the-secret", body)
    else:
        headers = sign_request(DEFAULT_SIGNING_SECRET, body, int(time.time()) - 301)
    status, text = refused(
        slack_settings, slack, clock, body=body, headers=headers, content_type=content_type
    )
    expected = "invalid signature" if wrong == "forged" else "stale timestamp"
    assert (status, json.loads(text)) == (401, {"error": expected})


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


# ---------------------------------------------------------------------- odd but signed


Sender = Callable[[SlackRig], Awaitable[tuple[int, Any]]]


def refused_once(
    settings: Settings,
    slack: SlackEmulator,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    send: Sender,
) -> tuple[int, Any]:
    """Run ``send`` against the adapter and check the refusal left one log line, no
    traceback and no trace anywhere else (nothing stored, nothing asked of Slack)."""

    async def main() -> tuple[int, Any]:
        async with SlackRig(settings, slack, clock) as rig:
            answer = await send(rig)
            await rig.settle()
            assert rig.learners() == [] and rig.workspaces() == []
            return answer

    with caplog.at_level(logging.INFO):
        answer = asyncio.run(main())
    assert [c.method for c in slack.calls] == []
    refusals = [r for r in caplog.records if "refused a request" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert refusals[0].levelno == logging.INFO
    assert all(r.exc_info is None and r.levelno < logging.ERROR for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]
    return answer


def signed_post(body: str, content_type: str) -> Sender:
    async def send(rig: SlackRig) -> tuple[int, str]:
        return await rig.post(body, content_type=content_type)

    return send


def changed(payload: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with fields replaced; ``a__0__b`` reaches ``payload["a"][0]["b"]``,
    and None deletes the field."""
    for path, value in changes.items():
        *parents, last = path.split("__")
        target: Any = payload
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return payload


def event_with(**changes: Any) -> str:
    """The JSON body of a DM message event, with some fields changed."""
    payload = event_callback_payload(message_event("hello", channel="D00000001"))
    return json.dumps(changed(payload, changes))


def interaction_with(payload: dict[str, Any], **changes: Any) -> str:
    return urlencode({"payload": json.dumps(changed(payload, changes))})


def button(**changes: Any) -> str:
    value = json.dumps({"command": "skip", "delivery": None})
    return interaction_with(block_actions_payload("mentor.skip", value=value), **changes)


def submission(**changes: Any) -> str:
    values = {"answer": {"text": {"type": "plain_text_input", "value": "my answer"}}}
    return interaction_with(view_submission_payload("mentor.reply", values), **changes)


MISSHAPEN = {
    # signed bodies whose event is not an object
    "event-is-a-string": (event_with(event="hello"), "event is a string, not an object"),
    "event-is-a-list": (event_with(event=[{"type": "message"}]), "event is a list"),
    "event-type-is-missing": (event_with(event__type=None), "event.type is missing"),
    "event-type-is-a-number": (event_with(event__type=7), "event.type is int"),
    # DM fields of the wrong type
    "dm-text-is-a-list": (event_with(event__text=["hi"]), "event.text is a list"),
    "dm-user-is-a-number": (event_with(event__user=5), "event.user is int"),
    "dm-user-is-an-object": (event_with(event__user={"id": "U1"}), "event.user is an object"),
    "dm-channel-is-an-object": (event_with(event__channel={"id": "D1"}), "event.channel is an"),
    "dm-ts-is-an-object": (event_with(event__ts={}), "event.ts is an object"),
    "dm-thread-is-a-number": (event_with(event__thread_ts=7), "event.thread_ts is int"),
    "dm-subtype-is-a-number": (event_with(event__subtype=3), "event.subtype is int"),
    "dm-channel-type-is-a-list": (event_with(event__channel_type=[]), "event.channel_type is"),
    "edit-message-is-a-string": (
        event_with(event__subtype="message_changed", event__message="hello"),
        "event.message is a string",
    ),
    "edit-author-is-a-number": (
        event_with(event__subtype="message_changed", event__message={"user": 1, "ts": "1.2"}),
        "event.message.user is int",
    ),
    "team-is-a-number": (event_with(team_id=3), "team_id is int"),
    "authorizations-are-strings": (event_with(authorizations=["T1"]), "authorizations[0] is"),
    # block_actions whose user or actions is a string
    "button-user-is-a-string": (button(user="U00000001"), "user is a string, not an object"),
    "button-user-id-is-missing": (button(user__id=None), "user.id is missing"),
    "button-actions-is-a-string": (button(actions="mentor.skip"), "actions is a string"),
    "button-actions-are-strings": (button(actions=["mentor.skip"]), "actions[0] is a string"),
    "button-actions-are-empty": (button(actions=[]), "actions is empty"),
    "button-without-action-id": (button(actions__0__action_id=None), "action_id is missing"),
    "button-value-is-a-number": (button(actions__0__value=3), "actions[0].value is int"),
    "button-team-is-a-string": (button(team="T00000001"), "team is a string"),
    "button-channel-is-a-string": (button(channel="D1"), "channel is a string"),
    "button-blocks-are-a-string": (button(message__blocks="x"), "message.blocks is a string"),
    # a view_submission without view.type, and its relatives
    "form-view-without-type": (submission(view__type=None), "view.type is missing"),
    "form-view-is-a-string": (submission(view="modal"), "view is a string"),
    "form-without-callback-id": (submission(view__callback_id=None), "callback_id is missing"),
    "form-metadata-is-a-number": (submission(view__private_metadata=1), "private_metadata is"),
    "form-values-are-strings": (
        submission(view__state__values={"answer": "text"}),
        "view.state.values.answer is a string",
    ),
    "url-verification-without-challenge": (
        json.dumps({"type": "url_verification", "token": "t"}),
        "challenge is missing",
    ),
    "json-nested-too-deep": ('{"a":' * 100_000 + "1" + "}" * 100_000, "not valid JSON"),
}


@pytest.mark.parametrize(("body", "problem"), MISSHAPEN.values(), ids=MISSHAPEN.keys())
def test_a_signed_payload_of_the_wrong_shape_gets_a_400_and_one_log_line(
    slack_settings: Settings,
    slack: SlackEmulator,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    body: str,
    problem: str,
) -> None:
    content_type = "application/json" if body.startswith("{") else FORM
    status, text = refused_once(
        slack_settings, slack, clock, caplog, signed_post(body, content_type)
    )
    assert status == 400
    assert problem in json.loads(text)["error"]


def test_well_shaped_payloads_of_every_kind_still_pass_the_shape_check() -> None:
    bodies = [
        json.loads(event_with()),
        event_callback_payload(
            {"type": "team_join", "user": {"id": "U9", "team_id": "T1", "profile": {}}}
        ),
        event_callback_payload({"type": "app_home_opened", "user": "U1", "tab": "home"}),
        event_callback_payload({"type": "tokens_revoked", "tokens": {"bot": ["U1"]}}),
        event_callback_payload(
            {"type": "channel_created", "channel": {"id": "C1", "name": "x", "created": 1}}
        ),
        json.loads(parse_qs(button())["payload"][0]),
        json.loads(parse_qs(submission())["payload"][0]),
        {"type": "url_verification", "challenge": "abc", "token": "t"},
        dict(parse_qsl(slash_command_body("/mentor", "start"))),
        {"type": "shortcut", "callback_id": "x", "user": {"id": "U1"}, "team": {"id": "T1"}},
    ]
    assert [payload_problem(body) for body in bodies] == [None] * len(bodies)


def http_head(body: bytes, headers: dict[str, bytes], path: str = "/slack/events") -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: localhost"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_a_signature_with_a_non_ascii_byte_gets_a_401_and_one_log_line(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    body = command_body().encode()
    signed = sign_request(DEFAULT_SIGNING_SECRET, body.decode())
    headers = {
        "Content-Type": FORM.encode(),
        "Content-Length": str(len(body)).encode(),
        "X-Slack-Request-Timestamp": signed["X-Slack-Request-Timestamp"].encode(),
        # A byte that is not UTF-8 (Latin-1 "é"): HTTP allows it in a header value.
        "X-Slack-Signature": signed["X-Slack-Signature"][:-1].encode() + b"\xe9",
    }

    async def send(rig: SlackRig) -> tuple[int, Any]:
        return await rig.raw(http_head(body, headers), [body])

    status, text = refused_once(slack_settings, slack, clock, caplog, send)
    assert (status, json.loads(text)) == (401, {"error": "invalid signature"})

    guard = RequestGuard("secret")
    assert guard.refusal("a=b", {**signed, "X-Slack-Signature": "v0=\udce9"}) == (
        "invalid signature"
    )
    for timestamp in ("١٧٠٠٠٠٠٠٠٠", " 1700000000", "1_700_000_000", "\udce9"):
        headers_ = {**signed, "X-Slack-Request-Timestamp": timestamp}
        assert guard.refusal("a=b", headers_) == "invalid timestamp"


# ---------------------------------------------------------------------- large bodies


def test_a_body_declared_over_1_mb_is_refused_before_any_of_it_is_read(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    declared = {"Content-Type": FORM.encode(), "Content-Length": b"10485760"}  # 10 MB

    async def send(rig: SlackRig) -> tuple[int, Any]:
        # Nothing of the body is sent: an answer can only come if none is awaited.
        return await rig.raw(http_head(b"", declared))

    status, text = refused_once(slack_settings, slack, clock, caplog, send)
    assert (status, json.loads(text)) == (
        413,
        {"error": f"body larger than {MAX_BODY_BYTES} bytes"},
    )


def test_a_chunked_body_is_cut_off_once_past_1_mb(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    chunked = {"Content-Type": FORM.encode(), "Transfer-Encoding": b"chunked"}
    piece = b"a" * 65_536
    chunk = f"{len(piece):x}".encode() + b"\r\n" + piece + b"\r\n"
    # Just past the cap, and never finished (no closing zero-length chunk): the
    # answer must come from the bytes read so far, not from the end of the body.
    chunks = [chunk] * (MAX_BODY_BYTES // len(piece) + 1)

    async def send(rig: SlackRig) -> tuple[int, Any]:
        return await rig.raw(http_head(b"", chunked), chunks)

    status, _ = refused_once(slack_settings, slack, clock, caplog, send)
    assert status == 413


def test_a_body_of_exactly_1_mb_is_read_and_judged(
    slack_settings: Settings, slack: SlackEmulator, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    body = "a" * MAX_BODY_BYTES  # signed, but not a form: refused for what it says

    status, text = refused_once(slack_settings, slack, clock, caplog, signed_post(body, FORM))
    assert (status, json.loads(text)) == (
        400,
        {"error": "malformed request: body is not a valid form"},
    )
