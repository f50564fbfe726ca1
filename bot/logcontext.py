"""Ids that log lines should carry (workspace, learner, delivery), bound for the span of
one event or one send. A context variable follows the work into tasks and worker
threads (asyncio.to_thread copies it), so no call has to pass them along."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

_EMPTY: Mapping[str, object] = MappingProxyType({})
LOG_CONTEXT: ContextVar[Mapping[str, object]] = ContextVar("mentorbot_log_context", default=_EMPTY)


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    merged = {**LOG_CONTEXT.get(), **{k: v for k, v in fields.items() if v not in (None, "")}}
    token = LOG_CONTEXT.set(merged)
    try:
        yield
    finally:
        LOG_CONTEXT.reset(token)
