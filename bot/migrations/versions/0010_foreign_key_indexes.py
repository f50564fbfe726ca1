"""an index for every foreign key

Without an index on delivery.parent_id, deleting a learner's deliveries (forget-me)
scanned the whole delivery table for each row; the same held for the readers of
replies and the creators of digests.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_delivery_parent_id", "delivery", ["parent_id"])
    op.create_index("ix_reply_read_reader_id", "reply_read", ["reader_id"])
    op.create_index("ix_digest_created_by", "digest", ["created_by"])


def downgrade() -> None:
    op.drop_index("ix_digest_created_by", table_name="digest")
    op.drop_index("ix_reply_read_reader_id", table_name="reply_read")
    op.drop_index("ix_delivery_parent_id", table_name="delivery")
