"""The shared rate limiter on the real stores: GCRA cells in the database, booked by two
processes' worth of connections, all-or-nothing across a message's limits, and a 429
that holds every replica back; the pace each cell learns from waiting sends and 429s,
shared by replicas; idle cells deleted by retention. Time is passed in, so nothing here
depends on timing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from bot.db import Store
from bot.ratelimit import HORIZON, Limit, RateLimiter, block, book, gcra, learned, prune
from bot.retention import prune as retention

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
    # ... and the 429, met at the configured rate, halved its pace, for both of them.
    assert slots(second, [WORKSPACE], 3, now=T0 + 30.0) == [about(0), about(0.2), about(0.4)]


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


# ---------------------------------------------------------------- the learned pace


def fan_out(
    store: Store, limits: list[Limit], start: float, seconds: float, offered: float = 100.0
) -> tuple[float, int]:
    """Offer ``offered`` sends a second for ``seconds`` from ``start``, each booked at
    its instant: the sends booked and the instant after them."""
    booked, now = 0, start
    while now < start + seconds:
        if store.run(lambda s, now=now: book(s, limits, now=now)).send_in is not None:
            booked += 1
        now += 1.0 / offered
    return now, booked


def rate_of(store: Store, limit: Limit) -> float:
    return store.run(lambda s: learned(s, limit))


def test_the_pace_starts_at_the_configured_rate_and_rises_while_sends_wait(
    stores: tuple[Store, Store],
) -> None:
    first, _ = stores
    assert rate_of(first, WORKSPACE) == 10.0  # nothing learned yet
    _, booked = fan_out(first, [WORKSPACE], T0, 5.0)
    # A fifth of the configured rate gained per busy second: 10/s becomes 20/s.
    assert rate_of(first, WORKSPACE) == pytest.approx(20.0, rel=0.05)
    # The slots followed the pace up: about 5 * 15, the burst and a second booked ahead.
    assert 75 <= booked <= 100
    # A lone send now and then waits for nothing and raises nothing.
    for second in range(10, 20):
        slots(first, [WORKSPACE], 1, now=T0 + second)
    assert rate_of(first, WORKSPACE) == pytest.approx(20.0, rel=0.05)


def test_a_ceiling_caps_the_pace() -> None:
    capped = Limit("slack:T1", 10.0, 5, ceiling=12.0)
    assert capped.at(30.0).per_second == 12.0
    assert capped.at(0.0).per_second == 10.0
    assert capped.at(0.01).per_second == 0.5  # never below a twentieth of the start


@pytest.mark.parametrize("retry_after", [0, 1, 30, 120])
def test_a_429_cuts_the_pace_once_and_honours_retry_after(
    stores: tuple[Store, Store], retry_after: int
) -> None:
    first, second = stores
    now, _ = fan_out(first, [WORKSPACE], T0, 5.0)
    before = rate_of(first, WORKSPACE)
    rates = second.run(lambda s: block(s, [WORKSPACE], retry_after, now=now))
    assert rates == {WORKSPACE.key: pytest.approx(before * 0.8)}
    # The other sends of the same burst meet 429s too: one cut, not one per 429.
    second.run(lambda s: block(s, [WORKSPACE], retry_after, now=now + 0.01))
    assert rate_of(first, WORKSPACE) == pytest.approx(before * 0.8)
    if retry_after > HORIZON:
        booking = first.run(lambda s: book(s, [WORKSPACE], now=now + retry_after - HORIZON - 0.5))
        assert booking.send_in is None  # nothing goes before Retry-After is over
    booking = first.run(lambda s: book(s, [WORKSPACE], now=now + retry_after + 0.01))
    assert booking.send_in is not None  # (behind what the fan-out booked ahead, if any)
    # Sends waiting after the wait raise the pace again, from the rate that met the 429
    # onwards only slowly (0.3 % of it per busy second).
    _, _ = fan_out(first, [WORKSPACE], now + retry_after + 0.02, 10.0)
    assert before * 0.8 < rate_of(first, WORKSPACE) <= before * 0.8 + 10 * 0.01 * before + 0.01


def test_a_limit_that_drops_mid_fan_out_is_followed_down(stores: tuple[Store, Store]) -> None:
    """The platform's limit falls from above 20/s to 5/s in the middle of a fan-out: each
    burst of 429s (a second apart at least) cuts the pace until the 429s stop."""
    first, _ = stores
    now, _ = fan_out(first, [WORKSPACE], T0, 5.0)
    hidden, sent, refused = 5.0, 0.0, 0
    allowance = hidden  # the platform's own bucket, one second deep
    last = now
    for _ in range(400):
        booking = first.run(lambda s, now=now: book(s, [WORKSPACE], now=now))
        if booking.send_in is None:
            now += max(booking.ask_in, 0.01)
            continue
        now += booking.send_in
        allowance = min(hidden, allowance + (now - last) * hidden)
        last = now
        if allowance >= 1:
            allowance -= 1
            sent += 1
        else:
            refused += 1
            first.run(lambda s, now=now: block(s, [WORKSPACE], 1.0, now=now))
        now += 0.001
    pace = rate_of(first, WORKSPACE)
    assert pace <= hidden * 1.1  # down to the new limit
    assert refused <= 12  # a handful of cuts, not a 429 for every send
    assert sent >= 400 - refused - 5


def test_two_replicas_ramp_on_one_learned_pace(stores: tuple[Store, Store]) -> None:
    """Replicas share the learned pace: what one learns the other paces by, a 429 one
    meets cuts both, and a new process (a restart) starts from it."""
    first, second = stores
    now = T0
    for _ in range(5):  # turns of half a second each
        now, _ = fan_out(first, [WORKSPACE], now, 0.5)
        now, _ = fan_out(second, [WORKSPACE], now, 0.5)
    shared = rate_of(first, WORKSPACE)
    assert shared == rate_of(second, WORKSPACE) == pytest.approx(20.0, rel=0.05)
    first.run(lambda s: block(s, [WORKSPACE], 1.0, now=now))
    assert rate_of(second, WORKSPACE) == pytest.approx(shared * 0.8)
    restarted = Store(first.url)
    try:
        assert rate_of(restarted, WORKSPACE) == pytest.approx(shared * 0.8)
    finally:
        restarted.dispose()


def test_a_429_is_blamed_on_the_busy_cell(stores: tuple[Store, Store]) -> None:
    """Slack's 429 does not say which limit it meant: a learner's first message in a
    while that meets one during a fan-out is the workspace's doing."""
    first, _ = stores
    now, _ = fan_out(first, [WORKSPACE], T0, 2.0)
    learner = Limit("slack:T1:U7", 1.0)
    first.run(lambda s: book(s, [learner, WORKSPACE], now=now))
    rates = first.run(lambda s: block(s, [learner, WORKSPACE], 1.0, now=now, scope=learner.key))
    assert set(rates) == {WORKSPACE.key}
    assert rate_of(first, learner) == 1.0
    # Nothing busy at all: the cell the platform named takes it.
    quiet = Limit("slack:T2:U1", 1.0)
    rates = first.run(lambda s: block(s, [quiet], 0.0, now=now + 3600, scope=quiet.key))
    assert rates == {quiet.key: 0.5}  # at the configured rate: the guess was wrong, halved


