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

from bot.config import Settings
from bot.course import load_catalog_or_raise
from bot.db import Store
from bot.hub import Dispatcher, Hub
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
    return App(settings, store, catalog, service, dispatcher, Hub(service, dispatcher))


def choose_adapters(settings: Settings, names: list[str] | None) -> list[Adapter]:
    """The adapters to run: as asked, else every platform with credentials, else console."""
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
        else:
            raise ValueError(f"the {name} adapter is not available in this version")
    return adapters


async def serve(app: App, adapters: list[Adapter]) -> None:
    """Run every adapter until one finishes (console at end of input) or we are cancelled."""
    for adapter in adapters:
        app.dispatcher.adapters[adapter.platform] = adapter
    tasks = [asyncio.create_task(a.start(app.hub), name=f"adapter:{a.platform}") for a in adapters]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # surface an adapter crash
    finally:
        for adapter in adapters:
            with contextlib.suppress(Exception):
                await adapter.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        app.store.dispose()
