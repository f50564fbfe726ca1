"""Planning-pass cost at 100,000 enrolments with 0, 1,000 and 10,000 due.

Target: a pass with nothing due stays under 20 ms at 100,000 enrolments.
Run: .venv/bin/python bench/planning.py [--learners N] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import NOW, database, make_app, postgres_available, seed
from bot.models import Delivery, Enrolment


def measure(kind: str, learners: int) -> None:
    with database(kind) as url:
        app = make_app(url, NOW)
        started = time.perf_counter()
        seed(app, learners, 0, NOW)
        print(f"[{kind}] seeded {learners:,} enrolments in {time.perf_counter() - started:.1f}s")
        planner = app.engine.planner
        planner.plan(NOW)  # warm up connections and caches
        samples = []
        for _ in range(30):
            t0 = time.perf_counter()
            result = planner.plan(NOW)
            samples.append((time.perf_counter() - t0) * 1000)
            assert result.queued == 0
        samples.sort()
        print(
            f"[{kind}] 0 due: median {statistics.median(samples):.2f} ms, "
            f"p95 {samples[int(len(samples) * 0.95) - 1]:.2f} ms (target < 20 ms)"
        )
        table = Enrolment.__table__  # type: ignore[attr-defined]
        for due in (1_000, 10_000):
            with app.store.engine.begin() as conn:
                conn.execute(sa.delete(Delivery.__table__))  # type: ignore[attr-defined]
                conn.execute(sa.update(table).values(day=1, next_due_at=NOW.replace(hour=20)))
                conn.execute(
                    sa.update(table)
                    .where(table.c.id <= due)
                    .values(next_due_at=NOW.replace(hour=8))
                )
            t0 = time.perf_counter()
            result = planner.plan(NOW)
            elapsed = time.perf_counter() - t0
            assert result.lessons == due, result
            print(
                f"[{kind}] {due:,} due: {elapsed * 1000:.0f} ms "
                f"({elapsed / due * 1e6:.0f} µs per due enrolment)"
            )
        app.store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--learners", type=int, default=100_000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    measure("sqlite", args.learners)
    if args.skip_postgres:
        return
    if postgres_available():
        measure("postgresql", args.learners)
    else:
        print("[postgresql] skipped: server unreachable")


if __name__ == "__main__":
    main()
