"""encrypt stored Slack tokens

Multi-workspace installs kept Slack's OAuth tokens in plain text, twice (``slack_bots``
and ``slack_installations``), so every database dump held them. This encrypts them with
MENTORBOT_SECRET_KEY (Fernet; the newest key when several are listed) and widens their
columns to TEXT: a Fernet token is well over 200 characters for a long refresh token.

The key reaches the migration from the Store (``config.attributes["secret_key"]``).
Without one, the migration runs only when there is nothing to encrypt; otherwise it
stops, changing nothing, with one line saying how to make a key. A value that already
decrypts with the key is left as it is, so running it over encrypted rows is harmless.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import context, op

from bot.crypto import SecretKeyError, TokenCipher

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here on purpose: bot.crypto.TOKEN_COLUMNS may grow later; this step may not.
TOKEN_COLUMNS: dict[str, tuple[str, ...]] = {
    "slack_bots": ("bot_token", "bot_refresh_token"),
    "slack_installations": (
        "bot_token",
        "bot_refresh_token",
        "user_token",
        "user_refresh_token",
        "incoming_webhook_url",
    ),
}
NEEDS_KEY = (
    "MENTORBOT_SECRET_KEY is not set, and the database holds {count} Slack token(s) {doing}; "
    "make a key with `mentorbot secrets generate`, set it, and run again"
)


def _cipher() -> TokenCipher | None:
    setting = context.config.attributes.get("secret_key")
    return TokenCipher(setting) if setting else None


def _tables() -> dict[str, sa.TableClause]:
    return {
        name: sa.table(name, sa.column("id"), *(sa.column(c) for c in columns))
        for name, columns in TOKEN_COLUMNS.items()
    }


def _stored_count(conn: sa.Connection) -> int:
    """How many token values are stored (a row can hold several)."""
    total = 0
    for name, table in _tables().items():
        counts = [sa.func.count(table.c[c]) for c in TOKEN_COLUMNS[name]]
        total += sum(conn.execute(sa.select(*counts).select_from(table)).one())
    return total


def _rewrite(conn: sa.Connection, change: Callable[[str], str]) -> None:
    for name, table in _tables().items():
        columns = TOKEN_COLUMNS[name]
        for row in conn.execute(sa.select(table)).mappings().all():
            values = {c: change(row[c]) for c in columns if row[c] is not None}
            changed = {c: v for c, v in values.items() if v != row[c]}
            if changed:
                conn.execute(table.update().where(table.c.id == row["id"]).values(**changed))


def upgrade() -> None:
    conn = op.get_bind()
    cipher = _cipher()
    if cipher is None and (count := _stored_count(conn)):
        raise SecretKeyError(NEEDS_KEY.format(count=count, doing="to encrypt"))
    for name, columns in TOKEN_COLUMNS.items():
        with op.batch_alter_table(name) as batch:
            for column in columns:
                batch.alter_column(
                    column, type_=sa.Text(), existing_type=sa.String(200), existing_nullable=True
                )
    if cipher is not None:
        _rewrite(conn, lambda v: v if cipher.can_decrypt(v) else cipher.encrypt(v))


def downgrade() -> None:
    conn = op.get_bind()
    cipher = _cipher()
    if cipher is None and (count := _stored_count(conn)):
        raise SecretKeyError(NEEDS_KEY.format(count=count, doing="to decrypt"))
    if cipher is not None:
        _rewrite(conn, cipher.decrypt)
    for name, columns in TOKEN_COLUMNS.items():
        with op.batch_alter_table(name) as batch:
            for column in columns:
                batch.alter_column(
                    column, type_=sa.String(200), existing_type=sa.Text(), existing_nullable=True
                )
