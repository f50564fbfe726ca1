"""Slack OAuth tokens at rest: encrypted with MENTORBOT_SECRET_KEY, migrated from plain
text, rotated to a new key, checked by doctor, and required before multi-workspace
mode starts. On SQLite and PostgreSQL, against the real database files and servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from slack_sdk.oauth.installation_store import Installation

from adapters.slack import SlackAdapter
from adapters.slack.installation import ThreadedInstallationStore
from bot.config import Settings, bundled_content_dir
from bot.crypto import TOKEN_COLUMNS, SecretKeyError, TokenCipher, generate_key
from bot.db import MIGRATIONS, Store
from mentorbot.doctor import check_secret_key
from mentorbot.tokens import rotate_tokens
from tests.conftest import Clock
from tests.emulators.slack_api import DEFAULT_TEAM_ID, DEFAULT_USER_ID, SlackEmulator
from tests.slack.rig import SlackRig
from tests.slack.test_oauth import TEAM_2, USER_2, install
from tests.test_console_e2e import run

CLIENT_ID = "111.222"
PLAIN_BOT = "xoxb-T0LEGACY-1-plain-bot-token"
# Long enough that its Fernet form (about 300 characters) overflows VARCHAR(200).
PLAIN_REFRESH = "xoxe-1-" + "r" * 160
PLAIN_USER = "xoxp-T0LEGACY-2-plain-user-token"
PLAIN_HOOK = "https://hooks.slack.com/services/T0LEGACY/B0HOOK/plainwebhooksecret"
PLAINTEXTS = (PLAIN_BOT, PLAIN_REFRESH, PLAIN_USER, PLAIN_HOOK)


def alembic(store: Store, conn: sa.Connection, key: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", store.url.replace("%", "%%"))
    config.attributes["connection"] = conn
    config.attributes["secret_key"] = key
    return config


def to_revision(store: Store, revision: str, key: str | None = None) -> None:
    with store.engine.connect() as conn:
        command.upgrade(alembic(store, conn, key), revision)
        conn.commit()


def insert_plaintext_install(store: Store) -> None:
    """What a multi-workspace install left behind before tokens were encrypted."""
    now = datetime(2026, 11, 1, tzinfo=UTC).replace(tzinfo=None)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO slack_bots (client_id, app_id, team_id, team_name, bot_token,"
                " bot_id, bot_user_id, bot_scopes, bot_refresh_token,"
                " is_enterprise_install, installed_at) VALUES (:c, 'A1', 'T0LEGACY', 'Legacy',"
                " :bot, 'B1', 'UB1', 'chat:write', :refresh, false, :at)"
            ),
            {"c": CLIENT_ID, "bot": PLAIN_BOT, "refresh": PLAIN_REFRESH, "at": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO slack_installations (client_id, app_id, team_id, team_name,"
                " bot_token, bot_id, bot_user_id, bot_scopes, user_id, user_token,"
                " incoming_webhook_url, is_enterprise_install, installed_at) VALUES"
                " (:c, 'A1', 'T0LEGACY', 'Legacy', :bot, 'B1', 'UB1', 'chat:write', 'U1',"
                " :user, :hook, false, :at)"
            ),
            {"c": CLIENT_ID, "bot": PLAIN_BOT, "user": PLAIN_USER, "hook": PLAIN_HOOK, "at": now},
        )


def raw_rows(store: Store) -> str:
    """Every stored value of the Slack tables, as text: what a dump would show."""
    with store.engine.connect() as conn:
        rows = [
            str(tuple(row))
            for table in ("slack_bots", "slack_installations")
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")).all()
        ]
    return "\n".join(rows)


def stored_tokens(store: Store) -> list[str]:
    """Every non-empty token column, as stored."""
    with store.engine.connect() as conn:
        values = [
            value
            for table, columns in TOKEN_COLUMNS.items()
            for row in conn.execute(sa.text(f"SELECT {', '.join(columns)} FROM {table}")).all()
            for value in row
        ]
    return [v for v in values if v is not None]


def sqlite_bytes(store: Store) -> bytes:
    """The database file and its write-ahead log, byte for byte."""
    path = Path(store.engine.url.database or "")
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
def test_installs_keep_no_plaintext_token_in_the_database(
    oauth_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    minted = {DEFAULT_TEAM_ID: "xoxb-T1-minted-secret-one", TEAM_2: "xoxb-T2-minted-secret-two"}
    slack.add_team(TEAM_2, "Second Workspace", domain="second")
    slack.add_user(USER_2, team_id=TEAM_2, name="bo")
    slack.add_oauth_code(
        "code-1",
        DEFAULT_TEAM_ID,
        installer_user_id=DEFAULT_USER_ID,
        bot_token=minted[DEFAULT_TEAM_ID],
    )
    slack.add_oauth_code("code-2", TEAM_2, installer_user_id=USER_2, bot_token=minted[TEAM_2])

    async def main() -> None:
        async with SlackRig(oauth_settings, slack, clock) as rig:
            await install(rig, "code-1")
            await install(rig, "code-2")
            await rig.command("start", team_id=TEAM_2, user_id=USER_2, team_domain="second")
            await rig.settle()
            store = rig.app.store
            dump = raw_rows(store)
            assert "T00000002" in dump  # the rows are there ...
            for token in minted.values():  # ... their tokens are not
                assert token not in dump
            assert "xoxb-" not in dump
            if store.dialect == "sqlite":
                on_disk = sqlite_bytes(store)
                assert b"T00000002" in on_disk
                assert b"xoxb-" not in on_disk
            # ... and the bot still sends with the real token.
            sent = [c.token for c in slack.calls_to("chat.postMessage")]
            assert sent and set(sent) == {minted[TEAM_2]}

    asyncio.run(main())


def test_the_migration_encrypts_plaintext_tokens_and_can_undo_it(store_url: str) -> None:
    key = generate_key()
    store = Store(store_url)
    try:
        to_revision(store, "0005")
        insert_plaintext_install(store)
        # Without a key the migration refuses, names the fix, and changes nothing.
        with pytest.raises(SecretKeyError, match="mentorbot secrets generate"):
            store.upgrade()
        assert store.current_revision() == "0005"
        assert PLAIN_BOT in raw_rows(store)

        Store(store_url, secret_key=key).upgrade()
        assert store.current_revision() == store.head_revision()
        dump = raw_rows(store)
        for plain in PLAINTEXTS:
            assert plain not in dump
        cipher = TokenCipher(key)
        everything = sorted([PLAIN_BOT, *PLAINTEXTS])  # the bot token is in both tables
        # The refresh token's Fernet form would not fit the old VARCHAR(200) on PostgreSQL.
        assert max(len(v) for v in stored_tokens(store)) > 200
        assert sorted(cipher.decrypt(v) for v in stored_tokens(store)) == everything
        Store(store_url, secret_key=key).upgrade()  # again: nothing left to do

        async def read_back() -> None:
            installs = ThreadedInstallationStore(CLIENT_ID, store.engine, cipher=cipher)
            bot = await installs.async_find_bot(enterprise_id=None, team_id="T0LEGACY")
            assert bot is not None and bot.bot_token == PLAIN_BOT
            found = await installs.async_find_installation(
                enterprise_id=None, team_id="T0LEGACY", user_id="U1"
            )
            assert found is not None
            assert (found.user_token, found.incoming_webhook_url) == (PLAIN_USER, PLAIN_HOOK)

        asyncio.run(read_back())

        with store.engine.connect() as conn:
            command.downgrade(alembic(store, conn, key), "0005")
            conn.commit()
        assert store.current_revision() == "0005"
        assert sorted(stored_tokens(store)) == everything
    finally:
        store.dispose()


def test_rotation_re_encrypts_every_token_with_the_new_key(store_url: str) -> None:
    old, new, stranger = generate_key(), generate_key(), generate_key()
    store = Store(store_url, secret_key=old)
    try:
        store.upgrade()

        async def save(cipher: TokenCipher) -> None:
            installs = ThreadedInstallationStore(CLIENT_ID, store.engine, cipher=cipher)
            await installs.async_save(
                Installation(
                    app_id="A1",
                    team_id="T9",
                    user_id="U9",
                    bot_token="xoxb-9-rotate-me",
                    bot_id="B9",
                    bot_user_id="UB9",
                    user_token="xoxp-9-rotate-me",
                    installed_at=datetime.now(UTC).timestamp(),
                )
            )

        asyncio.run(save(TokenCipher(old)))
        before = stored_tokens(store)
        assert len(before) == 3  # the bot's token twice, the installer's once

        # A key list that cannot read them changes nothing at all.
        with pytest.raises(SecretKeyError, match="does not decrypt"):
            rotate_tokens(store, TokenCipher(stranger))
        assert stored_tokens(store) == before

        assert rotate_tokens(store, TokenCipher(f"{new},{old}")) == 3
        after = stored_tokens(store)
        assert all(TokenCipher(new).can_decrypt(v) for v in after)
        assert not any(TokenCipher(old).can_decrypt(v) for v in after)

        async def find_with_new_key_alone() -> None:
            installs = ThreadedInstallationStore(CLIENT_ID, store.engine, cipher=TokenCipher(new))
            bot = await installs.async_find_bot(enterprise_id=None, team_id="T9")
            assert bot is not None and bot.bot_token == "xoxb-9-rotate-me"

        asyncio.run(find_with_new_key_alone())
    finally:
        store.dispose()


def test_multi_workspace_mode_needs_a_key_and_token_mode_does_not(
    slack_settings: Settings, oauth_settings: Settings, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        SlackAdapter(slack_settings, store)  # one workspace, token from the environment
        for key, problem in ((None, "is not set"), ("not-a-key", "is not a Fernet key")):
            settings = Settings(**{**oauth_settings.__dict__, "secret_key": key})
            with pytest.raises(SecretKeyError) as raised:
                SlackAdapter(settings, store)
            message = str(raised.value)
            assert problem in message and "mentorbot secrets generate" in message
            assert "\n" not in message
    finally:
        store.dispose()


def test_doctor_checks_the_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'doctor.db'}"
    base = Settings(database_url=url, content_dir=bundled_content_dir())
    oauth = Settings(
        database_url=url,
        content_dir=bundled_content_dir(),
        slack_client_id=CLIENT_ID,
        slack_client_secret="s",
        slack_signing_secret="s",
    )
    assert check_secret_key(base).status == "skip"
    missing = check_secret_key(oauth)
    assert missing.status == "FAIL" and "MENTORBOT_SECRET_KEY is not set" in missing.detail
    assert "mentorbot secrets generate" in missing.fix
    bad = check_secret_key(Settings(**{**oauth.__dict__, "secret_key": "hunter2"}))
    assert bad.status == "FAIL" and "is not a Fernet key" in bad.detail
    assert "hunter2" not in bad.line()

    old, new = generate_key(), generate_key()
    store = Store(url, secret_key=old)
    try:
        to_revision(store, "0005")
        insert_plaintext_install(store)
        waiting = check_secret_key(Settings(**{**oauth.__dict__, "secret_key": old}))
        assert waiting.status == "warn" and "not encrypted yet" in waiting.detail
        store.upgrade()
    finally:
        store.dispose()
    good = check_secret_key(Settings(**{**oauth.__dict__, "secret_key": old}))
    assert good.status == "ok" and "5 stored Slack token(s) decrypt" in good.detail
    wrong = check_secret_key(Settings(**{**oauth.__dict__, "secret_key": new}))
    assert wrong.status == "FAIL" and "5 of 5 stored Slack token(s) do not decrypt" in wrong.detail


OAUTH_ENV = {
    "SLACK_CLIENT_ID": CLIENT_ID,
    "SLACK_CLIENT_SECRET": "shh",
    "SLACK_SIGNING_SECRET": "signing",
    "MENTORBOT_HTTP": "off",
}


@pytest.mark.slow
def test_the_command_line_refuses_without_a_key_and_rotates_with_one(tmp_path: Path) -> None:
    refused = run(["run"], tmp_path, **OAUTH_ENV)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "MENTORBOT_SECRET_KEY is not set" in refused.stderr
    assert "mentorbot secrets generate" in refused.stderr
    malformed = run(["run"], tmp_path, MENTORBOT_SECRET_KEY="hunter2", **OAUTH_ENV)
    assert malformed.returncode == 2 and "is not a Fernet key" in malformed.stderr
    assert "hunter2" not in malformed.stderr

    generated = run(["secrets", "generate"], tmp_path)
    assert generated.returncode == 0
    old = generated.stdout.strip()
    TokenCipher(old)  # a usable key
    new = run(["secrets", "generate"], tmp_path).stdout.strip()
    assert new != old

    # A database with plaintext tokens: migrating needs the key, then encrypts them.
    store = Store(f"sqlite:///{tmp_path / 'bot.db'}")
    try:
        to_revision(store, "0005")
        insert_plaintext_install(store)
    finally:
        store.dispose()
    no_key = run(["db", "upgrade"], tmp_path)
    assert no_key.returncode == 2 and "Traceback" not in no_key.stderr
    assert "holds 5 Slack token(s) to encrypt" in no_key.stderr
    assert run(["db", "upgrade"], tmp_path, MENTORBOT_SECRET_KEY=old).returncode == 0
    assert PLAIN_BOT.encode() not in (tmp_path / "bot.db").read_bytes()

    rotated = run(["secrets", "rotate"], tmp_path, MENTORBOT_SECRET_KEY=f"{new},{old}")
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 5 stored token(s) with the newest key" in rotated.stdout
    assert "drop the older key" in rotated.stdout
    doctor_new = run(["doctor"], tmp_path, MENTORBOT_SECRET_KEY=new, **OAUTH_ENV)
    assert "ok    secret key: 1 key(s); 5 stored Slack token(s) decrypt" in doctor_new.stdout
    doctor_old = run(["doctor"], tmp_path, MENTORBOT_SECRET_KEY=old, **OAUTH_ENV)
    assert doctor_old.returncode == 1
    assert "FAIL  secret key: 5 of 5 stored Slack token(s) do not decrypt" in doctor_old.stdout
