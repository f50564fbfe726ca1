"""The ``mentorbot`` command line: run the bot, manage the database, check content,
export replies. Exit codes: 0 ok, 1 a check failed, 2 bad usage or configuration."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from bot.config import Settings, load_settings
from bot.course import ContentError, load_catalog
from bot.crypto import OAUTH_NEEDS_KEY, SecretKeyError, TokenCipher, load_cipher
from bot.db import Store


def _settings() -> Settings:
    try:
        return load_settings()
    except ValueError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _logging(settings: Settings) -> None:
    from mentorbot.logs import configure

    configure(settings.log_level, settings.log_format)


def cmd_run(args: argparse.Namespace) -> int:
    from mentorbot.bootstrap import build, choose_adapters, serve

    settings = _settings()
    _logging(settings)
    if settings.needs_secret_key and (not args.adapter or "slack" in args.adapter):
        load_cipher(settings.secret_key, why=OAUTH_NEEDS_KEY)  # refuse before anything runs
    elif settings.secret_key:
        TokenCipher(settings.secret_key)  # a malformed key is a mistake even when unused
    try:
        app = build(settings)
    except ContentError as exc:
        print("mentorbot: refusing to start, the course content is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    try:
        adapters = choose_adapters(app, args.adapter)
    except ValueError as exc:
        print(f"mentorbot: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(app, adapters))
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.action in ("backup", "restore"):
        from mentorbot.backup import BackupError, backup, restore

        if not args.file:
            print(f"mentorbot: `db {args.action}` needs a FILE", file=sys.stderr)
            return 2
        try:
            if args.action == "backup":
                backup(settings.database_url, Path(args.file))
                print(f"backed up to {args.file}")
                return 0
            revision = restore(settings.database_url, Path(args.file))
        except BackupError as exc:
            print(f"mentorbot: {exc}", file=sys.stderr)
            return 2
        store = Store(settings.database_url, secret_key=settings.secret_key)
        try:
            store.upgrade()
        finally:
            store.dispose()
        print(f"restored {args.file} (revision {revision}); the database is up to date")
        return 0
    store = Store(settings.database_url, secret_key=settings.secret_key)
    try:
        if args.action == "upgrade":
            store.upgrade()
            print(f"database is at revision {store.current_revision()}")
        else:
            current, head = store.current_revision(), store.head_revision()
            state = "up to date" if current == head else f"behind (newest is {head})"
            print(f"database revision: {current or 'none'} — {state}")
    finally:
        store.dispose()
    return 0


def cmd_content(args: argparse.Namespace) -> int:
    settings = _settings()
    path = Path(args.path) if getattr(args, "path", None) else settings.content_dir
    catalog, problems = load_catalog(path)
    errors = [p for p in problems if p.severity == "error"]
    if args.action == "check":
        for problem in problems:
            print(problem, file=sys.stderr if problem.severity == "error" else sys.stdout)
        if catalog is None or errors:
            print(f"{len(errors)} error(s) in {path}", file=sys.stderr)
            return 1
        for course in catalog.courses.values():
            snippets = sum(len(lesson.snippets) for lesson in course.lessons)
            questions = sum(len(lesson.questions) for lesson in course.lessons)
            practices = sum(len(lesson.practices) for lesson in course.lessons)
            print(
                f"{course.id}: {course.title} — {len(course.lessons)} lesson(s), "
                f"{snippets} snippet(s), {questions} question(s), {practices} practice(s)"
            )
            for lesson in course.lessons:
                print(
                    f"  {lesson.name}: {len(lesson.snippets)} snippets, "
                    f"{len(lesson.questions)} questions, {len(lesson.practices)} practices, "
                    f"{lesson.day_count(settings.snippets_per_day)} lesson-day(s)"
                )
        return 0
    # show
    if catalog is None:
        for problem in errors:
            print(problem, file=sys.stderr)
        return 1
    courses = [catalog.get(args.course)] if args.course else list(catalog.courses.values())
    for course in courses:
        if course is None:
            print(f"no course called {args.course!r}", file=sys.stderr)
            return 2
        lesson = course.lesson(args.lesson_id)
        if lesson is None:
            continue
        from adapters.console import render
        from bot.messages import OutgoingMessage, Section

        days = lesson.days(settings.snippets_per_day)
        for day in days:
            message = OutgoingMessage(
                platform="console",
                workspace="local",
                user="preview",
                text="",
                title=f"{lesson.name} — day {day.number} of {len(days)}",
                sections=tuple(Section(s.title, s.body) for s in day.snippets),
                question=day.question,
            )
            print(render(message))
            print()
        next_id, next_title, present = course.following(lesson)
        if next_id:
            note = "" if present else " (not in the content yet)"
            print(f"After the last day: continue with {next_id} {next_title or ''}{note}?")
        return 0
    print(f"no lesson {args.lesson_id!r} in {path}", file=sys.stderr)
    return 2


def cmd_export(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from bot.export import ReplyFilter, write_replies

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            print(
                f"mentorbot: invalid --since {args.since!r}: use YYYY-MM-DD or ISO 8601",
                file=sys.stderr,
            )
            return 2
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    only = ReplyFilter(workspace=args.workspace, since=since, for_leads=args.for_leads)
    settings = _settings()
    store = Store(settings.database_url, secret_key=settings.secret_key)
    try:
        store.upgrade()
        if args.output:
            from mentorbot.progress import Progress

            progress = Progress(0, "exporting replies")

            def on_row(done: int) -> None:
                if done < 0:
                    progress.total = -done
                else:
                    progress.update(done)

            with open(args.output, "w", encoding="utf-8", newline="") as out:
                count = write_replies(store, out, args.format, only, on_row)
            progress.finish(f"wrote {count} reply(ies) to {args.output}")
        else:
            write_replies(store, sys.stdout, args.format, only)
    finally:
        store.dispose()
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from datetime import date
    from itertools import islice

    from bot.schedule import Schedule, ScheduleError

    try:
        schedule = Schedule.parse(args.time, args.days, args.tz)
    except ScheduleError as exc:
        print(f"mentorbot: {exc}", file=sys.stderr)
        return 2
    try:
        start = date.fromisoformat(args.from_date)
    except ValueError:
        print(f"mentorbot: invalid --from date {args.from_date!r}: use YYYY-MM-DD", file=sys.stderr)
        return 2
    if args.count < 1 or args.count > 10_000:
        print(f"mentorbot: invalid --count {args.count}: use 1 to 10000", file=sys.stderr)
        return 2
    for instant in islice(schedule.instants(start), args.count):
        local = schedule.local(instant)
        print(f"{local.isoformat()}  {local:%a}  {instant:%Y-%m-%dT%H:%M:%SZ}")
    return 0


def cmd_doctor(_args: argparse.Namespace) -> int:
    from mentorbot.doctor import run_doctor

    return run_doctor()


def cmd_secrets(args: argparse.Namespace) -> int:
    """Make a key, or re-encrypt every stored token with the newest key (rotation)."""
    from bot.crypto import generate_key

    if args.action == "generate":
        print(generate_key())
        return 0
    from mentorbot.tokens import rotate_tokens

    settings = _settings()
    cipher = load_cipher(settings.secret_key)
    store = Store(settings.database_url, secret_key=settings.secret_key)
    try:
        store.upgrade()
        count = rotate_tokens(store, cipher)
    finally:
        store.dispose()
    older = cipher.key_count - 1
    after = (
        f"; every replica can now drop the older key{'s' if older > 1 else ''} "
        "from MENTORBOT_SECRET_KEY"
        if older
        else ""
    )
    print(f"re-encrypted {count} stored token(s) with the newest key{after}")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    """Enrol many people at once (e.g. a whole team from a file), with progress."""
    from mentorbot.progress import Progress

    settings = _settings()
    users = list(args.users)
    if args.file:
        users += [line.strip() for line in Path(args.file).read_text().splitlines() if line.strip()]
    if not users:
        print("mentorbot: name users, or give --file with one user id a line", file=sys.stderr)
        return 2
    try:
        from mentorbot.bootstrap import build

        app = build(settings)
    except ContentError as exc:
        print(f"mentorbot: invalid content: {exc}", file=sys.stderr)
        return 2
    progress = Progress(len(users), "enrolling")
    enrolled = 0
    try:
        for start in range(0, len(users), 50):
            chunk = users[start : start + 50]
            enrolled += app.service.bulk_assign(
                args.platform, args.workspace, chunk, args.course, args.by
            )
            progress.update(start + len(chunk))
    except ValueError as exc:
        print(f"mentorbot: {exc}", file=sys.stderr)
        return 2
    finally:
        app.store.dispose()
    progress.finish(
        f"enrolled {enrolled} of {len(users)}; welcome DMs go out with the bot's next tick"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mentorbot", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bot (console adapter when no platform is set up)")
    run.add_argument(
        "--adapter",
        action="append",
        choices=["console", "slack", "discord"],
        help="adapter to run (repeatable); default: every platform with credentials, else console",
    )
    run.set_defaults(func=cmd_run)

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "current", "backup", "restore"])
    db.add_argument("file", nargs="?", help="backup file (for backup and restore)")
    db.set_defaults(func=cmd_db)

    content = sub.add_parser("content", help="check or preview course content")
    content_sub = content.add_subparsers(dest="action", required=True)
    check = content_sub.add_parser("check", help="validate a course folder or content folder")
    check.add_argument("path", nargs="?", help="default: MENTORBOT_CONTENT_DIR")
    show = content_sub.add_parser("show", help="print a lesson as the learner gets it, by day")
    show.add_argument("lesson_id")
    show.add_argument("--course", help="course id (default: the first course with that lesson)")
    show.add_argument("--path", help="content folder (default: MENTORBOT_CONTENT_DIR)")
    content.set_defaults(func=cmd_content)

    schedule = sub.add_parser("schedule", help="delivery schedules")
    schedule_sub = schedule.add_subparsers(dest="action", required=True)
    preview = schedule_sub.add_parser("preview", help="print the next delivery instants")
    preview.add_argument("--tz", required=True, help="IANA time zone, e.g. Europe/Berlin")
    preview.add_argument("--time", required=True, help="local delivery time, HH:MM")
    preview.add_argument("--days", default="weekdays", help="weekdays, daily or mon,tue,...")
    preview.add_argument("--from", dest="from_date", required=True, help="local date YYYY-MM-DD")
    preview.add_argument("--count", type=int, default=10)
    schedule.set_defaults(func=cmd_schedule)

    doctor = sub.add_parser("doctor", help="check configuration, database, content, platforms")
    doctor.set_defaults(func=cmd_doctor)

    secrets = sub.add_parser("secrets", help="the key that encrypts stored Slack tokens")
    secrets_sub = secrets.add_subparsers(dest="action", required=True)
    secrets_sub.add_parser("generate", help="print a new key for MENTORBOT_SECRET_KEY")
    secrets_sub.add_parser(
        "rotate", help="re-encrypt stored tokens with the first key in MENTORBOT_SECRET_KEY"
    )
    secrets.set_defaults(func=cmd_secrets)

    assign = sub.add_parser("assign", help="enrol many people at once")
    assign.add_argument("users", nargs="*", help="platform user ids")
    assign.add_argument("--file", help="a file with one user id a line")
    assign.add_argument("--platform", default="console", choices=["console", "slack", "discord"])
    assign.add_argument("--workspace", default="local", help="Slack team id, guild id, or local")
    assign.add_argument("--course", help="course id (default: the workspace's)")
    assign.add_argument("--by", help="user id of the lead to name in the welcome")
    assign.set_defaults(func=cmd_assign)

    export = sub.add_parser("export", help="export stored data")
    export.add_argument("what", choices=["replies"])
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--output", help="file to write (default: standard output)")
    export.add_argument("--workspace", help="only this workspace (Slack team id, guild id, local)")
    export.add_argument("--since", help="only replies written since (YYYY-MM-DD or ISO 8601, UTC)")
    export.add_argument(
        "--for-leads",
        action="store_true",
        help="only replies leads may read (shared by their author, or visible to leads)",
    )
    export.set_defaults(func=cmd_export)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SecretKeyError as exc:  # missing, malformed or wrong key: the user's to fix
        print(f"mentorbot: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
