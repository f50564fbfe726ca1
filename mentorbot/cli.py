"""The ``mentorbot`` command line: run the bot, manage the database, check content,
export replies. Exit codes: 0 ok, 1 a check failed, 2 bad usage or configuration."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from bot.config import Settings, SettingsError, load_settings, shown_url
from bot.course import ContentError, load_catalog
from bot.crypto import OAUTH_NEEDS_KEY, SecretKeyError, TokenCipher, load_cipher
from bot.db import Store


class UsageError(Exception):
    """A mistake the user can fix; ``main`` prints it as one line and exits 2."""


def _settings() -> Settings:
    """The settings, or exit 2 with one line per bad variable (never a traceback)."""
    try:
        return load_settings()
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"mentorbot: {problem}", file=sys.stderr)
        raise SystemExit(2) from exc


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[None]:
    """Turn a database that cannot be opened into one line saying what to fix."""
    from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError

    from mentorbot.doctor import sqlite_folder_problem

    problem = sqlite_folder_problem(settings.database_url)
    if problem:
        raise UsageError(
            f"{problem}: create the folder, or point MENTORBOT_DATABASE_URL at one that exists"
        )
    try:
        yield
    except (OperationalError, InterfaceError, DatabaseError) as exc:
        if type(exc) not in (OperationalError, InterfaceError, DatabaseError):
            raise  # integrity and programming errors are bugs, not settings
        url = settings.database_url
        reason = str(exc.orig or exc).strip().splitlines()[0]
        hint = (
            "check that MENTORBOT_DATABASE_URL names a mentorbot SQLite file"
            if url.startswith("sqlite")
            else "check MENTORBOT_DATABASE_URL and that the database server is running"
        )
        raise UsageError(
            f"cannot use the database {shown_url(url.split('@')[-1])}: {reason}; {hint}"
        ) from exc


def _output_file(name: str, example: str) -> Path:
    """Check an output path before any work is done, so a typo costs nothing."""
    path = Path(name)
    if path.is_dir():
        raise UsageError(f"--output {name} is a folder: name a file in it, e.g. {path / example}")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise UsageError(f"--output {name}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--output {name}: the folder {folder} is not writable")
    return path


def _logging(settings: Settings, to_file: bool = False) -> Path | None:
    """Configure logs; with ``to_file``, into a file in the data folder (returned)."""
    from mentorbot.logs import configure

    path = None
    if to_file:
        try:
            settings.files_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create the data folder {settings.files_dir}: {exc.strerror}; "
                "set MENTORBOT_DATA_DIR to a folder you can write"
            ) from exc
        path = settings.files_dir / "mentorbot.log"
    configure(settings.log_level, settings.log_format, file=path)
    return path


def cmd_run(args: argparse.Namespace) -> int:
    from mentorbot.backup import BackupError, running_on
    from mentorbot.bootstrap import adapter_names, build, choose_adapters, serve

    settings = _settings()
    # A person chatting in this terminal should see the chat, not log lines.
    chatting = "console" in adapter_names(settings, args.adapter) and sys.stdin.isatty()
    log_file = _logging(settings, to_file=chatting)
    if log_file is not None:
        print(f"mentorbot: logs go to {log_file}", file=sys.stderr)
    running = contextlib.ExitStack()
    if settings.needs_secret_key and (not args.adapter or "slack" in args.adapter):
        load_cipher(settings.secret_key, why=OAUTH_NEEDS_KEY)  # refuse before anything runs
    elif settings.secret_key:
        TokenCipher(settings.secret_key)  # a malformed key is a mistake even when unused
    try:
        with _database(settings):
            running.enter_context(running_on(settings.database_url))  # `db restore` refuses
            app = build(settings)
    except BackupError as exc:
        raise UsageError(str(exc)) from exc
    except ContentError as exc:
        running.close()
        print("mentorbot: refusing to start, the course content is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    from mentorbot.doctor import default_course_problem

    unknown = default_course_problem(settings, app.catalog.catalog)
    if unknown:
        app.store.dispose()
        print(f"mentorbot: {unknown}", file=sys.stderr)
        return 2
    try:
        adapters = choose_adapters(app, args.adapter)
    except ValueError as exc:
        app.store.dispose()
        print(f"mentorbot: {exc}", file=sys.stderr)
        return 2
    with running, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(app, adapters))
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.action in ("backup", "restore"):
        from mentorbot.backup import BackupError, backup, restore

        if not args.file:
            raise UsageError(f"`db {args.action}` needs a FILE")
        try:
            if args.action == "backup":
                backup(settings.database_url, Path(args.file))
                print(f"backed up to {args.file}")
                return 0
            revision = restore(settings.database_url, Path(args.file))
        except BackupError as exc:
            raise UsageError(str(exc)) from exc
        with _database(settings):
            store = Store(settings.database_url, secret_key=settings.secret_key)
            try:
                store.upgrade()
            finally:
                store.dispose()
        print(f"restored {args.file} (revision {revision}); the database is up to date")
        return 0
    with _database(settings):
        store = Store(settings.database_url, secret_key=settings.secret_key)
        try:
            if args.action == "prune":
                from datetime import UTC, datetime

                from bot.retention import prune

                store.upgrade()
                result = prune(
                    store, datetime.now(UTC), settings.retention_days, dry_run=args.dry_run
                )
                verb = "would have " if args.dry_run else ""
                print(
                    f"{verb}removed {result.removed:,} delivery rows and {verb}compacted "
                    f"{result.compacted:,} older than {settings.retention_days} days "
                    "(MENTORBOT_RETENTION_DAYS); replies are kept whole"
                )
                return 0
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
            raise UsageError(
                f"no course called {args.course!r} in {path}; courses: "
                + ", ".join(catalog.courses)
            )
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
    known = "; ".join(
        f"{course.id}: {', '.join(lesson.id for lesson in course.lessons)}"
        for course in courses
        if course is not None
    )
    raise UsageError(f"no lesson {args.lesson_id!r} in {path}; lessons there: {known}")


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
    output = _output_file(args.output, f"replies.{args.format}") if args.output else None
    with _database(settings):
        store = Store(settings.database_url, secret_key=settings.secret_key)
        try:
            store.upgrade()
            if args.workspace:
                _known_workspace(store, args.workspace)
            if output is not None:
                from mentorbot.progress import Progress

                progress = Progress(0, "exporting replies")

                def on_row(done: int) -> None:
                    if done < 0:
                        progress.total = -done
                    else:
                        progress.update(done)

                with open(output, "w", encoding="utf-8", newline="") as out:
                    count = write_replies(store, out, args.format, only, on_row)
                progress.finish(f"wrote {count} reply(ies) to {args.output}")
            else:
                write_replies(store, sys.stdout, args.format, only)
        finally:
            store.dispose()
    return 0


def _known_workspace(store: Store, wanted: str) -> None:
    """An unknown --workspace would export nothing and look like "no replies"."""
    from bot.export import workspaces

    known = workspaces(store)
    if any(external_id == wanted for _platform, external_id in known):
        return
    listing = ", ".join(f"{external_id} ({platform})" for platform, external_id in known)
    raise UsageError(
        f"there is no workspace {wanted!r} in the database; "
        + (f"workspaces: {listing}" if known else "it holds no workspaces yet")
    )


def cmd_schedule(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from datetime import date

    from bot.schedule import Schedule, ScheduleError, parse_holidays

    try:
        schedule = Schedule.parse(args.time, args.days, args.tz)
        if args.holidays is not None:
            schedule = replace(schedule, holidays=parse_holidays(args.holidays))
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
    # A delivery day lost to a holiday is a line of its own, its date where the local
    # time would be, so the --count deliveries stay exactly as before.
    delivered = 0
    for day, instant, holiday in schedule.slots(start):
        if holiday is not None:
            print(f"{day.isoformat():<25}  {day:%a}  skipped: {holiday}")
            continue
        local = schedule.local(instant)
        print(f"{local.isoformat()}  {local:%a}  {instant:%Y-%m-%dT%H:%M:%SZ}")
        delivered += 1
        if delivered == args.count:
            break
    return 0


def cmd_doctor(_args: argparse.Namespace) -> int:
    from mentorbot.doctor import run_doctor

    return run_doctor()


def _assign_workspace(platform: str, workspace: str | None) -> str:
    """Slack and Discord need the team or server: there is no sensible default, and a
    wrong one would enrol people in a workspace that does not exist."""
    if platform == "console":
        if workspace not in (None, "local"):
            raise UsageError(f"the console has one workspace, local; got --workspace {workspace}")
        return "local"
    if not workspace:
        what = "the Slack team id (T0123...)" if platform == "slack" else "the server (guild) id"
        raise UsageError(f"--platform {platform} needs --workspace: {what}")
    return workspace


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
    workspace = _assign_workspace(args.platform, args.workspace)
    listed = [("the command line", user) for user in args.users]
    if args.file:
        try:
            text = Path(args.file).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise UsageError(f"cannot read --file {args.file}: {reason}") from exc
        listed += [
            (f"{args.file}:{n}", line.strip())
            for n, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]
    if not listed:
        raise UsageError("name users, or give --file with one user id a line")
    users: list[str] = []
    first_at: dict[str, str] = {}
    for where, user in listed:
        if user in first_at:
            print(
                f"mentorbot: {where}: {user} is a duplicate (first at {first_at[user]}); "
                "enrolling them once",
                file=sys.stderr,
            )
            continue
        first_at[user] = where
        users.append(user)
    try:
        from mentorbot.bootstrap import build

        with _database(settings):
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
                args.platform, workspace, chunk, args.course, args.by
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


def cmd_simulate(args: argparse.Namespace) -> int:
    """Replay a script (or a silent learner on a course) on a virtual clock."""
    import logging
    from datetime import datetime

    from bot.schedule import parse_time
    from mentorbot.simulate import (
        ScriptError,
        course_script,
        parse_script,
        parse_until,
        simulate,
        zone_of,
    )

    settings = _settings()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if bool(args.script) == bool(args.course):
        print(
            "mentorbot simulate: give a SCRIPT file or --course ID (one of them)", file=sys.stderr
        )
        return 2
    try:
        zone = zone_of(args.tz)
        until = parse_until(args.until, zone)
        if args.course:
            load = load_catalog(settings.content_dir)[0]
            if load is None or load.get(args.course) is None:
                known = ", ".join(load.courses) if load else "none (the content is invalid)"
                print(
                    f"mentorbot simulate: no course {args.course!r}; courses: {known}",
                    file=sys.stderr,
                )
                return 2
            if args.weeks < 1 or args.weeks > 104:
                print("mentorbot simulate: --weeks must be between 1 and 104", file=sys.stderr)
                return 2
            today = datetime.now(zone).date()
            script = course_script(args.course, zone, today, parse_time(settings.delivery_time))
            from datetime import timedelta

            until = until or script[0].at + timedelta(weeks=args.weeks)
        else:
            path = Path(args.script)
            if not path.is_file():
                print(f"mentorbot simulate: no script file at {path}", file=sys.stderr)
                return 2
            with path.open(encoding="utf-8", errors="replace") as handle:
                script = parse_script(handle, zone, str(path))
        database_url = os.environ.get("MENTORBOT_DATABASE_URL") or None
        simulate(
            settings, script, zone=zone, until=until, out=sys.stdout, database_url=database_url
        )
    except ScriptError as exc:
        print(f"mentorbot simulate: {exc}", file=sys.stderr)
        return 2
    except ContentError as exc:
        print("mentorbot simulate: the course content is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    return 0


def version() -> str:
    """The installed package's version; a source tree that was never installed says so."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("mentorbot")
    except PackageNotFoundError:
        return "unknown (not installed)"


