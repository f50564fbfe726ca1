"""A small cache of platform lookups (who a user is), bounded in size and in age.

Bounded in size because user ids arrive from outside: a stream of commands naming
new ids must not grow the process. Bounded in age because the answers change: a
demoted admin or a deactivated account must stop counting within minutes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """At most ``limit`` entries, each forgotten ``ttl`` seconds after it was stored;
    when full, the entry stored longest ago goes first."""

    def __init__(self, limit: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or ttl <= 0:
            raise ValueError("a cache needs room for one entry and a positive lifetime")
        self.limit = limit
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        self._forget_expired()
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry[0] > self.clock()

    def get(self, key: K) -> V | None:
        """The value stored for ``key`` if it is still fresh (a stored None reads the
        same as a missing key: use ``in`` to tell them apart)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock():
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self.clock() + self.ttl, value)
        self._entries.move_to_end(key)
        self._forget_expired()
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def _forget_expired(self) -> None:
        """Entries expire in the order they were stored, so the oldest are at the front."""
        now = self.clock()
        while self._entries:
            expiry, _ = next(iter(self._entries.values()))
            if expiry > now:
                return
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


class Bounded(OrderedDict[Any, Any]):
    """A dict that forgets its least recently stored entries beyond ``limit``: for what
    an adapter keeps per learner or per delivery (DM channels, send notes), so a
    process that wrote to every learner ever holds only the most recent ones."""

    def __init__(self, limit: int = 10_000) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)
