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
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.db import Store
from bot.messages import OutgoingMessage, SendResult
from bot.models import Delivery, Learner, Workspace
from bot.outbox import (
    cancel,
    claim,
    claim_expired,
    mark_failed,
    mark_sent,
    release,
    release_owned,
)
from bot.planner import Planner
from bot.ports import Adapter, PermanentSendError, RateLimited, SendError
from bot.ratelimit import Limit, RateLimiter
from bot.schedule import reminder_time
from bot.service import MentorService

log = logging.getLogger(__name__)


def process_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
    limiter: RateLimiter = field(default_factory=RateLimiter)
    stats: DispatchStats = field(default_factory=DispatchStats)
    accepting: bool = True

    def _now(self) -> datetime:
        return self.service.clock()  # one clock for planning and sending

    async def _db(self, work):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(self.store.run, work)

    # ------------------------------------------------------------------ entry points

    async def send_ids(self, ids: list[int]) -> None:
        """Send rows a command just queued (``next``, ``start``) without waiting for a tick."""
        if not ids or not self.accepting:
            return
        now = self._now()
        claimed = await self._db(
            lambda s: claim(s, owner=self.owner, now=now, lease=self.lease, ids=ids)
        )
        await self._send_all(claimed)

    async def run_once(self) -> int:
        """Recover abandoned rows, then send everything due now. Returns rows handled."""
        handled = 0
        now = self._now()
        expired = await self._db(
            lambda s: claim_expired(s, owner=self.owner, now=now, lease=self.lease)
        )
        if expired:
            await self._send_all(expired, recovering=True)
            handled += len(expired)
        while self.accepting:
            claimed = await self._db(
                lambda s: claim(
                    s, owner=self.owner, now=self._now(), lease=self.lease, limit=self.batch
                )
            )
            if not claimed:
                break
            await self._send_all(claimed)
            handled += len(claimed)
        return handled

    async def release_all(self) -> int:
        """On shutdown: give back rows this process claimed but has not sent."""
        self.accepting = False
        return int(await self._db(lambda s: release_owned(s, owner=self.owner)))

    # ------------------------------------------------------------------ sending

    async def _send_all(self, ids: list[int], recovering: bool = False) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(delivery_id: int) -> None:
            async with gate:
                if not self.accepting:
                    return
                await self._send_one(delivery_id, recovering)

        await asyncio.gather(*(one(i) for i in ids))

    async def _send_one(self, delivery_id: int, recovering: bool) -> None:
        rendered = await asyncio.to_thread(self.service.render_delivery, delivery_id)
        if isinstance(rendered, str):
            self.stats.cancelled += 1
            log.info("delivery %s cancelled: %s", delivery_id, rendered)
            await self._db(lambda s: cancel(s, delivery_id, reason=rendered))
            return
        message: OutgoingMessage = rendered
        adapter = self.adapters.get(message.platform)
        if adapter is None:
            await self._retry(delivery_id, f"no {message.platform} adapter is running", 60.0)
            return
        if recovering:
            found = await self._find_delivered(adapter, message)
            if found is not None:
                self.stats.recovered += 1
                log.info("delivery %s had reached %s before a crash", delivery_id, adapter.platform)
                await self._mark_sent(delivery_id, found)
                return
        limits: list[Limit] = list(getattr(adapter, "rate_limits", lambda _m: [])(message))
        await self.limiter.acquire(limits)
        try:
            result = await adapter.send(message)
        except RateLimited as exc:
            self.stats.rate_limited += 1
            self.limiter.block(limits, exc.retry_after)
            when = self._now() + timedelta(seconds=exc.retry_after)
            why = str(exc)
            await self._db(
                lambda s: release(s, delivery_id, retry_at=when, reason=why, count_attempt=False)
            )
            return
        except PermanentSendError as exc:
            await self._permanent(delivery_id, message, exc)
            return
        except SendError as exc:
            await self._retry(delivery_id, str(exc))
            return
        except Exception as exc:  # an adapter bug must not kill the dispatcher
            log.exception("adapter %s crashed sending delivery %s", adapter.platform, delivery_id)
            await self._retry(delivery_id, f"adapter error: {exc!r}")
            return
        await self._mark_sent(delivery_id, result)

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

    async def _mark_sent(self, delivery_id: int, result: SendResult) -> None:
        self.stats.sent += 1

        def work(session: Session) -> None:
            if not mark_sent(
                session,
                delivery_id,
                now=self._now(),
                channel=result.channel,
                message_ids=result.message_ids,
            ):
                return
            self._plan_reminder(session, delivery_id)
            self._remember_channel(session, delivery_id, result.channel)

        await self._db(work)

    def _remember_channel(self, session: Session, delivery_id: int, channel: str | None) -> None:
        delivery = session.get(Delivery, delivery_id)
        learner = session.get(Learner, delivery.learner_id) if delivery else None
        if learner is not None and channel and learner.dm_channel != channel:
            learner.dm_channel = channel
            session.add(learner)

    def _plan_reminder(self, session: Session, delivery_id: int) -> None:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.kind != "lesson" or not delivery.question:
            return
        learner = session.get(Learner, delivery.learner_id)
        if learner is None or delivery.sent_at is None:
            return
        schedule = self.service.schedule_for(learner, session.get(Workspace, learner.workspace_id))
        after = timedelta(hours=self.service.settings.reminder_after_hours)
        delivery.remind_at = reminder_time(schedule, delivery.sent_at, after)
        session.add(delivery)

    async def _retry(self, delivery_id: int, reason: str, after: float | None = None) -> None:
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
                session, delivery_id, retry_at=self._now() + timedelta(seconds=wait), reason=reason
            )
            return "retry"

        outcome = await self._db(work)
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
    """One tick of the delivery engine: plan what is due, then send it."""

    planner: Planner
    dispatcher: Dispatcher

    async def tick(self) -> None:
        result = await asyncio.to_thread(self.planner.plan)
        if result.queued:
            log.info(
                "planned lessons=%d prompts=%d reminders=%d practices=%d",
                result.lessons,
                result.prompts,
                result.reminders,
                result.practices,
            )
        await self.dispatcher.run_once()
