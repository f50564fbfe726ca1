"""Prometheus metrics. Counters and histograms are updated where things happen; the
outbox figures are read from the database at scrape time, so they are true for the
whole deployment, not just this replica."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import func, select

from bot.db import Store
from bot.models import Delivery, Reply, on_its_way

SEND_SECONDS = Histogram(
    "mentorbot_send_seconds",
    "Time for one platform send, by platform.",
    ["platform"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,
)
RATE_LIMITED = Counter(
    "mentorbot_rate_limited_total", "429 answers from platforms.", ["platform"], registry=None
)
RETRIES = Counter(
    "mentorbot_send_retries_total",
    "Sends put back for a retry after a 5xx or network error.",
    ["platform"],
    registry=None,
)
DELIVERIES = Counter(
    "mentorbot_deliveries_total",
    "Deliveries finished by this process, by kind and outcome.",
    ["kind", "status"],
    registry=None,
)
ACK_SECONDS = Histogram(
    "mentorbot_command_ack_seconds",
    "From receiving an event to the first answer handed to the platform.",
    ["platform"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3),
    registry=None,
)


QUEUES = ("pending", "sending")


class OutboxCollector(Collector):
    """Outbox depth, age of the oldest pending row, queued rows by kind and status,
    replies."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The names alone. Without this, registering the collector (as the HTTP server
        starts) reads the database, and a database that does not answer keeps /healthz
        and /readyz from coming up at all."""
        yield GaugeMetricFamily("mentorbot_outbox_rows", "", labels=["kind", "status"])
        for name in (
            "mentorbot_outbox_depth",
            "mentorbot_outbox_oldest_pending_seconds",
            "mentorbot_replies_stored",
        ):
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        def read(session):  # type: ignore[no-untyped-def]
            # Only the two queues, each through its partial index: counting every
            # status read the whole outbox, seconds a scrape at a year of history.
            # What was sent or failed is mentorbot_deliveries_total.
            by = [
                (kind, status, count)
                for status in QUEUES
                for kind, count in session.exec(
                    select(Delivery.kind, func.count())
                    .where(on_its_way(status))
                    .group_by(Delivery.kind)
                ).all()
            ]
            oldest = session.exec(
                select(func.min(Delivery.due_at)).where(on_its_way("pending"))
            ).one()
            replies = session.exec(select(func.count()).select_from(Reply)).one()
            return by, oldest, replies, sum(count for _, _, count in by)

        by, oldest, replies, depth = self.store.read(read)
        rows = GaugeMetricFamily(
            "mentorbot_outbox_rows",
            "Rows still in the outbox (pending or sending), by kind and status.",
            labels=["kind", "status"],
        )
        for kind, status, count in by:
            rows.add_metric([kind, status], count)
        yield rows
        yield GaugeMetricFamily(
            "mentorbot_outbox_depth", "Rows waiting to be sent (pending or sending).", value=depth
        )
        age = 0.0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        yield GaugeMetricFamily(
            "mentorbot_outbox_oldest_pending_seconds",
            "Age of the oldest pending delivery (0 when none).",
            value=age,
        )
        yield GaugeMetricFamily("mentorbot_replies_stored", "Replies in the store.", value=replies)


def registry_for(store: Store) -> CollectorRegistry:
    """A registry for one process's /metrics: the shared counters and this store's outbox."""
    registry = CollectorRegistry(auto_describe=True)
    for metric in (SEND_SECONDS, RATE_LIMITED, RETRIES, DELIVERIES, ACK_SECONDS):
        registry.register(metric)
    registry.register(OutboxCollector(store))
    return registry
