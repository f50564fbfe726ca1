"""partial indexes for the outbox's two queues instead of one on every status

``ix_delivery_status_due`` (status, due_at) held an entry for every row ever queued:
a year of sent, failed and cancelled rows that no query reads through it. Each row
``forget-me`` deleted rewrote a page of it (the learner's rows are spread over the
whole year), a quarter of that command's page writes. The outbox reads it only for the
rows still to send (by due time) and those on their way (by lease), so two partial
indexes hold just those: a few rows each. Their conditions are word for word those of
``bot.models.OUTBOX_QUEUES``, which the queries repeat (``bot.models.on_its_way``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "status = 'pending'"
SENDING = "status = 'sending'"


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def upgrade() -> None:
    op.create_index("ix_delivery_pending", "delivery", ["due_at", "id"], **_where(PENDING))
    op.create_index("ix_delivery_sending", "delivery", ["lease_until", "id"], **_where(SENDING))
    op.drop_index("ix_delivery_status_due", table_name="delivery")


def downgrade() -> None:
    op.create_index("ix_delivery_status_due", "delivery", ["status", "due_at"])
    op.drop_index("ix_delivery_sending", table_name="delivery")
    op.drop_index("ix_delivery_pending", table_name="delivery")
