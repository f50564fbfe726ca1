"""indexes that keep a year of history cheap

Retention walked every row id each hour to find what had crossed its cutoff: seconds
of work an hour at a year of history, for nearly nothing. A partial index on
``due_at`` holds only the rows it may still remove or compact (every kind but
``continue`` and ``summary``, except sent questions once compacted), so a pass reads
what crossed the cutoff since the last one. Its condition is word for word the one
``bot.retention`` queries with, as both databases require to use a partial index.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETENTION_WORK = (
    "kind NOT IN ('continue', 'summary') AND (kind NOT IN ('lesson', 'practice', 'review') "
    "OR status <> 'sent' OR question IS NULL OR platform_message_ids IS NOT NULL "
    "OR error IS NOT NULL OR lease_owner IS NOT NULL)"
)


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.create_index(
            "ix_delivery_retention",
            ["due_at", "id"],
            sqlite_where=sa.text(RETENTION_WORK),
            postgresql_where=sa.text(RETENTION_WORK),
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_index("ix_delivery_retention")
