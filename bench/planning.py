"""Planning-pass cost: in proportion to the work due, and set-based when work is due.

1. Nothing due at 100,000 enrolments, all active (next lesson-day tomorrow): a pass's
   median and p95. Target: under 20 ms.
2. Each waiting state at 100,000 learners, as the engine leaves it (finished, asking
   "continue?" after its prompts, paused, DMs blocked, stopped, waiting for a lesson):
   the pass at the delivery hour, against an all-active pass measured just before it.
   Target: the same cost (ratio ~1). For paused, DMs blocked and stopped also with
   instants left in the past (data from before they were cleared): the first pass
   clears them once, the next costs as case 1.
3. 10,000 due lesson-days among the 100,000: the engine's pass (``engine_s``) against a
   plain ``executemany`` INSERT of the very rows it queued into the same table
   (``executemany_s``), and the set-based lower bound, one ``INSERT … SELECT`` plus one
   ``UPDATE`` that applies none of the rules (``setbased_s``). Each is the median of
   ``--repeat`` runs, interleaved. Target: ``ratio`` = engine_s / executemany_s ≤ 2.
4. With ``--million``: 1,000,000 enrolments of which 999,000 are finished, against
   1,000,000 all active. Target: the 0-due pass within 2x of the all-active one.

Ends with one ``RESULT name=planning …`` line per database (and ``name=planning_million``
with ``--million``).
Run: .venv/bin/python bench/planning.py [--learners N] [--due N] [--repeat N]
                                        [--million] [--skip-waiting] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import NOW, database, make_app, postgres_available, seed
from bot.models import Delivery, Enrolment, Learner, UTCDateTime
from mentorbot.bootstrap import App

ENROLMENT = Enrolment.__table__  # type: ignore[attr-defined]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
LEARNER = Learner.__table__  # type: ignore[attr-defined]
TOMORROW = NOW + timedelta(days=1)  # the seeded learners' next lesson-day
WEEK_ON = NOW + timedelta(days=7)  # the next practice-phase check-in


def zero_due_ms(app: App, passes: int = 30) -> tuple[float, float]:
    """Median and p95, in ms, of planning passes at ``NOW`` that find nothing due."""
    planner = app.engine.planner
    planner.plan(NOW)  # warm up connections and caches
    samples = []
    for _ in range(passes):
        t0 = time.perf_counter()
        result = planner.plan(NOW)
        samples.append((time.perf_counter() - t0) * 1000)
        assert result.queued == 0, result
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def change(app: App, *statements: sa.Executable) -> None:
    with app.store.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def all_active(app: App) -> None:
    change(
        app,
        sa.update(ENROLMENT).values(
            status="active", day=1, waiting_for_lesson=None, next_due_at=TOMORROW
        ),
        sa.update(LEARNER).values(dm_blocked_at=None),
    )


# Each waiting state as the engine leaves it; ``stale`` puts the instant in the past,
# as enrolments carried it before waiting states were cleared.
WAITING: dict[str, Callable[[bool], list[sa.Executable]]] = {
    "finished": lambda stale: [
        sa.update(ENROLMENT).values(status="awaiting_continue", day=3, next_due_at=None)
    ],
    "asked_continue": lambda stale: [
        sa.update(ENROLMENT).values(status="awaiting_continue", day=3, next_due_at=WEEK_ON)
    ],
    "paused": lambda stale: [
        sa.update(ENROLMENT).values(status="paused", next_due_at=NOW - timedelta(days=1))
        if stale
        else sa.update(ENROLMENT).values(status="paused", next_due_at=None)
    ],
    "dms_blocked": lambda stale: [
        sa.update(LEARNER).values(dm_blocked_at=NOW - timedelta(days=2)),
        sa.update(ENROLMENT).values(next_due_at=NOW - timedelta(days=1) if stale else None),
    ],
    "stopped": lambda stale: [
        sa.update(ENROLMENT).values(
            status="stopped", next_due_at=NOW - timedelta(days=1) if stale else None
        )
    ],
    "waiting_content": lambda stale: [
        sa.update(ENROLMENT).values(
            status="waiting_content", day=3, waiting_for_lesson="0.2.3", next_due_at=None
        )
    ],
}
STALE = ("paused", "dms_blocked", "stopped")


def waiting_states(kind: str, app: App) -> dict[str, tuple[float, float]]:
    """Per waiting state: the median pass with everyone in it, and that over the median
    all-active pass measured just before (paired, so a busy machine skews both alike)."""
    found: dict[str, tuple[float, float]] = {}
    for state, statements in WAITING.items():
        all_active(app)
        tidy(app)
        active, _ = zero_due_ms(app)
        change(app, *statements(False))
        tidy(app)
        median, p95 = zero_due_ms(app)
        found[state] = (median, median / active)
        print(
            f"[{kind}] {state:>15}: pass at the delivery hour {median:.2f} ms (p95 {p95:.2f}) "
            f"= {median / active:.2f}x the all-active pass just before ({active:.2f} ms)"
        )
    for state in STALE:
        all_active(app)
        change(app, *WAITING[state](True))
        tidy(app)
        t0 = time.perf_counter()
        result = app.engine.planner.plan(NOW)
        healed = time.perf_counter() - t0
        assert result.queued == 0, result
        median, _ = zero_due_ms(app, passes=10)
        with app.store.engine.connect() as conn:
            left = conn.execute(
                sa.select(sa.func.count()).where(ENROLMENT.c.next_due_at <= NOW)
            ).scalar_one()
        print(
            f"[{kind}] {state:>15} with past instants: the first pass clears them in "
            f"{healed:.2f} s ({left} left due), then {median:.2f} ms a pass"
        )
    return found


def explain(kind: str, app: App) -> None:
    """The plan the database picks for the due query, with 10,000 of 100,000 due."""
    planner = app.engine.planner
    query = planner.due_query(app.store.dialect, NOW)
    compiled = query.compile(app.store.engine, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN QUERY PLAN " if kind == "sqlite" else "EXPLAIN "
    with app.store.engine.connect() as conn:
        lines = [
            " ".join(str(v) for v in row) for row in conn.exec_driver_sql(prefix + str(compiled))
        ]
    print(f"[{kind}] due query plan:")
    for line in lines:
        print(f"    {line}")


def make_due(app: App, due: int) -> None:
    """The first ``due`` enrolments due now at day 1, the rest tomorrow; no outbox.
    Only the due rows are rewritten (the rest already wait for tomorrow), so repeated
    runs do not bloat PostgreSQL's table with dead rows."""
    change(
        app,
        sa.delete(DELIVERY),
        sa.update(ENROLMENT)
        .where(ENROLMENT.c.id <= due)
        .values(day=1, next_due_at=NOW - timedelta(minutes=1)),
    )


