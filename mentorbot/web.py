"""The HTTP server on PORT: health, readiness and metrics, plus any adapter's routes
(Slack's /slack/events and OAuth pages). It runs when a platform adapter runs, or
always with MENTORBOT_HTTP=on; the console alone does not need it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.db import Readiness, Store, first_line
from bot.metrics import registry_for
from bot.ports import Adapter

if TYPE_CHECKING:
    from mentorbot.bootstrap import App

log = logging.getLogger(__name__)
READY_TIMEOUT_SECONDS = 2.0  # /readyz answers within this, whatever the database does
# Connections waiting to be accepted. Slack opens one per request, and a busy minute
# brings hundreds at once; past aiohttp's default of 128 the kernel drops them and the
# sender only tries again a second later. (The kernel caps it at net.core.somaxconn.)
LISTEN_BACKLOG = 1024


class DatabaseCheck:
    """The database part of /readyz, answered within a bound.

    The probe (a read and a rolled-back write, ``Store.probe``) runs in a daemon thread:
    a frozen server can hold it until the driver's timeouts end it, and such a thread
    must neither hold up the answer nor keep the process from exiting. While a probe is
    still out, later requests wait on that same probe instead of starting another, so a
    load balancer polling a frozen database does not pile up threads and connections.
    """

    def __init__(self, store: Store, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        self.store = store
        self.timeout = timeout
        self._pending: asyncio.Future[Readiness] | None = None
        self._started = 0.0

    def _start(self) -> asyncio.Future[Readiness]:
        result: concurrent.futures.Future[Readiness] = concurrent.futures.Future()

        def probe() -> None:
            try:
                result.set_result(self.store.probe())
            except Exception as exc:
                result.set_exception(exc)

        threading.Thread(target=probe, name="readiness-probe", daemon=True).start()
        self._started = time.monotonic()
        waiting = asyncio.wrap_future(result)
        # A probe that ends after every request gave up still has its error read.
        waiting.add_done_callback(lambda done: done.cancelled() or done.exception())
        return waiting

    async def __call__(self) -> tuple[str, str]:
        """(database, migrations): "ok" each, or what is wrong."""
        if self._pending is None or self._pending.done():
            self._pending = self._start()
        pending = self._pending
        try:
            readiness = await asyncio.wait_for(asyncio.shield(pending), self.timeout)
        except TimeoutError:
            waited = time.monotonic() - self._started
            return f"no answer after {waited:.1f}s", "unknown"
        except Exception as exc:
            return f"unreachable: {type(exc).__name__}: {first_line(exc)}"[:300], "unknown"
        migrations = {True: "ok", False: "behind: run `mentorbot db upgrade`", None: "unknown"}[
            readiness.current
        ]
        if readiness.write_error is not None:
            return f"writes fail: {readiness.write_error}"[:300], migrations
        return "ok", migrations


def wants_http(app: App, adapters: list[Adapter]) -> bool:
    if app.settings.http == "on":
        return True
    if app.settings.http == "off":
        return False
    return any(a.platform != "console" for a in adapters)


def build_web(app: App, adapters: list[Adapter]) -> web.Application:
    registry = registry_for(app.store)
    database_check = DatabaseCheck(app.store)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks: dict[str, str] = {}
        checks["database"], checks["migrations"] = await database_check()
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
    await web.TCPSite(
        runner, host="0.0.0.0", port=app.settings.port, backlog=LISTEN_BACKLOG
    ).start()
    log.info("listening on port %d", app.settings.port, extra={"port": app.settings.port})
    return runner
