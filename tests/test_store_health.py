"""The store when the database misbehaves: refuses writes, or stops answering.

Readiness must tell the truth (a database that reads but refuses writes is not ready),
the store must recover once the database is fixed, without a restart, and a frozen
PostgreSQL must get a prompt 503, not a hung request.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import OperationalError

from bot.config import Settings, bundled_content_dir
from bot.db import Store
from mentorbot.bootstrap import build
from mentorbot.web import build_web
from tests.test_console_e2e import mentorbot_command
from tests.test_operations import free_port, get, wait_http


class ReadOnlyTarget:
    """A migrated database that the test can make read-only and writable again, for
    real: on SQLite by the file's mode, on PostgreSQL by the role's
    ``default_transaction_read_only`` (what a standby looks like to a client)."""

    url: str
    folder: Path
    refusal: str  # the database's own words when it refuses a write

    def make_read_only(self) -> None:
        raise NotImplementedError

    def make_writable(self) -> None:
        raise NotImplementedError


class SqliteTarget(ReadOnlyTarget):
    """Root writes to a file whatever its mode, so under root a chmod would prove
    nothing; the immutable attribute (``chattr +i``) refuses root as well. Other users
    get the plain chmod an operator would use. Either way the operating system itself
    denies the write, and SQLite opens the file read-only, as in the field."""

    refusal = "attempt to write a readonly database"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "bot.db"
        self.url = f"sqlite:///{self.path}"
        self.as_root = os.geteuid() == 0
        if self.as_root and not shutil.which("chattr"):
            pytest.skip("running as root without chattr: nothing can deny root a write")
        store = Store(self.url)
        store.upgrade()
        store.dispose()
        if self.as_root:
            probe = folder / "probe"
            probe.write_text("x")
            denied = subprocess.run(["chattr", "+i", str(probe)], capture_output=True)
            subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
            if denied.returncode != 0:
                pytest.skip(f"running as root on a file system without chattr +i: {denied}")

    def make_read_only(self) -> None:
        if self.as_root:
            subprocess.run(["chattr", "+i", str(self.path)], check=True)
        else:
            self.path.chmod(0o444)

    def make_writable(self) -> None:
        if self.as_root:
            subprocess.run(["chattr", "-i", str(self.path)], check=True)
        else:
            self.path.chmod(0o644)  # the file only, as an operator would

    def close(self) -> None:
        self.make_writable()  # or nobody can remove it afterwards


class PostgresTarget(ReadOnlyTarget):
    refusal = "read-only transaction"

    def __init__(self, schema_url: str, folder: Path) -> None:
        self.folder = folder
        store = Store(schema_url)
        store.upgrade()
        store.dispose()
        self.role = f"mentorbot_ro_{uuid.uuid4().hex[:10]}"
        self.admin = sa.create_engine(schema_url)
        schema = self._scalar("SELECT current_schema()")
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE ROLE {self.role} LOGIN")
            conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO {self.role}')
            conn.exec_driver_sql(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO {self.role}')
            conn.exec_driver_sql(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA "{schema}" TO {self.role}')
        self.url = sa.engine.make_url(schema_url).set(username=self.role).render_as_string(False)

    def _scalar(self, sql: str) -> str:
        with self.admin.connect() as conn:
            return str(conn.exec_driver_sql(sql).scalar())

    def make_read_only(self) -> None:
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f"ALTER ROLE {self.role} SET default_transaction_read_only = on")

    def make_writable(self) -> None:
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f"ALTER ROLE {self.role} RESET default_transaction_read_only")

    def close(self) -> None:
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {self.role}")
            conn.exec_driver_sql(f"DROP ROLE {self.role}")
        self.admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def read_only_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadOnlyTarget]:
    target: SqliteTarget | PostgresTarget
    if request.param == "sqlite":
        target = SqliteTarget(tmp_path)
    else:
        target = PostgresTarget(str(request.getfixturevalue("postgres_url")), tmp_path)
    try:
        yield target
    finally:
        target.close()


class RunningBot:
    """``mentorbot run`` with the console adapter and the HTTP server."""

    def __init__(self, url: str, folder: Path, port: int) -> None:
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "DISCORD_", "MENTORBOT_"))
        }
        environment.update(
            MENTORBOT_DATABASE_URL=url,
            MENTORBOT_HTTP="on",
            PORT=str(port),
        )
        self.process = subprocess.Popen(
            [*mentorbot_command(), "run", "--adapter", "console"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=folder,
            env=environment,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.process.stdout and self.process.stderr
        stdout, stderr = self.process.stdout, self.process.stderr
        threading.Thread(target=lambda: [self.out.append(x) for x in stdout], daemon=True).start()
        threading.Thread(target=lambda: [self.err.append(x) for x in stderr], daemon=True).start()

    def type(self, line: str) -> None:
        assert self.process.stdin
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.out)):
                return
            time.sleep(0.05)
        raise AssertionError(f"never saw {text!r}; stderr: {''.join(self.err)[-2000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(30)


def readiness(base: str) -> tuple[int, dict[str, str]]:
    status, body = get(f"{base}/readyz")
    return status, json.loads(body)["checks"]


@pytest.mark.slow
def test_a_database_made_read_only_is_not_ready_and_recovers_without_a_restart(
    read_only_target: ReadOnlyTarget,
) -> None:
    """The bot starts while its database refuses writes, so every connection it opens is
    a read-only one. Reads still work, so only a write probe can see the problem. Once
    the database is writable again, the same process serves writes: no restart."""
    target = read_only_target
    target.make_read_only()
    port = free_port()
    bot = RunningBot(target.url, target.folder, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz")
        status, checks = readiness(base)
        assert status == 503, checks
        assert checks["database"].startswith("writes fail: "), checks
        assert target.refusal in checks["database"]
        assert checks["migrations"] == "ok"

        target.make_writable()
        deadline = time.monotonic() + 10
        while (answer := readiness(base))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer == (200, {"database": "ok", "migrations": "ok", "adapter:console": "ok"})
        bot.type("/mentor start")
        bot.wait_for("day 1 of 3")
        assert bot.stop() == 0
    finally:
        bot.stop()


def test_a_unit_of_work_that_meets_a_read_only_connection_reopens_and_succeeds(
    read_only_target: ReadOnlyTarget,
) -> None:
    """A connection opened while the database was read-only is dropped at its first
    refusal, and the unit of work is done on a new one."""
    target = read_only_target
    store = Store(target.url)
    try:
        target.make_read_only()
        with store.engine.connect() as conn:  # pooled while the database is read-only
            conn.exec_driver_sql("SELECT 1")
        probe = store.probe()
        assert probe.write_error is not None and target.refusal in probe.write_error
        target.make_writable()
        # The pooled connection would still refuse; the store drops it and retries.
        store.run(
            lambda s: (
                s.execute(sa.text("UPDATE alembic_version SET version_num = version_num")).rowcount
            )
        )
        assert store.probe().write_error is None
    finally:
        store.dispose()


class FrozenServer:
    """A TCP server on loopback that accepts connections and never says a word: what a
    client sees of a PostgreSQL that is stopped (SIGSTOP) or stuck."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)  # held open, never answered

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def frozen() -> Iterator[FrozenServer]:
    server = FrozenServer()
    yield server
    server.close()