def tidy(app: App) -> None:
    """After rewriting every row: vacuum and analyse PostgreSQL's tables, as autovacuum
    would before long, so the next figures measure the planner, not dead rows."""
    if app.store.dialect != "postgresql":
        return
    with app.store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")


def engine_pass(app: App, due: int) -> tuple[float, list[dict[str, object]]]:
    make_due(app, due)
    t0 = time.perf_counter()
    result = app.engine.planner.plan(NOW)
    elapsed = time.perf_counter() - t0
    assert result.lessons == due, result
    columns = [c for c in DELIVERY.c if c.name != "id"]
    with app.store.engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(sa.select(*columns))]
    return elapsed, rows


def executemany(app: App, due: int, rows: list[dict[str, object]]) -> float:
    make_due(app, due)
    t0 = time.perf_counter()
    with app.store.engine.begin() as conn:
        conn.execute(sa.insert(DELIVERY), rows)
    return time.perf_counter() - t0


def set_based(app: App, due: int, question: str) -> float:
    """The lower bound: every due enrolment's next lesson-day in one INSERT … SELECT and
    one UPDATE, with no schedules, caps or lesson rules."""
    make_due(app, due)
    when = UTCDateTime()
    insert = sa.text(
        "INSERT INTO delivery (key, learner_id, enrolment_id, kind, origin, course_id, "
        "lesson_id, day, question, status, attempts, due_at, created_at) "
        "SELECT 'lesson:' || id || ':' || lesson_id || ':' || (day + 1), learner_id, id, "
        "'lesson', 'schedule', course_id, lesson_id, day + 1, :question, 'pending', 0, "
        ":now, :now FROM enrolment WHERE next_due_at <= :now"
    ).bindparams(sa.bindparam("now", type_=when))
    update = sa.text(
        "UPDATE enrolment SET day = day + 1, next_due_at = :next, updated_at = :now "
        "WHERE next_due_at <= :now"
    ).bindparams(sa.bindparam("now", type_=when), sa.bindparam("next", type_=when))
    t0 = time.perf_counter()
    with app.store.engine.begin() as conn:
        inserted = conn.execute(insert, {"question": question, "now": NOW}).rowcount
        conn.execute(update, {"now": NOW, "next": TOMORROW})
    elapsed = time.perf_counter() - t0
    assert inserted == due, inserted
    return elapsed


