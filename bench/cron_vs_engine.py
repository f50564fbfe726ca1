"""Memory and time to schedule 100,000 learners: one APScheduler cron job per learner
(the common design) versus this engine (rows with an indexed next_due_at and one tick).

Target: the engine needs at least 20x less memory.
Run: .venv/bin/python bench/cron_vs_engine.py [--learners N]

Memory is what Python allocates and keeps (tracemalloc), measured in this one process
for both designs, one after the other.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import NOW, database, make_app, seed
from scheduler.ticker import Ticker

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"]


def deliver(learner_id: int) -> None:
    """What a per-learner job would call."""


def one_job_per_learner(learners: int) -> tuple[float, int]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    scheduler = BackgroundScheduler()
    scheduler.start(paused=True)  # a running scheduler, but no job may fire mid-benchmark
    for n in range(learners):
        scheduler.add_job(
            deliver,
            CronTrigger(
                day_of_week="mon-fri", hour=9, minute=0, timezone=ZoneInfo(ZONES[n % len(ZONES)])
            ),
            args=(n,),
            id=f"learner-{n}",
        )
    elapsed = time.perf_counter() - started
    kept = tracemalloc.get_traced_memory()[0] - before
    scheduler.shutdown(wait=False)
    tracemalloc.stop()
    del scheduler
    gc.collect()
    return elapsed, kept


def this_engine(learners: int) -> tuple[float, int, int, float]:
    with database("sqlite") as url:
        app = make_app(url, NOW)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        seed(app, learners, 0, NOW)  # each learner: one enrolment row with next_due_at
        ticker = Ticker(app.engine.tick, 60)  # the only scheduler job, whatever the count
        elapsed = time.perf_counter() - started
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        app.engine.planner.plan(NOW)
        plan_ms = (time.perf_counter() - t0) * 1000
        peak = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
        del ticker
        app.store.dispose()
        return elapsed, kept, peak, plan_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--learners", type=int, default=100_000)
    args = parser.parse_args()
    n = args.learners
    cron_time, cron_kept = one_job_per_learner(n)
    print(
        f"one APScheduler cron job per learner: {n:,} jobs in {cron_time:.1f}s, "
        f"{cron_kept / 2**20:.1f} MiB kept in memory ({cron_kept / n:.0f} bytes a learner)"
    )
    engine_time, engine_kept, engine_peak, plan_ms = this_engine(n)
    print(
        f"this engine: {n:,} enrolments in {engine_time:.1f}s, "
        f"{engine_kept / 2**20:.2f} MiB kept in memory; a planning pass over them takes "
        f"{plan_ms:.1f} ms and peaks at {engine_peak / 2**20:.2f} MiB"
    )
    worst = max(engine_kept, engine_peak, 1)
    print(
        f"memory ratio (cron jobs / engine, engine at its peak): {cron_kept / worst:.0f}x "
        "(target ≥ 20x)"
    )
    print(
        f"RESULT name=cron_vs_engine learners={n} cron_s={cron_time:.1f} "
        f"cron_mib={cron_kept / 2**20:.1f} engine_s={engine_time:.1f} "
        f"engine_mib={engine_kept / 2**20:.2f} engine_peak_mib={engine_peak / 2**20:.2f} "
        f"plan_ms={plan_ms:.1f} memory_ratio={cron_kept / worst:.0f}"
    )


if __name__ == "__main__":
    main()
