"""A plain (non-editable) install carries the bundled course, as the Docker image needs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_wheel_ships_the_course_and_finds_it_when_installed(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("mentorbot-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "mentorbot/bundled_content/data-engineering/0.2.2-senior-lead-data-engineer.md" in names
    assert "bot/migrations/versions/0001_initial_schema.py" in names

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    probe = (
        "from bot.config import bundled_content_dir; from bot.course import load_catalog;"
        "c, _ = load_catalog(bundled_content_dir()); print(bundled_content_dir(), c.default.id)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert found.returncode == 0, found.stderr
    assert str(target) in found.stdout and "data-engineering" in found.stdout
