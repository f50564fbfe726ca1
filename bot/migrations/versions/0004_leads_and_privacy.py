"""leads and privacy

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bot.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "digest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("frequency", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("next_due_at", bot.models.UTCDateTime(), nullable=True),
        sa.Column("last_sent_at", bot.models.UTCDateTime(), nullable=True),
        sa.Column("created_at", bot.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["learner.id"],
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspace.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "channel", name="uq_digest_channel"),
    )
    with op.batch_alter_table("digest", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_digest_next_due_at"), ["next_due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_digest_workspace_id"), ["workspace_id"], unique=False)

    op.create_table(
        "reply_read",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reply_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=True),
        sa.Column("reader_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("via", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("read_at", bot.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reader_id"],
            ["learner.id"],
        ),
        sa.ForeignKeyConstraint(
            ["reply_id"],
            ["reply.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reply_read", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reply_read_reply_id"), ["reply_id"], unique=False)

    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("digest_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_delivery_digest_id"), ["digest_id"], unique=False)
        batch_op.create_foreign_key("fk_delivery_digest", "digest", ["digest_id"], ["id"])

    with op.batch_alter_table("enrolment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("assigned_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )

    with op.batch_alter_table("reply", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "visibility",
                sqlmodel.sql.sqltypes.AutoString(length=10),
                server_default="private",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("shared_at", bot.models.UTCDateTime(), nullable=True))

    with op.batch_alter_table("workspace", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("delivery_time", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True)
        )
        batch_op.add_column(
            sa.Column("delivery_days", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True)
        )
        batch_op.add_column(
            sa.Column("default_course", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "reply_visibility",
                sqlmodel.sql.sqltypes.AutoString(length=10),
                server_default="private",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("auto_enrol", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("workspace", schema=None) as batch_op:
        batch_op.drop_column("auto_enrol")
        batch_op.drop_column("reply_visibility")
        batch_op.drop_column("default_course")
        batch_op.drop_column("delivery_days")
        batch_op.drop_column("delivery_time")

    with op.batch_alter_table("reply", schema=None) as batch_op:
        batch_op.drop_column("shared_at")
        batch_op.drop_column("visibility")

    with op.batch_alter_table("enrolment", schema=None) as batch_op:
        batch_op.drop_column("assigned_by")

    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_constraint("fk_delivery_digest", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_delivery_digest_id"))
        batch_op.drop_column("digest_id")
        batch_op.drop_column("channel")
        batch_op.drop_column("body")

    op.drop_table("reply_read")
    with op.batch_alter_table("digest", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_digest_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_digest_next_due_at"))

    op.drop_table("digest")
