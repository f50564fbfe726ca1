"""A batch of rows as one statement parameter, so a batch is one INSERT or UPDATE.

The planner writes hundreds of rows per transaction. A multi-row ``VALUES`` with
thousands of parameters costs more to compile and prepare than the database spends
running it, and an executemany of one-row statements costs SQLAlchemy a round of
parameter processing per row (and PostgreSQL a statement per row). Here a batch
travels as one array per column on PostgreSQL (``SELECT unnest(:a), unnest(:b), …``)
and as one JSON document on SQLite (``SELECT json_extract(value, '$[0]'), … FROM
json_each(:batch)``). The statement then has one shape whatever the batch size, is
compiled and prepared once, and the database runs it as one set.

SQLite needs 3.33 (``UPDATE … FROM``) and JSON functions, built in since 3.38 and in
practically every build before; the store already needs 3.35 for ``RETURNING``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg


def rows_select(
    table: sa.Table,
    names: Sequence[str],
    records: Sequence[Sequence[object]],
    dialect: sa.Dialect,
) -> tuple[sa.Select[Any], dict[str, object]]:
    """A SELECT yielding ``records`` (tuples of the ``names`` columns, typed as in
    ``table``) and the parameters to execute it with. A column with one value for the
    whole batch (a status, the instant it is due) travels once, as a plain parameter."""
    columns = list(zip(*records, strict=True)) if records else [() for _ in names]
    same = {
        name
        for name, values in zip(names, columns, strict=True)
        if values and values.count(values[0]) == len(values)
    }
    if len(same) == len(names):
        same.discard(names[0])  # one column must vary: it carries the number of rows
    parameters: dict[str, object] = {
        f"batch_{name}": values[0]
        for name, values in zip(names, columns, strict=True)
        if name in same
    }
    fixed = {name: sa.bindparam(f"batch_{name}", type_=table.c[name].type) for name in same}
    varying = [
        (name, values) for name, values in zip(names, columns, strict=True) if name not in same
    ]
    if dialect.name == "postgresql":
        unnested = {
            name: sa.func.unnest(
                sa.cast(sa.bindparam(f"batch_{name}"), pg.ARRAY(table.c[name].type))
            )
            for name, _ in varying
        }
        parameters.update({f"batch_{name}": list(values) for name, values in varying})
        select = sa.select(
            *((fixed[name] if name in fixed else unnested[name]).label(name) for name in names)
        )
        return select, parameters
    batch = sa.func.json_each(sa.bindparam("batch")).table_valued("value", name="batch")
    extracted = {
        name: sa.func.json_extract(batch.c.value, f"$[{index}]")
        for index, (name, _) in enumerate(varying)
    }
    processors = [_stored(table.c[name].type, dialect) for name, _ in varying]
    document = [
        list(values) if process is None else [process(value) for value in values]
        for (_, values), process in zip(varying, processors, strict=True)
    ]
    parameters["batch"] = json.dumps(list(zip(*document, strict=True)))
    select = sa.select(
        *((fixed[name] if name in fixed else extracted[name]).label(name) for name in names)
    ).select_from(batch)
    # SQLite would read the ON of "INSERT … SELECT … ON CONFLICT" as a join's without it.
    return select.where(sa.true()), parameters


def _stored(
    kind: sa.types.TypeEngine[Any], dialect: sa.Dialect
) -> Callable[[object], object] | None:
    """How a value is stored in a column of type ``kind`` (a UTC timestamp as SQLite's
    text), as SQLAlchemy would bind it; each distinct value is converted once per batch.
    None when values are stored as they are."""
    process = kind.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return None
    seen: dict[object, object] = {None: None}

    def stored(value: object) -> object:
        if value not in seen:
            seen[value] = process(value)
        return seen[value]

    return stored


def among(column: sa.ColumnElement[Any], ids: Sequence[int]) -> sa.ColumnElement[bool]:
    """``column IN (ids)`` for a batch of integer ids, written into the SQL as literals.

    With parameters, psycopg prepares the statement after a few runs and PostgreSQL may
    settle on a generic plan that cannot hash the list: each candidate row is then
    compared with every id. Literal ids are a constant the server plans for (and hashes)
    each time; SQLite builds a lookup table for a literal list either way."""
    values = [int(value) for value in ids]
    return column.in_(sa.bindparam(None, values, expanding=True, literal_execute=True))
