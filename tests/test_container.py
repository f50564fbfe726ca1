"""The container files, checked by reading them (no Docker engine here), and the
image's health check run against a real `mentorbot` outside Docker."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined."""
    out: list[tuple[str, str]] = []
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions(REPO / "Dockerfile")
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_everything_the_dockerfile_copies_exists() -> None:
    for word, args in instructions(REPO / "Dockerfile"):
        if word == "COPY" and "--from=" not in args:
            *sources, _destination = shlex.split(args)
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: no such file"


def test_final_stage_is_small_unprivileged_and_healthchecked() -> None:
    stage = final_stage()
    words = [word for word, _ in stage]
    [user] = [args for word, args in stage if word == "USER"]
    creates = " ".join(args for word, args in stage if word == "RUN")
    assert "useradd" in creates and user in creates and user != "root"
    assert words.index("USER") > max(
        i for i, w in enumerate(words) if w == "RUN" and "pip" in stage[i][1]
    )
    assert not any(tool in creates for tool in ("gcc", "build-essential", "apt-get install"))
    assert "HEALTHCHECK" in words
    assert dict(stage)["ENTRYPOINT"] == '["mentorbot"]'
    assert dict(stage)["CMD"] == '["run"]'
    assert "MENTORBOT_HTTP=on" in dict(stage)["ENV"]


def test_dockerignore_keeps_state_and_secrets_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".env", "*.db"):
        assert entry in ignored


def test_compose_runs_the_bot_with_postgresql_and_a_named_volume() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    bot, db = compose["services"]["mentorbot"], compose["services"]["postgres"]
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bot["environment"]["MENTORBOT_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in bot["environment"]["MENTORBOT_DATABASE_URL"]
    volume = db["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]
    assert db["healthcheck"]["test"]


@pytest.mark.slow
def test_the_image_health_check_passes_against_a_running_bot(tmp_path: Path) -> None:
    from tests.test_operations import Bot, free_port, wait_http

    [healthcheck] = [args for word, args in final_stage() if word == "HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    port = free_port()
    bot = Bot(tmp_path, MENTORBOT_HTTP="on", PORT=str(port))
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        env = {**os.environ, "PORT": str(port)}
        command[0] = "python3" if command[0] == "python" else command[0]
        assert subprocess.run(command, env=env, timeout=30).returncode == 0
        env["PORT"] = str(free_port())  # nothing listens there: the check must fail
        assert subprocess.run(command, env=env, timeout=30, capture_output=True).returncode != 0
    finally:
        assert bot.stop() == 0
