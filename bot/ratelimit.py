"""Rate limits keyed by platform scope (a Slack channel, a workspace, Discord's global
budget). Adapters say which limits a message draws from; the dispatcher waits here, so
every platform gets the same pacing and the same reaction to a 429.

Each limit is a GCRA ("virtual scheduling") cell: it keeps the theoretical time the next
send is due and moves it on by exactly one interval per send, with no fractions lost.
``burst`` is how many sends may go back to back; a small one (a few tens of
milliseconds' worth) lets the sender catch up after a late wake-up, so it holds the
configured rate; with a burst of 1 every late wake-up is time lost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limit:
    key: str
    per_second: float
    burst: int = 1


@dataclass
class _Cell:
    interval: float
    tolerance: float  # how far ahead of schedule a send may go: (burst - 1) intervals
    due: float  # theoretical arrival time of the next send
    blocked_until: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RateLimiter:
    def __init__(self) -> None:
        self._cells: dict[str, _Cell] = {}
        self._now = time.monotonic

    def _cell(self, limit: Limit) -> _Cell:
        cell = self._cells.get(limit.key)
        if cell is None:
            interval = 1.0 / limit.per_second
            cell = _Cell(interval, (max(1, limit.burst) - 1) * interval, self._now())
            self._cells[limit.key] = cell
        return cell

    async def acquire(self, limits: list[Limit]) -> None:
        """Wait until a send is allowed under every limit, then count it against each."""
        for limit in sorted(limits, key=lambda item: item.key):
            cell = self._cell(limit)
            async with cell.lock:
                while True:
                    now = self._now()
                    if now < cell.blocked_until:
                        await asyncio.sleep(cell.blocked_until - now)
                        continue
                    due = max(cell.due, now)
                    allowed_at = due - cell.tolerance
                    if now >= allowed_at:
                        cell.due = due + cell.interval
                        break
                    await asyncio.sleep(allowed_at - now)

    def block(self, limits: list[Limit], seconds: float) -> None:
        """After a 429: nothing draws from these limits for ``seconds``, and the schedule
        restarts from then, so the end of the wait is not a burst."""
        until = self._now() + seconds
        for limit in limits:
            cell = self._cell(limit)
            cell.blocked_until = max(cell.blocked_until, until)
            cell.due = max(cell.due, until)
