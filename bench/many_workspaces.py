"""Many workspaces at once: does one workspace's morning delay another's?

Workspace A has 5,000 learners due at one instant, behind a 10/s limit on
``chat.postMessage`` that the loopback Slack emulator enforces per workspace (429 with
Retry-After beyond it). Workspace B, on the same installation and the same process, has
10 learners due at the same instant and one reminder due 300 s later. mentorbot runs
its real serving path on the defaults (60 s tick, default paces): first one replica on
SQLite, then two replicas (separate processes) on one PostgreSQL database.

Targets: B's 10 lessons within 5 s of their due instant, B's reminder within 5 s of its
own, A's fan-out at >= 95 % of its limit (accepted lessons from the due instant to the
last one), 0 duplicates and 0 missed.

Run: ``.venv/bin/python bench/many_workspaces.py`` (about 9 minutes per database at the
default size; ``--a-learners 1000 --reminder-after 60`` for a quick look). Not part of
``make bench``, which stays under 10 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the emulator lives with the tests

from bench.common import database, postgres_available  # noqa: E402
from tests.emulators.slack_api import SlackEmulator  # noqa: E402
from tests.support.many_workspaces import (  # noqa: E402
    measure,
    prepare,
    run_in_process,
    run_replicas,
)


def one_run(kind: str, replicas: int, args: argparse.Namespace) -> str:
    with database(kind) as url, SlackEmulator() as slack:
        plan = prepare(
            url,
            slack,
            a_learners=args.a_learners,
            rate=args.rate,
            reminder_after=args.reminder_after,
        )
        timeout = args.a_learners / args.rate * 2 + args.reminder_after + 120
        if replicas == 1:
            asyncio.run(run_in_process(slack, plan, timeout))
        else:
            run_replicas(slack, plan, replicas, timeout)
        figures = measure(slack, plan)
    ok = (
        figures.b_lessons_last <= 5
        and figures.b_reminder <= 5
        and figures.a_share >= 0.95
        and figures.duplicates == 0
        and figures.missed == 0
    )
    line = (
        f"RESULT name=many_workspaces db={kind} replicas={replicas} "
        f"a_learners={args.a_learners} rate={args.rate:g} {figures.line()} "
        f"load={os.getloadavg()[0]:.2f} target_met={'yes' if ok else 'no'}"
    )
    print(
        f"{kind}, {replicas} replica(s): B's lessons done {figures.b_lessons_last:.2f} s after "
        f"their due instant, B's reminder {figures.b_reminder:.2f} s after its own; A sent "
        f"{figures.a_sent} in {figures.a_seconds:.1f} s = {figures.a_share:.1%} of its "
        f"{args.rate:g}/s limit ({figures.a_429} answered 429); duplicates "
        f"{figures.duplicates}, missed {figures.missed}",
        flush=True,
    )
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a-learners", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=10.0, help="A's and B's limit a second")
    parser.add_argument("--reminder-after", type=float, default=300.0)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    runs = []
    if args.db in ("sqlite", "both"):
        runs.append(("sqlite", 1))
    if args.db in ("postgresql", "both"):
        if postgres_available():
            runs.append(("postgresql", 2))
        else:
            print("PostgreSQL is not reachable: its run is left out")
    lines = [one_run(kind, replicas, args) for kind, replicas in runs]
    for line in lines[:-1]:
        print(line)
    print(lines[-1])


if __name__ == "__main__":
    main()
