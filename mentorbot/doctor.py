"""`mentorbot doctor`: one line per check, with a fix for each failure.

It reads configuration, the database and the content without changing anything (a
SQLite file that does not exist yet is not created), then asks each configured platform
whether its credentials work.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from bot.config import Settings, SettingsError, load_settings, shown_url, sqlite_file_of
from bot.course import Catalog, load_catalog
from bot.crypto import TokenCipher
from bot.db import Store
from mentorbot.tokens import TokenCount, count_tokens


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | FAIL | skip | warn
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<5} {self.name}: {self.detail}"
        return f"{text}\n      fix: {self.fix}" if self.fix else text


def check_configuration() -> tuple[Settings, set[str], list[Check]]:
    """The settings (defaults in place of bad values), the bad variables, and checks:
    one FAIL per bad variable, so every typo shows at once."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        fails = [
            Check(
                "configuration", "FAIL", problem, "correct that variable in the environment or .env"
            )
            for problem in exc.problems
        ]
        return exc.settings, exc.bad, fails
    return settings, set(), [_platforms(settings)]


def _platforms(settings: Settings) -> Check:
    platforms = [
        name
        for name, on in (("Slack", settings.has_slack), ("Discord", settings.has_discord))
        if on
    ]
    if not platforms:
        detail = "no Slack or Discord credentials, so `mentorbot run` will use the console adapter"
    else:
        detail = f"`mentorbot run` will start: {', '.join(platforms)}"
    if (
        settings.slack_bot_token
        and not settings.slack_app_token
        and not settings.slack_signing_secret
    ):
        return Check(
            "configuration",
            "FAIL",
            "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor "
            "SLACK_SIGNING_SECRET (HTTP mode)",
            "set SLACK_APP_TOKEN for Socket Mode, or SLACK_SIGNING_SECRET for HTTP mode",
        )
    if settings.slack_client_id and not (
        settings.slack_client_secret and settings.slack_signing_secret
    ):
        return Check(
            "configuration",
            "FAIL",
            "SLACK_CLIENT_ID needs SLACK_CLIENT_SECRET and SLACK_SIGNING_SECRET",
            "copy both from the app's Basic Information page",
        )
    return Check("configuration", "ok", detail)


def sqlite_folder_problem(url: str) -> str | None:
    """Why `mentorbot run` could not create the SQLite file, if it could not."""
    path = sqlite_file_of(url)
    if path is None or path.exists():
        return None
    folder = path.absolute().parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist, so {path.name} cannot be created there"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable, so {path.name} cannot be created there"
    return None


def check_database(settings: Settings) -> Check:
    url = settings.database_url
    shown = shown_url(url.split("@")[-1] if "@" in url else url)
    path = sqlite_file_of(url)
    if path is not None and not path.exists():
        problem = sqlite_folder_problem(url)
        if problem:
            return Check(
                "database",
                "FAIL",
                problem,
                "create the folder, or point MENTORBOT_DATABASE_URL at a folder that exists",
            )
        return Check(
            "database",
            "ok",
            f"{path} does not exist yet; `mentorbot run` creates and migrates it",
        )
    store: Store | None = None
    try:
        store = Store(url)
        current, head = store.current_revision(), store.head_revision()
    except Exception as exc:
        return Check(
            "database",
            "FAIL",
            f"cannot connect to {shown}: {str(exc).splitlines()[0]}",
            "check MENTORBOT_DATABASE_URL and that the server is running",
        )
    finally:
        if store is not None:
            store.dispose()
    if current == head:
        return Check("database", "ok", f"{shown} at revision {current} (up to date)")
    return Check(
        "database",
        "warn" if current else "ok",
        f"{shown} at revision {current or 'none'}; newest is {head}",
        "" if not current else "`mentorbot run` migrates it, or run `mentorbot db upgrade` now",
    )


def check_secret_key(settings: Settings) -> Check:
    """The key that encrypts stored Slack tokens: present when multi-workspace Slack needs
    it, well-formed, and able to read the tokens already stored."""
    from bot.crypto import GENERATE_HINT, KEY_VARIABLE, SecretKeyError

    fix = f"{GENERATE_HINT[0].upper()}{GENERATE_HINT[1:]} and set {KEY_VARIABLE} to it"
    if not settings.secret_key:
        if settings.needs_secret_key:
            return Check(
                "secret key",
                "FAIL",
                f"{KEY_VARIABLE} is not set; multi-workspace Slack (SLACK_CLIENT_ID) stores "
                "each workspace's token encrypted with it, and `mentorbot run` refuses to start",
                fix,
            )
        return Check(
            "secret key", "skip", f"{KEY_VARIABLE} not set (multi-workspace Slack needs it)"
        )
    try:
        cipher = TokenCipher(settings.secret_key)
    except SecretKeyError as exc:
        return Check("secret key", "FAIL", str(exc), fix)
    keys = f"{cipher.key_count} key(s)"
    counted = _stored_tokens(settings, cipher)
    if counted is None:
        return Check("secret key", "ok", f"{keys}; no stored tokens to read yet")
    if counted.unreadable:
        return Check(
            "secret key",
            "FAIL",
            f"{counted.unreadable} of {counted.stored} stored Slack token(s) do not decrypt "
            f"with {KEY_VARIABLE}",
            "list the new key first and the key they were stored with after it, "
            "comma-separated; then `mentorbot secrets rotate`",
        )
    if counted.plain:
        return Check(
            "secret key",
            "warn",
            f"{keys}; {counted.plain} stored Slack token(s) are not encrypted yet",
            "`mentorbot run` encrypts them as it migrates, or run `mentorbot db upgrade` now",
        )
    return Check("secret key", "ok", f"{keys}; {counted.stored} stored Slack token(s) decrypt")