DESCRIPTION = """\
mentorbot: a mentoring bot for Slack, Discord and the terminal.
Run it, manage its database, check and preview course content, export replies."""
EPILOG = """\
examples:
  mentorbot run                       the console in this terminal, or the platforms set up
  mentorbot doctor                    check settings, database, content and tokens
  mentorbot content check lesson.md   validate a lesson while writing it
  mentorbot COMMAND --help            the options of one command

exit codes: 0 ok, 1 a check failed, 2 a mistake in the command or the settings
settings: environment variables or a .env file, listed in the README"""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="mentorbot",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"mentorbot {version()}")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bot (console adapter when no platform is set up)")
    run.add_argument(
        "--adapter",
        action="append",
        choices=["console", "slack", "discord"],
        help="adapter to run (repeatable); default: every platform with credentials, else console",
    )
    run.set_defaults(func=cmd_run)

    db = sub.add_parser("db", help="database migrations, SQLite backup and restore, prune")
    db.add_argument("action", choices=["upgrade", "current", "backup", "restore", "prune"])
    db.add_argument("file", nargs="?", help="backup file (for backup and restore)")
    db.add_argument(
        "--dry-run", action="store_true", help="with prune: count what would go, change nothing"
    )
    db.set_defaults(func=cmd_db)

    content = sub.add_parser("content", help="check or preview course content")
    content_sub = content.add_subparsers(dest="action", required=True)
    check = content_sub.add_parser(
        "check", help="validate a content folder, a course folder or one lesson file"
    )
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
    preview.add_argument(
        "--holidays",
        metavar="CODE",
        help="public holidays to skip, e.g. DE, DE-BY or DE,US-CA (shown as skipped lines)",
    )
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
    assign.add_argument(
        "--workspace", help="Slack team id or Discord server id (needed for those platforms)"
    )
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

    sim = sub.add_parser(
        "simulate",
        help="replay a learner's weeks in seconds on a virtual clock, as a transcript",
    )
    sim.add_argument("script", nargs="?", help="script file: 'YYYY-MM-DDTHH:MM [@lead] TEXT' lines")
    sim.add_argument("--tz", default="UTC", help="time zone of the script's times (default UTC)")
    sim.add_argument("--until", help="stop at the end of this local day (YYYY-MM-DD)")
    sim.add_argument("--course", help="instead of a script: a silent learner starting next Monday")
    sim.add_argument("--weeks", type=int, default=4, help="with --course: how long (default 4)")
    sim.set_defaults(func=cmd_simulate)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except UsageError as exc:
        print(f"mentorbot: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`mentorbot doctor | head -2`): stop quietly, as cat does.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command cut off this way
    except SecretKeyError as exc:  # missing, malformed or wrong key: the user's to fix
        print(f"mentorbot: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
