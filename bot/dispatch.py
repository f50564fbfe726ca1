"""Sending outbox rows: claim, render, pace, send, record; and what to do when it fails.

The rules, the same for every platform:
- a 429 blocks the adapter's rate-limit buckets for ``Retry-After`` and puts the row
  back without counting an attempt;
- a 5xx or network error retries with exponential backoff and jitter, up to
  ``max_attempts``, then the row is failed with the reason;
- a permanent error (user gone, DMs blocked) fails the row at once;
- a row left ``sending`` by a process that died has an unknown outcome: the adapter is
  asked whether the message arrived (``find_delivered``); if it cannot tell, the row is
  sent again with the same idempotency key, which platforms that support one dedupe.
  The same goes for a row whose send failed in a way that may have delivered it (a
  timeout, a dropped connection), and for a row whose send was still on the wire when
  the process stopped: each is handed back ``sending`` with no owner, never ``pending``,
  so even another process or a restart checks before sending again;
- a process knows its own dead: rows held by an earlier process on the same host whose
  pid is gone (a restart after a crash) are taken over at once, not when the lease ends.

Planning and sending are two loops that never wait for each other. The sender keeps
one queue per workspace in memory, fed from the outbox round-robin across workspaces
(``claim_fair``): a workspace held back by its rate limit, a 429 or a slow API holds
only its own queue, so another workspace's ten lessons leave in seconds while a
10,000-learner morning is under way. Each loop sleeps until the earliest instant it has
work (a lesson, a reminder, a retry after a 429), and the scheduler's tick is only the
safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import Session

from bot import metrics
from bot.db import Store
from bot.logcontext import bound
from bot.messages import OutgoingMessage, SendResult
from bot.models import Delivery, Learner
from bot.outbox import (
    cancel,
    claim,
    claim_expired,
    claim_fair,
    fail_workspace_queue,
    lanes_of,
    lease_owners,
    mark_failed,
    mark_sent,
    next_due,
    release,
    release_owned,
    renew_leases,
)
from bot.planner import Planner
from bot.ports import Adapter, PermanentSendError, RateLimited, SendError, TemporarySendError
from bot.ratelimit import Limit, RateLimiter
from bot.rendering import Rendered
from bot.schedule import reminder_time
from bot.service import MentorService

log = logging.getLogger(__name__)


MIN_WAKE_GAP = 0.25  # seconds between passes the alarm starts, whatever is due
# While a workspace's queue is full, rows of other workspaces that fall due later
# (retries) are found by looking again this often.
FULL_LOOK_AGAIN = 1.0
LANE_SECONDS = 2.0  # a workspace's queue holds about this many seconds of its sends


def process_identity() -> str:
    """``host:pid:boot``: the host and pid let a later process on the same host tell
    that this one is gone; the boot id tells two lives of one pid apart (a container's
    process is pid 1 every time it starts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    with contextlib.suppress(OSError, IndexError):
        # A killed process its parent has not reaped yet still has its pid: a zombie.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


def owner_is_gone(owner: str, me: str) -> bool:
    """Whether the process named ``owner`` has certainly ended, as far as ``me`` can
    tell: only a process on the same host can be checked (its pid is gone, or it is
    ``me``'s own pid in an earlier life). Elsewhere, only its lease running out says so."""
    if owner == me:
        return False
    theirs, mine = owner.split(":"), me.split(":")
    if len(theirs) < 2 or len(mine) < 2 or theirs[0] != mine[0]:
        return False
    try:
        pid, my_pid = int(theirs[1]), int(mine[1])
    except ValueError:
        return False
    return pid == my_pid or not _pid_alive(pid)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 2.0
    cap_seconds: float = 300.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: never zero, never in lock-step."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    rate_limited: int = 0
    failed: int = 0
    cancelled: int = 0
    recovered: int = 0


@dataclass
class _Lane:
    """One workspace's queue in this process: claimed rows in the order they were
    claimed (each with its rendering and whether it was taken over unsure), and how
    many of its senders run."""

    waiting: deque[tuple[int, Rendered, bool]] = field(default_factory=deque)
    senders: int = 0
    finished: deque[float] = field(default_factory=lambda: deque(maxlen=1000))  # monotonic
    asked: bool = False  # the claimer was told this queue has room

    def depth(self, least: int, most: int) -> int:
        """How many rows this queue should hold: LANE_SECONDS of its recent pace."""
        since = time.monotonic() - LANE_SECONDS
        recent = 0
        for at in reversed(self.finished):
            if at < since or recent >= most:
                break
            recent += 1
        return max(least, recent)


@dataclass
class Dispatcher:
    store: Store
    service: MentorService
    adapters: dict[str, Adapter] = field(default_factory=dict)
    owner: str = field(default_factory=process_identity)
    lease: timedelta = timedelta(minutes=2)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 16  # sends on the wire at once, per workspace
    batch: int = 200  # rows claimed at most per claim
    # Claimed rows a workspace's queue holds, waiting: about LANE_SECONDS of its recent
    # pace, at least this many and at most ``batch``. Short, so a reminder that falls
    # due mid fan-out is next in line within seconds; long enough that a fast
    # workspace costs one claim per many sends.
    lane_depth: int = 32
    limiter: RateLimiter | None = None  # shared budgets in ``store``
    stats: DispatchStats = field(default_factory=DispatchStats)
    wakeups: int = 0  # times the sending loop woke because a row fell due
    accepting: bool = True
    # Told whenever the outbox gains work for later (a retry), so the engine can wake.
    wake: Callable[[], None] = field(default=lambda: None, repr=False)
    _marks: list[
        tuple[int, datetime, SendResult, Rendered, datetime | None, asyncio.Future[None]]
    ] = field(default_factory=list, repr=False)
    _flusher: asyncio.Task[None] | None = field(default=None, repr=False)
    # Rows this process holds whose message may have reached the platform: taken over
    # unsure, or handed to the adapter and not yet recorded.
    _maybe_out: set[int] = field(default_factory=set, repr=False)
    _sending: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _stopped: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = field(
        default=None, repr=False
    )
    # Per workspace (its id): claimed rows waiting to be sent, and how many sends of it
    # are under way. Filled by the claims, drained by each workspace's own senders.
    _lanes: dict[int, _Lane] = field(default_factory=dict, repr=False)
    # Set when the sender should look at the outbox again: work was queued, a queue
    # has room again, or the dispatcher stops. One per event loop (tests run several).
    _alarm: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(self.store)

    def _now(self) -> datetime:
        return self.service.clock()  # one clock for planning and sending

    async def _db(self, work):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(self.store.run, work)

    def _stop_event(self) -> asyncio.Event:
        """Set once the dispatcher stops; one per event loop (tests run several)."""
        loop = asyncio.get_running_loop()
        if self._stopped is None or self._stopped[0] is not loop:
            self._stopped = (loop, asyncio.Event())
        event = self._stopped[1]
        if not self.accepting:
            event.set()
        return event

    def _alarm_event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._alarm is None or self._alarm[0] is not loop:
            self._alarm = (loop, asyncio.Event())
        return self._alarm[1]

    def poke(self) -> None:
        """The outbox changed (rows queued, a queue has room, a retry was put back):
        the sender looks again. Safe to call from the event loop only."""
        if self._alarm is not None:
            self._alarm[1].set()

    def stop(self) -> None:
        """Claim nothing more, and give up waiting for rate limits: what is not on the
        wire yet is handed back by ``release_all``."""
        self.accepting = False
        if self._stopped is not None:
            self._stopped[1].set()
        self.poke()
        self.wake()

    def in_flight(self) -> set[asyncio.Task[None]]:
        """Sends under way in this process (those of a pass and those of commands)."""
        return {task for task in self._sending if not task.done()}

    # ------------------------------------------------------------------ entry points

    async def send_ids(self, ids: list[int]) -> None:
        """Send rows a command just queued (``next``, ``start``) at once, ahead of any
        fan-out: they skip the workspace's queue and book their rate-limit slot first."""
        if not ids or not self.accepting:
            return
        now = self._now()
        claimed = await self._db(
            lambda s: claim(s, owner=self.owner, now=now, lease=self.lease, ids=ids)
        )
        if claimed:
            async with self._leases_kept():
                await self._send_batch(claimed, asyncio.Semaphore(self.concurrency), urgent=True)

    async def run_once(self) -> int:
        """Send everything due now, through the same queues as ``serve``, and return
        once they are empty; rows that fall due meanwhile (a retry after a 429) are left
        for the next call. Returns rows handled. For one-off passes (tests, ``simulate``,
        a tick when the loops are not running)."""
        started = self._now()
        handled = 0
        alarm = self._alarm_event()
        async with self._leases_kept():
            dead = await self._db(self._dead_owners)
            while self.accepting:
                alarm.clear()
                got, _ = await self._claim_round(due_before=started, dead=dead)
                dead = []
                handled += got
                if got:
                    continue
                if not self._lanes:
                    break
                await alarm.wait()  # a queue has room, or one emptied
            await self._lanes_idle()
        return handled

    async def serve(self, ceiling: float) -> None:
        """The sending loop: keep every workspace's queue fed, until the dispatcher
        stops. Sleeps until the earliest row falls due, or it is poked (rows queued, a
        queue has room), or ``ceiling`` seconds, so work another replica queued for
        later is found even if that replica is gone."""
        alarm = self._alarm_event()
        clock = self.service.clock
        dead_checked = -ceiling
        async with self._leases_kept():
            while self.accepting:
                alarm.clear()
                dead: list[str] = []
                if time.monotonic() - dead_checked >= ceiling:
                    dead_checked = time.monotonic()
                    dead = await self._tracked(self._db(self._dead_owners))
                try:
                    got, full = await self._tracked(self._claim_round(None, dead))
                except Exception:
                    log.exception("could not claim deliveries; trying again shortly")
                    got, full = 0, True
                if got:
                    continue
                if full:
                    wait = FULL_LOOK_AGAIN
                else:
                    try:
                        due = await asyncio.to_thread(self.store.run, next_due)
                    except Exception:
                        log.exception("could not read when a delivery is next due")
                        due = None
                    wait = ceiling if due is None else (due - clock()).total_seconds()
                    wait = min(ceiling, max(wait, MIN_WAKE_GAP))
                try:
                    await asyncio.wait_for(alarm.wait(), wait)
                except TimeoutError:
                    if not full and due is not None and clock() >= due:
                        self.wakeups += 1

    async def _tracked(self, work):  # type: ignore[no-untyped-def]
        """Run ``work`` as a task shutdown waits for (a claim must land in a queue,
        where ``release_all`` finds it, before the process lets go of its rows)."""
        task = asyncio.ensure_future(work)
        self._sending.add(task)
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._sending.discard(task)
            else:
                task.add_done_callback(self._sending.discard)

    async def _claim_round(self, due_before: datetime | None, dead: list[str]) -> tuple[int, bool]:
        """Claim rows for every workspace whose queue has room, render them, and hand
        them to their queues. Returns (rows claimed, whether some queue was full and
        left out)."""
        if not self.accepting:
            return 0, False
        for key in list(self._lanes):
            self._feed(key)  # a queue whose senders let go (an error) starts again
        depths = {key: lane.depth(self.lane_depth, self.batch) for key, lane in self._lanes.items()}
        room = {key: depths[key] - len(lane.waiting) for key, lane in self._lanes.items()}
        full = [key for key, lane in self._lanes.items() if len(lane.waiting) > depths[key] // 2]

        def work(session: Session) -> tuple[dict[int, int], dict[int, int]]:
            now = self._now()
            expired = claim_expired(
                session,
                owner=self.owner,
                now=now,
                lease=self.lease,
                limit=self.batch,
                dead_owners=dead,
            )
            fresh = claim_fair(
                session,
                owner=self.owner,
                now=now,
                lease=self.lease,
                limit=self.batch,
                room=room,
                default_room=self.lane_depth,
                skip_lanes=full,
                due_before=due_before,
            )
            return lanes_of(session, expired), fresh

        expired, fresh = await self._db(work)
        if expired and dead:
            log.info("took over %d deliveries of a process that ended", len(expired))
        if expired:
            self._maybe_out.update(expired)
        ids = [*expired, *fresh]
        if not ids:
            return 0, bool(full)
        ready = await asyncio.to_thread(self.service.render_many, ids)
        for delivery_id in ids:
            recovering = delivery_id in expired
            key = expired[delivery_id] if recovering else fresh[delivery_id]
            lane = self._lanes.setdefault(key, _Lane())
            lane.waiting.append((delivery_id, ready[delivery_id], recovering))
            lane.asked = False
        for key in {*expired.values(), *fresh.values()}:
            self._feed(key)
        return len(ids), bool(full)

    def _feed(self, key: int) -> None:
        """Start senders for workspace ``key`` up to its concurrency."""
        lane = self._lanes.get(key)
        while lane is not None and lane.waiting and lane.senders < self.concurrency:
            lane.senders += 1
            task = asyncio.create_task(self._drain_lane(key, lane))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _drain_lane(self, key: int, lane: _Lane) -> None:
        """One sender of a workspace: send its queued rows in order until none is left."""
        try:
            while lane.waiting and self.accepting:
                delivery_id, rendered, recovering = lane.waiting.popleft()
                if not lane.asked and (
                    len(lane.waiting) <= lane.depth(self.lane_depth, self.batch) // 2
                ):
                    lane.asked = True
                    self.poke()  # room again: the claimer may fill it
                try:
                    if await self._send_one(delivery_id, rendered, recovering):
                        self._maybe_out.discard(delivery_id)  # its outcome is recorded
                except Exception:
                    # Left "sending" under this process's lease: a later pass checks
                    # with the platform and sends it if it did not arrive.
                    log.exception("sending delivery %s failed unexpectedly", delivery_id)
                lane.finished.append(time.monotonic())
        finally:
            lane.senders -= 1
            if not lane.senders and (not lane.waiting or not self.accepting):
                if self._lanes.get(key) is lane and not lane.waiting:
                    del self._lanes[key]
                self.poke()

    async def _lanes_idle(self) -> None:
        """Wait until every queue is empty and its sends recorded (or the dispatcher
        stopped and its senders let go)."""
        alarm = self._alarm_event()
        while any(lane.senders for lane in self._lanes.values()):
            alarm.clear()
            await alarm.wait()

    def _dead_owners(self, session: Session) -> list[str]:
        """Earlier processes on this host that left rows ``sending`` and are gone."""
        host = self.owner.split(":", 1)[0]
        return [
            owner
            for owner in lease_owners(session, prefix=f"{host}:")
            if owner_is_gone(owner, self.owner)
        ]

    async def release_all(self) -> int:
        """On shutdown: give back every row this process holds. Rows whose message may
        have reached the platform go back in the state that makes the next sender
        check first; the others go back ``pending``. Returns how many."""
        self.stop()
        self._lanes.clear()  # what they held goes back below
        unsure = sorted(self._maybe_out)
        released, checked = await self._db(
            lambda s: release_owned(s, owner=self.owner, now=self._now(), unsure=unsure)
        )
        if checked:
            log.warning(
                "%d deliveries may have reached the platform while stopping; "
                "they will be checked before any resend",
                checked,
            )
        return int(released + checked)

    # ------------------------------------------------------------------ sending

    @contextlib.asynccontextmanager
    async def _leases_kept(self) -> AsyncIterator[None]:
        """While this process sends, renew the leases of the rows it holds, so a slow
        platform never lets another replica take over a row that is still queued here."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease.total_seconds() / 3)
                await self._db(
                    lambda s: renew_leases(s, owner=self.owner, until=self._now() + self.lease)
                )

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _send_batch(
        self, ids: list[int], gate: asyncio.Semaphore, urgent: bool = False
    ) -> None:
        """Send rows outside the workspace queues: what a learner just asked for."""
        ready = await asyncio.to_thread(self.service.render_many, ids)

        async def one(delivery_id: int) -> None:
            async with gate:
                if not self.accepting:
                    return  # stopping: the row is handed back by release_all
                if await self._send_one(delivery_id, ready[delivery_id], False, urgent):
                    self._maybe_out.discard(delivery_id)  # its outcome is recorded

        tasks = [asyncio.create_task(one(i)) for i in ids]
        self._sending.update(tasks)
        try:
            await asyncio.gather(*tasks)
        finally:
            self._sending.difference_update(tasks)

    async def _paced(self, limits: list[Limit], urgent: bool = False) -> bool:
        """Wait for the rate limits; False if the dispatcher stopped meanwhile (nothing
        was sent, so the row can go back as it is)."""
        assert self.limiter is not None
        if not limits:
            return self.accepting
        stopped = self._stop_event()
        acquire = asyncio.ensure_future(self.limiter.acquire(limits, urgent=urgent))
        stopping = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not acquire.done():
                acquire.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
        if acquire.cancelled():
            return False
        acquire.result()
        return self.accepting

    async def _send_one(
        self, delivery_id: int, rendered: Rendered, recovering: bool, urgent: bool = False
    ) -> bool:
        message = rendered.message
        if isinstance(message, OutgoingMessage):
            context = bound(
                delivery=delivery_id,
                kind=rendered.kind,
                platform=message.platform,
                workspace=message.workspace,
                learner=message.user,
            )
        else:
            context = bound(delivery=delivery_id, kind=rendered.kind)
        with context:
            return await self._send_rendered(delivery_id, rendered, recovering, urgent)

    async def _send_rendered(
        self, delivery_id: int, rendered: Rendered, recovering: bool, urgent: bool
    ) -> bool:
        """Send one row and record the outcome; False if it was left as it was (the
        dispatcher stopped before the message left)."""
        if isinstance(rendered.message, str):
            reason = rendered.message
            self.stats.cancelled += 1
            metrics.DELIVERIES.labels(rendered.kind, "cancelled").inc()
            log.info("delivery %s cancelled: %s", delivery_id, reason)
            await self._db(lambda s: cancel(s, delivery_id, reason=reason))
            return True
        message: OutgoingMessage = rendered.message
        adapter = self.adapters.get(message.platform)
        if adapter is None:
            why = f"no {message.platform} adapter is running"
            await self._retry(delivery_id, why, 60.0, maybe_delivered=recovering)
            return True
        if recovering:
            try:
                found = await self._find_delivered(adapter, message)
            except RateLimited as exc:
                why = f"could not check whether it arrived: {exc}"
                await self._retry(delivery_id, why, exc.retry_after, maybe_delivered=True)
                return True
            except TemporarySendError as exc:
                why = f"could not check whether it arrived: {exc}"
                await self._retry(delivery_id, why, maybe_delivered=True)
                return True
            if found is not None:
                self.stats.recovered += 1
                log.info(
                    "delivery %s had reached %s before it was recorded",
                    delivery_id,
                    adapter.platform,
                )
                await self._mark_sent(delivery_id, found, rendered)
                return True
        limits: list[Limit] = list(getattr(adapter, "rate_limits", lambda _m: [])(message))
        if not await self._paced(limits, urgent):
            return False  # stopping before it left: handed back by release_all
        assert self.limiter is not None
        self._maybe_out.add(delivery_id)  # on the wire from here until recorded
        started = time.perf_counter()
        try:
            result = await adapter.send(message)
        except RateLimited as exc:
            metrics.RATE_LIMITED.labels(adapter.platform).inc()
            self.stats.rate_limited += 1
            await self.limiter.block(limits, exc.retry_after, scope=exc.scope)
            when = self._now() + timedelta(seconds=exc.retry_after)
            why = str(exc)
            await self._db(
                lambda s: release(s, delivery_id, retry_at=when, reason=why, count_attempt=False)
            )
            self.poke()
            return True
        except PermanentSendError as exc:
            metrics.DELIVERIES.labels(rendered.kind, "failed").inc()
            await self._permanent(delivery_id, message, exc)
            return True
        except SendError as exc:
            metrics.RETRIES.labels(adapter.platform).inc()
            maybe = isinstance(exc, TemporarySendError) and exc.maybe_delivered
            await self._retry(delivery_id, str(exc), maybe_delivered=maybe)
            return True
        except Exception as exc:  # an adapter bug must not kill the dispatcher
            log.exception("adapter %s crashed sending delivery %s", adapter.platform, delivery_id)
            await self._retry(delivery_id, f"adapter error: {exc!r}", maybe_delivered=True)
            return True
        metrics.SEND_SECONDS.labels(adapter.platform).observe(time.perf_counter() - started)
        metrics.DELIVERIES.labels(rendered.kind, "sent").inc()
        await self._mark_sent(delivery_id, result, rendered)
        return True

    async def _find_delivered(
        self, adapter: Adapter, message: OutgoingMessage
    ) -> SendResult | None:
        finder = getattr(adapter, "find_delivered", None)
        if finder is None:
            return None
        try:
            found: SendResult | None = await finder(message)
            return found
        except (RateLimited, TemporarySendError):
            raise  # ask again later, still unsure: sending now could post it twice
        except Exception:
            # The platform will not say (no permission to read the conversation): send
            # again, which a platform with idempotency keys dedupes.
            log.warning("could not check whether delivery %s arrived", message.delivery_id)
            return None

    async def _mark_sent(self, delivery_id: int, result: SendResult, rendered: Rendered) -> None:
        """Queue the "sent" record; marks that arrive together share one transaction
        (group commit), which is what lets one process keep up with a platform's limit.
        Returns once the record is committed."""
        self.stats.sent += 1
        now = self._now()
        remind_at = None
        if rendered.reminder_schedule is not None:
            after = timedelta(hours=self.service.settings.reminder_after_hours)
            remind_at = reminder_time(rendered.reminder_schedule, now, after)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks.append((delivery_id, now, result, rendered, remind_at, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_marks())
        await done

    async def _flush_marks(self) -> None:
        while self._marks:
            batch, self._marks = self._marks, []

            def work(session: Session, batch=batch) -> None:  # type: ignore[no-untyped-def]
                for delivery_id, now, result, rendered, remind_at, _ in batch:
                    marked = mark_sent(
                        session,
                        delivery_id,
                        now=now,
                        channel=result.channel,
                        message_ids=result.message_ids,
                        remind_at=remind_at,
                    )
                    if marked and rendered.after_sent is not None:
                        rendered.after_sent(session, now)
                    if rendered.kind in ("digest",):
                        continue  # posted in a channel, not the learner's DM
                    if marked and result.channel and result.channel != rendered.dm_channel:
                        learner = session.get(Learner, rendered.learner_id)
                        if learner is not None:
                            learner.dm_channel = result.channel
                            session.add(learner)

            try:
                await self._db(work)
            except Exception as exc:
                # The messages went out; their rows stay "sending" and the recovery
                # pass confirms them with the platform once the lease ends.
                log.exception("could not record %d sent deliveries", len(batch))
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for *_, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _retry(
        self,
        delivery_id: int,
        reason: str,
        after: float | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        def work(session: Session) -> str:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:
                return "gone"
            if delivery.attempts >= self.policy.max_attempts:
                mark_failed(
                    session,
                    delivery_id,
                    reason=f"gave up after {delivery.attempts} attempts: {reason}",
                )
                return "failed"
            wait = after if after is not None else self.policy.delay(delivery.attempts)
            release(
                session,
                delivery_id,
                retry_at=self._now() + timedelta(seconds=wait),
                reason=reason,
                maybe_delivered=maybe_delivered,
            )
            return "retry"

        outcome = await self._db(work)
        self.poke()
        if outcome == "failed":
            self.stats.failed += 1
            log.error("delivery %s failed for good: %s", delivery_id, reason)
        elif outcome == "retry":
            self.stats.retried += 1
            log.warning("delivery %s will be retried: %s", delivery_id, reason)

    async def _permanent(
        self, delivery_id: int, message: OutgoingMessage, exc: PermanentSendError
    ) -> None:
        self.stats.failed += 1
        if exc.workspace_gone:
            await self._workspace_gone(delivery_id, exc)
            return
        log.warning("delivery %s cannot be sent: %s", delivery_id, exc)

        def work(session: Session) -> bool:
            mark_failed(session, delivery_id, reason=str(exc))
            if message.kind == "digest":
                delivery = session.get(Delivery, delivery_id)
                if delivery is not None:
                    self.service.digest_failed(session, delivery, str(exc))
                return False
            return exc.code == "dm_blocked" and self.service.record_dm_blocked(session, delivery_id)

        first_block = await self._db(work)
        notify = getattr(self.adapters.get(message.platform), "notify_dm_blocked", None)
        if first_block and notify is not None:
            try:
                await notify(message)
            except Exception:
                log.warning("could not tell %s that their DMs are closed", message.user)

    async def _workspace_gone(self, delivery_id: int, exc: PermanentSendError) -> None:
        """The workspace's installation is gone: this row and the rest of its queue fail
        now with the platform's reason; other workspaces are not touched."""
        reason = str(exc)
        workspace, failed = await self._db(
            lambda s: fail_workspace_queue(
                s, delivery_id, owner=self.owner, now=self._now(), reason=reason
            )
        )
        if workspace is not None:
            lane = self._lanes.get(workspace)
            if lane is not None:
                lane.waiting.clear()  # failed above with the rest
        log.error(
            "delivery %s and %d more of its workspace failed: %s", delivery_id, failed - 1, reason
        )


@dataclass
class Engine:
    """The delivery engine: a planning loop and a sending loop, side by side.

    While ``follow`` runs, planning runs on its own clock however long sending takes:
    it plans whatever is due (lessons, reminders, follow-ups, digests), hands each
    committed batch to the sender at once, then sleeps until the next instant
    something falls due (a handful of MIN() lookups on indexed columns) or it is woken
    (a command changed a schedule). The sender (``Dispatcher.serve``) drains the
    per-workspace queues. The scheduler's ``tick`` only wakes both: it is the safety
    net. Without ``follow`` (tests, ``simulate``), a tick is one pass: plan, and send
    what is due, through the same claims, queues and sends.
    """

    planner: Planner
    dispatcher: Dispatcher
    ticks: int = 0  # ticks of the scheduler's clock
    plan_wakeups: int = 0  # planning passes started because something fell due
    _passes: set[asyncio.Task[object]] = field(default_factory=set, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _lock: asyncio.Lock | None = field(default=None, repr=False)
    _alarm: asyncio.Event | None = field(default=None, repr=False)
    _following: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.dispatcher.wake = self.wake

    @property
    def wakeups(self) -> int:
        """Times either loop woke because something fell due between ticks."""
        return self.plan_wakeups + self.dispatcher.wakeups

    def _loop_state(self) -> tuple[asyncio.Lock, asyncio.Event]:
        """The pass lock and the planner's alarm, made for the running loop (tests run
        several)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None or self._alarm is None:
            self._loop, self._lock, self._alarm = loop, asyncio.Lock(), asyncio.Event()
        return self._lock, self._alarm

    def wake(self) -> None:
        """Something changed (a command queued work or moved a schedule): both loops
        look again at what is due."""
        if self._alarm is not None:
            self._alarm.set()
        self.dispatcher.poke()

    async def tick(self) -> None:
        """The scheduler's clock: wake the loops, or run one pass when they don't run."""
        if not self.dispatcher.accepting:
            return  # shutting down: no new work
        self.ticks += 1
        if self._following:
            self.wake()
            return
        await self._pass()

    async def drain(self) -> None:
        """Wait for the planning in progress and every send on the wire to finish."""
        me = asyncio.current_task()
        while True:
            busy = {t for t in self._passes if not t.done()} | self.dispatcher.in_flight()
            busy.discard(me)  # type: ignore[arg-type]
            if not busy:
                return
            await asyncio.wait(busy)

    def next_due(self) -> datetime | None:
        """The earliest instant the next pass would find something to do."""

        def read(session: Session) -> datetime | None:
            found = [next_due(session), self.planner.next_due(session)]
            return min((t for t in found if t is not None), default=None)

        return self.dispatcher.store.run(read)

    async def follow(self, ceiling: float) -> None:
        """Run the planning loop and the sending loop until the dispatcher stops. Each
        sleeps at most ``ceiling`` seconds between looks, so work another replica
        queued for later is found even if that replica is gone."""
        self._following = True
        try:
            await asyncio.gather(self._plan_loop(ceiling), self.dispatcher.serve(ceiling))
        finally:
            self._following = False

    async def _plan_loop(self, ceiling: float) -> None:
        _, alarm = self._loop_state()
        clock = self.planner.service.clock
        while self.dispatcher.accepting:
            alarm.clear()
            started = time.monotonic()
            try:
                await self._plan()
            except Exception:
                log.exception("planning failed; the next pass will try again")
            try:
                due = await asyncio.to_thread(self.planner.store.run, self.planner.next_due)
            except Exception:
                log.exception("could not read when work is next due; the tick will go on")
                due = None
            wait = ceiling if due is None else min(ceiling, (due - clock()).total_seconds())
            # Something due that a pass could not take (another replica holds it) must
            # not turn this into a busy loop.
            wait = max(wait, MIN_WAKE_GAP - (time.monotonic() - started))
            try:
                await asyncio.wait_for(alarm.wait(), wait)
                continue  # woken: look again
            except TimeoutError:
                pass
            if due is not None and clock() >= due:
                self.plan_wakeups += 1

    async def _plan(self) -> None:
        """One planning pass in a worker thread; each committed batch wakes the sender.
        Tracked, so shutdown waits for it rather than closing the store under it."""
        lock, _ = self._loop_state()
        loop = asyncio.get_running_loop()
        service = self.planner.service

        def batch_done() -> None:
            loop.call_soon_threadsafe(self.dispatcher.poke)

        async with lock:
            if not self.dispatcher.accepting:
                return
            if service.settings.content_watch and await asyncio.to_thread(
                service.catalog_holder.changed
            ):
                await asyncio.to_thread(service.reload_content)
            planning = asyncio.ensure_future(asyncio.to_thread(self.planner.plan, None, batch_done))
            self._passes.add(planning)
            try:
                result = await asyncio.shield(planning)
            finally:
                if planning.done():
                    self._passes.discard(planning)
                else:
                    planning.add_done_callback(self._passes.discard)
        if result.queued:
            log.info(
                "planned lessons=%d prompts=%d reminders=%d practices=%d",
                result.lessons,
                result.prompts,
                result.reminders,
                result.practices,
            )

    async def _pass(self) -> None:
        """One pass without the loops: plan, sending each planned batch as soon as it
        is committed (a morning's first lessons leave after the first batch is
        planned, not after the whole morning is), then send what is due."""
        task = asyncio.current_task()
        if task is not None:
            self._passes.add(task)  # type: ignore[arg-type]
        try:
            planning = asyncio.ensure_future(self._plan())
            try:
                while not planning.done() and self.dispatcher.accepting:
                    await self.dispatcher.run_once()
                    await asyncio.wait({planning}, timeout=MIN_WAKE_GAP)
            finally:
                await planning
            if self.dispatcher.accepting:
                await self.dispatcher.run_once()
        finally:
            if task is not None:
                self._passes.discard(task)  # type: ignore[arg-type]
