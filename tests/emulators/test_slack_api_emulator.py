"""Proves the Slack emulator speaks the protocol the real slack_sdk and slack_bolt clients expect.

Everything here drives genuine client code (urllib WebClient, aiohttp AsyncWebClient, Bolt's
request verification, the Socket Mode clients) so other tests can trust the emulator as a stand-in
for Slack. Waiting is always done through the emulator's condition-based helpers, never sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import aiohttp
import pytest
from slack_bolt import App, BoltRequest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.oauth.installation_store import FileInstallationStore
from slack_sdk.oauth.state_store import FileOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient

from tests.emulators.slack_api import (
    DEFAULT_APP_TOKEN,
    DEFAULT_BOT_TOKEN,
    DEFAULT_SIGNING_SECRET,
    DEFAULT_TEAM_ID,
    DEFAULT_USER_ID,
    SlackEmulator,
    block_actions_body,
    bot_ids_for_team,
    event_callback_payload,
    message_event,
    sign_request,
    slash_command_body,
    slash_command_payload,
    view_submission_body,
)

BOT_USER_ID, BOT_ID = bot_ids_for_team(DEFAULT_TEAM_ID)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk's Socket Mode clients honour HTTP(S)_PROXY but ignore NO_PROXY; loopback only."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator(client_id="111.222", client_secret="shh") as emulator:
        yield emulator


def web_client(slack: SlackEmulator, token: str | None = DEFAULT_BOT_TOKEN) -> WebClient:
    return WebClient(token=token, base_url=slack.base_url, timeout=5)


def test_base_url_has_the_shape_slack_sdk_joins_methods_onto(slack: SlackEmulator) -> None:
    assert slack.base_url == f"http://127.0.0.1:{slack.port}/api/"


def test_auth_test_reports_the_bot_identity_of_the_tokens_team(slack: SlackEmulator) -> None:
    response = web_client(slack).auth_test()

    assert response["team_id"] == DEFAULT_TEAM_ID
    assert response["user_id"] == BOT_USER_ID
    assert response["bot_id"] == BOT_ID
    (call,) = slack.calls_to("auth.test")
    assert call.token == DEFAULT_BOT_TOKEN
    assert "token" not in call.params


def test_token_form_field_and_json_encoded_fields_are_accepted(slack: SlackEmulator) -> None:
    blocks = [{"type": "divider"}]
    form = urlencode({"token": DEFAULT_BOT_TOKEN, "channel": "C1", "blocks": json.dumps(blocks)})
    request = Request(f"{slack.base_url}chat.postMessage", data=form.encode(), method="POST")

    with urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["ok"] is True

    (call,) = slack.calls_to("chat.postMessage")
    assert call.token == DEFAULT_BOT_TOKEN
    assert call.params == {"channel": "C1", "blocks": blocks}


def test_wait_for_times_out_and_reset_forgets_traffic(slack: SlackEmulator) -> None:
    web_client(slack).auth_test()
    slack.reset()

    assert slack.calls == []
    with pytest.raises(TimeoutError):
        slack.wait_for("auth.test", timeout=0.05)
    assert web_client(slack).auth_test()["ok"] is True  # configuration survives reset()


def test_unknown_token_is_invalid_auth(slack: SlackEmulator) -> None:
    with pytest.raises(SlackApiError) as raised:
        web_client(slack, token="xoxb-nope").auth_test()

    assert raised.value.response["error"] == "invalid_auth"


def test_dm_post_and_history_round_trip_with_metadata(slack: SlackEmulator) -> None:
    client = web_client(slack)
    dm = client.conversations_open(users=DEFAULT_USER_ID)["channel"]["id"]
    assert dm.startswith("D")
    assert client.conversations_open(users=DEFAULT_USER_ID)["channel"]["id"] == dm
    assert slack.dm_channel_id(DEFAULT_USER_ID) == dm

    metadata = {"event_type": "lesson_sent", "event_payload": {"lesson": "1-listening"}}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Lesson 1*"}}]
    first = client.chat_postMessage(channel=dm, text="Lesson 1", blocks=blocks, metadata=metadata)
    second = client.chat_postMessage(channel=dm, text="Reply?", thread_ts=first["ts"])

    assert first["channel"] == dm
    assert first["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["bot_id"] == BOT_ID

    with_meta = client.conversations_history(channel=dm, include_all_metadata=True)["messages"]
    assert [m["ts"] for m in with_meta] == [first["ts"]]  # thread replies stay out of history
    assert with_meta[0]["metadata"] == metadata
    assert with_meta[0]["blocks"] == blocks
    assert with_meta[0]["reply_count"] == 1
    plain = client.conversations_history(channel=dm)["messages"]
    assert "metadata" not in plain[0]

    post = slack.calls_to("chat.postMessage")[0]
    assert post.params["blocks"] == blocks  # JSON-encoded form fields come back decoded
    assert post.params["metadata"] == metadata


def test_posting_to_a_user_id_lands_in_their_dm(slack: SlackEmulator) -> None:
    response = web_client(slack).chat_postMessage(channel=DEFAULT_USER_ID, text="hi")

    assert response["channel"] == slack.dm_channel_id(DEFAULT_USER_ID)


def test_update_ephemeral_and_users_info(slack: SlackEmulator) -> None:
    client = web_client(slack)
    posted = client.chat_postMessage(channel="C00000001", text="draft")
    client.chat_update(channel="C00000001", ts=posted["ts"], text="final")
    client.chat_postEphemeral(channel="C00000001", user=DEFAULT_USER_ID, text="psst")

    assert [m["text"] for m in slack.messages("C00000001")] == ["final"]
    assert slack.ephemeral_messages[0]["text"] == "psst"
    user = client.users_info(user=DEFAULT_USER_ID)["user"]
    assert user["tz"] == "Europe/Berlin"
    assert user["tz_offset"] in (3600, 7200)
    with pytest.raises(SlackApiError) as raised:
        client.users_info(user="U404")
    assert raised.value.response["error"] == "user_not_found"
    with pytest.raises(SlackApiError) as raised:
        client.chat_update(channel="C00000001", ts="1.000000", text="x")
    assert raised.value.response["error"] == "message_not_found"


def test_configured_channel_errors(slack: SlackEmulator) -> None:
    slack.set_channel_error("C0SECRET", "not_in_channel")

    with pytest.raises(SlackApiError) as raised:
        web_client(slack).chat_postMessage(channel="C0SECRET", text="hello?")

    assert raised.value.response["error"] == "not_in_channel"


def test_429_is_retried_by_rate_limit_retry_handler(slack: SlackEmulator) -> None:
    client = web_client(slack)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    # Retry-After 0 keeps the handler's sleep (int(header) + random()) under a second.
    slack.fail_next("chat.postMessage", status=429, retry_after=0)

    response = client.chat_postMessage(channel="C00000001", text="eventually")

    assert response["ok"] is True
    calls = slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[0].response == {"ok": False, "error": "ratelimited"}


def test_429_carries_integer_retry_after_without_retry_handler(slack: SlackEmulator) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        web_client(slack).chat_postMessage(channel="C00000001", text="x")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert raised.value.response["error"] == "ratelimited"


def test_500_surfaces_as_slack_api_error(slack: SlackEmulator) -> None:
    slack.fail_next("chat.postMessage", status=500)
    client = web_client(slack)

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C00000001", text="boom")

    assert raised.value.response.status_code == 500
    assert raised.value.response["error"] == "internal_error"
    assert client.chat_postMessage(channel="C00000001", text="fine")["ok"] is True


def test_per_channel_token_bucket_rate_limit(slack: SlackEmulator) -> None:
    # A slow refill keeps the second call limited even on a badly stalled CI machine.
    slack.rate_limit("chat.postMessage", per_second=0.2)
    client = web_client(slack)
    client.chat_postMessage(channel="C00000001", text="1")

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C00000001", text="2")

    assert raised.value.response.status_code == 429
    assert int(raised.value.response.headers["Retry-After"]) >= 1
    assert client.chat_postMessage(channel="C00000002", text="other channel")["ok"] is True


def test_files_upload_v2_uses_the_external_upload_flow(slack: SlackEmulator) -> None:
    response = web_client(slack).files_upload_v2(
        channel="C00000001",
        filename="notes.md",
        content="# My notes",
        title="Notes",
        initial_comment="here you go",
    )

    file_id = response["file"]["id"]
    assert slack.files[file_id].content == b"# My notes"
    assert [c.method for c in slack.calls] == [
        "files.getUploadURLExternal",
        "file_upload",
        "files.completeUploadExternal",
    ]
    (message,) = slack.messages("C00000001")
    assert message["text"] == "here you go"
    assert message["files"][0]["title"] == "Notes"


def test_views_open_update_and_publish(slack: SlackEmulator) -> None:
    client = web_client(slack)
    modal = {
        "type": "modal",
        "callback_id": "reflect",
        "title": {"type": "plain_text", "text": "Reflect"},
        "blocks": [],
    }
    opened = client.views_open(trigger_id="123.456.abc", view=modal)["view"]
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal)["view"]
    with pytest.raises(SlackApiError) as raised:
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal)
    client.views_publish(user_id=DEFAULT_USER_ID, view={"type": "home", "blocks": []})

    assert updated["id"] == opened["id"]
    assert raised.value.response["error"] == "hash_conflict"
    assert slack.home_view(DEFAULT_USER_ID)["type"] == "home"


# slack_sdk's AsyncWebClient itself still builds aiohttp.BasicAuth for oauth.v2.access.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
def test_oauth_v2_access_feeds_bolts_installation_flow(
    slack: SlackEmulator, tmp_path: Path
) -> None:
    slack.add_oauth_code("code-1", installer_user_id=DEFAULT_USER_ID)
    settings = AsyncOAuthSettings(
        client_id="111.222",
        client_secret="shh",
        scopes=["chat:write"],
        installation_store=FileInstallationStore(base_dir=str(tmp_path / "i")),
        state_store=FileOAuthStateStore(expiration_seconds=60, base_dir=str(tmp_path / "s")),
    )

    async def install() -> Any:
        client = AsyncWebClient(base_url=slack.base_url)
        return await AsyncOAuthFlow(client=client, settings=settings).run_installation("code-1")

    installation = asyncio.run(install())

    assert installation.team_id == DEFAULT_TEAM_ID
    assert installation.bot_user_id == BOT_USER_ID
    assert installation.bot_id == BOT_ID  # read via auth.test with the freshly minted token
    assert installation.user_id == DEFAULT_USER_ID
    assert installation.bot_token.startswith("xoxb-")
    assert web_client(slack, installation.bot_token).auth_test()["team_id"] == DEFAULT_TEAM_ID
    with pytest.raises(SlackApiError) as raised:  # codes are single use
        web_client(slack, None).oauth_v2_access(
            client_id="111.222", client_secret="shh", code="code-1"
        )
    assert raised.value.response["error"] == "invalid_code"


def test_oauth_rejects_wrong_client_secret(slack: SlackEmulator) -> None:
    slack.add_oauth_code("code-2")

    with pytest.raises(SlackApiError) as raised:
        web_client(slack, None).oauth_v2_access(
            client_id="111.222", client_secret="wrong", code="code-2"
        )

    assert raised.value.response["error"] == "bad_client_secret"


def test_async_web_client(slack: SlackEmulator) -> None:
    async def scenario() -> None:
        client = AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.base_url)
        assert (await client.auth_test())["user_id"] == BOT_USER_ID
        dm = (await client.conversations_open(users=DEFAULT_USER_ID))["channel"]["id"]
        metadata = {"event_type": "nudge", "event_payload": {"n": 1}}
        await client.chat_postMessage(channel=dm, text="nudge", metadata=metadata)
        # conversations.history is a GET, so aiohttp sends its params in the query string.
        history = await client.conversations_history(channel=dm, include_all_metadata=True)
        assert history["messages"][0]["metadata"] == metadata
        slack.fail_next("users.info", status=503)
        with pytest.raises(SlackApiError) as raised:
            await client.users_info(user=DEFAULT_USER_ID)
        assert raised.value.response.status_code == 503

    asyncio.run(scenario())
    assert slack.calls_to("conversations.history")[0].http_method == "GET"


def test_raw_socket_mode_protocol(slack: SlackEmulator) -> None:
    async def scenario() -> None:
        client = AsyncWebClient(base_url=slack.base_url)
        url = (await client.apps_connections_open(app_token=DEFAULT_APP_TOKEN))["url"]
        assert url.startswith(f"ws://127.0.0.1:{slack.port}/link/?ticket=")
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            hello = json.loads((await ws.receive()).data)
            assert hello["type"] == "hello"
            assert hello["connection_info"]["app_id"] == slack.app_id
            envelope_id = await slack.async_socket_send_envelope(
                "events_api", event_callback_payload(message_event("hi"))
            )
            envelope = json.loads((await ws.receive()).data)
            assert envelope["envelope_id"] == envelope_id
            assert envelope["payload"]["event"]["text"] == "hi"
            assert envelope["retry_attempt"] == 0
            await ws.send_str(json.dumps({"envelope_id": envelope_id}))
            assert await slack.async_wait_for_ack(envelope_id) == {"envelope_id": envelope_id}
        with pytest.raises(SlackApiError) as raised:  # bot tokens cannot open connections
            await client.apps_connections_open(app_token=DEFAULT_BOT_TOKEN)
        assert raised.value.response["error"] == "not_allowed_token_type"

    asyncio.run(scenario())


def test_bolt_async_app_over_socket_mode(slack: SlackEmulator) -> None:
    async def scenario() -> None:
        app = AsyncApp(client=AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.base_url))

        @app.command("/mentor")
        async def on_mentor(ack: Any, say: Any, command: dict[str, Any]) -> None:
            await ack("On it")
            await say(f"You said: {command['text']}")

        @app.event("message")
        async def on_message(event: dict[str, Any], say: Any) -> None:
            await say(f"echo {event['text']}")

        handler = AsyncSocketModeHandler(app, DEFAULT_APP_TOKEN)
        await handler.connect_async()
        try:
            envelope_id = await slack.async_socket_send_envelope(
                "slash_commands", slash_command_payload("/mentor", "next lesson")
            )
            ack = await slack.async_wait_for_ack(envelope_id)
            assert ack == {"envelope_id": envelope_id, "payload": {"text": "On it"}}
            (post,) = await slack.async_wait_for("chat.postMessage")
            assert post.params["text"] == "You said: next lesson"
            assert post.params["channel"] == "C00000001"

            event = message_event("ping", channel=slack.dm_channel_id(DEFAULT_USER_ID))
            event_envelope = await slack.async_socket_send_envelope(
                "events_api", event_callback_payload(event)
            )
            assert await slack.async_wait_for_ack(event_envelope) == {"envelope_id": event_envelope}
            posts = await slack.async_wait_for("chat.postMessage", count=2)
            assert posts[1].params["text"] == "echo ping"
        finally:
            await handler.close_async()

    asyncio.run(scenario())
    assert slack.calls_to("apps.connections.open")[0].token == DEFAULT_APP_TOKEN


def test_bolt_sync_app_over_builtin_socket_mode(slack: SlackEmulator) -> None:
    app = App(client=web_client(slack))

    @app.command("/mentor")
    def on_mentor(ack: Any, respond: Any) -> None:
        ack()
        respond("later")

    handler = SocketModeHandler(app, DEFAULT_APP_TOKEN, auto_reconnect_enabled=False)
    handler.connect()
    try:
        response_url = slack.new_response_url()
        envelope_id = slack.socket_send_envelope(
            "slash_commands", slash_command_payload("/mentor", response_url=response_url)
        )
        assert slack.wait_for_ack(envelope_id) == {"envelope_id": envelope_id}
        (reply,) = slack.wait_for("response_url")
        assert reply.params["text"] == "later"
    finally:
        # The builtin client's close() waits for a reader thread blocked in a 3 s recv(); a
        # server-side close wakes it (and auto-reconnect is off so it does not dial back in).
        slack.socket_close_connections()
        handler.close()


def test_bolt_sync_app_over_signed_http(slack: SlackEmulator) -> None:
    app = App(signing_secret=DEFAULT_SIGNING_SECRET, client=web_client(slack))
    seen: list[str] = []

    @app.command("/mentor")
    def on_mentor(ack: Any, say: Any) -> None:
        ack()
        say("from http")

    @app.action("done")
    def on_done(ack: Any, body: dict[str, Any]) -> None:
        seen.append(body["actions"][0]["value"])  # before ack: dispatch returns on ack
        ack()

    @app.view("reflect")
    def on_reflect(ack: Any, view: dict[str, Any]) -> None:
        answer = view["state"]["values"]["answer"]["text"]["value"]
        ack(response_action="errors", errors={"answer": f"got {answer}"})

    def dispatch(body: str) -> Any:
        return app.dispatch(BoltRequest(body=body, headers=sign_request(app_secret, body)))

    app_secret = DEFAULT_SIGNING_SECRET
    assert dispatch(slash_command_body("/mentor", "hi")).status == 200
    assert slack.wait_for("chat.postMessage")[0].params["text"] == "from http"

    assert dispatch(block_actions_body("done", value="lesson-1")).status == 200
    values = {"answer": {"text": {"type": "plain_text_input", "value": "listen more"}}}
    response = dispatch(view_submission_body("reflect", values))
    assert json.loads(response.body) == {
        "response_action": "errors",
        "errors": {"answer": "got listen more"},
    }
    assert seen == ["lesson-1"]

    body = slash_command_body("/mentor")
    forged = app.dispatch(BoltRequest(body=body, headers=sign_request("wrong", body)))
    assert forged.status == 401
