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

The pace adapts, because a configured rate is a guess: a workspace whose real limit is
higher waits for nothing, one whose limit is lower collects 429s. Each cell starts at
its configured rate and keeps the rate it learned in its row (shared by replicas, kept
across restarts). While sends keep waiting for a cell and no 429 comes, its rate rises
additively with the time spent busy: quickly (a fifth of the configured rate per
second) until a 429 has shown where the limit is, then slowly (0.3 % of that limit per
second, and a tenth of that within 5 % of it) so the probing above it costs a 429 only
now and then. A 429 cuts the rate of the cells that were busy to ``CUT`` of what it
was, once per burst of 429s, and blocks them for Retry-After (a 429 at the configured
rate, before anything was learned, halves it: the guess was wrong; a 429 at the rate
the last one met, after a quiet stretch, confirms the limit and cuts only 5 %). A
limit may carry a ceiling the rate never passes. Only a 429 cuts: a 5xx or a timeout
says nothing about the pace.

Nothing here is kept per conversation in the process beyond a send's own wait: the
short-lived notes of which cells to leave alone are dropped once their moment passed,
and idle cells are deleted from the table by the retention pass (``prune``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from bot.db import Store
from bot.models import RateBucket

log = logging.getLogger(__name__)

HORIZON = 1.0  # seconds ahead a send may book its slot
ROUNDING = 1e-6  # epoch seconds as floats round at about 0.2 µs
IDLE_AFTER = 60.0  # past its window by this long, a cell that learned nothing is no cell
LEARNED_KEPT = 7 * 86400.0  # a cell that learned a pace keeps it this long unused
PRUNE_BATCH = 500  # cells deleted per transaction by the retention pass

RAISE = 0.2  # before any 429: rate gained per busy second, as a share of the configured rate
PROBE = 0.003  # after one: rate gained per busy second, as a share of the rate that met it
FORGET_PEAK = 1.1  # past this multiple of that rate, the limit has moved: raise quickly again
CUT = 0.8  # a 429 multiplies the rate by this
# A 429 that comes at the rate the last one met (within CONFIRM of it), after a quiet
# stretch of CONFIRM_AFTER seconds, confirms where the limit is: the rate is cut only
# to CUT_NEAR of itself, and within SETTLE of that limit the probing slows to
# PROBE_NEAR, so a workspace at its limit meets a 429 every few minutes, not every few
# dozen seconds, and spends most of the time near the limit rather than below it.
CONFIRM = 0.1
CONFIRM_AFTER = 20.0
CUT_NEAR = 0.95
SETTLE = 0.95
PROBE_NEAR = 0.0003
CUT_GUESS = 0.5  # ... or by this when it came at the configured rate, never raised nor cut
FLOOR = 0.05  # the rate never falls below this share of the configured rate
BUSY_GAP = 1.0  # busy sends further apart than this do not add up to a busy stretch
CUT_GAP = 1.0  # 429s within this of a cut are the same burst: one cut
BLAME_RECENT = 2.0  # a 429 is blamed on the cells busy within this many seconds


@dataclass(frozen=True)
class Limit:
    """A platform limit: ``per_second`` is where its pace starts, ``ceiling`` (if any)
    the rate the learned pace never passes.

    ``exact`` marks a limit the platform names when it is met, such as a Slack Web API
    method's own rate tier (a 429 from ``conversations.open`` is about that method's
    budget and nothing else): a 429 scoped to it is blamed on it alone, however busy
    the other cells of the send were, and a 429 scoped elsewhere is never blamed on it."""

    key: str
    per_second: float
    burst: int = 1
    ceiling: float | None = None
    exact: bool = False

    @property
    def interval(self) -> float:
        return 1.0 / self.per_second

    @property
    def tolerance(self) -> float:
        """How far ahead of schedule a send may go: (burst - 1) intervals."""
        return (max(1, self.burst) - 1) * self.interval

    def bounded(self, rate: float) -> float:
        """``rate`` kept between the floor and the ceiling."""
        rate = max(rate, self.per_second * FLOOR)
        return min(rate, self.ceiling) if self.ceiling else rate

    def at(self, rate: float) -> Limit:
        """This limit paced at a learned ``rate`` (0: not learned, the configured one)."""
        paced = self.bounded(rate) if rate > 0 else self.bounded(self.per_second)
        return Limit(self.key, paced, self.burst, self.ceiling, self.exact)


@dataclass
class Cell:
    """A ``rate_bucket`` row as the booking transaction reads and changes it."""

    tat: float = 0.0
    blocked_until: float = 0.0
    rate: float = 0.0
    peak: float = 0.0
    busy_at: float = 0.0
    cut_at: float = 0.0

    def raise_for(self, limit: Limit, now: float) -> None:
        """A send had to wait for this cell at ``now``: the pace may go up by the
        time the cell has been busy since its last such send (none after an idle
        spell, a block or a cut)."""
        since = max(self.busy_at, self.blocked_until, self.cut_at)
        gap = now - since
        self.busy_at = max(self.busy_at, now)
        if not 0 < gap <= BUSY_GAP:
            return
        rate = limit.at(self.rate).per_second
        if self.peak and rate > self.peak * FORGET_PEAK:
            self.peak = 0.0  # the limit rose: find it again quickly
        if not self.peak:
            step = RAISE * limit.per_second
        elif rate >= SETTLE * self.peak:
            step = PROBE_NEAR * self.peak
        else:
            step = PROBE * self.peak
        self.rate = limit.bounded(rate + step * gap)

    def cut(self, limit: Limit, now: float) -> bool:
        """A 429 blamed on this cell: cut its rate, once per burst of 429s."""
        if now - self.cut_at < CUT_GAP:
            return False
        rate = limit.at(self.rate).per_second
        # At the configured rate (or within a second's rise of it), before any 429, a
        # 429 says the guess is wrong, by how much nobody knows: halve it, as TCP
        # does, rather than pay for several cuts. After a ramp-up the limit is near.
        guess = not self.peak and rate <= limit.per_second * (1 + RAISE)
        confirmed = (
            self.peak > 0
            and abs(rate - self.peak) <= CONFIRM * self.peak
            and now - self.cut_at >= CONFIRM_AFTER
        )
        self.peak = rate
        factor = CUT_GUESS if guess else CUT_NEAR if confirmed else CUT
        self.rate = limit.bounded(rate * factor)
        self.cut_at = now
        return True


COLUMNS = ("tat", "blocked_until", "rate", "peak", "busy_at", "cut_at")


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


def _lock_cells(session: Session, keys: list[str]) -> dict[str, Cell]:
    """The cells for ``keys`` (created if missing), locked until the transaction ends."""
    table = RateBucket.__table__  # type: ignore[attr-defined]
    postgres = session.get_bind().dialect.name == "postgresql"

    def read() -> dict[str, Cell]:
        query = (
            sa.select(table.c.key, *(table.c[name] for name in COLUMNS))
            .where(table.c.key.in_(keys))
            .order_by(table.c.key)
        )
        if postgres:
            query = query.with_for_update()
        return {row[0]: Cell(*row[1:]) for row in session.execute(query)}

    cells = read()
    if len(cells) < len(keys):
        insert = pg_insert if postgres else sqlite_insert
        missing = [{"key": k, "tat": 0.0, "blocked_until": 0.0} for k in keys if k not in cells]
        session.execute(  # one statement whatever the count, so one compiled form
            insert(table).on_conflict_do_nothing(index_elements=["key"]), missing
        )
        cells = read()
    return cells


def _write_cells(session: Session, cells: dict[str, Cell], keys: set[str]) -> None:
    """Store ``keys``' cells, in one round trip."""
    if not keys:
        return
    table = RateBucket.__table__  # type: ignore[attr-defined]
    session.execute(
        sa.update(table)
        .where(table.c.key == sa.bindparam("cell"))
        .values({name: sa.bindparam(f"new_{name}") for name in COLUMNS}),
        [
            {"cell": key, **{f"new_{name}": getattr(cells[key], name) for name in COLUMNS}}
            for key in sorted(keys)
        ],
    )


def book_many(
    session: Session, requests: list[list[Limit]], now: float | None = None
) -> list[Booking]:
    """Book a slot for several sends in one transaction, in order. Each draws one send
    from every limit in its list (a key listed twice draws twice), all or nothing.
    ``now`` (epoch seconds) is for tests; by default the database's clock, read once
    the cells are locked. Each cell is paced at the rate it has learned, and a cell a
    send had to wait for raises that rate for the sends after this transaction."""
    configured = {limit.key: limit for limits in requests for limit in limits}
    cells = _lock_cells(session, sorted(configured))
    now = _now(session) if now is None else now
    by_key = {key: limit.at(cells[key].rate) for key, limit in configured.items()}
    tats = {key: cell.tat for key, cell in cells.items()}
    moved: set[str] = set()
    busy: set[str] = set()
    bookings: list[Booking] = []
    for limits in requests:
        draws = Counter(limit.key for limit in limits)
        at, after = now, {}
        while True:  # the first instant every cell allows, found by raising it
            slots = {
                key: gcra(by_key[key], n, tats[key], cells[key].blocked_until, at)
                for key, n in draws.items()
            }
            latest = max(slot for slot, _ in slots.values())
            after = {key: tat for key, (_, tat) in slots.items()}
            if latest <= at:
                break
            at = latest
        # Each cell on its own could allow the send at ``own[key]``.
        own = {
            key: gcra(by_key[key], n, tats[key], cells[key].blocked_until, now)[0]
            for key, n in draws.items()
        }
        busy.update(key for key, t in own.items() if t > now + ROUNDING)
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
    for key in moved:
        cells[key].tat = tats[key]
    for key in busy:
        cells[key].raise_for(configured[key], now)
    _write_cells(session, cells, moved | busy)
    return bookings


def book(session: Session, limits: list[Limit], now: float | None = None) -> Booking:
    """``book_many`` for one send."""
    return book_many(session, [limits], now)[0]


def block(
    session: Session,
    limits: list[Limit],
    seconds: float,
    now: float | None = None,
    scope: str | None = None,
) -> dict[str, float]:
    """After a 429: cut the pace of the cells to blame and send nothing from them for
    ``seconds`` (Retry-After); their schedule restarts from then without the burst
    allowance, so the end of the wait is not a burst. Returns the blamed cells' rates.

    A platform does not always say which limit a 429 is about (Slack's
    ``chat.postMessage`` has one per conversation and one per workspace), so the blame
    goes to the cells that were busy (sends had to wait for them) just before; if none
    was, to ``scope``, else to all of them. A 429 for a learner's first message in a
    while is the workspace's doing, not their conversation's. A 429 whose ``scope`` is
    an exact limit (see ``Limit``) is that limit's alone, and exact limits take no
    blame for another's."""
    configured = {limit.key: limit for limit in limits}
    keys = sorted(configured)
    cells = _lock_cells(session, keys)
    now = _now(session) if now is None else now
    until = now + max(0.0, seconds)
    if scope in configured and configured[scope].exact:
        blamed = [scope]
    else:
        suspects = [key for key in keys if not configured[key].exact] or keys
        blamed = [key for key in suspects if cells[key].busy_at >= now - BLAME_RECENT]
        if not blamed:
            blamed = [scope] if scope in configured else suspects
    rates: dict[str, float] = {}
    for key in blamed:
        cell, limit = cells[key], configured[key]
        if cell.cut(limit, now):
            log.info(
                "rate limit %s: a 429 cut the pace to %.2f/s (it met the limit at %.2f/s)",
                key,
                cell.rate,
                cell.peak,
            )
        paced = limit.at(cell.rate)
        cell.tat = max(cell.tat, until + paced.tolerance)
        cell.blocked_until = max(cell.blocked_until, until)
        rates[key] = paced.per_second
    _write_cells(session, cells, set(blamed))
    return rates


def learned(session: Session, limit: Limit) -> float:
    """The rate ``limit`` paces at now: learned, else configured."""
    table = RateBucket.__table__  # type: ignore[attr-defined]
    rate = session.execute(
        sa.select(table.c.rate).where(table.c.key == limit.key)
    ).scalar_one_or_none()
    return limit.at(rate or 0.0).per_second


def _prunable(now: float) -> sa.ColumnElement[bool]:
    """Cells that are as good as no cell: past their window (no send scheduled, no
    429's wait) by ``IDLE_AFTER``, and either nothing learned (no 429 seen, rate never
    moved) or unused for ``LEARNED_KEPT``, so a workspace's pace survives a night."""
    table = RateBucket.__table__  # type: ignore[attr-defined]
    idle = now - IDLE_AFTER
    forgotten = now - LEARNED_KEPT
    return sa.and_(
        table.c.tat < idle,
        table.c.blocked_until < idle,
        sa.or_(
            sa.and_(table.c.rate == 0, table.c.peak == 0),
            sa.and_(table.c.tat < forgotten, table.c.blocked_until < forgotten),
        ),
    )


def prune(session: Session, now: float | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete up to ``batch`` cells that are as good as no cell (see ``_prunable``);
    the retention pass calls it until fewer come back, each call its own short
    transaction, so the table holds the conversations in use, not every one ever."""
    table = RateBucket.__table__  # type: ignore[attr-defined]
    now = _now(session) if now is None else now
    keys = list(
        session.execute(
            sa.select(table.c.key).where(_prunable(now)).order_by(table.c.key).limit(batch)
        ).scalars()
    )
    if not keys:
        return 0
    # Checked again under the delete's own lock: a send may have booked one meanwhile.
    result = session.execute(sa.delete(table).where(table.c.key.in_(keys), _prunable(now)))
    return int(result.rowcount or 0)


class RateLimiter:
    """The budgets of every limit, kept in the database and shared by all replicas.

    The process keeps only short-lived notes per cell: until when there is no slot to
    ask for (``_ask_at``) and when this process last saw a 429 for it (``_blocked_at``,
    so a send that booked its slot before the 429 asks again instead of going out into
    it). Both are dropped once they no longer matter, so a process that wrote to a
    hundred thousand conversations holds no more than one that wrote to ten."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._clock = time.monotonic
        self._ask_at: dict[str, float] = {}  # per key: no slot to book before then
        self._blocked_at: dict[str, float] = {}  # per key: when a 429 last blocked it here
        self._queue: list[tuple[list[Limit], asyncio.Future[Booking]]] = []
        self._booker: asyncio.Task[None] | None = None

    def notes(self) -> int:
        """How many per-cell notes the process holds (for tests and the memory bench)."""
        return len(self._ask_at) + len(self._blocked_at)

    async def acquire(self, limits: list[Limit], urgent: bool = False) -> None:
        """Wait until a send is allowed under every limit, then count it against each.
        An ``urgent`` send (what a learner just asked for) is booked ahead of the sends
        waiting with it, so it takes the next free slot rather than queueing behind a
        fan-out."""
        if not limits:
            return
        keys = sorted({limit.key for limit in limits})
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock()
            wait = max(self._ask_at.get(key, 0.0) - now for key in keys)
            if wait <= 0:
                booked: asyncio.Future[Booking] = loop.create_future()
                if urgent:
                    self._queue.insert(0, (limits, booked))
                else:
                    self._queue.append((limits, booked))
                if self._booker is None or self._booker.done():
                    self._booker = asyncio.create_task(self._book_queued())
                booking = await booked
                if booking.send_in is not None:
                    if booking.send_in > 0:
                        await asyncio.sleep(booking.send_in)
                    if not self._blocked_since(keys, now):
                        return
                    continue  # a 429 came while it waited: its slot is void, ask again
                wait = booking.ask_in
                for key, seconds in (booking.full or {}).items():
                    self._ask_at[key] = max(self._ask_at.get(key, 0.0), self._clock() + seconds)
            await asyncio.sleep(wait)

    def _blocked_since(self, keys: list[str], since: float) -> bool:
        return any(self._blocked_at.get(key, -1.0) >= since for key in keys)

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
            self._forget_past()

    async def block(self, limits: list[Limit], seconds: float, scope: str | None = None) -> None:
        """A 429 said to wait ``seconds``: every process stops drawing from the cells to
        blame (see ``block``), and their pace is cut."""
        if not limits:
            return
        blamed = await asyncio.to_thread(
            self.store.run, lambda s: block(s, limits, seconds, scope=scope)
        )
        now = self._clock()
        until = now + max(0.0, seconds - HORIZON)
        for key in blamed:
            self._ask_at[key] = max(self._ask_at.get(key, 0.0), until)
            self._blocked_at[key] = now
        self._forget_past()

    def _forget_past(self) -> None:
        """Drop notes that no longer hold anything back: an ``_ask_at`` moment that has
        passed, a 429 older than any slot a waiting send could have booked before it."""
        now = self._clock()
        for key in [k for k, t in self._ask_at.items() if t <= now]:
            del self._ask_at[key]
        stale = now - 2 * HORIZON
        for key in [k for k, t in self._blocked_at.items() if t < stale]:
            del self._blocked_at[key]
