"""Rate limits keyed by platform scope (a Slack channel, a workspace, Discord's global
budget). Adapters say which limits a message draws from; the dispatcher waits here, so
every platform gets the same pacing and the same reaction to a 429.

Each limit is a GCRA ("virtual scheduling") cell: it keeps the theoretical time the next
send is due and moves it on by exactly one interval per send, with no fractions lost.
``burst`` is how many sends may go back to back; a small one (a few tens of
milliseconds' worth) lets the sender catch up after a late wake-up, so it holds the
configured rate; with a burst of 1 every late wake-up is time lost.

The cells live in the database (``rate_bucket``), not in the process: a platform's
limit is per workspace, not per replica, so every process on one database draws from
the same budget, and a 429 one of them meets holds back all of them. A send books its
slot in one short transaction that locks the message's cells (``FOR UPDATE`` in key
order on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), finds the first instant every
cell allows it, and moves them all on, or none: a send never spends a conversation's
budget while its workspace's is exhausted. A slot less than ``HORIZON`` away is booked
and the sender sleeps until it, so its own transaction's latency never makes it late;
a later one is not booked (the sender asks again nearer the time), nor one that would
hold a cell back for more than one send. Time is the
database server's clock on PostgreSQL, so replicas on several hosts agree on it;
SQLite lives on one host and uses that host's clock.

Within a process, the sends waiting at a moment go to the database together: one
transaction books all of them in arrival order, so a busy fan-out costs about one
transaction per batch of sends, not one per send.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from bot.db import Store
from bot.models import RateBucket

HORIZON = 1.0  # seconds ahead a send may book its slot
ROUNDING = 1e-6  # epoch seconds as floats round at about 0.2 µs
PRUNE_EVERY = 600.0  # seconds between clean-ups of cells nobody used for a while
IDLE_AFTER = 3600.0  # a cell untouched this long is the same as no cell


@dataclass(frozen=True)
class Limit:
    key: str
    per_second: float
    burst: int = 1

    @property
    def interval(self) -> float:
        return 1.0 / self.per_second

    @property
    def tolerance(self) -> float:
        """How far ahead of schedule a send may go: (burst - 1) intervals."""
        return (max(1, self.burst) - 1) * self.interval


def gcra(
    limit: Limit, draws: int, tat: float, blocked_until: float, earliest: float
) -> tuple[float, float]:
    """The first instant at or after ``earliest`` when ``draws`` sends conform to the
    cell one after the other (a key a message draws from twice: Discord's DM channel,
    then the message), and the cell's theoretical arrival time after them."""
    at = max(earliest, blocked_until)
    for _ in range(draws):
        at = max(at, tat - limit.tolerance)
        tat = max(tat, at) + limit.interval
    return at, tat


@dataclass(frozen=True)
class Booking:
    """A send's slot: go ``send_in`` seconds from now; or, with ``send_in`` None, no
    slot within the horizon: ask again in ``ask_in`` seconds. ``full`` names the cells
    that alone have no slot within the horizon, and for how many seconds, so other
    sends from them need not ask either."""

    send_in: float | None
    ask_in: float = 0.0
    full: dict[str, float] | None = None


