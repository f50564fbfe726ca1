"""The stored Slack tokens as a whole: re-encrypt them with the newest key (``mentorbot
secrets rotate``), and count what the current key can read (``mentorbot doctor``).

Both walk the token columns of ``bot.crypto.TOKEN_COLUMNS`` with plain SQL, so they need
neither slack_sdk nor a Slack configuration, only the database and the key.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session

from bot.crypto import TOKEN_COLUMNS, TokenCipher
from bot.db import Store

FERNET_PREFIX = "gAAAAA"  # Fernet's version byte 0x80, base64-encoded


def _tables() -> dict[str, sa.TableClause]:
    return {
        name: sa.table(name, sa.column("id"), *(sa.column(c) for c in columns))
        for name, columns in TOKEN_COLUMNS.items()
    }


def rotate_tokens(store: Store, cipher: TokenCipher) -> int:
    """Re-encrypt every stored token with the newest key, in one transaction: a token no
    key can decrypt raises ``SecretKeyError`` and nothing changes. Returns the count."""

    def work(session: Session) -> int:
        conn = session.connection()
        count = 0
        for name, table in _tables().items():
            columns = TOKEN_COLUMNS[name]
            for row in conn.execute(sa.select(table)).mappings().all():
                changed = {c: cipher.rotate(row[c]) for c in columns if row[c] is not None}
                if changed:
                    conn.execute(table.update().where(table.c.id == row["id"]).values(**changed))
                    count += len(changed)
        return count

    return store.run(work)


@dataclass(frozen=True)
class TokenCount:
    stored: int = 0  # non-empty token values
    unreadable: int = 0  # encrypted, but with none of the keys given
    plain: int = 0  # not encrypted yet (the migration has not run)


def count_tokens(store: Store, cipher: TokenCipher | None) -> TokenCount:
    """Read-only: how many tokens are stored, and how many ``cipher`` cannot read."""
    stored = unreadable = plain = 0
    with store.engine.connect() as conn:
        for name, table in _tables().items():
            for row in conn.execute(sa.select(table)).mappings().all():
                for column in TOKEN_COLUMNS[name]:
                    value = row[column]
                    if value is None:
                        continue
                    stored += 1
                    if not value.startswith(FERNET_PREFIX):
                        plain += 1
                    elif cipher is None or not cipher.can_decrypt(value):
                        unreadable += 1
        conn.rollback()
    return TokenCount(stored, unreadable, plain)
