"""The HTTP server on PORT: health, readiness and metrics, plus any adapter's routes
(Slack's /slack/events and OAuth pages). It runs when a platform adapter runs, or
always with MENTORBOT_HTTP=on; the console alone does not need it."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.metrics import registry_for
from bot.ports import Adapter

if TYPE_CHECKING:
    from mentorbot.bootstrap import App

log = logging.getLogger(__name__)


def wants_http(app: App, adapters: list[Adapter]) -> bool:
    if app.settings.http == "on":
        return True
    if app.settings.http == "off":
        return False
    return any(a.platform != "console" for a in adapters)


def build_web(app: App, adapters: list[Adapter]) -> web.Application:
    registry = registry_for(app.store)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks: dict[str, str] = {}
        try:
            current = await asyncio.to_thread(app.store.is_current)
            checks["database"] = "ok"
            checks["migrations"] = "ok" if current else "behind: run `mentorbot db upgrade`"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
            checks["migrations"] = "unknown"
        for adapter in adapters:
            connected = getattr(adapter, "connected", True)
            checks[f"adapter:{adapter.platform}"] = "ok" if connected else "not connected"
        ready = all(value == "ok" for value in checks.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status=200 if ready else 503,
        )

    async def metrics(_request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    application = web.Application()
    application.add_routes(
        [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]
    )
    for adapter in adapters:
        application.add_routes(getattr(adapter, "routes", list)())
    return application


async def start_web(app: App, adapters: list[Adapter]) -> web.AppRunner | None:
    if not wants_http(app, adapters):
        return None
    runner = web.AppRunner(build_web(app, adapters), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host="0.0.0.0", port=app.settings.port).start()
    log.info("listening on port %d", app.settings.port, extra={"port": app.settings.port})
    return runner
