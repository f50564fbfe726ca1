"""indexes for a planning pass that costs what is due

The planning pass reads ``next_due_at <= now``; enrolments that wait for the learner
carry NULL. A partial index leaves them out, so its size and the pass's cost follow the
work that can come due, not everyone ever enrolled. Enrolments of learners who block
DMs carry nothing due either (writing to the bot again sets the next slot).

The daily cap reads a batch of learners' deliveries around now: (learner_id, due_at)
finds them without walking each learner's whole history, and still serves the
foreign key the learner_id index served.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE enrolment SET next_due_at = NULL WHERE next_due_at IS NOT NULL AND "
        "learner_id IN (SELECT id FROM learner WHERE dm_blocked_at IS NOT NULL)"
    )
    with op.batch_alter_table("enrolment") as batch:
        batch.drop_index("ix_enrolment_next_due_at")
        batch.create_index(
            "ix_enrolment_due",
            ["next_due_at"],
            sqlite_where=sa.text("next_due_at IS NOT NULL"),
            postgresql_where=sa.text("next_due_at IS NOT NULL"),
        )
    with op.batch_alter_table("delivery") as batch:
        batch.create_index("ix_delivery_learner_due", ["learner_id", "due_at"])
        batch.drop_index("ix_delivery_learner_id")


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.create_index("ix_delivery_learner_id", ["learner_id"])
        batch.drop_index("ix_delivery_learner_due")
    with op.batch_alter_table("enrolment") as batch:
        batch.drop_index("ix_enrolment_due")
        batch.create_index("ix_enrolment_next_due_at", ["next_due_at"])
