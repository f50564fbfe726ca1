"""Every foreign key has an index that serves it, so deletes (forget-me, unassign,
uninstall, retention) and lookups by parent never scan a whole table. A table added
later without its index fails here."""

from __future__ import annotations

import sqlalchemy as sa

from bot.db import Store


def test_every_foreign_key_is_served_by_an_index(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.upgrade()
        inspector = sa.inspect(store.engine)
        missing = []
        for table in inspector.get_table_names():
            leading = [tuple(index["column_names"]) for index in inspector.get_indexes(table)]
            for constraint in inspector.get_unique_constraints(table):
                leading.append(tuple(constraint["column_names"]))
            primary = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
            leading.append(primary)
            for key in inspector.get_foreign_keys(table):
                columns = tuple(key["constrained_columns"])
                if not any(found[: len(columns)] == columns for found in leading):
                    missing.append(f"{table}({', '.join(columns)})")
        assert missing == [], f"foreign keys without an index: {missing}"
    finally:
        store.dispose()
