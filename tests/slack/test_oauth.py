"""Multi-workspace mode: installs through OAuth, kept in the project database (SQLite and
PostgreSQL), each team its own workspace, and strangers turned away."""

from __future__ import annotations

import ast
import asyncio
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from slack_sdk.oauth.installation_store import Installation

from adapters.slack.installation import (
    ThreadedInstallationStore,
    ThreadedStateStore,
    _sql_stores,
)
from bot.config import Settings
from bot.crypto import TokenCipher, generate_key
from bot.db import MIGRATIONS, Store
from bot.ports import PermanentSendError
from tests.conftest import Clock
from tests.emulators.slack_api import (
    DEFAULT_TEAM_ID,
    DEFAULT_USER_ID,
    SlackEmulator,
    message_event,
)
from tests.slack.rig import SlackRig, lessons, responses

TEAM_2, USER_2 = "T00000002", "U00000002"
STRANGER_TEAM, STRANGER = "T00000003", "U00000003"


async def install(rig: SlackRig, code: str) -> None:
    """The browser side of "Add to Slack": install page, then Slack's redirect back."""
    async with rig.http.get(rig.url + "/slack/install") as page:
        assert page.status == 200
        cookie = page.headers["Set-Cookie"]
        html = await page.text()
    state = cookie.split(";", 1)[0].split("=", 1)[1]
    assert "oauth/v2/authorize" in html and state in html
    redirect = f"/slack/oauth_redirect?code={quote(code)}&state={quote(state)}"
    headers = {"Cookie": f"slack-app-oauth-state={state}"}
    async with rig.http.get(rig.url + redirect, headers=headers) as done:
        assert done.status == 200, await done.text()


