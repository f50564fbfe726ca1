"""answers and notes: what a reply is, the question it may answer, additions, moves

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bot.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reply") as batch:
        batch.add_column(
            sa.Column(
                "kind",
                sqlmodel.sql.sqltypes.AutoString(length=10),
                nullable=False,
                server_default="answer",
            )
        )
        batch.add_column(sa.Column("candidate_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("added_at", bot.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("moved_at", bot.models.UTCDateTime(), nullable=True))
        batch.create_foreign_key("fk_reply_candidate", "delivery", ["candidate_id"], ["id"])
        batch.create_index("ix_reply_candidate_id", ["candidate_id"])
    # Replies saved with no question (there was none open) were always notes.
    op.execute("UPDATE reply SET kind = 'note' WHERE delivery_id IS NULL")
    _merge_additions()
    op.create_index(
        "uq_reply_answer",
        "reply",
        ["delivery_id"],
        unique=True,
        sqlite_where=sa.text("kind = 'answer'"),
        postgresql_where=sa.text("kind = 'answer'"),
    )


def _merge_additions() -> None:
    """Earlier versions kept a follow-up message as a second reply to the same
    question; fold each into the first, so a question has one answer."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, delivery_id, text, created_at FROM reply "
            "WHERE delivery_id IN (SELECT delivery_id FROM reply WHERE delivery_id IS NOT NULL "
            "GROUP BY delivery_id HAVING COUNT(*) > 1) ORDER BY delivery_id, id"
        )
    ).all()
    first: dict[int, tuple[int, str]] = {}
    for reply_id, delivery_id, text, created_at in rows:
        if delivery_id not in first:
            first[delivery_id] = (reply_id, text)
            continue
        keep_id, kept = first[delivery_id]
        kept = f"{kept}\n\n{text}"
        first[delivery_id] = (keep_id, kept)
        conn.execute(
            sa.text("UPDATE reply SET text = :t, added_at = :at WHERE id = :id"),
            {"t": kept, "at": created_at, "id": keep_id},
        )
        conn.execute(
            sa.text("UPDATE reply_read SET reply_id = :keep WHERE reply_id = :old"),
            {"keep": keep_id, "old": reply_id},
        )
        conn.execute(sa.text("DELETE FROM reply WHERE id = :id"), {"id": reply_id})


def downgrade() -> None:
    op.drop_index("uq_reply_answer", table_name="reply")
    with op.batch_alter_table("reply") as batch:
        batch.drop_index("ix_reply_candidate_id")
        batch.drop_constraint("fk_reply_candidate", type_="foreignkey")
        batch.drop_column("moved_at")
        batch.drop_column("added_at")
        batch.drop_column("candidate_id")
        batch.drop_column("kind")