def due_lessons(kind: str, app: App, due: int, repeat: int) -> dict[str, float]:
    engine: list[float] = []
    plain: list[float] = []
    lower: list[float] = []
    for _ in range(repeat):
        elapsed, rows = engine_pass(app, due)
        engine.append(elapsed)
        plain.append(executemany(app, due, rows))
        lower.append(set_based(app, due, str(rows[0]["question"])))
    figures = {
        "engine_s": statistics.median(engine),
        "executemany_s": statistics.median(plain),
        "setbased_s": statistics.median(lower),
    }
    print(
        f"[{kind}] {due:,} due: engine {figures['engine_s']:.3f} s "
        f"({figures['engine_s'] / due * 1e6:.0f} µs a due enrolment; runs "
        f"{', '.join(f'{t:.3f}' for t in engine)}), executemany of the same rows "
        f"{figures['executemany_s']:.3f} s, set-based lower bound {figures['setbased_s']:.3f} s"
    )
    print(
        f"[{kind}] engine / executemany = {figures['engine_s'] / figures['executemany_s']:.2f} "
        f"(target ≤ 2); engine / set-based = {figures['engine_s'] / figures['setbased_s']:.1f}"
    )
    return figures


def measure(kind: str, learners: int, due: int, repeat: int, waiting_too: bool = True) -> str:
    with database(kind) as url:
        app = make_app(url, NOW)
        started = time.perf_counter()
        seed(app, learners, 0, NOW)
        print(f"[{kind}] seeded {learners:,} enrolments in {time.perf_counter() - started:.1f}s")
        tidy(app)
        baseline, p95 = zero_due_ms(app)
        print(
            f"[{kind}] 0 due, all active: median {baseline:.2f} ms, p95 {p95:.2f} ms "
            "(target < 20 ms)"
        )
        waiting = waiting_states(kind, app) if waiting_too else {}
        all_active(app)
        make_due(app, due)
        tidy(app)
        explain(kind, app)
        figures = due_lessons(kind, app, due, repeat)
        app.store.dispose()
    worst = max((ratio for _, ratio in waiting.values()), default=None)
    return (
        f"RESULT name=planning db={kind} enrolments={learners} due={due} "
        f"engine_s={figures['engine_s']:.3f} executemany_s={figures['executemany_s']:.3f} "
        f"setbased_s={figures['setbased_s']:.3f} "
        f"ratio={figures['engine_s'] / figures['executemany_s']:.2f} "
        f"zero_due_ms={baseline:.2f}"
        + "".join(f" {state}_ms={ms:.2f}" for state, (ms, _) in waiting.items())
        + (f" waiting_worst_ratio={worst:.2f}" if worst is not None else "")
    )


def million(kind: str, total: int, finished: int) -> str:
    """``total`` enrolments all active, then with ``finished`` of them finished."""
    with database(kind) as url:
        app = make_app(url, NOW)
        started = time.perf_counter()
        seed(app, total, 0, NOW, chunk=20_000)
        print(f"[{kind}] seeded {total:,} enrolments in {time.perf_counter() - started:.1f}s")
        tidy(app)
        active, _ = zero_due_ms(app)
        change(
            app,
            sa.update(ENROLMENT)
            .where(ENROLMENT.c.id > total - finished)
            .values(status="awaiting_continue", day=3, next_due_at=None),
        )
        tidy(app)
        mostly_finished, _ = zero_due_ms(app)
        app.store.dispose()
    ratio = mostly_finished / active
    print(
        f"[{kind}] 0-due pass at {total:,}: all active {active:.2f} ms; "
        f"{finished:,} finished {mostly_finished:.2f} ms = {ratio:.2f}x (target ≤ 2x)"
    )
    return (
        f"RESULT name=planning_million db={kind} enrolments={total} finished={finished} "
        f"active_ms={active:.2f} finished_ms={mostly_finished:.2f} ratio={ratio:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--learners", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--million", action="store_true", help="also the 1,000,000 case")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-waiting", action="store_true", help="leave out case 2")
    args = parser.parse_args()
    kinds = ["sqlite"]
    if not args.skip_postgres:
        if postgres_available():
            kinds.append("postgresql")
        else:
            print("[postgresql] skipped: server unreachable")
    results = [
        measure(kind, args.learners, args.due, args.repeat, not args.skip_waiting) for kind in kinds
    ]
    if args.million:
        results += [million(kind, 1_000_000, 999_000) for kind in kinds]
    print("\n".join(results))


if __name__ == "__main__":
    main()
