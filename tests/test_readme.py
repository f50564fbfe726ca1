"""The README is the front door: its tables, commands and examples must match the code."""

from __future__ import annotations

import re
import subprocess

from bot.commands import SPECS
from tests.conftest import REPO
from tests.test_console_e2e import mentorbot_command

README = (REPO / "README.md").read_text(encoding="utf-8")
CONFIG = (REPO / "bot" / "config.py").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def tables(text: str) -> list[list[str]]:
    """Markdown tables as lists of rows; a blank line ends a table, as renderers do."""
    found: list[list[str]] = []
    current: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found


def test_the_configuration_table_is_one_table_with_every_setting() -> None:
    config = section("Configuration")
    [table] = tables(config)  # a blank line inside would split it in two
    first_column = "\n".join(row.split("|")[1] for row in table)
    documented = set(re.findall(r"`([A-Z][A-Z_]+)`", first_column))
    read = set(re.findall(r'"((?:MENTORBOT|SLACK|DISCORD)_[A-Z_]+|PORT)"', CONFIG))
    assert read - documented == set(), "settings the code reads but the README does not list"
    assert documented - read == set(), "settings the README lists but the code does not read"


def test_every_command_is_in_a_command_table() -> None:
    listed = "\n".join(row for table in tables(README) for row in table)
    for spec in SPECS:
        assert f"`/mentor {spec.name}" in listed or f"/ `/mentor {spec.name}" in listed, spec.name


def test_the_schedule_preview_example_is_what_the_command_prints() -> None:
    example = re.search(r"`mentorbot schedule preview ([^`]+)`", README.replace("\n", " "))
    assert example is not None
    args = example.group(1).split()
    shown = re.search(r"```text\n(.*?)```", section("When lessons arrive"), re.S)
    assert shown is not None
    result = subprocess.run(
        [*mentorbot_command(), "schedule", "preview", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown.group(1)


def test_internals_live_in_architecture_not_the_readme() -> None:
    for internal in ("SKIP LOCKED", "lease", "outbox", "IMMEDIATE", "next_due_at"):
        assert internal not in README, internal
    architecture = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert "## Delivery guarantees" in architecture and "SKIP LOCKED" in architecture
    assert "ARCHITECTURE.md#delivery-guarantees" in README


def test_the_holiday_preview_example_is_what_the_command_prints() -> None:
    shown = re.findall(r"```text\n(.*?)```", section("When lessons arrive"), re.S)
    skipped = next(block for block in shown if "skipped:" in block)
    example = re.search(r"From\s+`(--from [^`]+)`", section("When lessons arrive"))
    assert example is not None
    args = ["--tz", "Europe/Berlin", "--time", "09:00", *example.group(1).split()]
    result = subprocess.run(
        [*mentorbot_command(), "schedule", "preview", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == skipped
