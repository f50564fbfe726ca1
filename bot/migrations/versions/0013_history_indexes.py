"""indexes that keep a year of history cheap

Retention walked every row id each hour to find what had crossed its cutoff: seconds
of work an hour at a year of history, for nearly nothing. A partial index on
``due_at`` holds only the rows it may still remove or compact (every kind but
``continue`` and ``summary``, except sent questions once compacted), so a pass reads
what crossed the cutoff since the last one. Its condition is word for word the one
``bot.retention`` queries with, as both databases require to use a partial index.

Digests read the questions sent and the answers written in one week; without an index
on those times each render read the whole delivery and reply tables. SQLite gets
indexes that lead with the learner, which it seeks learner by learner, so that deleting
one learner's rows touches a few of their pages; PostgreSQL, which never plans a seek
per learner and whose deletes write no index page, gets them in time order. The index
an edited message is looked up by (always among its author's) leads with the learner.

``forget-me`` deletes one learner's rows, spread over the whole outbox. Indexes on
columns empty on nearly every row (a reminder's parent, a digest, a time still to
come) kept an entry per row in row-id order, so that delete rewrote a page of each
for nearly every row; they now leave the empty rows out.

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
# Indexes that now leave out the rows where their column is NULL.
SET_ONLY = {
    "delivery": ("parent_id", "digest_id", "remind_at"),
    "reply": ("candidate_id", "follow_up_at", "review_at", "review_of_id"),
}


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("delivery") as batch:
        batch.create_index("ix_delivery_retention", ["due_at", "id"], **_where(RETENTION_WORK))
        if sqlite:
            batch.create_index("ix_delivery_learner_sent", ["learner_id", "sent_at"])
        else:
            batch.create_index("ix_delivery_sent_at", ["sent_at"])
    with op.batch_alter_table("reply") as batch:
        batch.create_index("ix_reply_learner_created", ["learner_id", "created_at"])
        batch.drop_index("ix_reply_learner_id")
        if not sqlite:
            batch.create_index("ix_reply_created_at", ["created_at"])
        batch.create_index("ix_reply_learner_message", ["learner_id", "platform_message_id"])
        batch.drop_index("ix_reply_platform_message_id")
    for table, columns in SET_ONLY.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_index(f"ix_{table}_{column}")
                batch.create_index(
                    f"ix_{table}_{column}", [column], **_where(f"{column} IS NOT NULL")
                )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, columns in SET_ONLY.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_index(f"ix_{table}_{column}")
                batch.create_index(f"ix_{table}_{column}", [column])
    with op.batch_alter_table("reply") as batch:
        batch.create_index("ix_reply_platform_message_id", ["platform_message_id"])
        batch.drop_index("ix_reply_learner_message")
        batch.create_index("ix_reply_learner_id", ["learner_id"])
        batch.drop_index("ix_reply_learner_created")
        if not sqlite:
            batch.drop_index("ix_reply_created_at")
    with op.batch_alter_table("delivery") as batch:
        batch.drop_index("ix_delivery_learner_sent" if sqlite else "ix_delivery_sent_at")
        batch.drop_index("ix_delivery_retention")