def test_a_429_that_names_its_limit_is_blamed_on_that_limit_alone(
    stores: tuple[Store, Store],
) -> None:
    """A first message that also opens the learner's DM draws from the DM-opening
    method's own budget: a 429 from that method cuts that budget only, however busy
    the workspace was, and the workspace's own 429s never cut it."""
    first, _ = stores
    opening = Limit("slack:T1:api:conversations.open", 50 / 60, burst=3, exact=True)
    learner = Limit("slack:T1:U8", 1.0)
    fan_out(first, [opening], T0, 2.0)  # new learners wait for their DMs to open
    now, _ = fan_out(first, [WORKSPACE], T0, 2.0)  # and the others for the workspace
    rates = first.run(
        lambda s: block(s, [learner, WORKSPACE, opening], 1.0, now=now, scope=opening.key)
    )
    assert set(rates) == {opening.key}
    risen = rate_of(first, WORKSPACE)
    assert risen > 10.0  # the workspace keeps the pace it rose to
    # A 429 about the post itself goes to the busy workspace, never to the method's
    # budget, busy as it is too.
    fan_out(first, [opening], now + 5.0, 2.0)
    now, _ = fan_out(first, [WORKSPACE], now + 5.0, 2.0)
    before = rate_of(first, opening)
    rates = first.run(
        lambda s: block(s, [learner, WORKSPACE, opening], 1.0, now=now, scope=learner.key)
    )
    assert set(rates) == {WORKSPACE.key}
    assert rate_of(first, opening) == before


