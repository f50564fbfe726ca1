"""the pace each rate limit has learned

A limit's configured rate is where its pace starts; the pace then follows what the
platform answers (raised while no 429 comes, cut on one). Kept beside the cell so every
replica paces at the same learned rate and a restart does not start from scratch.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("rate", "peak", "busy_at", "cut_at")


def upgrade() -> None:
    with op.batch_alter_table("rate_bucket") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("rate_bucket") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