def _now(session: Session) -> float:
    """Seconds since the epoch on the database's clock (PostgreSQL), else this host's."""
    if session.get_bind().dialect.name == "postgresql":
        return float(
            session.execute(sa.text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one()
        )
    return time.time()


def _lock_cells(session: Session, keys: list[str]) -> dict[str, tuple[float, float]]:
    """The cells for ``keys`` (created if missing), locked until the transaction ends."""
    table = RateBucket.__table__  # type: ignore[attr-defined]
    postgres = session.get_bind().dialect.name == "postgresql"

    def read() -> dict[str, tuple[float, float]]:
        query = (
            sa.select(table.c.key, table.c.tat, table.c.blocked_until)
            .where(table.c.key.in_(keys))
            .order_by(table.c.key)
        )
        if postgres:
            query = query.with_for_update()
        return {key: (tat, blocked) for key, tat, blocked in session.execute(query)}

    cells = read()
    if len(cells) < len(keys):
        insert = pg_insert if postgres else sqlite_insert
        missing = [{"key": k, "tat": 0.0, "blocked_until": 0.0} for k in keys if k not in cells]
        session.execute(
            insert(table).values(missing).on_conflict_do_nothing(index_elements=["key"])
        )
        cells = read()
    return cells


def book_many(
    session: Session, requests: list[list[Limit]], now: float | None = None
) -> list[Booking]:
    """Book a slot for several sends in one transaction, in order. Each draws one send
    from every limit in its list (a key listed twice draws twice), all or nothing.
    ``now`` (epoch seconds) is for tests; by default the database's clock, read once
    the cells are locked."""
    by_key = {limit.key: limit for limits in requests for limit in limits}
    cells = _lock_cells(session, sorted(by_key))
    now = _now(session) if now is None else now
    tats = {key: tat for key, (tat, _) in cells.items()}
    moved: set[str] = set()
    bookings: list[Booking] = []
    for limits in requests:
        draws = Counter(limit.key for limit in limits)
        at, after = now, {}
        while True:  # the first instant every cell allows, found by raising it
            slots = {
                key: gcra(by_key[key], n, tats[key], cells[key][1], at) for key, n in draws.items()
            }
            latest = max(slot for slot, _ in slots.values())
            after = {key: tat for key, (_, tat) in slots.items()}
            if latest <= at:
                break
            at = latest
        # Each cell on its own could allow the send at ``own[key]``.
        own = {
            key: gcra(by_key[key], n, tats[key], cells[key][1], now)[0] for key, n in draws.items()
        }
        if at - now > HORIZON:
            full = {key: t - now - HORIZON for key, t in own.items() if t - now > HORIZON}
            bookings.append(Booking(None, at - now - HORIZON, full))
            continue
        # Booking a later slot moves every cell of the message up to it, and what a cell
        # could have allowed before then is lost. Lose at most one send's worth: a
        # learner's second message, held by their conversation's 1/s, must not hold
        # the workspace for a second; it asks again when its slot comes.
        if any(at - t > by_key[key].interval + ROUNDING for key, t in own.items()):
            bookings.append(Booking(None, at - now))
            continue
        tats.update(after)
        moved.update(after)
        bookings.append(Booking(max(0.0, at - now)))
    if moved:
        table = RateBucket.__table__  # type: ignore[attr-defined]
        session.execute(  # one round trip for every cell moved
            sa.update(table)
            .where(table.c.key == sa.bindparam("cell"))
            .values(tat=sa.bindparam("new_tat")),
            [{"cell": key, "new_tat": tats[key]} for key in sorted(moved)],
        )
    return bookings


def book(session: Session, limits: list[Limit], now: float | None = None) -> Booking:
    """``book_many`` for one send."""
    return book_many(session, [limits], now)[0]


def block(session: Session, limits: list[Limit], seconds: float, now: float | None = None) -> None:
    """After a 429: no send from these cells for ``seconds``, and their schedule restarts
    from then without the burst allowance, so the end of the wait is not a burst."""
    by_key = {limit.key: limit for limit in limits}
    keys = sorted(by_key)
    cells = _lock_cells(session, keys)
    until = (_now(session) if now is None else now) + seconds
    table = RateBucket.__table__  # type: ignore[attr-defined]
    for key in keys:
        tat, blocked_until = cells[key]
        session.execute(
            sa.update(table)
            .where(table.c.key == key)
            .values(
                tat=max(tat, until + by_key[key].tolerance),
                blocked_until=max(blocked_until, until),
            )
        )


def prune(session: Session) -> int:
    """Forget cells nobody used for an hour (a fresh cell behaves the same)."""
    table = RateBucket.__table__  # type: ignore[attr-defined]
    horizon = _now(session) - IDLE_AFTER
    result = session.execute(
        sa.delete(table).where(table.c.tat < horizon, table.c.blocked_until < horizon)
    )
    return int(result.rowcount or 0)


class RateLimiter:
    """The budgets of every limit, kept in the database and shared by all replicas."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._clock = time.monotonic
        self._ask_at: dict[str, float] = {}  # per key: no slot to book before then
        self._queue: list[tuple[list[Limit], asyncio.Future[Booking]]] = []
        self._booker: asyncio.Task[None] | None = None
        self._pruned = self._clock()

    async def acquire(self, limits: list[Limit]) -> None:
        """Wait until a send is allowed under every limit, then count it against each."""
        if not limits:
            return
        keys = sorted({limit.key for limit in limits})
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock()
            wait = max(self._ask_at.get(key, 0.0) - now for key in keys)
            if wait <= 0:
                booked: asyncio.Future[Booking] = loop.create_future()
                self._queue.append((limits, booked))
                if self._booker is None or self._booker.done():
                    self._booker = asyncio.create_task(self._book_queued())
                booking = await booked
                if booking.send_in is not None:
                    if booking.send_in > 0:
                        await asyncio.sleep(booking.send_in)
                    return
                wait = booking.ask_in
                for key, seconds in (booking.full or {}).items():
                    self._ask_at[key] = max(self._ask_at.get(key, 0.0), self._clock() + seconds)
            await asyncio.sleep(wait)

    async def _book_queued(self) -> None:
        """Book every waiting send in one transaction, until none is waiting."""
        while self._queue:
            batch, self._queue = self._queue, []
            requests = [limits for limits, _ in batch]
            try:
                bookings = await asyncio.to_thread(
                    self.store.run, lambda s, requests=requests: book_many(s, requests)
                )
            except Exception as exc:
                for _, booked in batch:
                    if not booked.done():
                        booked.set_exception(exc)
                continue
            for (_, booked), booking in zip(batch, bookings, strict=True):
                if not booked.done():
                    booked.set_result(booking)
            await self._maybe_prune()

    async def block(self, limits: list[Limit], seconds: float) -> None:
        """A 429 said to wait ``seconds``: every process stops drawing from these."""
        if not limits:
            return
        await asyncio.to_thread(self.store.run, lambda s: block(s, limits, seconds))
        until = self._clock() + max(0.0, seconds - HORIZON)
        for limit in limits:
            self._ask_at[limit.key] = max(self._ask_at.get(limit.key, 0.0), until)

    async def _maybe_prune(self) -> None:
        if self._clock() - self._pruned < PRUNE_EVERY:
            return
        self._pruned = self._clock()
        await asyncio.to_thread(self.store.run, prune)
