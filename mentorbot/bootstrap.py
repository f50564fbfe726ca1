"""The composition root: wires settings, store, course, core, adapters and scheduler.

Nothing is built at import time; ``build`` makes a fresh set of real parts for one run
(tests call it with their own settings), and ``serve`` runs them on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from bot.config import Settings
from bot.course import load_catalog_or_raise
from bot.db import Store
from bot.dispatch import Dispatcher, Engine
from bot.hub import Hub
from bot.planner import Planner
from bot.ports import Adapter
from bot.service import CatalogHolder, MentorService

log = logging.getLogger("mentorbot")


@dataclass
class App:
    settings: Settings
    store: Store
    catalog: CatalogHolder
    service: MentorService
    dispatcher: Dispatcher
    hub: Hub
    engine: Engine


def build(
    settings: Settings,
    *,
    migrate: bool = True,
    clock: Callable[[], datetime] | None = None,
) -> App:
    """Load content (raises ContentError when invalid), open the store, migrate it."""
    catalog = CatalogHolder(load_catalog_or_raise(settings.content_dir))
    store = Store(settings.database_url)
    if migrate:
        store.upgrade()
    service = MentorService(store, catalog, settings, clock or (lambda: datetime.now(UTC)))
    dispatcher = Dispatcher(store, service)
    engine = Engine(Planner(service), dispatcher)
    return App(settings, store, catalog, service, dispatcher, Hub(service, dispatcher), engine)


def choose_adapters(app: App, names: list[str] | None) -> list[Adapter]:
    """The adapters to run: as asked, else every platform with credentials, else console."""
    settings = app.settings
    wanted = names or []
    if not wanted:
        if settings.has_slack:
            wanted.append("slack")
        if settings.has_discord:
            wanted.append("discord")
        if not wanted:
            wanted = ["console"]
    adapters: list[Adapter] = []
    for name in wanted:
        if name == "console":
            from adapters.console import ConsoleAdapter

            adapters.append(ConsoleAdapter())
        elif name == "slack":
            from adapters.slack import SlackAdapter

            adapters.append(SlackAdapter(settings, app.store))
        elif name == "discord":
            from adapters.discord import DiscordAdapter

            adapters.append(DiscordAdapter(settings, app.store))
        else:
            raise ValueError(f"unknown adapter {name!r}: use console, slack or discord")
    return adapters


async def serve(app: App, adapters: list[Adapter], *, tick: bool = True) -> None:
    """Run every adapter and the delivery ticker until an adapter finishes (the console
    at end of input) or we are cancelled."""
    from scheduler.ticker import Ticker

    for adapter in adapters:
        app.dispatcher.adapters[adapter.platform] = adapter
    tasks = [asyncio.create_task(a.start(app.hub), name=f"adapter:{a.platform}") for a in adapters]
    ticker = Ticker(app.engine.tick, app.settings.tick_seconds)
    if tick:
        ticker.start()
    web = await start_web(app, adapters)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # surface an adapter crash
    finally:
        if web is not None:
            await web.cleanup()
        ticker.stop()
        await app.dispatcher.release_all()
        for adapter in adapters:
            with contextlib.suppress(Exception):
                await adapter.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        app.store.dispose()


async def start_web(app: App, adapters: list[Adapter]) -> web.AppRunner | None:
    """One HTTP server on PORT for every adapter that serves routes (Slack's events,
    OAuth); none when no adapter needs one."""
    routes: list[web.RouteDef] = []
    for adapter in adapters:
        routes.extend(getattr(adapter, "routes", list)())
    if not routes:
        return None
    application = web.Application()
    application.add_routes(routes)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, host="0.0.0.0", port=app.settings.port).start()
    log.info("listening on port %d", app.settings.port)
    return runner
