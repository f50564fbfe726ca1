"""The shared rate limiter on the real stores: GCRA cells in the database, booked by two
processes' worth of connections, all-or-nothing across a message's limits, and a 429
that holds every replica back. Time is passed in, so nothing here depends on timing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from bot.db import Store
from bot.ratelimit import HORIZON, Limit, RateLimiter, block, book, gcra, prune

WORKSPACE = Limit("slack:T1", per_second=10.0, burst=5)
CHANNEL = Limit("slack:T1:U1", per_second=1.0, burst=1)


def about(seconds: float) -> object:
    """Epoch seconds as floats round at about 0.2 µs."""
    return pytest.approx(seconds, abs=1e-5)


T0 = 1_000_000_000.0  # an instant long past, in epoch seconds


@pytest.fixture
def stores(store_url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores on one database: two replicas, as far as the database can tell."""
    first = Store(store_url)
    first.upgrade()
    second = Store(store_url)
    yield first, second
    first.dispose()
    second.dispose()


def slots(store: Store, limits: list[Limit], count: int, now: float = T0) -> list[float | None]:
    return [store.run(lambda s: book(s, limits, now=now)).send_in for _ in range(count)]


def test_gcra_allows_the_burst_then_exactly_the_rate() -> None:
    tat, sent = 0.0, []
    for _ in range(7):
        at, tat = gcra(WORKSPACE, 1, tat, 0.0, T0)
        sent.append(at - T0)
    assert sent == [about(x) for x in (0, 0, 0, 0, 0, 0.1, 0.2)]
    # Two draws from a cell with a burst of one: the second one interval later.
    assert gcra(CHANNEL, 2, 0.0, 0.0, T0) == (about(T0 + 1), about(T0 + 2))


def test_two_replicas_book_from_one_budget(stores: tuple[Store, Store]) -> None:
    first, second = stores
    assert slots(first, [WORKSPACE], 3) + slots(second, [WORKSPACE], 3) == [
        about(x) for x in (0, 0, 0, 0, 0, 0.1)
    ]
    assert slots(first, [WORKSPACE], 1) == [about(0.2)]
    # Ten slots ahead is beyond the horizon: nothing is booked, ask again later.
    assert slots(second, [WORKSPACE], 8)[-1] is None


def test_a_message_books_all_of_its_limits_or_none(stores: tuple[Store, Store]) -> None:
    first, second = stores
    slow = Limit("slack:T1:U2", per_second=0.25, burst=1)  # a slot every 4 s
    assert slots(first, [slow, WORKSPACE], 1) == [about(0)]
    # The conversation has no slot within the horizon: the workspace's is not spent.
    booking = second.run(lambda s: book(s, [slow, WORKSPACE], now=T0 + 0.5))
    assert booking.send_in is None and booking.ask_in == about(3.5 - HORIZON)
    assert booking.full == {slow.key: about(3.5 - HORIZON)}
    assert slots(first, [WORKSPACE], 4) == [about(0)] * 4  # the rest of the burst is there
    # A learner whose workspace is busy books the workspace's next slot ahead.
    assert slots(first, [Limit("slack:T1:U9", 1.0), WORKSPACE], 1) == [about(0.1)]
    # Nearer the time the conversation's slot is still half a second off: booking it
    # would hold the whole workspace until then, so the message asks again at its slot.
    booking = second.run(lambda s: book(s, [slow, WORKSPACE], now=T0 + 3.5))
    assert (booking.send_in, booking.ask_in, booking.full) == (None, about(0.5), None)
    assert slots(first, [WORKSPACE], 1, now=T0 + 3.5) == [about(0)]  # the workspace is free
    assert slots(second, [slow, WORKSPACE], 1, now=T0 + 4.0) == [about(0)]


def test_a_429_holds_back_every_replica_and_ends_without_a_burst(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    first.run(lambda s: block(s, [WORKSPACE], 30.0, now=T0))
    booking = second.run(lambda s: book(s, [WORKSPACE], now=T0 + 28.0))
    assert booking.send_in is None and booking.ask_in == about(2.0 - HORIZON)
    assert slots(second, [WORKSPACE], 3, now=T0 + 30.0) == [about(0), about(0.1), about(0.2)]


def test_cells_nobody_used_for_an_hour_are_forgotten(stores: tuple[Store, Store]) -> None:
    first, _ = stores
    assert slots(first, [CHANNEL], 1) == [0.0]  # long ago, by the database's clock
    assert first.run(prune) == 1


def test_acquire_waits_out_a_block_another_replica_set(stores: tuple[Store, Store]) -> None:
    first, second = stores
    fast = Limit("fast", per_second=1000.0, burst=1)

    async def run() -> None:
        await RateLimiter(first).block([fast], 0.05)
        await RateLimiter(second).acquire([fast])

    asyncio.run(run())
    [(tat, blocked_until)] = first.run(
        lambda s: list(s.execute(sa.text("SELECT tat, blocked_until FROM rate_bucket")))
    )
    assert tat >= blocked_until + fast.interval  # the send counted after the block ended
