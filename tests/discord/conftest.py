"""Fixtures for the Discord adapter tests (the root conftest provides the databases and
the clock). discord.py logs a line for every 429 it retries and warns about voice
support; keep that out of failure output unless it is about the adapter."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _quiet_discord_logs() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("discord", "discord.client", "discord.http")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
