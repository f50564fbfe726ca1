"""Structured logs: key=value lines by default, JSON with MENTORBOT_LOG_FORMAT=json.

Context (workspace, learner, delivery ids) travels as ``extra=`` fields. Reply text is
never logged, and anything that looks like a platform token is masked on the way out,
whatever library wrote the line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from bot.logcontext import LOG_CONTEXT

_TOKEN = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+"  # Slack tokens
    r"|[MNO][A-Za-z\d_-]{23,25}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,})"  # Discord bot tokens
)
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    return _TOKEN.sub("[redacted]", text)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": redact(record.getMessage()),
    }
    fields.update(LOG_CONTEXT.get())
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value
    if record.exc_info:
        if _network_trouble(record):
            exc = record.exc_info[1]
            fields["error"] = redact(f"{type(exc).__name__}: {exc}")
        else:
            fields["error"] = redact(logging.Formatter().formatException(record.exc_info))
    return fields


_OURS = ("mentorbot", "bot", "adapters", "scheduler", "__main__")


def _network_trouble(record: logging.LogRecord) -> bool:
    """A library's report of a network error it retries by itself (slack_sdk logs an
    unreachable Slack every 10 s): the one-line reason says it all, a traceback each
    time only buries the other lines. At DEBUG everything is kept."""
    if record.name.split(".")[0] in _OURS or logging.getLogger().level <= logging.DEBUG:
        return False
    exc = record.exc_info[1] if record.exc_info else None
    network: tuple[type[BaseException], ...] = (OSError, TimeoutError)
    try:
        import aiohttp

        network += (aiohttp.ClientError,)
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        pass
    return isinstance(exc, network)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _fields(record).items():
            text = str(value)
            if key == "error" or any(c in text for c in ' "=\n'):
                text = json.dumps(text, ensure_ascii=False)
            parts.append(f"{key}={text}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), ensure_ascii=False, default=str)


def configure(
    level: str,
    fmt: str = "keyvalue",
    stream: TextIO = sys.stderr,
    file: Path | None = None,
) -> None:
    """Log to ``stream``; with ``file``, log there instead and keep only warnings and
    errors on ``stream``, so a console chat on the same terminal stays readable."""
    formatter = JsonFormatter() if fmt == "json" else KeyValueFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream)]
    if file is not None:
        handlers[0].setLevel(logging.WARNING)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in ("alembic", "apscheduler", "discord", "slack_bolt", "slack_sdk", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
