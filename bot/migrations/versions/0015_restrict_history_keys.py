"""foreign keys to history rows refuse deletes with RESTRICT on PostgreSQL

For every row a delete removes, PostgreSQL's NO ACTION runs two queries per key that
points at it: whether another row now holds the same key, then whether rows still point
at it. RESTRICT runs the second only, and refuses the same deletes at the same moment
(the end of the statement), since these keys are not deferrable and ids are never
reused. ``forget-me`` deletes a year of one learner's outbox rows and replies, each
checked by the keys below: at five million outbox rows the checks of its outbox delete
went from 30 ms to 16 ms. SQLite keeps NO ACTION, which looks each row up once already;
its RESTRICT would act row by row, mid-statement (see ``bot.models._history_key``).

Each key is dropped and added again, which checks the table once (about 3 s at five
million outbox rows).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, table, column, referenced table): the names PostgreSQL gave or 0002-0009 chose.
KEYS = (
    ("reply_delivery_id_fkey", "reply", "delivery_id", "delivery"),
    ("fk_reply_candidate", "reply", "candidate_id", "delivery"),
    ("fk_delivery_parent", "delivery", "parent_id", "delivery"),
    ("fk_reply_review_of", "reply", "review_of_id", "reply"),
    ("reply_read_reply_id_fkey", "reply_read", "reply_id", "reply"),
)


def _replace(ondelete: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, column, referenced in KEYS:
        op.drop_constraint(name, table, type_="foreignkey")
        op.create_foreign_key(name, table, referenced, [column], ["id"], ondelete=ondelete)


def upgrade() -> None:
    _replace("RESTRICT")


def downgrade() -> None:
    _replace(None)