def test_retention_forgets_idle_cells_in_batches_and_keeps_a_learned_pace(
    stores: tuple[Store, Store],
) -> None:
    first, _ = stores
    for n in range(7):
        slots(first, [Limit(f"slack:T1:U{n}", 1.0)], 1)
    fan_out(first, [WORKSPACE], T0, 3.0)  # learns a pace: kept a week unused
    now = T0 + 3600
    assert first.run(lambda s: prune(s, now=now, batch=3)) == 3
    assert first.run(lambda s: prune(s, now=now, batch=3)) == 3
    assert first.run(lambda s: prune(s, now=now, batch=3)) == 1
    assert first.run(lambda s: prune(s, now=now, batch=3)) == 0
    assert rate_of(first, WORKSPACE) > 10.0
    assert first.run(lambda s: prune(s, now=T0 + 8 * 86400)) == 1


def test_a_process_keeps_no_note_per_conversation(stores: tuple[Store, Store]) -> None:
    first, _ = stores
    limiter = RateLimiter(first)

    async def run() -> None:
        for n in range(300):
            await limiter.acquire([Limit(f"slack:T1:U{n}", 1000.0), Limit("slack:T1", 1e6, 50)])
        await limiter.block([Limit("slack:T1:U1", 1000.0)], 0.0, scope="slack:T1:U1")

    asyncio.run(run())
    assert limiter.notes() <= 2


def test_the_retention_pass_deletes_idle_cells_in_small_batches(
    stores: tuple[Store, Store],
) -> None:
    first, _ = stores
    for n in range(5):
        slots(first, [Limit(f"slack:T1:U{n}", 1.0)], 1)  # long ago, by the database's clock
    result = retention(first, datetime.now(UTC), 90, batch=2)
    assert result.cells == 5
    assert "forgot 5 idle rate-limit cells" in str(result)
    assert first.run(lambda s: s.execute(sa.text("SELECT COUNT(*) FROM rate_bucket")).scalar()) == 0


def test_a_429_at_the_limit_found_before_confirms_it_and_cuts_gently() -> None:
    from bot.ratelimit import CUT, CUT_NEAR, PROBE, PROBE_NEAR, Cell

    limit = Limit("slack:T1", 10.0, burst=5)
    cell = Cell(rate=13.0)
    assert cell.cut(limit, now=100.0)  # the first 429 after a ramp-up: found the limit
    assert cell.rate == pytest.approx(13.0 * CUT) and cell.peak == 13.0
    # Soon after, another 429 at about that rate: still over it (the limit moved down).
    cell.rate = 12.5
    assert cell.cut(limit, now=105.0)
    assert cell.rate == pytest.approx(12.5 * CUT)
    # Long after, a 429 at about the rate the last one met: the limit is confirmed.
    cell.rate = 12.4
    assert cell.cut(limit, now=200.0)
    assert cell.rate == pytest.approx(12.4 * CUT_NEAR)
    # Near the limit the probing is slow; further below it, quicker.
    near = Cell(rate=11.5, peak=11.9, busy_at=300.0, cut_at=0.0)
    near.raise_for(limit, now=301.0)
    assert near.rate == pytest.approx(11.5 + PROBE_NEAR * 11.9)
    below = Cell(rate=9.0, peak=11.9, busy_at=300.0, cut_at=0.0)
    below.raise_for(limit, now=301.0)
    assert below.rate == pytest.approx(9.0 + PROBE * 11.9)
