"""away periods and public holidays: an enrolment's last away day, a workspace's calendars

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Both columns are nullable and empty for existing rows: nobody is away and no
    # workspace has holidays until someone says so.
    with op.batch_alter_table("enrolment") as batch:
        batch.add_column(sa.Column("away_until", sa.Date(), nullable=True))
    with op.batch_alter_table("workspace") as batch:
        batch.add_column(
            sa.Column("holidays", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("workspace") as batch:
        batch.drop_column("holidays")
    with op.batch_alter_table("enrolment") as batch:
        batch.drop_column("away_until")
