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

The engine runs a pass (plan, then send) on the scheduler's tick, and also at the
earliest instant anything falls due between ticks (a retry after a 429, a reminder, a
lesson), so the tick is only the safety net.
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
class Dispatcher:
    store: Store
    service: MentorService
    adapters: dict[str, Adapter] = field(default_factory=dict)
    owner: str = field(default_factory=process_identity)
    lease: timedelta = timedelta(minutes=2)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 16
    batch: int = 200
    limiter: RateLimiter | None = None  # shared budgets in ``store``
    stats: DispatchStats = field(default_factory=DispatchStats)
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

    def stop(self) -> None:
        """Claim nothing more, and give up waiting for rate limits: what is not on the
        wire yet is handed back by ``release_all``."""
        self.accepting = False
        if self._stopped is not None:
            self._stopped[1].set()
        self.wake()

    def in_flight(self) -> set[asyncio.Task[None]]:
        """Sends under way in this process (those of a pass and those of commands)."""
        return {task for task in self._sending if not task.done()}

    # ------------------------------------------------------------------ entry points

    async def send_ids(self, ids: list[int]) -> None:
        """Send rows a command just queued (``next``, ``start``) without waiting for a tick."""
        if not ids or not self.accepting:
            return
        now = self._now()
        claimed = await self._db(
            lambda s: claim(s, owner=self.owner, now=now, lease=self.lease, ids=ids)
        )
        if claimed:
            async with self._leases_kept():
                await self._send_batch(claimed, asyncio.Semaphore(self.concurrency))

    async def run_once(self) -> int:
        """Recover abandoned rows, then send everything due now. Returns rows handled.

        Two claimed batches are in flight at once over one concurrency gate, so the
        platform never waits while the next batch is claimed and rendered.
        """
        handled = 0
        gate = asyncio.Semaphore(self.concurrency)
        async with self._leases_kept():
            dead = await self._db(self._dead_owners)
            while self.accepting:
                expired = await self._db(
                    lambda s: claim_expired(
                        s,
                        owner=self.owner,
                        now=self._now(),
                        lease=self.lease,
                        limit=self.batch,
                        dead_owners=dead,
                    )
                )
                if not expired:
                    break
                if dead:
                    log.info("took over %d deliveries of a process that ended", len(expired))
                await self._send_batch(expired, gate, recovering=True)
                handled += len(expired)
            in_flight: set[asyncio.Task[None]] = set()
            started = self._now()  # rows put back for later in this run wait for a later run
            while self.accepting:
                claimed = await self._db(
                    lambda s: claim(
                        s,
                        owner=self.owner,
                        now=self._now(),
                        lease=self.lease,
                        limit=self.batch,
                        due_before=started,
                    )
                )
                if claimed:
                    handled += len(claimed)
                    in_flight.add(asyncio.create_task(self._send_batch(claimed, gate)))
                elif not in_flight:
                    break
                if not claimed or len(in_flight) >= 2:
                    done, in_flight = await asyncio.wait(
                        in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        task.result()
            if in_flight:
                await asyncio.gather(*in_flight)
        return handled

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
        self, ids: list[int], gate: asyncio.Semaphore, recovering: bool = False
    ) -> None:
        if recovering:
            self._maybe_out.update(ids)
        ready = await asyncio.to_thread(self.service.render_many, ids)

        async def one(delivery_id: int) -> None:
            async with gate:
                if not self.accepting:
                    return  # stopping: the row is handed back by release_all
                if await self._send_one(delivery_id, ready[delivery_id], recovering):
                    self._maybe_out.discard(delivery_id)  # its outcome is recorded

        tasks = [asyncio.create_task(one(i)) for i in ids]
        self._sending.update(tasks)
        try:
            await asyncio.gather(*tasks)
        finally:
            self._sending.difference_update(tasks)

    async def _paced(self, limits: list[Limit]) -> bool:
        """Wait for the rate limits; False if the dispatcher stopped meanwhile (nothing
        was sent, so the row can go back as it is)."""
        assert self.limiter is not None
        if not limits:
            return self.accepting
        stopped = self._stop_event()
        acquire = asyncio.ensure_future(self.limiter.acquire(limits))
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

    async def _send_one(self, delivery_id: int, rendered: Rendered, recovering: bool) -> bool:
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
            return await self._send_rendered(delivery_id, rendered, recovering)

    async def _send_rendered(self, delivery_id: int, rendered: Rendered, recovering: bool) -> bool:
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
            found = await self._find_delivered(adapter, message)
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
        if not await self._paced(limits):
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
            self.wake()
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
        except Exception:
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
        self.wake()
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


