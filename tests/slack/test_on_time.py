"""The running bot (``serve``: adapters, the 60-second ticker, the HTTP server) sends
work at the instant it falls due, not at the next tick."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import aiohttp

from adapters.slack import SlackAdapter
from bot.config import Settings
from mentorbot.bootstrap import App, build, serve
from tests.emulators.slack_api import SlackEmulator, sign_request, slash_command_body
from tests.support.slack_bot import free_port


def is_lesson(params: dict[str, Any]) -> bool:
    return bool((params.get("metadata") or {}).get("event_payload"))


async def _until(condition, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def _command(
    http: aiohttp.ClientSession, url: str, settings: Settings, slack: SlackEmulator, text: str
) -> None:
    body = slash_command_body("/mentor", text, response_url=slack.new_response_url())
    headers = sign_request(settings.slack_signing_secret or "", body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with http.post(f"{url}/slack/events", data=body, headers=headers) as response:
        assert response.status == 200


def test_a_429_on_start_is_retried_at_its_retry_after_not_at_the_next_tick(
    slack_settings: Settings, slack: SlackEmulator, store_url: str
) -> None:
    settings = replace(slack_settings, database_url=store_url, http="on", port=free_port())
    assert settings.tick_seconds == 60  # the default tick

    async def main() -> None:
        app: App = build(settings)
        adapter = SlackAdapter(settings, app.store)
        serving = asyncio.create_task(serve(app, [adapter]))
        url = f"http://127.0.0.1:{settings.port}"
        try:
            async with aiohttp.ClientSession() as http:
                await _until(lambda: app.engine.ticks == 1, "the first tick ran at start")
                slack.fail_next("chat.postMessage", status=429, retry_after=1, where=is_lesson)
                await _command(http, url, settings, slack, "start")
                posts = await slack.async_wait_for(
                    "chat.postMessage", 2, timeout=30, where=lambda c: is_lesson(c.params)
                )
                ticks = app.engine.ticks
            assert [c.status for c in posts] == [429, 200]
            assert ticks == 1, "day 1 came with a tick, not at its Retry-After"
            assert app.engine.wakeups >= 1
            assert "day 1 of 3" in posts[1].params["text"]
        finally:
            await adapter.stop()
            await serving

    asyncio.run(main())