# slack_sdk's AsyncWebClient itself still builds aiohttp.BasicAuth for oauth.v2.access.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
def test_two_workspaces_install_and_never_see_each_other(
    oauth_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    slack.add_team(TEAM_2, "Second Workspace", domain="second")
    slack.add_user(USER_2, team_id=TEAM_2, name="bo", tz="America/New_York")
    slack.add_oauth_code("code-1", DEFAULT_TEAM_ID, installer_user_id=DEFAULT_USER_ID)
    slack.add_oauth_code("code-2", TEAM_2, installer_user_id=USER_2)

    async def main() -> None:
        async with SlackRig(oauth_settings, slack, clock) as rig:
            await install(rig, "code-1")
            await install(rig, "code-2")
            bots = rig.db(
                lambda s: s.execute(sa.text("SELECT team_id, bot_token FROM slack_bots")).all()
            )
            cipher = TokenCipher(oauth_settings.secret_key or "")
            tokens = {team: cipher.decrypt(stored) for team, stored in bots}
            assert set(tokens) == {DEFAULT_TEAM_ID, TEAM_2}
            assert all(token.startswith("xoxb-") for token in tokens.values())
            assert not {stored for _, stored in bots} & set(tokens.values())  # stored encrypted

            await rig.command("start", team_id=DEFAULT_TEAM_ID, user_id=DEFAULT_USER_ID)
            await rig.command("start", team_id=TEAM_2, user_id=USER_2, team_domain="second")
            await rig.settle()
            by_team = {c.response["channel"]: c.token for c in lessons(slack)}
            assert by_team == {
                slack.dm_channel_id(DEFAULT_USER_ID, DEFAULT_TEAM_ID): tokens[DEFAULT_TEAM_ID],
                slack.dm_channel_id(USER_2, TEAM_2): tokens[TEAM_2],
            }

            dm_1 = slack.dm_channel_id(DEFAULT_USER_ID, DEFAULT_TEAM_ID)
            await rig.event(message_event("Answer from team one", channel=dm_1))
            await rig.command("history", team_id=TEAM_2, user_id=USER_2)
            await rig.settle()
            assert "You have not replied to anything yet." in responses(slack)[-1]["text"]
            (reply,) = rig.replies()
            owners = {learner.id: learner for learner in rig.learners()}
            assert owners[reply.learner_id].user_id == DEFAULT_USER_ID
            assert rig.workspaces() == [DEFAULT_TEAM_ID, TEAM_2]
            zones = {learner.user_id: learner.timezone for learner in rig.learners()}
            assert zones == {DEFAULT_USER_ID: "Europe/Berlin", USER_2: "America/New_York"}

            # Uninstalling forgets the install: deliveries there fail for good.
            await rig.event(
                {"type": "app_uninstalled", "event_ts": "1700000000.000100"}, team_id=TEAM_2
            )
            await rig.settle()
            remaining = rig.db(
                lambda s: s.execute(sa.text("SELECT team_id FROM slack_bots")).scalars().all()
            )
            assert remaining == [DEFAULT_TEAM_ID]
            learner_2 = next(x.id for x in rig.learners() if x.user_id == USER_2)
            (row,) = [d for d in rig.deliveries() if d.learner_id == learner_2]
            message = await asyncio.to_thread(rig.app.service.render_delivery, row.id or 0)
            with pytest.raises(PermanentSendError) as raised:
                await rig.adapter.send(message)  # type: ignore[arg-type]
            assert raised.value.code == "not_installed"

    asyncio.run(main())


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
def test_a_workspace_that_never_installed_is_turned_away(
    oauth_settings: Settings, slack: SlackEmulator, clock: Clock
) -> None:
    slack.add_team(STRANGER_TEAM, "Never Installed")
    slack.add_user(STRANGER, team_id=STRANGER_TEAM)
    slack.add_oauth_code("code-1", DEFAULT_TEAM_ID, installer_user_id=DEFAULT_USER_ID)

    async def main() -> None:
        async with SlackRig(oauth_settings, slack, clock) as rig:
            await install(rig, "code-1")
            status, _ = await rig.command("start", team_id=STRANGER_TEAM, user_id=STRANGER)
            dm = slack.dm_channel_id(STRANGER, STRANGER_TEAM)
            hello = message_event("hi", user=STRANGER, team=STRANGER_TEAM, channel=dm)
            await rig.event(hello, team_id=STRANGER_TEAM)
            await rig.settle()

            assert status == 200
            (refusal,) = responses(slack)
            assert "reinstall" in refusal["text"]  # Bolt's own words, via response_url
            assert rig.workspaces() == [] and rig.learners() == []
            assert slack.calls_to("users.info") == [] and slack.calls_to("chat.postMessage") == []

    asyncio.run(main())


def _alembic(store: Store, conn: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", store.url.replace("%", "%%"))
    config.attributes["connection"] = conn
    return config


def test_the_migration_matches_slack_sdks_tables_and_their_stores_work(store_url: str) -> None:
    """Revision 0003 on its own (later revisions are someone else's): up, compare with
    slack_sdk's own table definitions, use the stores, and back down."""
    store = Store(store_url)
    try:
        with store.engine.connect() as conn:
            command.upgrade(_alembic(store, conn), "0003")
            conn.commit()
        installation_store, state_store = _sql_stores()
        expected = sa.MetaData()
        installation_store.build_installations_table(expected, "slack_installations")
        installation_store.build_bots_table(expected, "slack_bots")
        state_store.build_oauth_states_table(expected, "slack_oauth_states")
        with store.engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _parent: (
                        kind != "table" or str(name).startswith("slack_")
                    ),
                },
            )
            assert compare_metadata(context, expected) == []

        async def use_them() -> None:
            cipher = TokenCipher(generate_key())
            installs = ThreadedInstallationStore("111.222", store.engine, cipher=cipher)
            await installs.async_save(
                Installation(
                    app_id="A1",
                    team_id="T9",
                    team_name="Nine",
                    user_id="U9",
                    bot_token="xoxb-9",
                    bot_id="B9",
                    bot_user_id="UB9",
                    bot_scopes="chat:write",
                    installed_at=datetime.now(UTC).timestamp(),
                )
            )
            bot = await installs.async_find_bot(enterprise_id=None, team_id="T9")
            assert bot is not None and bot.bot_token == "xoxb-9"
            found = await installs.async_find_installation(enterprise_id=None, team_id="T9")
            assert found is not None and found.user_id == "U9"
            assert await installs.async_find_bot(enterprise_id=None, team_id="T8") is None
            await installs.async_delete_all(enterprise_id=None, team_id="T9")
            assert await installs.async_find_bot(enterprise_id=None, team_id="T9") is None

            states = ThreadedStateStore(store.engine)
            state = await states.async_issue()
            assert await states.async_consume(state) is True
            assert await states.async_consume(state) is False  # one use only

        asyncio.run(use_them())

        with store.engine.connect() as conn:
            command.downgrade(_alembic(store, conn), "0002")
            conn.commit()
        tables = set(sa.inspect(store.engine).get_table_names())
        assert not {t for t in tables if t.startswith("slack_")}
        assert "delivery" in tables
    finally:
        store.dispose()


def test_the_migration_does_not_import_slack_sdk() -> None:
    tree = ast.parse((MIGRATIONS / "versions" / "0003_slack_installations.py").read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    assert imported == {"collections", "sqlalchemy", "alembic"}
