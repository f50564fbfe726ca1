"""Where multi-workspace installs live: slack_sdk's SQLAlchemy stores on the project's
own database (tables ``slack_bots``, ``slack_installations``, ``slack_oauth_states``,
created by migration 0003).

Tokens are encrypted at rest (migration 0006, ``bot.crypto``). The encryption sits in
the column types of the store's tables, so slack_sdk's own queries save and find
installations unchanged, with plain tokens on its side and Fernet tokens in the
database. No query compares a token column with a value (Fernet is randomised, so such
a comparison could never match); slack_sdk filters on ids and install times only.

slack_sdk's SQLAlchemy stores are synchronous and Bolt's ``AsyncApp`` wants async ones,
so these small classes run each call in a worker thread, as the core does with its own
store: the event loop never waits on the database.

SQLAlchemy 2.1 made ``greenlet`` optional, and its asyncio extension refuses to import
without it. slack_sdk's SQLAlchemy module imports ``AsyncEngine`` only for its async
store classes, which are not used here, so when that import fails SQLAlchemy is told to
finish its (lazy) greenlet check without raising, and the import is tried again. Any
real use of SQLAlchemy's asyncio engine would still fail loudly. Declaring ``greenlet``
as a dependency makes this path unnecessary.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.crypto import TOKEN_COLUMNS, TokenCipher

if TYPE_CHECKING:
    from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
    from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

log = logging.getLogger(__name__)


def _sql_stores() -> tuple[type[SQLAlchemyInstallationStore], type[SQLAlchemyOAuthStateStore]]:
    """slack_sdk's synchronous SQLAlchemy stores (see the module docstring on greenlet)."""
    try:
        from slack_sdk.oauth.installation_store import sqlalchemy as installation_module
        from slack_sdk.oauth.state_store import sqlalchemy as state_module
    except ImportError:
        from sqlalchemy.util import concurrency

        concurrency._concurrency_shim._initialize(raise_=False)
        from slack_sdk.oauth.installation_store import sqlalchemy as installation_module
        from slack_sdk.oauth.state_store import sqlalchemy as state_module
    return installation_module.SQLAlchemyInstallationStore, state_module.SQLAlchemyOAuthStateStore


class EncryptedText(sa.types.TypeDecorator[str]):
    """Text that is encrypted on its way into the database and decrypted on its way out."""

    impl = sa.Text
    cache_ok = True  # the cipher is fixed for the life of the type

    def __init__(self, cipher: TokenCipher) -> None:
        super().__init__()
        self.cipher = cipher

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else self.cipher.encrypt(value)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else self.cipher.decrypt(value)


class ThreadedInstallationStore(AsyncInstallationStore):
    """``SQLAlchemyInstallationStore`` behind the async interface Bolt calls, with its
    token columns encrypted by ``cipher``."""

    def __init__(self, client_id: str, engine: sa.Engine, *, cipher: TokenCipher) -> None:
        store_class, _ = _sql_stores()
        self.sync = store_class(client_id=client_id, engine=engine, logger=log)
        # The tables belong to this store alone and no statement was built from them
        # yet, so their token columns can still be given the encrypting type.
        for table in (self.sync.bots, self.sync.installations):
            for name in TOKEN_COLUMNS[table.name]:
                table.c[name].type = EncryptedText(cipher)

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        await asyncio.to_thread(self.sync.save, installation)

    async def async_save_bot(self, bot: Bot) -> None:
        await asyncio.to_thread(self.sync.save_bot, bot)

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        return await asyncio.to_thread(
            lambda: self.sync.find_bot(
                enterprise_id=enterprise_id,
                team_id=team_id,
                is_enterprise_install=is_enterprise_install,
            )
        )

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        return await asyncio.to_thread(
            lambda: self.sync.find_installation(
                enterprise_id=enterprise_id,
                team_id=team_id,
                user_id=user_id,
                is_enterprise_install=is_enterprise_install,
            )
        )

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await asyncio.to_thread(
            lambda: self.sync.delete_bot(enterprise_id=enterprise_id, team_id=team_id)
        )

    async def async_delete_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
    ) -> None:
        await asyncio.to_thread(
            lambda: self.sync.delete_installation(
                enterprise_id=enterprise_id, team_id=team_id, user_id=user_id
            )
        )


class ThreadedStateStore(AsyncOAuthStateStore):
    """``SQLAlchemyOAuthStateStore`` (the one-time ``state`` of each install) made async."""

    def __init__(self, engine: sa.Engine, expiration_seconds: int = 600) -> None:
        _, store_class = _sql_stores()
        self.sync = store_class(expiration_seconds=expiration_seconds, engine=engine, logger=log)

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        return await asyncio.to_thread(self.sync.issue)

    async def async_consume(self, state: str) -> bool:
        return await asyncio.to_thread(self.sync.consume, state)