@dataclass
class Engine:
    """The delivery engine: a pass plans what is due, then sends it.

    Passes run on the scheduler's tick (``tick``, the safety net) and, while ``follow``
    runs, at the earliest instant anything falls due between ticks: a retry after a
    429 or a 5xx, a lesson, a reminder, a practice follow-up, a digest. After each pass,
    and whenever work is queued in this process, it reads that instant from the
    database (a handful of MIN() lookups on indexed columns) and sleeps until then. One
    pass runs at a time.
    """

    planner: Planner
    dispatcher: Dispatcher
    ticks: int = 0  # passes the scheduler's clock started
    wakeups: int = 0  # passes started because something fell due between ticks
    _passes: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _lock: asyncio.Lock | None = field(default=None, repr=False)
    _alarm: asyncio.Event | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.dispatcher.wake = self.wake

    def _loop_state(self) -> tuple[asyncio.Lock, asyncio.Event]:
        """The pass lock and the alarm, made for the running loop (tests run several)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._lock is None or self._alarm is None:
            self._loop, self._lock, self._alarm = loop, asyncio.Lock(), asyncio.Event()
        return self._lock, self._alarm

    def wake(self) -> None:
        """Work was queued or moved: look again at when the next pass is due."""
        if self._alarm is not None:
            self._alarm.set()

    async def tick(self) -> None:
        """One pass on the scheduler's clock."""
        if not self.dispatcher.accepting:
            return  # shutting down: no new work
        self.ticks += 1
        await self._pass()
        self.wake()  # the pass may have queued work for later

    async def drain(self) -> None:
        """Wait for the pass in progress and every send on the wire to finish."""
        me = asyncio.current_task()
        while True:
            busy = {t for t in self._passes if not t.done()} | self.dispatcher.in_flight()
            busy.discard(me)  # type: ignore[arg-type]
            if not busy:
                return
            await asyncio.wait(busy)

    async def _pass(self) -> None:
        lock, _ = self._loop_state()
        task = asyncio.current_task()
        if task is not None:
            self._passes.add(task)  # type: ignore[arg-type]
        try:
            async with lock:
                if self.dispatcher.accepting:
                    await self._plan_and_send()
        finally:
            if task is not None:
                self._passes.discard(task)  # type: ignore[arg-type]

    def next_due(self) -> datetime | None:
        """The earliest instant the next pass would find something to do."""

        def read(session: Session) -> datetime | None:
            found = [next_due(session), self.planner.next_due(session)]
            return min((t for t in found if t is not None), default=None)

        return self.dispatcher.store.run(read)

    async def follow(self, ceiling: float) -> None:
        """Run a pass whenever something falls due, until the dispatcher stops. Sleeps
        at most ``ceiling`` seconds between looks, so work another replica queued for
        later is found even if that replica is gone."""
        _, alarm = self._loop_state()
        clock = self.planner.service.clock
        last = -MIN_WAKE_GAP
        while self.dispatcher.accepting:
            alarm.clear()
            try:
                due = await asyncio.to_thread(self.next_due)
            except Exception:
                log.exception("could not read when work is next due; the tick will go on")
                due = None
            wait = ceiling if due is None else min(ceiling, (due - clock()).total_seconds())
            # Something due that a pass could not take (another replica holds it) must
            # not turn this into a busy loop.
            wait = max(wait, MIN_WAKE_GAP - (time.monotonic() - last))
            if wait > 0:
                try:
                    await asyncio.wait_for(alarm.wait(), wait)
                    continue  # woken: something changed, look again
                except TimeoutError:
                    pass
                if due is None or clock() < due:
                    continue
            if not self.dispatcher.accepting:
                break
            self.wakeups += 1
            try:
                await self._pass()
            except Exception:
                log.exception("delivery pass failed; the next one will try again")
            last = time.monotonic()

    async def _plan_and_send(self) -> None:
        service = self.planner.service
        if service.settings.content_watch and await asyncio.to_thread(
            service.catalog_holder.changed
        ):
            await asyncio.to_thread(service.reload_content)
        # Plan in the background and send each planned batch as soon as it is
        # committed: a morning's first lessons leave after the first batch is planned,
        # not after the whole morning is.
        loop = asyncio.get_running_loop()
        batch_ready = asyncio.Event()

        def batch_done() -> None:
            loop.call_soon_threadsafe(batch_ready.set)

        planning = asyncio.ensure_future(asyncio.to_thread(self.planner.plan, None, batch_done))
        try:
            while not planning.done() and self.dispatcher.accepting:
                batch_ready.clear()
                await self.dispatcher.run_once()
                waiting = asyncio.ensure_future(batch_ready.wait())
                await asyncio.wait({planning, waiting}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
        finally:
            result = await planning
        if result.queued:
            log.info(
                "planned lessons=%d prompts=%d reminders=%d practices=%d",
                result.lessons,
                result.prompts,
                result.reminders,
                result.practices,
            )
        await self.dispatcher.run_once()
