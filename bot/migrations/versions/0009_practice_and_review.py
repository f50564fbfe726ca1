"""practice named on each answer, spaced review of answers

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import bot.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reply") as batch:
        batch.add_column(sa.Column("practice", sa.Text(), nullable=True))
        batch.add_column(sa.Column("review_at", bot.models.UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("reviews_done", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("review_of_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_reply_review_of", "reply", ["review_of_id"], ["id"])
        batch.create_index("ix_reply_review_at", ["review_at"])
        batch.create_index("ix_reply_review_of_id", ["review_of_id"])
    # Enrolments that wait for the learner carry nothing due (the planning pass reads
    # only what is due); `resume` and the other wake-ups set the next instant again.
    op.execute(
        "UPDATE enrolment SET next_due_at = NULL "
        "WHERE status = 'stopped' OR (status = 'paused' AND away_until IS NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table("reply") as batch:
        batch.drop_index("ix_reply_review_of_id")
        batch.drop_index("ix_reply_review_at")
        batch.drop_constraint("fk_reply_review_of", type_="foreignkey")
        batch.drop_column("review_of_id")
        batch.drop_column("reviews_done")
        batch.drop_column("review_at")
        batch.drop_column("practice")