def _stored_tokens(settings: Settings, cipher: TokenCipher) -> TokenCount | None:
    """The stored tokens, read-only; None when there is no database or table to read."""

    url = settings.database_url
    if url.startswith("sqlite"):
        from mentorbot.backup import sqlite_path

        if not sqlite_path(url).exists():
            return None
    store = Store(url)
    try:
        return count_tokens(store, cipher)
    except Exception:  # unreachable, or not migrated that far: the database check says so
        return None
    finally:
        store.dispose()


def check_content(settings: Settings) -> Check:
    catalog, problems = load_catalog(settings.content_dir)
    errors = [p for p in problems if p.severity == "error"]
    if catalog is None or errors:
        listing = "; ".join(str(p) for p in errors[:5])
        return Check(
            "content",
            "FAIL",
            f"{len(errors)} error(s): {listing}",
            "fix those lines, then check with `mentorbot content check`",
        )
    unknown = default_course_problem(settings, catalog)
    if unknown:
        return Check("content", "FAIL", unknown, "set MENTORBOT_DEFAULT_COURSE to one of those")
    lessons = sum(len(c.lessons) for c in catalog.courses.values())
    warned = f", {len(problems)} warning(s)" if problems else ""
    return Check(
        "content",
        "ok",
        f"{len(catalog.courses)} course(s), {lessons} lesson(s) in {settings.content_dir}{warned}",
    )


def default_course_problem(settings: Settings, catalog: Catalog) -> str | None:
    """MENTORBOT_DEFAULT_COURSE naming no course would silently start learners on the
    first course instead, so it is a configuration error."""
    wanted = settings.default_course
    if wanted is None or catalog.get(wanted) is not None:
        return None
    return (
        f"MENTORBOT_DEFAULT_COURSE must name a course in {settings.content_dir}, got "
        f"{wanted!r}; courses: {', '.join(catalog.courses)}"
    )


def check_slack(settings: Settings) -> Check:
    if not settings.has_slack:
        return Check("slack", "skip", "not configured (set SLACK_BOT_TOKEN to use Slack)")
    if not settings.slack_bot_token:
        return Check(
            "slack", "ok", "OAuth distribution: tokens come from installs, nothing to test here"
        )
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    base = settings.slack_api_url or "https://slack.com/api/"
    try:
        answer = WebClient(token=settings.slack_bot_token, base_url=base, timeout=10).auth_test()
    except SlackApiError as exc:
        return Check(
            "slack",
            "FAIL",
            f"auth.test refused the bot token: {exc.response.get('error')}",
            "copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page",
        )
    except Exception as exc:
        return Check(
            "slack", "FAIL", f"cannot reach Slack: {exc}", "check the network or SLACK_API_URL"
        )
    return Check("slack", "ok", f"bot {answer.get('user')} in workspace {answer.get('team')}")


def check_discord(settings: Settings) -> Check:
    if not settings.has_discord:
        return Check("discord", "skip", "not configured (set DISCORD_TOKEN to use Discord)")
    base = (settings.discord_api_url or "https://discord.com/api/v10").rstrip("/")
    request = urllib.request.Request(
        f"{base}/users/@me",
        headers={"Authorization": f"Bot {settings.discord_token}", "User-Agent": "mentorbot"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            user = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return Check(
            "discord",
            "FAIL",
            f"GET /users/@me answered {exc.code}",
            "reset and copy the bot token on the Developer Portal's Bot page",
        )
    except Exception as exc:
        return Check(
            "discord",
            "FAIL",
            f"cannot reach Discord: {exc}",
            "check the network or DISCORD_API_URL",
        )
    return Check("discord", "ok", f"logged in as {user.get('username')} ({user.get('id')})")


def run_doctor() -> int:
    settings, bad, checks = check_configuration()
    if "MENTORBOT_DATABASE_URL" in bad:
        checks.append(Check("database", "skip", "MENTORBOT_DATABASE_URL is not usable (above)"))
    else:
        checks.append(check_database(settings))
    checks.append(check_content(settings))
    checks.append(check_slack(settings))
    checks.append(check_discord(settings))
    checks.append(check_secret_key(settings))
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.status == "FAIL"]
    print(f"{len(failed)} problem(s) found." if failed else "Everything looks fine.")
    return 1 if failed else 0