def test_readiness_answers_503_promptly_while_postgresql_is_frozen(
    frozen: FrozenServer,
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{frozen.port}/test"
    app = build(Settings(database_url=url, content_dir=bundled_content_dir()), migrate=False)

    async def main() -> list[tuple[int, dict[str, str], float]]:
        runner = web.AppRunner(build_web(app, []), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        answers = []
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                for _ in range(8):  # until the connect timeout has ended the first probe
                    started = time.monotonic()
                    async with http.get(f"{base}/readyz") as response:
                        body = await response.json()
                    answers.append((response.status, body["checks"], time.monotonic() - started))
                    if body["checks"]["database"].startswith("unreachable"):
                        break
        finally:
            await runner.cleanup()
        return answers

    try:
        answers = asyncio.run(main())
    finally:
        app.store.dispose()
    for status, checks, took in answers:
        assert status == 503, checks
        assert took < 10  # the request itself never hangs with the server
        assert checks["migrations"] == "unknown"
    first = answers[0][1]["database"]
    assert first.startswith("no answer after"), first
    # The connect timeout ends the hung attempt; later requests say so.
    last = answers[-1][1]["database"]
    assert last.startswith("unreachable: OperationalError") and "timeout" in last, last
    # Requests waited on the probe already out instead of each opening a connection.
    assert len(frozen.accepted) < len(answers)


def test_a_unit_of_work_gives_up_on_a_frozen_postgresql(frozen: FrozenServer) -> None:
    store = Store(f"postgresql://postgres@127.0.0.1:{frozen.port}/test")
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError, match="timeout"):
            store.run(lambda s: s.execute(sa.text("SELECT 1")).scalar())
    finally:
        store.dispose()
    assert time.monotonic() - started < 30  # bounded, where it used to wait for ever


@pytest.mark.postgres
def test_postgresql_statements_have_a_timeout_and_keep_the_urls_options(
    postgres_url: str,
) -> None:
    store = Store(postgres_url)
    quick = Store(postgres_url, statement_timeout=0.5)
    try:
        store.upgrade()  # migrations run without the timeout
        assert store.run(lambda s: s.execute(sa.text("SHOW statement_timeout")).scalar()) == "30s"
        path = store.run(lambda s: s.execute(sa.text("SHOW search_path")).scalar())
        assert str(path).startswith("t_")  # the test URL's own options are kept
        with pytest.raises(OperationalError, match="statement timeout"):
            quick.run(lambda s: s.execute(sa.text("SELECT pg_sleep(5)")).scalar())
        assert quick.run(lambda s: s.execute(sa.text("SELECT 1")).scalar()) == 1
    finally:
        store.dispose()
        quick.dispose()
