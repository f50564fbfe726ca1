"""The composition root: wires settings, store, course, core, adapters and scheduler.

Nothing is built at import time; ``build`` makes a fresh set of real parts for one run
(tests call it with their own settings), and ``serve`` runs them on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

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
    catalog = CatalogHolder(
        load_catalog_or_raise(settings.content_dir),
        settings.content_dir,
        watch=settings.content_watch,
    )
    store = Store(settings.database_url, secret_key=settings.secret_key)
    if migrate:
        store.upgrade()
    service = MentorService(store, catalog, settings, clock or (lambda: datetime.now(UTC)))
    dispatcher = Dispatcher(store, service)
    engine = Engine(Planner(service), dispatcher)
    return App(settings, store, catalog, service, dispatcher, Hub(service, dispatcher), engine)


def settle_heap() -> None:
    """Collect what start-up left behind, then exempt everything still alive (modules,
    the catalog, the adapters' clients) from later garbage collections.

    A full collection walks every object in the process, and after start-up that is
    hundreds of thousands of them: a pause of 100 ms or more, which lands in whatever
    answers are in flight when it comes. The objects made at start-up live until the
    process ends, so walking them again finds nothing; frozen, they are skipped."""
    gc.collect()
    gc.freeze()


def adapter_names(settings: Settings, names: list[str] | None) -> list[str]:
    """The adapters to run: as asked, else every platform with credentials, else console."""
    wanted = list(names or [])
    if not wanted:
        if settings.has_slack:
            wanted.append("slack")
        if settings.has_discord:
            wanted.append("discord")
        if not wanted:
            wanted = ["console"]
    return wanted


def choose_adapters(app: App, names: list[str] | None) -> list[Adapter]:
    """Build the adapters ``adapter_names`` picks."""
    settings = app.settings
    adapters: list[Adapter] = []
    for name in adapter_names(settings, names):
        if name == "console":
            from adapters.console import ConsoleAdapter

            adapters.append(ConsoleAdapter(files_dir=settings.files_dir))
        elif name == "slack":
            from adapters.slack import SlackAdapter

            # The dispatcher's limiter: the adapter's own Web API calls share its budgets.
            adapters.append(SlackAdapter(settings, app.store, limiter=app.dispatcher.limiter))
        elif name == "discord":
            from adapters.discord import DiscordAdapter

            adapters.append(DiscordAdapter(settings, app.store))
        else:
            raise ValueError(f"unknown adapter {name!r}: use console, slack or discord")
    return adapters


async def serve(app: App, adapters: list[Adapter], *, tick: bool = True) -> None:
    """Run every adapter, the delivery ticker and the HTTP server until an adapter
    finishes (the console at end of input) or SIGTERM/SIGINT arrives; SIGHUP reloads
    the course content. Shutdown stops claiming work, lets in-flight sends finish (or
    gives their rows back to other replicas), and closes the adapters, all within
    MENTORBOT_SHUTDOWN_TIMEOUT."""
    from mentorbot.web import start_web
    from scheduler.ticker import Ticker

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopping.set)
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(
            signal.SIGHUP, lambda: loop.create_task(asyncio.to_thread(app.service.reload_content))
        )

    for adapter in adapters:
        app.dispatcher.adapters[adapter.platform] = adapter
    tasks = [asyncio.create_task(a.start(app.hub), name=f"adapter:{a.platform}") for a in adapters]
    ticker = Ticker(app.engine.tick, app.settings.tick_seconds)
    follower: asyncio.Task[None] | None = None
    if tick:
        ticker.start()
        follower = asyncio.create_task(
            app.engine.follow(app.settings.tick_seconds), name="delivery-alarm"
        )
    web = await start_web(app, adapters)
    settle_heap()
    waiter = asyncio.create_task(stopping.wait(), name="signals")
    try:
        done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter:
                task.result()  # surface an adapter crash
        if stopping.is_set():
            log.info("shutting down")
    finally:
        waiter.cancel()
        try:
            await asyncio.wait_for(
                _shutdown(app, adapters, tasks, ticker, follower), app.settings.shutdown_timeout
            )
        except TimeoutError:
            log.error(
                "shutdown took longer than %ss; exiting anyway", app.settings.shutdown_timeout
            )
        if web is not None:
            await web.cleanup()
        app.store.dispose()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                loop.remove_signal_handler(signum)


async def _shutdown(
    app: App,
    adapters: list[Adapter],
    tasks: list[asyncio.Task[None]],
    ticker: object,
    follower: asyncio.Task[None] | None = None,
) -> None:
    """Stop claiming, let sends on the wire finish, hand back the rest, close adapters.

    Most of MENTORBOT_SHUTDOWN_TIMEOUT goes to the sends on the wire; a send still
    unanswered after that is handed back in the state that makes the next sender ask
    the platform whether it arrived, because closing the adapters cuts it off with its
    outcome unknown."""
    app.dispatcher.stop()  # claim nothing new; sends not yet on the wire are skipped
    ticker.stop()  # type: ignore[attr-defined]
    budget = app.settings.shutdown_timeout * 0.75
    try:
        await asyncio.wait_for(app.engine.drain(), budget)  # sends on the wire finish
    except TimeoutError:
        log.warning("sends still unanswered after %.1fs of shutdown", budget)
    released = await app.dispatcher.release_all()  # the rest go back for another replica
    if released:
        log.info("gave back %d unsent deliveries", released)
    if follower is not None:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    for adapter in adapters:
        with contextlib.suppress(Exception):
            await adapter.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
